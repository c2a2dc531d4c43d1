/**
 * Ed25519 and SHA-256 for the hot paths: signing and hashing through node:crypto, verification
 * through ledger/ed25519.ts (libsodium where its addon loads, else node:crypto, one rule).
 *
 * Keys travel as raw bytes: a 32-byte public key and a 32-byte private seed (RFC 8032 §5.1.5).
 * Every byte argument is checked for type and length on entry, with an error that names the
 * argument. `verify` returns false for a signature that does not verify or is malformed.
 *
 * Every signature the project makes is domain-separated. Our own statements are signed over a
 * context string naming their purpose (see `signedMessage`); the two standard formats carry
 * their own separation: signed-note checkpoints bind the origin line and key name, and
 * COSE_Sign1 lock signatures cover a Sig_structure that starts with "Signature1".
 */
import { createHash, hash as hashOnce, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { OtiError } from './base/errors.js';
import { SPKI_ED25519_PREFIX, verifyEd25519, type Ed25519Verify } from './ed25519.js';
import { sodium } from './sodium.js';

export const PUBLIC_KEY_BYTES = 32;
export const SEED_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const HASH_BYTES = 32;

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface KeyPair {
  readonly publicKey: Uint8Array;
  /** The 32-byte seed; keep it out of logs. */
  readonly seed: Uint8Array;
}

export function checkBytes(name: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new OtiError('ERR_ARGUMENT', `${name} must be a Uint8Array`, { argument: name });
  if (length !== undefined && value.length !== length) {
    throw new OtiError('ERR_ARGUMENT', `${name} must be ${length} bytes, got ${value.length}`, { argument: name });
  }
}

/** node:crypto's one-shot hash (Node 20.12 and later): no Hash object for a single input. */
const ONE_SHOT = typeof hashOnce === 'function';

export function sha256(...parts: Uint8Array[]): Uint8Array {
  // One part (every event hash of an ack, for one): about a quarter of createHash's cost and garbage.
  if (parts.length === 1 && ONE_SHOT) return hashOnce('sha256', parts[0]!, 'buffer');
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

const SODIUM_SHA256 = sodium?.crypto_hash_sha256;

/**
 * Hashes come out of slabs of 16: a hash someone keeps keeps its slab (512 bytes), as a Buffer
 * from Node's pool keeps its 8 KB.
 */
const SLAB_BYTES = 16 * HASH_BYTES;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabUsed = 0;

/**
 * SHA-256 of one input, for the hashes made per entry or per event (Merkle leaves and nodes, the
 * `ev` of every ack): with libsodium (ledger/sodium.ts) written into a 32-byte slice of a slab,
 * where node:crypto allocates a buffer with memory of its own per hash (more work for the garbage
 * collector, and in bench:ingest's closed loop about twice the CPU of libsodium's call). The
 * result is a Buffer like sha256()'s, but shares its ArrayBuffer with 15 other hashes: never
 * transfer it or use its `.buffer` as a whole. `input` should lie off V8's heap (see
 * ledger/sodium.ts); a small on-heap one costs an allocation per call.
 */
export function sha256Slab(input: Uint8Array): Uint8Array {
  if (SODIUM_SHA256 === undefined) return sha256(input);
  if (slabUsed === SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = Buffer.from(slab.buffer, slab.byteOffset + slabUsed, HASH_BYTES);
  slabUsed += HASH_BYTES;
  SODIUM_SHA256(out, input);
  return out;
}

export function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519_PREFIX.length);
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_ED25519_PREFIX.length);
  return { publicKey: new Uint8Array(pub), seed: new Uint8Array(seed) };
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  const signer = new Signer(seed);
  return { publicKey: signer.publicKey, seed: new Uint8Array(seed) };
}

/** Holds a private key as a KeyObject so that signing in a loop does not re-import it. */
export class Signer {
  readonly publicKey: Uint8Array;
  readonly #key: KeyObject;

  constructor(seed: Uint8Array) {
    checkBytes('seed', seed, SEED_BYTES);
    this.#key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    const spki = createPublicKey(this.#key).export({ format: 'der', type: 'spki' });
    this.publicKey = new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length));
  }

  /** Signs the raw message (pure Ed25519, RFC 8032). */
  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(nodeSign(null, message, this.#key));
  }

  /** Signs `context || 0x00 || message`; see signedMessage. */
  signWithContext(context: SignatureContext, message: Uint8Array): Uint8Array {
    return this.sign(signedMessage(context, message));
  }

  /** Redacted so that a logged Signer never shows key material. */
  toJSON(): { publicKey: string } {
    return { publicKey: Buffer.from(this.publicKey).toString('hex') };
  }
}

/** Ed25519 verification under the project's rule, on libsodium or node:crypto (ledger/ed25519.ts). */
export type { Ed25519Verify };

/**
 * Ed25519 verification under the project's rule (docs/PROTOCOL.md §Keys and signatures): false for any
 * signature that is not valid, including one under a key that is not a point of large order;
 * ERR_ARGUMENT only for arguments of the wrong type or a key of the wrong length.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  checkBytes('publicKey', publicKey, PUBLIC_KEY_BYTES);
  checkBytes('message', message);
  checkBytes('signature', signature);
  if (signature.length !== SIGNATURE_BYTES) return false;
  return verifyEd25519(publicKey, message, signature);
}

export function verifyWithContext(publicKey: Uint8Array, context: SignatureContext, message: Uint8Array, signature: Uint8Array, ed25519: Ed25519Verify = verify): boolean {
  return ed25519(publicKey, signedMessage(context, message), signature);
}

/**
 * Context strings for domain separation. A signature made for one purpose can never be taken
 * for another, because the signed bytes begin with a different string.
 */
export const SIGNATURE_CONTEXTS = ['OTI-v1 roster statement', 'OTI-v1 equivocation evidence', 'OTI-v1 backup', 'OTI-v1 mdns announcement', 'OTI-v1 broker credential', 'OTI-v1 ledger decision'] as const;
export type SignatureContext = (typeof SIGNATURE_CONTEXTS)[number];

/** The bytes actually signed: ASCII context, one 0x00 byte, then the message. */
export function signedMessage(context: SignatureContext, message: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(context, 'ascii'), Buffer.of(0), message]);
}

/** Hex of the first 8 bytes of SHA-256(public key): what people compare on screens. */
export function fingerprint(publicKey: Uint8Array): string {
  checkBytes('publicKey', publicKey, PUBLIC_KEY_BYTES);
  const h = Buffer.from(sha256(publicKey)).toString('hex').slice(0, 16);
  return h.match(/..../g)!.join(':');
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

export function fromHex(name: string, hex: string, length?: number): Uint8Array {
  if (typeof hex !== 'string' || !/^([0-9a-f]{2})*$/i.test(hex)) throw new OtiError('ERR_ARGUMENT', `${name} must be hex`, { argument: name });
  const b = new Uint8Array(Buffer.from(hex, 'hex'));
  if (length !== undefined) checkBytes(name, b, length);
  return b;
}
