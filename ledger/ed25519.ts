/**
 * Ed25519 verification: one rule, two native implementations.
 *
 * The rule (docs/PROTOCOL.md §Keys and signatures) is libsodium's (1.0.20, as bundled in
 * sodium-native 4.3.2; test/vectors/ed25519-rule.json would show a later one that differs): a signature R || S by public key A
 * over M is valid when S < L, A is a canonical encoding (y < p) of a point that is not of small
 * order, R is not the encoding of a point of small order, and encode([S]B - [k]A) equals R byte
 * for byte, k = SHA-512(R || A || M) mod L (the cofactorless equation of RFC 8032 §5.1.7).
 *
 * Implementations:
 * - libsodium through sodium-native, when its prebuilt addon loads (linux-x64 and linux-arm64,
 *   among others). It verifies 2.2x faster than OpenSSL on the same core (docs/DECISIONS.md
 *   §Ed25519), which is what lets whole-chain verification outrun two cores of node:crypto.
 * - node:crypto (OpenSSL) everywhere else, e.g. 32-bit ARM. OpenSSL checks S < L and the
 *   equation but accepts keys and R of small order; the checks on A and R below are made first,
 *   so both implementations accept exactly the same signatures. Gateways of one site may run on
 *   different machines, and a signature one of them stored must never be refused by another.
 *
 * OTI_ED25519_VERIFIER=node-crypto (or node:crypto) in the environment makes a process (and its
 * workers) use node:crypto even where libsodium loads: for a machine whose addon is suspect, and
 * for tests of the fallback path.
 *
 * Signing stays on node:crypto (ledger/crypto.ts): it is fast enough and keeps key handling in one
 * place. The pure-JS @noble/ed25519 remains the portable second implementation used in tests.
 */
import { createPublicKey, verify as opensslVerify, type KeyObject } from 'node:crypto';
import { sodium as sodiumNative, sodiumUnavailable } from './sodium.js';

/** An Ed25519 verification function: true when `signature` is valid for `message` under `publicKey`. */
export type Ed25519Verify = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

/** The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const ORDER_LE = Uint8Array.from(Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex'));

/**
 * Every 32-byte string that decodes (sign bit ignored) to one of the eight points of small order:
 * y = 0, 1, p - 1, the two y of the points of order 8, and the non-canonical y = p and p + 1
 * (y + p does not fit in 255 bits for the others). test/unit/ed25519.test.ts derives the list
 * from the curve with @noble/ed25519.
 */
export const SMALL_ORDER_ENCODINGS: readonly Uint8Array[] = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => Uint8Array.from(Buffer.from(h, 'hex')));

/** Whether the 32 bytes at `b[o..o+32)` encode a point of small order (the sign bit is ignored). */
function isSmallOrder(b: Uint8Array, o: number): boolean {
  outer: for (const e of SMALL_ORDER_ENCODINGS) {
    for (let i = 0; i < 31; i++) if (b[o + i] !== e[i]) continue outer;
    if ((b[o + 31]! & 0x7f) === e[31]) return true;
  }
  return false;
}

/** Whether the scalar at `b[o..o+32)` (little-endian) is below L. */
function isCanonicalScalar(b: Uint8Array, o: number): boolean {
  for (let i = 31; i >= 0; i--) {
    if (b[o + i]! < ORDER_LE[i]!) return true;
    if (b[o + i]! > ORDER_LE[i]!) return false;
  }
  return false;
}

/** Whether y (the low 255 bits) is below p = 2^255 - 19. */
function isCanonicalY(b: Uint8Array): boolean {
  if ((b[31]! & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (b[i] !== 0xff) return true;
  return b[0]! < 0xed;
}

/**
 * The parts of the rule that OpenSSL does not check (and S < L, which it does): a 32-byte key
 * and a 64-byte signature that pass may still fail the equation.
 */
export function passesEncodingChecks(publicKey: Uint8Array, signature: Uint8Array): boolean {
  return isCanonicalScalar(signature, 32) && !isSmallOrder(signature, 0) && isCanonicalY(publicKey) && !isSmallOrder(publicKey, 0);
}

/** DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410), up to the 32 key bytes. */
export const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keyObjects = new Map<string, KeyObject | null>();
const KEY_OBJECT_CACHE_LIMIT = 4096;

/** node:crypto wants a KeyObject; making one costs more than a verification, so they are cached (null: not a key). */
function keyObject(publicKey: Uint8Array): KeyObject | null {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('latin1');
  let key = keyObjects.get(id);
  if (key === undefined) {
    try {
      key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
    } catch {
      key = null;
    }
    if (keyObjects.size >= KEY_OBJECT_CACHE_LIMIT) keyObjects.clear();
    keyObjects.set(id, key);
  }
  return key;
}

/** Whether the key and signature have the lengths of Ed25519's (the raw verifiers below check). */
function rightLengths(publicKey: Uint8Array, signature: Uint8Array): boolean {
  return publicKey.length === 32 && signature.length === 64;
}

/** The rule on node:crypto; false for a key or signature of the wrong length. */
export const verifyWithOpenssl: Ed25519Verify = (publicKey, message, signature) => {
  if (!rightLengths(publicKey, signature) || !passesEncodingChecks(publicKey, signature)) return false;
  const key = keyObject(publicKey);
  if (key === null) return false;
  try {
    return opensslVerify(null, message, key, signature);
  } catch {
    return false;
  }
};

function loadSodium(): { verify: Ed25519Verify } | { unavailable: string } {
  const override = process.env['OTI_ED25519_VERIFIER'];
  if (override === 'node-crypto' || override === 'node:crypto') return { unavailable: `OTI_ED25519_VERIFIER=${override}` };
  const lib = sodiumNative;
  if (lib === undefined) return { unavailable: sodiumUnavailable ?? 'sodium-native did not load' };
  return { verify: (publicKey, message, signature) => rightLengths(publicKey, signature) && lib.crypto_sign_verify_detached(signature, message, publicKey) };
}

const sodium = loadSodium();

/** The rule on libsodium (false for wrong lengths), or undefined where sodium-native has no addon for this machine. */
export const verifyWithSodium: Ed25519Verify | undefined = 'verify' in sodium ? sodium.verify : undefined;

/** Which implementation `verifyEd25519` uses in this process, and why libsodium is not used if so. */
export const ED25519_VERIFIER: { readonly name: 'libsodium' | 'node:crypto'; readonly sodiumUnavailable?: string } =
  'verify' in sodium ? { name: 'libsodium' } : { name: 'node:crypto', sodiumUnavailable: sodium.unavailable };

/** The rule, on the fastest implementation this machine has. */
export const verifyEd25519: Ed25519Verify = verifyWithSodium ?? verifyWithOpenssl;
