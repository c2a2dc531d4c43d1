/**
 * Which Ed25519 verifier this machine uses, and how fast it is on one core. Every event's lock
 * signature is checked at ingest, in the sync audit and by `oti verify`; libsodium does that
 * about twice as fast as node:crypto (docs/DECISIONS.md §Ed25519).
 */
import { ED25519_VERIFIER, verifyEd25519 } from '../../ledger/ed25519.js';
import { Signer } from '../../ledger/crypto.js';
import { result, type CheckResult } from './result.js';

/** Verifications per second on this thread, over about `ms` milliseconds. */
function rate(ms: number): number {
  const signer = new Signer(new Uint8Array(32).fill(7));
  const message = new Uint8Array(200).fill(1);
  const signature = signer.sign(message);
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 50; i++) if (verifyEd25519(signer.publicKey, message, signature)) n++;
    elapsed = performance.now() - start;
  }
  return Math.round((n * 1000) / elapsed);
}

export function checkSignatureVerifier(ms = 200): CheckResult {
  const perS = rate(ms);
  const data = { verifier: ED25519_VERIFIER.name, verificationsPerSecond: perS };
  if (ED25519_VERIFIER.name === 'libsodium') return result('signature verifier', 'pass', `libsodium, ${perS} Ed25519 verifications/s on one core`, undefined, data);
  const reason = ED25519_VERIFIER.sodiumUnavailable ?? 'unknown';
  if (reason.startsWith('OTI_ED25519_VERIFIER=')) return result('signature verifier', 'pass', `node:crypto as ${reason} asks, ${perS} Ed25519 verifications/s on one core`, undefined, data);
  return result(
    'signature verifier',
    'warn',
    `node:crypto, ${perS} Ed25519 verifications/s on one core: libsodium did not load (${reason})`,
    'sodium-native ships libsodium for 64-bit Linux (x64, arm64): on a Raspberry Pi, install a 64-bit OS; elsewhere reinstall the dependencies (npm ci). The gateway works on node:crypto, at about half the signature-checking rate',
    data,
  );
}
