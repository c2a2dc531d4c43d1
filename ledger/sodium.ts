/**
 * libsodium through sodium-native, where its prebuilt addon loads for this machine (linux-x64 and
 * linux-arm64 among others), else undefined with the reason. One module loads it for the two
 * users: Ed25519 verification (ledger/ed25519.ts) and SHA-256 of Merkle leaves and nodes
 * (ledger/merkle.ts), both with node:crypto where it does not load.
 *
 * Its functions take their buffers through N-API, which needs them off V8's heap: a typed array
 * small enough to live on the heap is moved off it on every call (an allocation each). Callers
 * pass buffers made with Buffer.allocUnsafeSlow or views of them.
 */
import { createRequire } from 'node:module';

export interface Sodium {
  crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  /** SHA-256 of `input` into `output` (exactly 32 bytes). */
  crypto_hash_sha256(output: Uint8Array, input: Uint8Array): void;
}

function load(): { sodium: Sodium; unavailable?: undefined } | { sodium?: undefined; unavailable: string } {
  try {
    return { sodium: createRequire(import.meta.url)('sodium-native') as Sodium };
  } catch (e) {
    return { unavailable: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
  }
}

const loaded = load();

/** sodium-native, or undefined where its addon does not load. */
export const sodium: Sodium | undefined = loaded.sodium;
/** Why sodium-native did not load (undefined when it did). */
export const sodiumUnavailable: string | undefined = loaded.unavailable;
