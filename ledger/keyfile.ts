/**
 * Key files: the Ed25519 seeds of the site authority key and of each gateway key, and the
 * matching public key files.
 *
 * ## Private key file (`oti-ed25519-key`, version 1)
 *
 * A UTF-8 JSON object, at most 64 KiB, with exactly these members (no others are accepted):
 *
 * ```
 * {
 *   "format": "oti-ed25519-key",
 *   "version": 1,
 *   "label": "site authority",            // optional; 1..128 characters, no control characters
 *   "publicKey": "<64 lower-case hex>",   // RFC 8032 public key
 *   "seed": "<64 lower-case hex>"         // RFC 8032 private seed; only in plain files
 * }
 * ```
 *
 * When a passphrase is given, `"seed"` is replaced by:
 *
 * ```
 *   "encryption": {
 *     "kdf": "scrypt",
 *     "N": 32768,                          // power of two, 2^10..2^20 (default 2^15)
 *     "r": 8,
 *     "p": 1,
 *     "salt": "<base64, 16..64 bytes>",    // written with 16 random bytes
 *     "cipher": "aes-256-gcm",             // or "chacha20-poly1305"
 *     "nonce": "<base64, 12 bytes>",       // random per write
 *     "ciphertext": "<base64, 48 bytes>"   // AEAD(seed) = 32 encrypted bytes || 16-byte tag
 *   }
 * ```
 *
 * The 32-byte AEAD key is scrypt(NFC-normalised UTF-8 passphrase, salt, N, r, p). The header is
 * bound as associated data, so changing the label, public key, KDF parameters, salt or cipher
 * makes decryption fail: AAD = UTF-8 of the JSON array
 * `[format, version, label or null, publicKey, kdf, N, r, p, salt, cipher]` with the members'
 * exact strings and numbers from the file (as `JSON.stringify` prints it, no spaces).
 * Base64 is standard (RFC 4648 §4), padded, and must be canonical. Base64 and hex that decode
 * to the wrong length, unknown members and wrong types are all ERR_KEY_FILE_FORMAT naming the
 * member. After decryption (or reading a plain seed) the seed must derive `publicKey`, else
 * ERR_KEY_FILE_FORMAT.
 *
 * Private key files are written with mode 0600 and refused on read when the mode has any
 * group or other bit (ERR_KEY_FILE_PERMISSIONS); the mode is checked on the opened descriptor.
 *
 * ## Public key file (`oti-ed25519-public-key`, version 1)
 *
 * `{"format":"oti-ed25519-public-key","version":1,"label":...,"publicKey":"<64 hex>"}`, label
 * optional as above, written with mode 0644, no permission check on read.
 *
 * ## Writing
 *
 * Every write goes to a fresh temporary file in the target's directory (created exclusively,
 * with the final mode), is fsynced, then moved into place and the directory fsynced, so a
 * crash leaves either the old file or the complete new one. Existing files are refused unless
 * `overwrite: true`; without it the final step is a hard link, which fails atomically if the
 * target appeared meanwhile.
 *
 * No error message, `details` or `cause` produced here contains key material or a passphrase.
 * JavaScript strings cannot be wiped, so the hex seed of a plain file lingers in the heap until
 * collected; byte buffers (file contents, derived keys, decrypted seeds) are zeroed after use.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { checkBytes, keyPairFromSeed, PUBLIC_KEY_BYTES, SEED_BYTES, toHex, type KeyPair } from './crypto.js';
import { OtiError } from './base/errors.js';
import { bytesEqual } from './base/bytes.js';
import { readBoundedFile, refuseExisting, writeFileAtomic } from './base/files.js';

export const KEY_FILE_FORMAT = 'oti-ed25519-key';
export const PUBLIC_KEY_FILE_FORMAT = 'oti-ed25519-public-key';
export const KEY_FILE_VERSION = 1;
/** Files larger than this are refused before they are read. */
export const KEY_FILE_MAX_BYTES = 64 * 1024;
/** scrypt cost used when writing, unless `scryptN` says otherwise. */
export const DEFAULT_SCRYPT_N = 2 ** 15;
/** Smallest scrypt N accepted on write and read. Only tests should go below the default. */
export const MIN_SCRYPT_N = 2 ** 10;
/** Largest scrypt N accepted (1 GiB of scrypt memory at r = 8); bounds the cost of reading a hostile file. */
export const MAX_SCRYPT_N = 2 ** 20;
export const KEY_FILE_CIPHERS = ['aes-256-gcm', 'chacha20-poly1305'] as const;
export type KeyFileCipher = (typeof KEY_FILE_CIPHERS)[number];
/** Longest label, in UTF-16 code units. */
export const MAX_LABEL_LENGTH = 128;

const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const MIN_SALT_BYTES = 16;
const MAX_SALT_BYTES = 64;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AEAD_KEY_BYTES = 32;
const PRIVATE_FILE_MODE = 0o600;
const PUBLIC_FILE_MODE = 0o644;

export interface WriteKeyFileOptions {
  /** Encrypt the seed under this passphrase (non-empty); plain when absent. */
  passphrase?: string;
  /** Free text shown to people, e.g. "site authority"; 1..128 characters, no control characters. */
  label?: string;
  /** Replace an existing file at `path`; otherwise an existing file is ERR_ARGUMENT. */
  overwrite?: boolean;
  /** scrypt N, a power of two in [MIN_SCRYPT_N, MAX_SCRYPT_N]; default DEFAULT_SCRYPT_N. */
  scryptN?: number;
  /** AEAD for the seed; default aes-256-gcm. */
  cipher?: KeyFileCipher;
}

export interface ReadKeyFileOptions {
  /** Needed for encrypted files; ignored for plain ones. */
  passphrase?: string;
}

export interface WritePublicKeyFileOptions {
  label?: string;
  overwrite?: boolean;
}

export interface PublicKeyFile {
  readonly publicKey: Uint8Array;
  readonly label?: string;
}

/**
 * Writes `pair` as a private key file at `path` (mode 0600, atomically; see the module comment).
 * Throws ERR_ARGUMENT for a bad path, option or an existing file without `overwrite`,
 * ERR_ARGUMENT naming `pair.seed`/`pair.publicKey` for wrong-length keys, and ERR_KEY_INVALID
 * when `pair.publicKey` is not the public key of `pair.seed`.
 */
export async function writeKeyFile(path: string, pair: KeyPair, opts: WriteKeyFileOptions = {}): Promise<void> {
  checkPath(path);
  if (typeof pair !== 'object' || pair === null) throw new OtiError('ERR_ARGUMENT', 'pair must be a KeyPair', { argument: 'pair' });
  checkBytes('pair.seed', pair.seed, SEED_BYTES);
  checkBytes('pair.publicKey', pair.publicKey, PUBLIC_KEY_BYTES);
  if (!bytesEqual(keyPairFromSeed(pair.seed).publicKey, pair.publicKey)) {
    throw new OtiError('ERR_KEY_INVALID', 'pair.publicKey is not the public key of pair.seed', { argument: 'pair.publicKey' });
  }
  const label = checkLabelArgument(opts.label);
  const overwrite = checkOverwrite(opts.overwrite);
  const passphrase = opts.passphrase;
  if (passphrase !== undefined) checkPassphrase(passphrase);
  const N = opts.scryptN ?? DEFAULT_SCRYPT_N;
  if (!isValidScryptN(N)) {
    throw new OtiError('ERR_ARGUMENT', `scryptN must be a power of two from 2^10 to 2^20`, { argument: 'scryptN' });
  }
  const cipher = opts.cipher ?? 'aes-256-gcm';
  if (!(KEY_FILE_CIPHERS as readonly unknown[]).includes(cipher)) {
    throw new OtiError('ERR_ARGUMENT', `cipher must be one of ${KEY_FILE_CIPHERS.join(', ')}`, { argument: 'cipher' });
  }
  // Fail early, before the expensive KDF; the final link re-checks atomically.
  if (!overwrite) await refuseExisting(path);

  const publicKey = toHex(pair.publicKey);
  const doc: Record<string, unknown> = { format: KEY_FILE_FORMAT, version: KEY_FILE_VERSION };
  if (label !== undefined) doc.label = label;
  doc.publicKey = publicKey;
  if (passphrase === undefined) {
    doc.seed = toHex(pair.seed);
  } else {
    const salt = randomBytes(SALT_BYTES).toString('base64');
    const nonce = randomBytes(NONCE_BYTES);
    const params: EncryptionHeader = { label, publicKey, N, r: SCRYPT_R, p: SCRYPT_P, salt, cipher };
    const key = await deriveKey(passphrase, params);
    let ciphertext: Buffer;
    try {
      const c = aeadCipher(cipher, key, nonce);
      c.setAAD(headerAad(params));
      ciphertext = Buffer.concat([c.update(pair.seed), c.final(), c.getAuthTag()]);
    } finally {
      key.fill(0);
    }
    doc.encryption = {
      kdf: 'scrypt',
      N,
      r: SCRYPT_R,
      p: SCRYPT_P,
      salt,
      cipher,
      nonce: nonce.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
    };
  }
  const data = Buffer.from(JSON.stringify(doc, null, 2) + '\n', 'utf8');
  try {
    await writeFileAtomic(path, data, { mode: PRIVATE_FILE_MODE, overwrite });
  } finally {
    data.fill(0);
  }
}

/**
 * Reads a private key file. Refuses, in this order: a missing file (ERR_NOT_FOUND), something
 * that is not a regular file (ERR_KEY_FILE_FORMAT), a mode with group/other bits
 * (ERR_KEY_FILE_PERMISSIONS, checked on the open descriptor), a file over 64 KiB
 * (ERR_KEY_FILE_FORMAT, before reading it), a malformed document (ERR_KEY_FILE_FORMAT naming the
 * member), an encrypted file without passphrase (ERR_KEY_PASSPHRASE_REQUIRED), a wrong
 * passphrase or altered encrypted file (ERR_KEY_PASSPHRASE), and a seed that does not derive
 * the stated public key (ERR_KEY_FILE_FORMAT).
 */
export async function readKeyFile(path: string, opts: ReadKeyFileOptions = {}): Promise<KeyPair & { label?: string }> {
  checkPath(path);
  const passphrase = opts.passphrase;
  if (passphrase !== undefined) checkPassphrase(passphrase);
  const parsed = parsePrivateKeyDocument(path, await readDocument(path, true));

  let seed: Uint8Array;
  if (parsed.seed !== undefined) {
    seed = parsed.seed;
  } else {
    const enc = parsed.encryption;
    if (passphrase === undefined) {
      throw new OtiError('ERR_KEY_PASSPHRASE_REQUIRED', `key file ${path} is encrypted and no passphrase was given`, { path });
    }
    const key = await deriveKey(passphrase, enc);
    let plain: Buffer | undefined;
    try {
      const d = aeadDecipher(enc.cipher, key, enc.nonce);
      d.setAAD(headerAad(enc));
      d.setAuthTag(enc.ciphertext.subarray(SEED_BYTES));
      plain = Buffer.concat([d.update(enc.ciphertext.subarray(0, SEED_BYTES)), d.final()]);
      seed = new Uint8Array(plain);
    } catch {
      // No cause: nothing from the cipher is useful, and nothing derived from the key may leak.
      throw new OtiError('ERR_KEY_PASSPHRASE', `wrong passphrase for key file ${path}, or the file was altered`, { path });
    } finally {
      key.fill(0);
      plain?.fill(0);
    }
  }
  if (!bytesEqual(keyPairFromSeed(seed).publicKey, parsed.publicKey)) {
    seed.fill(0);
    throw new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path}: seed does not derive publicKey`, { path, field: 'publicKey' });
  }
  return parsed.label === undefined ? { publicKey: parsed.publicKey, seed } : { publicKey: parsed.publicKey, seed, label: parsed.label };
}

/**
 * Whether the private key file at `path` is encrypted. Reads and validates it like readKeyFile
 * (same errors, including ERR_KEY_FILE_PERMISSIONS) but derives and decrypts nothing.
 */
export async function isKeyFileEncrypted(path: string): Promise<boolean> {
  checkPath(path);
  const parsed = parsePrivateKeyDocument(path, await readDocument(path, true));
  parsed.seed?.fill(0);
  return parsed.seed === undefined;
}

/** Writes a public key file (mode 0644, atomically). Errors as for writeKeyFile. */
export async function writePublicKeyFile(path: string, publicKey: Uint8Array, opts: WritePublicKeyFileOptions = {}): Promise<void> {
  checkPath(path);
  checkBytes('publicKey', publicKey, PUBLIC_KEY_BYTES);
  const label = checkLabelArgument(opts.label);
  const overwrite = checkOverwrite(opts.overwrite);
  if (!overwrite) await refuseExisting(path);
  const doc: Record<string, unknown> = { format: PUBLIC_KEY_FILE_FORMAT, version: KEY_FILE_VERSION };
  if (label !== undefined) doc.label = label;
  doc.publicKey = toHex(publicKey);
  await writeFileAtomic(path, Buffer.from(JSON.stringify(doc, null, 2) + '\n', 'utf8'), { mode: PUBLIC_FILE_MODE, overwrite });
}

/** Reads a public key file. ERR_NOT_FOUND, or ERR_KEY_FILE_FORMAT naming the member or the size. */
export async function readPublicKeyFile(path: string): Promise<PublicKeyFile> {
  checkPath(path);
  const doc = await readDocument(path, false);
  checkFormat(path, doc.format, PUBLIC_KEY_FILE_FORMAT);
  checkVersion(path, doc.version);
  checkMembers(path, doc, ['format', 'version', 'label', 'publicKey'], '');
  const label = readLabel(path, doc);
  const publicKey = readHex(path, doc.publicKey, 'publicKey', PUBLIC_KEY_BYTES);
  return label === undefined ? { publicKey } : { publicKey, label };
}

// ---------------------------------------------------------------------------------------------
// Parsing

interface EncryptionHeader {
  label: string | undefined;
  publicKey: string;
  N: number;
  r: number;
  p: number;
  salt: string;
  cipher: KeyFileCipher;
}

interface EncryptionParams extends EncryptionHeader {
  saltBytes: Buffer;
  nonce: Buffer;
  /** Encrypted seed followed by the tag. */
  ciphertext: Buffer;
}

type ParsedPrivateKey = { label: string | undefined; publicKey: Uint8Array } & (
  | { seed: Uint8Array; encryption?: undefined }
  | { seed?: undefined; encryption: EncryptionParams }
);

function parsePrivateKeyDocument(path: string, doc: Record<string, unknown>): ParsedPrivateKey {
  checkFormat(path, doc.format, KEY_FILE_FORMAT);
  checkVersion(path, doc.version);
  checkMembers(path, doc, ['format', 'version', 'label', 'publicKey', 'seed', 'encryption'], '');
  const label = readLabel(path, doc);
  const publicKey = readHex(path, doc.publicKey, 'publicKey', PUBLIC_KEY_BYTES);
  if (doc.seed !== undefined && doc.encryption !== undefined) {
    throw formatError(path, 'seed', 'and encryption must not both be present');
  }
  if (doc.seed !== undefined) {
    return { label, publicKey, seed: readHex(path, doc.seed, 'seed', SEED_BYTES) };
  }
  if (doc.encryption === undefined) throw formatError(path, 'seed', 'is missing (and there is no encryption)');
  const enc = doc.encryption;
  if (!isPlainObject(enc)) throw formatError(path, 'encryption', 'must be an object');
  checkMembers(path, enc, ['kdf', 'N', 'r', 'p', 'salt', 'cipher', 'nonce', 'ciphertext'], 'encryption.');
  for (const m of ['kdf', 'N', 'r', 'p', 'salt', 'cipher', 'nonce', 'ciphertext']) {
    if (enc[m] === undefined) throw formatError(path, `encryption.${m}`, 'is missing');
  }
  if (enc.kdf !== 'scrypt') throw formatError(path, 'encryption.kdf', 'must be "scrypt"');
  if (!isValidScryptN(enc.N)) throw formatError(path, 'encryption.N', 'must be a power of two from 2^10 to 2^20');
  if (enc.r !== SCRYPT_R) throw formatError(path, 'encryption.r', `must be ${SCRYPT_R}`);
  if (enc.p !== SCRYPT_P) throw formatError(path, 'encryption.p', `must be ${SCRYPT_P}`);
  if (typeof enc.cipher !== 'string' || !(KEY_FILE_CIPHERS as readonly string[]).includes(enc.cipher)) {
    throw formatError(path, 'encryption.cipher', `must be one of ${KEY_FILE_CIPHERS.join(', ')}`);
  }
  const saltBytes = readBase64(path, enc.salt, 'encryption.salt');
  if (saltBytes.length < MIN_SALT_BYTES || saltBytes.length > MAX_SALT_BYTES) {
    throw formatError(path, 'encryption.salt', `must be ${MIN_SALT_BYTES} to ${MAX_SALT_BYTES} bytes`);
  }
  const nonce = readBase64(path, enc.nonce, 'encryption.nonce');
  if (nonce.length !== NONCE_BYTES) throw formatError(path, 'encryption.nonce', `must be ${NONCE_BYTES} bytes`);
  const ciphertext = readBase64(path, enc.ciphertext, 'encryption.ciphertext');
  if (ciphertext.length !== SEED_BYTES + TAG_BYTES) {
    throw formatError(path, 'encryption.ciphertext', `must be ${SEED_BYTES + TAG_BYTES} bytes`);
  }
  return {
    label,
    publicKey,
    encryption: {
      label,
      publicKey: doc.publicKey as string,
      N: enc.N,
      r: SCRYPT_R,
      p: SCRYPT_P,
      salt: enc.salt as string,
      saltBytes,
      cipher: enc.cipher as KeyFileCipher,
      nonce,
      ciphertext,
    },
  };
}

function formatError(path: string, field: string, problem: string): OtiError {
  return new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path}: ${field} ${problem}`, { path, field });
}

function checkMembers(path: string, obj: Record<string, unknown>, allowed: readonly string[], prefix: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw formatError(path, prefix + k, 'is not a known member');
  }
}

function checkFormat(path: string, value: unknown, expected: string): void {
  if (value === expected) return;
  if (value === KEY_FILE_FORMAT || value === PUBLIC_KEY_FILE_FORMAT) {
    throw formatError(path, 'format', `is "${value}", expected "${expected}"`);
  }
  throw formatError(path, 'format', value === undefined ? 'is missing' : `must be "${expected}"`);
}

function checkVersion(path: string, value: unknown): void {
  if (value === undefined) throw formatError(path, 'version', 'is missing');
  if (value !== KEY_FILE_VERSION) throw formatError(path, 'version', `must be ${KEY_FILE_VERSION}`);
}

function readLabel(path: string, doc: Record<string, unknown>): string | undefined {
  if (doc.label === undefined) return undefined;
  if (!isValidLabel(doc.label)) {
    throw formatError(path, 'label', `must be a string of 1 to ${MAX_LABEL_LENGTH} characters without control characters`);
  }
  return doc.label;
}

function readHex(path: string, value: unknown, field: string, length: number): Uint8Array {
  if (value === undefined) throw formatError(path, field, 'is missing');
  if (typeof value !== 'string' || value.length !== length * 2 || !/^[0-9a-f]*$/.test(value)) {
    throw formatError(path, field, `must be ${length * 2} lower-case hex digits`);
  }
  return new Uint8Array(Buffer.from(value, 'hex'));
}

function readBase64(path: string, value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw formatError(path, field, 'must be padded base64');
  }
  const b = Buffer.from(value, 'base64');
  if (b.toString('base64') !== value) throw formatError(path, field, 'must be canonical base64');
  return b;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Arguments

function checkPath(path: unknown): asserts path is string {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw new OtiError('ERR_ARGUMENT', 'path must be a non-empty string', { argument: 'path' });
  }
}

function checkPassphrase(passphrase: unknown): asserts passphrase is string {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new OtiError('ERR_ARGUMENT', 'passphrase must be a non-empty string', { argument: 'passphrase' });
  }
}

function checkOverwrite(overwrite: unknown): boolean {
  if (overwrite !== undefined && typeof overwrite !== 'boolean') {
    throw new OtiError('ERR_ARGUMENT', 'overwrite must be a boolean', { argument: 'overwrite' });
  }
  return overwrite === true;
}

function checkLabelArgument(label: unknown): string | undefined {
  if (label === undefined) return undefined;
  if (!isValidLabel(label)) {
    throw new OtiError('ERR_ARGUMENT', `label must be a string of 1 to ${MAX_LABEL_LENGTH} characters without control characters`, {
      argument: 'label',
    });
  }
  return label;
}

function isValidLabel(label: unknown): label is string {
  return typeof label === 'string' && label.length > 0 && label.length <= MAX_LABEL_LENGTH && !/\p{Cc}/u.test(label);
}

function isValidScryptN(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_SCRYPT_N && n <= MAX_SCRYPT_N && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------------------------------------
// Crypto

/** The associated data binding the header of an encrypted file; see the module comment. */
function headerAad(h: EncryptionHeader): Buffer {
  return Buffer.from(
    JSON.stringify([KEY_FILE_FORMAT, KEY_FILE_VERSION, h.label ?? null, h.publicKey, 'scrypt', h.N, h.r, h.p, h.salt, h.cipher]),
    'utf8',
  );
}

function aeadCipher(cipher: KeyFileCipher, key: Buffer, nonce: Buffer) {
  const opts = { authTagLength: TAG_BYTES };
  return cipher === 'aes-256-gcm' ? createCipheriv(cipher, key, nonce, opts) : createCipheriv(cipher, key, nonce, opts);
}

function aeadDecipher(cipher: KeyFileCipher, key: Buffer, nonce: Buffer) {
  const opts = { authTagLength: TAG_BYTES };
  return cipher === 'aes-256-gcm' ? createDecipheriv(cipher, key, nonce, opts) : createDecipheriv(cipher, key, nonce, opts);
}

/** scrypt of the NFC-normalised passphrase; the caller zeroes the returned key. */
async function deriveKey(passphrase: string, h: EncryptionHeader): Promise<Buffer> {
  const pass = Buffer.from(passphrase.normalize('NFC'), 'utf8');
  const salt = Buffer.from(h.salt, 'base64');
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      // maxmem: scrypt needs about 128 * N * r bytes; leave room for the rest.
      scrypt(pass, salt, AEAD_KEY_BYTES, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r }, (err, key) => {
        if (err) reject(err);
        else resolve(key);
      });
    });
  } finally {
    pass.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Files

/** Opens, checks and reads a key file, returning the parsed top-level object. */
async function readDocument(path: string, isPrivate: boolean): Promise<Record<string, unknown>> {
  const { bytes } = await readBoundedFile(path, {
    maxBytes: KEY_FILE_MAX_BYTES,
    private: isPrivate,
    problem: (p, mode) => {
      switch (p) {
        case 'missing':
          return new OtiError('ERR_NOT_FOUND', `key file ${path} does not exist`, { path });
        case 'not-a-file':
          return new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path} is not a regular file`, { path });
        case 'permissions':
          return new OtiError('ERR_KEY_FILE_PERMISSIONS', `key file ${path} has mode ${mode}, which lets group or others read it; run chmod 600 ${path}`, { path, mode });
        case 'too-large':
          return new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path} is more than the limit of ${KEY_FILE_MAX_BYTES} bytes`, { path, limit: KEY_FILE_MAX_BYTES });
      }
    },
  });
  try {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path} is not UTF-8`, { path });
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      // No cause: V8's JSON errors quote the input, which may hold a seed.
      throw new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path} is not valid JSON`, { path });
    }
    if (!isPlainObject(doc)) throw new OtiError('ERR_KEY_FILE_FORMAT', `key file ${path} is not a JSON object`, { path });
    return doc;
  } finally {
    bytes.fill(0);
  }
}
