/**
 * Personal data at the gateway (docs/PRIVACY.md): the person-key store, erasure by
 * crypto-shredding, the privacy endpoints of the local API, and the plaintext-reading role.
 *
 * Person-key store: `<dataDir>/persons/<person id hex>.key` (folder 0700, files 0600), each the
 * 85-byte person key WRAPPED to the site privacy public key (ledger/privacy.ts), so a gateway
 * holds the keys without being able to read them unless it was also given the privacy keyring.
 * The folder is part of the data folder and so of `oti backup`.
 *
 * Erasure: the key file is overwritten with random bytes, fsynced, unlinked and its folder
 * fsynced; then a privacy entry `{op: "shred", person}` is appended, which carries no personal
 * data. Every gateway applies such an entry to its own store (applyPrivacyEntry), for its own
 * chain (followChain) and, through the sync layer, for its peers' chains.
 *
 * Endpoints, mounted by gateway/api.ts under /privacy; all need the privacy token
 * (api.privacyToken), never the ordinary one:
 *
 *   POST /privacy/persons             CBOR { "key": bstr(85), "fields": bstr, "person": bstr(16) }
 *                                     → 201 { index, id, person }   (fields already encrypted)
 *   POST /privacy/persons/<hex>/erase → 200 { person, destroyed, index, id }; ERR_NOT_FOUND (404)
 *                                       for an id with no key here and no person entry
 *   GET  /privacy/persons/<hex>       → 200 { person, fields } (needs the keyring here);
 *                                       ERR_PRIVACY_ERASED (410) after erasure
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Chain } from '../ledger/chain.js';
import { toHex, fromHex } from '../ledger/crypto.js';
import { decode } from '../ledger/encoding.js';
import { decodeEntry, type Entry } from '../ledger/entry.js';
import { OtiError, isOtiError } from '../ledger/errors.js';
import { writeFileAtomic } from '../ledger/keyfile.js';
import { decryptPersonFields, isSealedCredential, PERSON_ID_BYTES, WRAPPED_KEY_BYTES, boxKeyId, PERSON_FIELDS_MAX_BYTES, type PersonFields, type PrivacyKeyring, type PrivacyPublicKey } from '../ledger/privacy.js';
import { asMap, bytes } from '../ledger/schema.js';
import type { EntryJson } from './entry-json.js';

export const PERSONS_DIR = 'persons';
/** Largest POST /privacy/persons body. */
export const PERSON_POST_MAX_BYTES = PERSON_FIELDS_MAX_BYTES + 256;

function personHex(personId: Uint8Array): string {
  if (!(personId instanceof Uint8Array) || personId.length !== PERSON_ID_BYTES) throw new OtiError('ERR_ARGUMENT', `a person id is ${PERSON_ID_BYTES} bytes`, { argument: 'person' });
  return toHex(personId);
}

/** The wrapped person keys of one gateway, one file each. */
export class PersonKeyStore {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (creating, mode 0700) `<dataDir>/persons`. */
  static async open(dataDir: string): Promise<PersonKeyStore> {
    const dir = join(dataDir, PERSONS_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new PersonKeyStore(dir);
  }

  #path(personId: Uint8Array): string {
    return join(this.dir, `${personHex(personId)}.key`);
  }

  /** Stores a wrapped key (0600, atomically, fsynced). An existing key of that person is an error. */
  async put(personId: Uint8Array, wrapped: Uint8Array): Promise<void> {
    if (boxKeyId(wrapped, 32) === undefined || wrapped.length !== WRAPPED_KEY_BYTES) throw new OtiError('ERR_ARGUMENT', 'the person key must be wrapped to the site privacy key (85 bytes)', { argument: 'key' });
    await writeFileAtomic(this.#path(personId), wrapped, { mode: 0o600, overwrite: false });
  }

  /** Replaces a wrapped key (after a rotation re-wrapped it). */
  async replace(personId: Uint8Array, wrapped: Uint8Array): Promise<void> {
    await writeFileAtomic(this.#path(personId), wrapped, { mode: 0o600, overwrite: true });
  }

  /** The wrapped key, or undefined when there is none (never stored, or destroyed). */
  async get(personId: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      const b = await readFile(this.#path(personId));
      return b.length === WRAPPED_KEY_BYTES ? new Uint8Array(b) : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Person ids with a key here. */
  async list(): Promise<Uint8Array[]> {
    const names = await readdir(this.dir);
    return names.filter((n) => /^[0-9a-f]{32}\.key$/.test(n)).map((n) => fromHex('person', n.slice(0, 32), PERSON_ID_BYTES));
  }

  /**
   * Destroys a person's key: overwrite in place with random bytes, fsync, unlink, fsync the
   * folder. Returns false when there was no key (already destroyed: erasure is idempotent).
   * On flash storage an overwrite may land elsewhere (wear levelling), so the key's secrecy
   * rests on it being wrapped; see docs/PRIVACY.md §Limits.
   */
  async destroy(personId: Uint8Array): Promise<boolean> {
    const path = this.#path(personId);
    let fh;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    try {
      const { size } = await fh.stat();
      await fh.write(randomBytes(Math.max(size, WRAPPED_KEY_BYTES)), 0, undefined, 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await unlink(path);
    const d = await open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    return true;
  }

  /** Re-wraps every key to the keyring's current key (after `oti privacy rotate`); returns how many. */
  async rewrap(keyring: PrivacyKeyring, wrap: (to: PrivacyPublicKey, personId: Uint8Array, key: Uint8Array) => Uint8Array): Promise<number> {
    let n = 0;
    for (const person of await this.list()) {
      const wrapped = await this.get(person);
      if (wrapped === undefined) continue;
      const key = keyring.unwrapPersonKey(person, wrapped);
      try {
        await this.replace(person, wrap(keyring.current, person, key));
      } finally {
        key.fill(0);
      }
      n++;
    }
    return n;
  }
}

/**
 * Applies one stored or received entry to the person-key store: a shred entry destroys the
 * local copy of that person's key. Everything else is ignored. Safe to call again for the same
 * entry. The sync layer calls this for every entry of a peer's chain it stores.
 */
export async function applyPrivacyEntry(store: PersonKeyStore, entry: Entry): Promise<boolean> {
  const b = entry.body;
  if (b.kind !== 'privacy' || b.op !== 'shred') return false;
  return store.destroy(b.person);
}

/** Applies each new block of `chain` to `store`; returns the function that stops following. */
export function followChain(chain: Chain, store: PersonKeyStore, onError: (e: Error) => void): () => void {
  const onBlock = ({ results }: { results: readonly { entry: Entry }[] }): void => {
    for (const r of results) if (r.entry.body.kind === 'privacy') applyPrivacyEntry(store, r.entry).catch(onError);
  };
  chain.on('block', onBlock);
  return () => chain.off('block', onBlock);
}

/** Destroys every key whose shred entry is in `chain` (at start: a shred may have landed before a crash). */
export async function applyStoredShreds(chain: Chain, store: PersonKeyStore): Promise<number> {
  let n = 0;
  for await (const { bytes } of chain.cs.entries(0, chain.cs.head.size)) {
    if (!isPrivacyEntry(bytes)) continue;
    if (await applyPrivacyEntry(store, decodeEntry(bytes))) n++;
  }
  return n;
}

const PRIVACY_MARKER = Buffer.from('kindgprivacy', 'latin1');
/** Cheap pre-filter: a privacy entry's bytes contain the text key "kind" followed by "privacy". */
function isPrivacyEntry(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.length).includes(PRIVACY_MARKER);
}

/** Records a person: stores the wrapped key, then appends the encrypted fields. */
export async function recordPerson(chain: Chain, store: PersonKeyStore, person: Uint8Array, fields: Uint8Array, wrapped: Uint8Array): Promise<{ index: number; id: string }> {
  await store.put(person, wrapped);
  const r = await chain.append({ kind: 'privacy', op: 'person', person, fields });
  return { index: r.index, id: toHex(r.leafHash) };
}

/** Erases a person: destroys the key first, then records that it was destroyed. */
export async function erasePerson(chain: Chain, store: PersonKeyStore, person: Uint8Array): Promise<{ destroyed: boolean; index: number; id: string }> {
  const destroyed = await store.destroy(person);
  const r = await chain.append({ kind: 'privacy', op: 'shred', person });
  return { destroyed, index: r.index, id: toHex(r.leafHash) };
}

/**
 * The plaintext-reading role: holds the privacy keyring. Gives pseudonyms to ordinary readers
 * and, to privacy readers, the raw credential ids and the decrypted person fields.
 */
export class PrivacyReader {
  readonly #keyring: PrivacyKeyring;
  readonly #store: PersonKeyStore;

  constructor(keyring: PrivacyKeyring, store: PersonKeyStore) {
    this.#keyring = keyring;
    this.#store = store;
  }

  get keyring(): PrivacyKeyring {
    return this.#keyring;
  }

  /** A person's fields; ERR_PRIVACY_ERASED when the key is gone, ERR_PRIVACY_OPEN when it does not open them. */
  async fields(person: Uint8Array, sealed: Uint8Array): Promise<PersonFields> {
    const wrapped = await this.#store.get(person);
    if (wrapped === undefined) throw new OtiError('ERR_PRIVACY_ERASED', `no key for person ${personHex(person)}: erased, or never stored here`, { person: personHex(person) });
    const key = this.#keyring.unwrapPersonKey(person, wrapped);
    try {
      return decryptPersonFields(key, this.#keyring.siteId, person, sealed);
    } finally {
      key.fill(0);
    }
  }

  /**
   * Adds what this role may see to an entry's JSON: `pseudonym` for a sealed credential, and
   * with `plaintext` also `credential` (the raw id, hex) and, for person entries, `personFields`
   * (or `erased: true`). Entries it cannot open are returned as they are.
   */
  async annotate(e: EntryJson, entry: Entry, plaintext: boolean): Promise<EntryJson> {
    const b = entry.body;
    if (b.kind === 'lock-event' && b.event.cred !== undefined && isSealedCredential(b.event.cred, this.#keyring.publicKeys.map((k) => k.id))) {
      let raw: Uint8Array;
      try {
        raw = this.#keyring.openCredential(b.event.lock, b.event.cred);
      } catch (err) {
        if (isOtiError(err, 'ERR_PRIVACY_OPEN')) return e;
        throw err;
      }
      return { ...e, pseudonym: this.#keyring.pseudonym(raw), ...(plaintext ? { credential: toHex(raw) } : {}) };
    }
    if (plaintext && b.kind === 'privacy' && b.op === 'person') {
      try {
        return { ...e, personFields: await this.fields(b.person, b.fields) };
      } catch (err) {
        if (isOtiError(err, 'ERR_PRIVACY_ERASED')) return { ...e, erased: true };
        if (isOtiError(err, 'ERR_PRIVACY_OPEN')) return e;
        throw err;
      }
    }
    return e;
  }
}

/** Parses a POST /privacy/persons body (CBOR map {key, fields, person}). */
export function parsePersonPost(body: Uint8Array): { person: Uint8Array; fields: Uint8Array; wrapped: Uint8Array } {
  const m = asMap(decode(body, PERSON_POST_MAX_BYTES), 'person', ['key', 'fields', 'person']);
  return { person: bytes(m, 'person', 'person', PERSON_ID_BYTES), fields: bytes(m, 'fields', 'person', undefined, PERSON_FIELDS_MAX_BYTES), wrapped: bytes(m, 'key', 'person', WRAPPED_KEY_BYTES) };
}

/** Parses the <hex> person id of a path segment. */
export function parsePersonId(hex: string): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new OtiError('ERR_ARGUMENT', 'a person id is 32 lower-case hex digits', { param: 'person' });
  return fromHex('person', hex, PERSON_ID_BYTES);
}

/** The newest person entry of `person` in the chain, or undefined. */
export async function findPerson(chain: Chain, person: Uint8Array): Promise<{ index: number; entry: Entry } | undefined> {
  let found: { index: number; entry: Entry } | undefined;
  for await (const { index, bytes } of chain.cs.entries(0, chain.cs.head.size)) {
    if (!isPrivacyEntry(bytes)) continue;
    const entry = decodeEntry(bytes);
    if (entry.body.kind === 'privacy' && entry.body.op === 'person' && Buffer.from(entry.body.person).equals(person)) found = { index, entry };
  }
  return found;
}

/** What gateway/api.ts needs for the privacy role. */
export interface PrivacyApiOptions {
  /** api.privacyToken: the bearer token of privacy readers and officers. */
  readonly token: string | undefined;
  readonly store: PersonKeyStore;
  /** Present only when the gateway was given the privacy keyring (docs/PRIVACY.md §Roles). */
  readonly reader?: PrivacyReader;
}

/**
 * Serves /privacy/... for a caller already authorised as a privacy reader. Returns the status and
 * JSON body; throws coded errors (ERR_NOT_FOUND for an unknown path or person, ERR_ARGUMENT,
 * ERR_PRIVACY_ERASED, ERR_PRIVACY_OPEN).
 */
export async function privacyRoute(chain: Chain, o: PrivacyApiOptions, method: string, path: string, body: () => Promise<Uint8Array>): Promise<{ status: number; json: unknown }> {
  if (method === 'POST' && path === '/privacy/persons') {
    const p = parsePersonPost(await body());
    const r = await recordPerson(chain, o.store, p.person, p.fields, p.wrapped);
    return { status: 201, json: { ...r, person: toHex(p.person) } };
  }
  const erase = /^\/privacy\/persons\/([^/]+)\/erase$/.exec(path);
  if (method === 'POST' && erase !== null) {
    const person = parsePersonId(erase[1]!);
    // An id with neither a key here nor a person entry in this chain is a mistyped or foreign id:
    // recording a shred for it would report an erasure that erased nobody. A known person whose
    // key is already gone (erased before, or a crash between destroying and recording) goes on.
    if ((await o.store.get(person)) === undefined && (await findPerson(chain, person)) === undefined) {
      throw new OtiError('ERR_NOT_FOUND', 'no such person in this chain', { person: toHex(person) });
    }
    return { status: 200, json: { person: toHex(person), ...(await erasePerson(chain, o.store, person)) } };
  }
  const get = /^\/privacy\/persons\/([^/]+)$/.exec(path);
  if (method === 'GET' && get !== null) {
    const person = parsePersonId(get[1]!);
    if (o.reader === undefined) throw new OtiError('ERR_PRIVACY_OPEN', 'this gateway does not hold the privacy keyring; read with oti privacy show and the key file');
    const found = await findPerson(chain, person);
    if (found === undefined || found.entry.body.kind !== 'privacy' || found.entry.body.op !== 'person') throw new OtiError('ERR_NOT_FOUND', 'no such person in this chain', { person: toHex(person) });
    return { status: 200, json: { person: toHex(person), index: found.index, fields: await o.reader.fields(person, found.entry.body.fields) } };
  }
  throw new OtiError('ERR_NOT_FOUND', 'no such privacy endpoint');
}
