/**
 * Privacy protection of personal data in the chain: sealed credential references, keyed
 * pseudonyms, per-person field encryption and the site privacy keyring. docs/PRIVACY.md explains
 * the model; docs/PROTOCOL.md §Sealed items gives every byte.
 *
 * All of it is node:crypto: X25519 (RFC 7748) key agreement, HKDF-SHA256 (RFC 5869),
 * ChaCha20-Poly1305 (RFC 8439) and HMAC-SHA256 (RFC 2104).
 *
 * ## Sealed box (credentials and wrapped person keys)
 *
 *   box     = 0x01 || kid(4) || epk(32) || ct || tag(16)
 *   shared  = X25519(ephemeral private key, site privacy public key)
 *   okm     = HKDF-SHA256(ikm = shared, salt = epk || site privacy public key, info = context, 44)
 *   key     = okm[0:32], nonce = okm[32:44]
 *   ct||tag = ChaCha20-Poly1305(key, nonce, plaintext, aad = 0x01 || kid || epk || binding)
 *
 * A fresh ephemeral key per box makes two boxes of one plaintext unrelated to anyone without the
 * private key; the key and nonce are used once. `kid` = SHA-256("OTI-v1 privacy key id" || 0x00
 * || public key)[0:4] names the site key, so a rotation never needs history re-encrypted.
 * `context` separates uses ("OTI-v1 sealed credential", "OTI-v1 person key"); `binding` ties the
 * box to where it sits (the lock id for a credential, site and person id for a person key).
 *
 * A credential is padded before sealing so that its length does not show: plaintext =
 * len(1) || raw (1..31) || zeros, 32 bytes, so every sealed credential is 85 bytes.
 *
 * ## Pseudonyms
 *
 *   pseudonym = HMAC-SHA256(pseudonym key, "OTI-v1 pseudonym" || 0x00 || raw credential)[0:16]
 *
 * The pseudonym key is HKDF-SHA256(ikm = the keyring's pseudonym secret, salt = site id, info =
 * "OTI-v1 pseudonym key"). The secret is random, made once per site and kept across rotations of
 * the X25519 keys, so one person keeps one pseudonym for years; another keyring gives another.
 *
 * ## Person fields
 *
 *   fields = nonce(12) || ChaCha20-Poly1305(person key, nonce, CBOR {* tstr => tstr},
 *            aad = "OTI-v1 person fields" || 0x00 || site || 0x00 || person id)
 *
 * The person key is 32 random bytes per person, kept off the chain (gateway/api/persons.ts), wrapped
 * to the site privacy key in a box. Destroying it makes the fields unreadable for good while the
 * ciphertext, and so every hash over it, stays.
 */
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, scrypt, type KeyObject } from 'node:crypto';
import { checkBytes, sha256, toHex } from './crypto.js';
import { decode, encode, type CborValue } from './base/cbor.js';
import { bytesEqual } from './base/bytes.js';
import { OtiError } from './base/errors.js';
import { MIN_SCRYPT_N, MAX_SCRYPT_N, DEFAULT_SCRYPT_N } from './keyfile.js';
import { readBoundedFile, writeFileAtomic } from './base/files.js';
import { ID_PATTERN } from './schema.js';

export const PRIVACY_KEY_BYTES = 32;
export const KEY_ID_BYTES = 4;
export const BOX_VERSION = 0x01;
const TAG_BYTES = 16;
const NONCE_BYTES = 12;
const BOX_HEADER_BYTES = 1 + KEY_ID_BYTES + PRIVACY_KEY_BYTES;
/** Padded credential plaintext: one length byte and up to 31 bytes of credential. */
export const CRED_PLAINTEXT_BYTES = 32;
export const MAX_RAW_CRED_BYTES = CRED_PLAINTEXT_BYTES - 1;
/** Every sealed credential has this length (85). */
export const SEALED_CRED_BYTES = BOX_HEADER_BYTES + CRED_PLAINTEXT_BYTES + TAG_BYTES;
/** A wrapped person key: a box of 32 bytes (85). */
export const WRAPPED_KEY_BYTES = BOX_HEADER_BYTES + PRIVACY_KEY_BYTES + TAG_BYTES;
export const PERSON_ID_BYTES = 16;
export const PSEUDONYM_BYTES = 16;
/** Largest encrypted person fields accepted (encoded CBOR plus nonce and tag). */
export const PERSON_FIELDS_MAX_BYTES = 1024;

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

type BoxContext = 'OTI-v1 sealed credential' | 'OTI-v1 person key';

/** A site privacy public key and its id. */
export interface PrivacyPublicKey {
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  /** When it was made (ms since 1970). */
  readonly created: number;
}

/** SHA-256("OTI-v1 privacy key id" || 0x00 || public key)[0:4]. */
export function privacyKeyId(publicKey: Uint8Array): Uint8Array {
  checkBytes('publicKey', publicKey, PRIVACY_KEY_BYTES);
  return sha256(Buffer.from('OTI-v1 privacy key id\0', 'ascii'), publicKey).subarray(0, KEY_ID_BYTES);
}

function privateKeyObject(privateKey: Uint8Array): KeyObject {
  checkBytes('privateKey', privateKey, PRIVACY_KEY_BYTES);
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, privateKey]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  checkBytes('publicKey', publicKey, PRIVACY_KEY_BYTES);
  try {
    return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
  } catch (e) {
    throw new OtiError('ERR_KEY_INVALID', 'publicKey is not a valid X25519 key', undefined, { cause: e });
  }
}

function rawPublic(k: KeyObject): Uint8Array {
  return new Uint8Array(k.export({ format: 'der', type: 'spki' }).subarray(SPKI_X25519_PREFIX.length));
}

/** A fresh X25519 key pair as raw 32-byte keys (RFC 7748 §5). */
export function generateX25519(): { publicKey: Uint8Array; privateKey: Uint8Array } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { publicKey: rawPublic(publicKey), privateKey: new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_X25519_PREFIX.length)) };
}

function boxKeys(shared: Uint8Array, epk: Uint8Array, recipient: Uint8Array, context: BoxContext): { key: Buffer; nonce: Buffer } {
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([epk, recipient]), Buffer.from(context, 'ascii'), 32 + NONCE_BYTES));
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32) };
}

function aead(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** Opens ct||tag; undefined when the tag does not verify. */
function unaead(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.length < TAG_BYTES) return undefined;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  d.setAAD(aad, { plaintextLength: sealed.length - TAG_BYTES });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return new Uint8Array(Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]));
  } catch {
    return undefined;
  }
}

function seal(to: PrivacyPublicKey, context: BoxContext, binding: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const recipient = publicKeyObject(to.publicKey);
  const eph = generateKeyPairSync('x25519');
  const epk = rawPublic(eph.publicKey);
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: recipient });
  const { key, nonce } = boxKeys(shared, epk, to.publicKey, context);
  const header = Buffer.concat([Buffer.of(BOX_VERSION), to.id, epk]);
  try {
    return new Uint8Array(Buffer.concat([header, aead(key, nonce, Buffer.concat([header, binding]), plaintext)]));
  } finally {
    key.fill(0);
    shared.fill(0);
  }
}

/** The key id of a box, or undefined when `b` is not shaped as a box of `plaintextBytes`. */
export function boxKeyId(b: Uint8Array, plaintextBytes: number): Uint8Array | undefined {
  if (!(b instanceof Uint8Array) || b.length !== BOX_HEADER_BYTES + plaintextBytes + TAG_BYTES || b[0] !== BOX_VERSION) return undefined;
  return b.subarray(1, 1 + KEY_ID_BYTES);
}

/** Seals a raw credential id (1..31 bytes) for a lock's event; 85 bytes. */
export function sealCredential(to: PrivacyPublicKey, lockId: string, raw: Uint8Array): Uint8Array {
  checkBytes('raw', raw);
  if (raw.length < 1 || raw.length > MAX_RAW_CRED_BYTES) throw new OtiError('ERR_ARGUMENT', `raw must be 1 to ${MAX_RAW_CRED_BYTES} bytes`, { argument: 'raw' });
  const padded = new Uint8Array(CRED_PLAINTEXT_BYTES);
  padded[0] = raw.length;
  padded.set(raw, 1);
  return seal(to, 'OTI-v1 sealed credential', lockBinding(lockId), padded);
}

/** True when `cred` has the shape of a sealed credential under one of `keyIds` (it is not opened). */
export function isSealedCredential(cred: Uint8Array, keyIds: readonly Uint8Array[]): boolean {
  const kid = boxKeyId(cred, CRED_PLAINTEXT_BYTES);
  return kid !== undefined && keyIds.some((k) => bytesEqual(k, kid));
}

/** Wraps a person key (32 bytes) to the site privacy key; 85 bytes. */
export function wrapPersonKey(to: PrivacyPublicKey, siteId: string, personId: Uint8Array, personKey: Uint8Array): Uint8Array {
  checkBytes('personKey', personKey, PRIVACY_KEY_BYTES);
  return seal(to, 'OTI-v1 person key', personBinding(siteId, personId), personKey);
}

function lockBinding(lockId: string): Uint8Array {
  if (typeof lockId !== 'string' || !ID_PATTERN.test(lockId)) throw new OtiError('ERR_ARGUMENT', 'lockId must be a lock id', { argument: 'lockId' });
  return Buffer.from(lockId, 'ascii');
}

function personBinding(siteId: string, personId: Uint8Array): Uint8Array {
  if (typeof siteId !== 'string' || !ID_PATTERN.test(siteId)) throw new OtiError('ERR_ARGUMENT', 'siteId must be a site id', { argument: 'siteId' });
  checkBytes('personId', personId, PERSON_ID_BYTES);
  return Buffer.concat([Buffer.from(siteId, 'ascii'), Buffer.of(0), personId]);
}

/** A random person id (16 bytes): carries nothing about the person. */
export function newPersonId(): Uint8Array {
  return new Uint8Array(randomBytes(PERSON_ID_BYTES));
}

/** A random person data key (32 bytes). */
export function newPersonKey(): Uint8Array {
  return new Uint8Array(randomBytes(PRIVACY_KEY_BYTES));
}

/** Personal fields of one person, e.g. { name, badge, cred } (cred: raw credential ids as hex, comma-separated). */
export type PersonFields = Readonly<Record<string, string>>;

function fieldsAad(siteId: string, personId: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from('OTI-v1 person fields\0', 'ascii'), personBinding(siteId, personId)]);
}

/** Encrypts fields under a person key: nonce(12) || ct || tag. */
export function encryptPersonFields(personKey: Uint8Array, siteId: string, personId: Uint8Array, fields: PersonFields): Uint8Array {
  checkBytes('personKey', personKey, PRIVACY_KEY_BYTES);
  const map: Record<string, CborValue> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v !== 'string' || k.length === 0 || k.length > 64 || v.length > 512) throw new OtiError('ERR_ARGUMENT', 'fields must map names of 1..64 characters to texts of at most 512', { argument: 'fields' });
    map[k] = v;
  }
  const nonce = randomBytes(NONCE_BYTES);
  const out = Buffer.concat([nonce, aead(personKey, nonce, fieldsAad(siteId, personId), encode(map))]);
  if (out.length > PERSON_FIELDS_MAX_BYTES) throw new OtiError('ERR_ENCODING_TOO_LARGE', `encrypted fields are ${out.length} bytes, limit is ${PERSON_FIELDS_MAX_BYTES}`);
  return new Uint8Array(out);
}

/** Decrypts person fields; ERR_PRIVACY_OPEN for a wrong key or altered bytes. */
export function decryptPersonFields(personKey: Uint8Array, siteId: string, personId: Uint8Array, sealed: Uint8Array): PersonFields {
  checkBytes('personKey', personKey, PRIVACY_KEY_BYTES);
  checkBytes('sealed', sealed);
  const plain = sealed.length > NONCE_BYTES ? unaead(personKey, sealed.subarray(0, NONCE_BYTES), fieldsAad(siteId, personId), sealed.subarray(NONCE_BYTES)) : undefined;
  if (plain === undefined) throw new OtiError('ERR_PRIVACY_OPEN', 'the person fields do not open with this key');
  const v = decode(plain, PERSON_FIELDS_MAX_BYTES);
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || !Object.values(v).every((x) => typeof x === 'string')) {
    throw new OtiError('ERR_PRIVACY_OPEN', 'the person fields are not a map of texts');
  }
  return v as Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// The keyring: every X25519 key the site has had (the newest seals), and the pseudonym secret.

interface HeldKey extends PrivacyPublicKey {
  readonly privateKey: KeyObject;
}

/** The secret side of the site's privacy keys. Never logged (toJSON shows public parts only). */
export class PrivacyKeyring {
  readonly siteId: string;
  readonly #keys: HeldKey[];
  readonly #pseudonymKey: Buffer;
  readonly #pseudonymSecret: Uint8Array;

  private constructor(siteId: string, keys: HeldKey[], pseudonymSecret: Uint8Array) {
    this.siteId = siteId;
    this.#keys = keys;
    this.#pseudonymSecret = pseudonymSecret;
    this.#pseudonymKey = Buffer.from(hkdfSync('sha256', pseudonymSecret, Buffer.from(siteId, 'ascii'), Buffer.from('OTI-v1 pseudonym key', 'ascii'), 32));
  }

  /** A new keyring for a site: one X25519 key and a fresh pseudonym secret. */
  static generate(siteId: string, now = Date.now()): PrivacyKeyring {
    if (!ID_PATTERN.test(siteId)) throw new OtiError('ERR_ARGUMENT', 'siteId must be a site id', { argument: 'siteId' });
    return new PrivacyKeyring(siteId, [heldKey(generateX25519().privateKey, now)], new Uint8Array(randomBytes(32)));
  }

  /** The public keys, oldest first; the last is the current one, which seals new items. */
  get publicKeys(): readonly PrivacyPublicKey[] {
    return this.#keys.map(({ id, publicKey, created }) => ({ id, publicKey, created }));
  }

  get current(): PrivacyPublicKey {
    const k = this.#keys[this.#keys.length - 1]!;
    return { id: k.id, publicKey: k.publicKey, created: k.created };
  }

  /** A keyring with one more key, which becomes current; the old ones stay for reading history. */
  rotate(now = Date.now()): PrivacyKeyring {
    return new PrivacyKeyring(this.siteId, [...this.#keys, heldKey(generateX25519().privateKey, now)], this.#pseudonymSecret);
  }

  /** The keyed pseudonym of a raw credential id, 32 hex digits. */
  pseudonym(raw: Uint8Array): string {
    checkBytes('raw', raw);
    return createHmac('sha256', this.#pseudonymKey).update('OTI-v1 pseudonym\0').update(raw).digest().subarray(0, PSEUDONYM_BYTES).toString('hex');
  }

  /** Opens a sealed credential of lock `lockId`: the raw credential id. ERR_PRIVACY_OPEN otherwise. */
  openCredential(lockId: string, sealed: Uint8Array): Uint8Array {
    const padded = this.#open(sealed, CRED_PLAINTEXT_BYTES, 'OTI-v1 sealed credential', lockBinding(lockId));
    const n = padded[0]!;
    if (n < 1 || n > MAX_RAW_CRED_BYTES || padded.subarray(1 + n).some((x) => x !== 0)) throw new OtiError('ERR_PRIVACY_OPEN', 'the sealed credential has bad padding');
    return padded.slice(1, 1 + n);
  }

  /** Unwraps a person key. ERR_PRIVACY_OPEN for an unknown key id or altered bytes. */
  unwrapPersonKey(personId: Uint8Array, wrapped: Uint8Array): Uint8Array {
    return this.#open(wrapped, PRIVACY_KEY_BYTES, 'OTI-v1 person key', personBinding(this.siteId, personId));
  }

  #open(b: Uint8Array, plaintextBytes: number, context: BoxContext, binding: Uint8Array): Uint8Array {
    const kid = boxKeyId(b, plaintextBytes);
    if (kid === undefined) throw new OtiError('ERR_PRIVACY_OPEN', 'not a sealed item of the expected size and version');
    const k = this.#keys.find((x) => bytesEqual(x.id, kid));
    if (k === undefined) throw new OtiError('ERR_PRIVACY_OPEN', `sealed under key ${toHex(kid)}, which this keyring does not hold`, { keyId: toHex(kid) });
    const epk = b.subarray(1 + KEY_ID_BYTES, BOX_HEADER_BYTES);
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: k.privateKey, publicKey: publicKeyObject(epk) });
    } catch {
      throw new OtiError('ERR_PRIVACY_OPEN', 'the ephemeral key of a sealed item is not usable');
    }
    const { key, nonce } = boxKeys(shared, epk, k.publicKey, context);
    const plain = unaead(key, nonce, Buffer.concat([b.subarray(0, BOX_HEADER_BYTES), binding]), b.subarray(BOX_HEADER_BYTES));
    key.fill(0);
    shared.fill(0);
    if (plain === undefined) throw new OtiError('ERR_PRIVACY_OPEN', 'a sealed item does not open: altered, or bound to something else');
    return plain;
  }

  /** The secret parts, for the keyring file only. */
  #secret(): Uint8Array {
    return encode({ keys: this.#keys.map((k) => new Uint8Array(k.privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_X25519_PREFIX.length))), pseudonym: this.#pseudonymSecret });
  }

  static #fromSecret(siteId: string, pub: readonly PrivacyPublicKey[], secret: Uint8Array): PrivacyKeyring {
    const v = decode(secret, 64 * 1024) as { keys?: unknown; pseudonym?: unknown };
    if (!Array.isArray(v.keys) || v.keys.length !== pub.length || !(v.pseudonym instanceof Uint8Array) || v.pseudonym.length !== 32) {
      throw new OtiError('ERR_KEY_FILE_FORMAT', 'the privacy keyring secret does not match its public keys');
    }
    const keys = v.keys.map((sk, i) => {
      if (!(sk instanceof Uint8Array) || sk.length !== PRIVACY_KEY_BYTES) throw new OtiError('ERR_KEY_FILE_FORMAT', 'a privacy private key is not 32 bytes');
      const h = heldKey(sk, pub[i]!.created);
      if (!bytesEqual(h.publicKey, pub[i]!.publicKey)) throw new OtiError('ERR_KEY_FILE_FORMAT', 'a privacy private key does not match its public key');
      return h;
    });
    return new PrivacyKeyring(siteId, keys, new Uint8Array(v.pseudonym));
  }

  /** Encrypts the keyring under a passphrase (scrypt + ChaCha20-Poly1305), as the file document. */
  async toFile(passphrase: string, scryptN = DEFAULT_SCRYPT_N): Promise<KeyringFile> {
    const pub = publicDocument(this.siteId, this.publicKeys);
    const salt = randomBytes(16).toString('base64');
    const header = { ...pub, format: KEYRING_FORMAT, kdf: 'scrypt' as const, N: scryptN, r: 8, p: 1, salt, cipher: 'chacha20-poly1305' as const };
    const key = await passphraseKey(passphrase, header);
    const nonce = randomBytes(NONCE_BYTES);
    const secret = this.#secret();
    try {
      return { ...header, nonce: nonce.toString('base64'), ciphertext: Buffer.from(aead(key, nonce, keyringAad(header), secret)).toString('base64') };
    } finally {
      key.fill(0);
      secret.fill(0);
    }
  }

  /** Decrypts a keyring file document. ERR_KEY_PASSPHRASE for a wrong passphrase or an altered file. */
  static async fromFile(doc: KeyringFile, passphrase: string): Promise<PrivacyKeyring> {
    const pub = parsePublicDocument(doc, KEYRING_FORMAT, ['kdf', 'N', 'r', 'p', 'salt', 'cipher', 'nonce', 'ciphertext']);
    const N = doc.N;
    if (doc.kdf !== 'scrypt' || doc.r !== 8 || doc.p !== 1 || doc.cipher !== 'chacha20-poly1305' || typeof N !== 'number' || !Number.isInteger(N) || N < MIN_SCRYPT_N || N > MAX_SCRYPT_N || (N & (N - 1)) !== 0) {
      throw new OtiError('ERR_KEY_FILE_FORMAT', 'the privacy keyring has unknown encryption parameters');
    }
    const nonce = Buffer.from(String(doc.nonce), 'base64');
    const ct = Buffer.from(String(doc.ciphertext), 'base64');
    if (nonce.length !== NONCE_BYTES || typeof doc.salt !== 'string' || Buffer.from(doc.salt, 'base64').length !== 16) throw new OtiError('ERR_KEY_FILE_FORMAT', 'the privacy keyring has a bad salt or nonce');
    const key = await passphraseKey(passphrase, doc);
    const secret = unaead(key, nonce, keyringAad(doc), ct);
    key.fill(0);
    if (secret === undefined) throw new OtiError('ERR_KEY_PASSPHRASE', 'the privacy keyring passphrase is wrong or the file was altered');
    try {
      return PrivacyKeyring.#fromSecret(pub.siteId, pub.keys, secret);
    } finally {
      secret.fill(0);
    }
  }

  toJSON(): PublicPrivacyFile {
    return publicDocument(this.siteId, this.publicKeys);
  }
}

function heldKey(privateKey: Uint8Array, created: number): HeldKey {
  const k = privateKeyObject(privateKey);
  const publicKey = rawPublic(createPublicKey(k));
  return { id: privacyKeyId(publicKey), publicKey, created, privateKey: k };
}

// ---------------------------------------------------------------------------------------------
// Files. Public: privacy.json (site folder and gateway data folder). Secret: privacy.key.

export const PUBLIC_FORMAT = 'oti-privacy-public';
export const KEYRING_FORMAT = 'oti-privacy-keyring';
const FILE_MAX_BYTES = 64 * 1024;

/** The public privacy file: the site's privacy public keys, oldest first, the last current. */
export interface PublicPrivacyFile {
  readonly format: string;
  readonly version: 1;
  readonly siteId: string;
  readonly keys: readonly { readonly id: string; readonly publicKey: string; readonly created: number }[];
}

export interface KeyringFile extends PublicPrivacyFile {
  readonly kdf: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: string;
  readonly cipher: 'chacha20-poly1305';
  readonly nonce: string;
  readonly ciphertext: string;
}

function publicDocument(siteId: string, keys: readonly PrivacyPublicKey[]): PublicPrivacyFile {
  return { format: PUBLIC_FORMAT, version: 1, siteId, keys: keys.map((k) => ({ id: toHex(k.id), publicKey: toHex(k.publicKey), created: k.created })) };
}

function keyringAad(h: Omit<KeyringFile, 'nonce' | 'ciphertext'>): Uint8Array {
  return Buffer.from(JSON.stringify([KEYRING_FORMAT, h.version, h.siteId, h.keys.map((k) => [k.id, k.publicKey, k.created]), h.kdf, h.N, h.r, h.p, h.salt, h.cipher]), 'utf8');
}

function passphraseKey(passphrase: string, h: { salt: string; N: number; r: number; p: number }): Promise<Buffer> {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw new OtiError('ERR_KEY_PASSPHRASE_REQUIRED', 'the privacy keyring needs a passphrase');
  const pass = Buffer.from(passphrase.normalize('NFC'), 'utf8');
  return new Promise<Buffer>((resolve, reject) => {
    scrypt(pass, Buffer.from(h.salt, 'base64'), 32, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r }, (err, key) => {
      pass.fill(0);
      if (err) reject(err);
      else resolve(key);
    });
  });
}

function parsePublicDocument(doc: unknown, format: string, extra: readonly string[]): { siteId: string; keys: PrivacyPublicKey[] } {
  const bad = (why: string): OtiError => new OtiError('ERR_KEY_FILE_FORMAT', `privacy file: ${why}`);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw bad('not a JSON object');
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!['format', 'version', 'siteId', 'keys', ...extra].includes(k)) throw bad(`unknown member ${k.slice(0, 32)}`);
  if (d.format !== format) throw bad(`format must be ${format}`);
  if (d.version !== 1) throw bad('version must be 1');
  if (typeof d.siteId !== 'string' || !ID_PATTERN.test(d.siteId)) throw bad('siteId is not a site id');
  if (!Array.isArray(d.keys) || d.keys.length === 0 || d.keys.length > 256) throw bad('keys must list 1 to 256 keys');
  const keys = d.keys.map((k: unknown) => {
    const e = k as Record<string, unknown>;
    if (typeof e?.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(e.publicKey) || typeof e.id !== 'string' || typeof e.created !== 'number' || !Number.isSafeInteger(e.created)) throw bad('a key is malformed');
    const publicKey = new Uint8Array(Buffer.from(e.publicKey, 'hex'));
    const id = privacyKeyId(publicKey);
    if (toHex(id) !== e.id) throw bad(`key id ${e.id.slice(0, 16)} does not match its public key`);
    return { id, publicKey, created: e.created };
  });
  return { siteId: d.siteId, keys };
}

/** Reads a JSON file of at most 64 KiB; private files must not be readable by group or others. */
async function readJson(path: string, isPrivate: boolean): Promise<unknown> {
  const { bytes } = await readBoundedFile(path, {
    maxBytes: FILE_MAX_BYTES,
    private: isPrivate,
    problem: (p) =>
      p === 'missing'
        ? new OtiError('ERR_NOT_FOUND', `no privacy file at ${path}`, { path })
        : p === 'permissions'
          ? new OtiError('ERR_KEY_FILE_PERMISSIONS', `${path} is readable by group or others; run chmod 600 ${path}`, { path })
          : new OtiError('ERR_KEY_FILE_FORMAT', `${path} ${p === 'too-large' ? `is larger than ${FILE_MAX_BYTES} bytes` : 'is not a regular file'}`, { path }),
  });
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${path} is not JSON`, { path });
  }
}

/** The site's privacy public keys from a privacy.json file; the last is current. */
export async function readPublicPrivacyFile(path: string): Promise<{ siteId: string; keys: readonly PrivacyPublicKey[]; current: PrivacyPublicKey }> {
  const p = parsePublicDocument(await readJson(path, false), PUBLIC_FORMAT, []);
  return { ...p, current: p.keys[p.keys.length - 1]! };
}

export async function writePublicPrivacyFile(path: string, keyring: PrivacyKeyring, overwrite = true): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(keyring.toJSON(), null, 2)}\n`, { mode: 0o644, overwrite });
}

/** Reads and decrypts a keyring file (mode 0600 required). */
export async function readKeyringFile(path: string, passphrase: string): Promise<PrivacyKeyring> {
  return PrivacyKeyring.fromFile((await readJson(path, true)) as KeyringFile, passphrase);
}

/** Writes a keyring file, 0600, atomically. */
export async function writeKeyringFile(path: string, keyring: PrivacyKeyring, passphrase: string, opts: { overwrite?: boolean; scryptN?: number } = {}): Promise<void> {
  const doc = await keyring.toFile(passphrase, opts.scryptN);
  await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600, overwrite: opts.overwrite === true });
}
