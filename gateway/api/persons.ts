/**
 * Personal data at the gateway (docs/PRIVACY.md): the person-key store, erasure by
 * crypto-shredding, the privacy endpoints of the local API, and the plaintext-reading role.
 *
 * Person-key store: `<dataDir>/persons/<person id hex>.key` (folder 0700, files 0600), each the
 * 85-byte person key WRAPPED to the site privacy public key (ledger/privacy.ts), so a gateway
 * holds the keys without being able to read them unless it was also given the privacy keyring.
 * The folder is part of the data folder and so of `oti backup`.
 *
 * Single holder: a person's key is stored only by the gateway that recorded the person (the
 * origin of the chain holding the person entry). Other gateways hold no key for that person;
 * they say so (ERR_PRIVACY_NO_KEY naming the holder), never "erased".
 *
 * Erasure: the key file is overwritten with random bytes, fsynced, unlinked and its folder
 * fsynced; an erasure marker `<person id hex>.erased` (empty) is written; then a privacy entry
 * `{op: "shred", person}` is appended, which carries no personal data. Every gateway applies
 * such an entry to its own store (applyPrivacyEntry: destroy any key, write the marker), for its
 * own chain (followChain, and again at start before the API serves) and, through the sync layer,
 * for its peers' chains. The marker is what tells "erased" apart from "no key held here".
 *
 * Endpoints, mounted by gateway/api/server.ts under /privacy; all need the privacy token
 * (api.privacyToken), never the ordinary one:
 *
 *   POST /privacy/persons             CBOR { "key": bstr(85), "fields": bstr, "person": bstr(16) }
 *                                     → 201 { index, id, person }   (fields already encrypted)
 *   POST /privacy/persons/<hex>/erase → 200 { person, destroyed, index, id }; ERR_NOT_FOUND (404)
 *                                       for an id with no key here and no person entry
 *   GET  /privacy/persons/<hex>       → 200 { person, fields } (needs the keyring here);
 *                                       ERR_PRIVACY_ERASED (410) after erasure
 * A person recorded by another gateway (found in a replica) answers ERR_PRIVACY_NO_KEY (409)
 * naming that gateway, for both erase and GET.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Chain } from '../../ledger/chain.js';
import type { ChainReader } from '../../ledger/reader.js';
import { toHex, fromHex } from '../../ledger/crypto.js';
import { decode } from '../../ledger/base/cbor.js';
import { decodeEntry, type Entry } from '../../ledger/entry.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { writeFileAtomic } from '../../ledger/base/files.js';
import { decryptPersonFields, isSealedCredential, PERSON_ID_BYTES, WRAPPED_KEY_BYTES, boxKeyId, PERSON_FIELDS_MAX_BYTES, type PersonFields, type PrivacyKeyring, type PrivacyPublicKey } from '../../ledger/privacy.js';
import { asMap, bytes } from '../../ledger/schema.js';
import type { EntryJson } from './entry-json.js';

export const PERSONS_DIR = 'persons';
/** Largest POST /privacy/persons body. */
export const PERSON_POST_MAX_BYTES = PERSON_FIELDS_MAX_BYTES + 256;

function personHex(personId: Uint8Array): string {
  if (!(personId instanceof Uint8Array) || personId.length !== PERSON_ID_BYTES) throw new OtiError('ERR_ARGUMENT', `a person id is ${PERSON_ID_BYTES} bytes`, { argument: 'person' });
  return toHex(personId);
}

/** A chain or a peer's replica: anything whose stored entries can be read. */
export type StoredChain = ChainReader;

/** What this gateway holds for a person: the key, an erasure marker, or neither. */
export type PersonKeyState = 'held' | 'erased' | 'absent';

/** The gateway id in a chain origin `oti/<site>/<gateway>`. */
export function originGateway(origin: string): string {
  return origin.slice(origin.lastIndexOf('/') + 1);
}

/** The wrapped person keys of one gateway, one file each, and the erasure markers. */
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

  #marker(personId: Uint8Array): string {
    return join(this.dir, `${personHex(personId)}.erased`);
  }

  /** Records that the person was erased (an empty file, fsynced with its folder). Idempotent. */
  async markErased(personId: Uint8Array): Promise<void> {
    if (await this.isErased(personId)) return;
    await writeFileAtomic(this.#marker(personId), new Uint8Array(0), { mode: 0o600, overwrite: true });
  }

  /** True once an erasure of the person was applied here (by this gateway or learnt from a chain). */
  async isErased(personId: Uint8Array): Promise<boolean> {
    try {
      await stat(this.#marker(personId));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** Whether the key is held here, was erased, or was never held here. */
  async state(personId: Uint8Array): Promise<PersonKeyState> {
    if (await this.isErased(personId)) return 'erased';
    return (await this.get(personId)) !== undefined ? 'held' : 'absent';
  }

  /** Stores a wrapped key (0600, atomically, fsynced). An existing key of that person is an error. */
  async put(personId: Uint8Array, wrapped: Uint8Array): Promise<void> {
    if (boxKeyId(wrapped, 32) === undefined || wrapped.length !== WRAPPED_KEY_BYTES) throw new OtiError('ERR_ARGUMENT', 'the person key must be wrapped to the site privacy key (85 bytes)', { argument: 'key' });
    await writeFileAtomic(this.#path(personId), wrapped, { mode: 0o600, overwrite: false });
    // An erasure applied meanwhile (learnt from a peer's chain) wins: no key beside its marker.
    if (await this.isErased(personId)) {
      await this.destroy(personId);
      throw new OtiError('ERR_PRIVACY_ERASED', `person ${personHex(personId)} was erased: the key just stored was destroyed`, { person: personHex(personId) });
    }
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
 * Applies one stored or received entry to the person-key store: a shred entry destroys any
 * local copy of that person's key and records the erasure marker. Everything else is ignored.
 * Safe to call again for the same entry. Returns whether a key was destroyed.
 */
export async function applyPrivacyEntry(store: PersonKeyStore, entry: Entry): Promise<boolean> {
  const b = entry.body;
  if (b.kind !== 'privacy' || b.op !== 'shred') return false;
  const destroyed = await store.destroy(b.person);
  await store.markErased(b.person);
  return destroyed;
}

/** Applies every shred entry among raw entries (cheap pre-filter first); returns the keys destroyed. */
export async function applyPrivacyEntries(store: PersonKeyStore, raws: Iterable<Uint8Array>): Promise<number> {
  let n = 0;
  for (const raw of raws) if (isPrivacyEntry(raw) && (await applyPrivacyEntry(store, decodeEntry(raw)))) n++;
  return n;
}

/** Applies each new block of `chain` to `store`; returns the function that stops following. */
export function followChain(chain: Chain, store: PersonKeyStore, onError: (e: Error) => void): () => void {
  const onBlock = ({ results }: { results: readonly { entry: Entry }[] }): void => {
    for (const r of results) if (r.entry.body.kind === 'privacy') applyPrivacyEntry(store, r.entry).catch(onError);
  };
  chain.on('block', onBlock);
  return () => chain.off('block', onBlock);
}

/**
 * Applies every shred entry stored in `chain` (own chain or a peer's replica): at start, before
 * anything is served, because a shred may have landed before a crash, or come back with the
 * chain recovered from peers after a restore from an older backup. Returns the keys destroyed.
 */
export async function applyStoredShreds(chain: StoredChain, store: PersonKeyStore): Promise<number> {
  let n = 0;
  for await (const { bytes } of chain.entries(0, chain.head.size)) {
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

/** Erases a person: destroys the key first, marks the erasure, then records it in the chain. */
export async function erasePerson(chain: Chain, store: PersonKeyStore, person: Uint8Array): Promise<{ destroyed: boolean; index: number; id: string }> {
  const destroyed = await store.destroy(person);
  await store.markErased(person);
  const r = await chain.append({ kind: 'privacy', op: 'shred', person });
  return { destroyed, index: r.index, id: toHex(r.leafHash) };
}

/**
 * The plaintext-reading role: holds the privacy keyring. Gives pseudonyms to ordinary readers
 * and, to privacy readers, the decrypted fields of the persons whose key is held here. It never
 * gives a raw credential id: a person's credential is readable only inside their fields, so
 * destroying the person key takes it away on every interface (docs/PRIVACY.md §Erasure).
 */
export class PrivacyReader {
  readonly #keyring: PrivacyKeyring;
  readonly #store: PersonKeyStore;
  readonly #origin: string | undefined;

  /** `origin`: the chain this gateway records to (the holder of the keys in `store`), when known. */
  constructor(keyring: PrivacyKeyring, store: PersonKeyStore, origin?: string) {
    this.#keyring = keyring;
    this.#store = store;
    this.#origin = origin;
  }

  get keyring(): PrivacyKeyring {
    return this.#keyring;
  }

  /**
   * A person's fields. ERR_PRIVACY_ERASED once erased; ERR_PRIVACY_NO_KEY when no key is held here
   * (the person was recorded by the gateway of `origin`, which alone holds it); ERR_PRIVACY_OPEN
   * when the key does not open them.
   */
  async fields(person: Uint8Array, sealed: Uint8Array, origin = this.#origin): Promise<PersonFields> {
    const state = await this.#store.state(person);
    if (state === 'erased') throw new OtiError('ERR_PRIVACY_ERASED', `person ${personHex(person)} was erased: the key is destroyed`, { person: personHex(person) });
    const wrapped = await this.#store.get(person);
    if (wrapped === undefined) throw noKeyHere(person, origin, this.#origin);
    const key = this.#keyring.unwrapPersonKey(person, wrapped);
    try {
      return decryptPersonFields(key, this.#keyring.siteId, person, sealed);
    } finally {
      key.fill(0);
    }
  }

  /**
   * Adds what this role may see to an entry's JSON: `pseudonym` for a sealed credential and,
   * with `plaintext`, for person entries `keyHolder` (the gateway that holds the key) and either
   * `personFields` (with `pseudonyms` of their `cred` ids, to match events), `erased: true`, or
   * `keyHeldHere: false`. `origin` is the chain the entry is from (default: this gateway's).
   * Entries it cannot open are returned as they are.
   */
  async annotate(e: EntryJson, entry: Entry, plaintext: boolean, origin = this.#origin): Promise<EntryJson> {
    const b = entry.body;
    if (b.kind === 'lock-event' && b.event.cred !== undefined && isSealedCredential(b.event.cred, this.#keyring.publicKeys.map((k) => k.id))) {
      let raw: Uint8Array;
      try {
        raw = this.#keyring.openCredential(b.event.lock, b.event.cred);
      } catch (err) {
        if (isOtiError(err, 'ERR_PRIVACY_OPEN')) return e;
        throw err;
      }
      try {
        return { ...e, pseudonym: this.#keyring.pseudonym(raw) };
      } finally {
        raw.fill(0);
      }
    }
    if (plaintext && b.kind === 'privacy' && b.op === 'person') {
      const holder: Record<string, string> = origin !== undefined ? { keyHolder: originGateway(origin) } : {};
      try {
        const personFields = await this.fields(b.person, b.fields, origin);
        return { ...e, ...holder, personFields, ...this.#credPseudonyms(personFields) };
      } catch (err) {
        if (isOtiError(err, 'ERR_PRIVACY_ERASED')) return { ...e, ...holder, erased: true };
        if (isOtiError(err, 'ERR_PRIVACY_NO_KEY')) return { ...e, ...holder, keyHeldHere: false };
        if (isOtiError(err, 'ERR_PRIVACY_OPEN')) return e;
        throw err;
      }
    }
    return e;
  }

  /** The pseudonyms of a person's `cred` field (raw ids in hex, comma-separated), so their events can be found. */
  #credPseudonyms(fields: PersonFields): Record<string, string[]> {
    const creds = (fields['cred'] ?? '').split(',').filter((c) => /^(?:[0-9a-f]{2}){1,31}$/.test(c));
    if (creds.length === 0) return {};
    return {
      pseudonyms: creds.map((c) => {
        const raw = Buffer.from(c, 'hex');
        try {
          return this.#keyring.pseudonym(raw);
        } finally {
          raw.fill(0);
        }
      }),
    };
  }
}

/** ERR_PRIVACY_NO_KEY: the person's key is not held here; name the gateway that holds it. */
export function noKeyHere(person: Uint8Array, origin: string | undefined, own: string | undefined): OtiError {
  const hex = personHex(person);
  if (origin !== undefined && origin !== own) {
    const holder = originGateway(origin);
    return new OtiError('ERR_PRIVACY_NO_KEY', `person ${hex} was recorded by gateway ${holder}, which alone holds the person's key: read or erase the person through ${holder}`, { person: hex, holder });
  }
  return new OtiError('ERR_PRIVACY_NO_KEY', `no key for person ${hex} is held here (not erased; the key file is missing from the persons folder)`, { person: hex });
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
export async function findPerson(chain: StoredChain, person: Uint8Array): Promise<{ index: number; entry: Entry } | undefined> {
  let found: { index: number; entry: Entry } | undefined;
  for await (const { index, bytes } of chain.entries(0, chain.head.size)) {
    if (!isPrivacyEntry(bytes)) continue;
    const entry = decodeEntry(bytes);
    if (entry.body.kind === 'privacy' && entry.body.op === 'person' && Buffer.from(entry.body.person).equals(person)) found = { index, entry };
  }
  return found;
}

/** What gateway/api/server.ts needs for the privacy role. */
export interface PrivacyApiOptions {
  /** api.privacyToken: the bearer token of privacy readers and officers. */
  readonly token: string | undefined;
  readonly store: PersonKeyStore;
  /** Present only when the gateway was given the privacy keyring (docs/PRIVACY.md §Roles). */
  readonly reader?: PrivacyReader;
  /** The peers' chains held here, to name the gateway that holds a person recorded elsewhere. */
  readonly replicas?: () => Promise<readonly (StoredChain & { readonly origin: string })[]>;
}

/** The person entry in this gateway's chain, else in a peer's replica (with that chain's origin). */
async function locatePerson(chain: Chain, o: PrivacyApiOptions, person: Uint8Array): Promise<{ origin: string; index: number; entry: Entry } | undefined> {
  const own = await findPerson(chain, person);
  if (own !== undefined) return { origin: chain.origin, ...own };
  for (const r of (await o.replicas?.()) ?? []) {
    const found = await findPerson(r, person);
    if (found !== undefined) return { origin: r.origin, ...found };
  }
  return undefined;
}

/**
 * A person id is recorded once, by one gateway, and never again once erased: a second holder's key
 * would outlive an erasure at the first, and a key stored after an erasure would undo it. (An id
 * with a key here is refused by PersonKeyStore.put.)
 */
async function refuseKnownPerson(chain: Chain, o: PrivacyApiOptions, person: Uint8Array): Promise<void> {
  const hex = toHex(person);
  if (await o.store.isErased(person)) throw new OtiError('ERR_PRIVACY_ERASED', `person ${hex} was erased: an erased id is never recorded again (record the person under a new id)`, { person: hex });
  const found = await locatePerson(chain, o, person);
  if (found !== undefined && found.origin !== chain.origin) {
    const holder = originGateway(found.origin);
    throw new OtiError('ERR_ARGUMENT', `person ${hex} is already recorded by gateway ${holder}, which holds their key (a person has one holder)`, { argument: 'person', holder });
  }
}

/**
 * Serves /privacy/... for a caller already authorised as a privacy reader. Returns the status and
 * JSON body; throws coded errors (ERR_NOT_FOUND for an unknown path or person, ERR_ARGUMENT,
 * ERR_PRIVACY_ERASED, ERR_PRIVACY_NO_KEY, ERR_PRIVACY_OPEN).
 */
export async function privacyRoute(chain: Chain, o: PrivacyApiOptions, method: string, path: string, body: () => Promise<Uint8Array>): Promise<{ status: number; json: unknown }> {
  if (method === 'POST' && path === '/privacy/persons') {
    const p = parsePersonPost(await body());
    await refuseKnownPerson(chain, o, p.person);
    const r = await recordPerson(chain, o.store, p.person, p.fields, p.wrapped);
    return { status: 201, json: { ...r, person: toHex(p.person) } };
  }
  const erase = /^\/privacy\/persons\/([^/]+)\/erase$/.exec(path);
  if (method === 'POST' && erase !== null) {
    const person = parsePersonId(erase[1]!);
    // Only the gateway that recorded a person holds its key (single holder), so only it erases.
    // An id with neither a key here nor a person entry in any chain held here is a mistyped or
    // foreign id: recording a shred for it would report an erasure that erased nobody. A person
    // recorded here whose key is already gone (erased before, or a crash between destroying and
    // recording) goes on: erasure is idempotent.
    if ((await o.store.get(person)) === undefined) {
      const found = await locatePerson(chain, o, person);
      if (found === undefined) throw new OtiError('ERR_NOT_FOUND', 'no such person in this chain or in the peers\' chains held here', { person: toHex(person) });
      if (found.origin !== chain.origin) {
        if (await o.store.isErased(person)) throw new OtiError('ERR_PRIVACY_ERASED', `person ${toHex(person)} was already erased (recorded by gateway ${originGateway(found.origin)})`, { person: toHex(person), holder: originGateway(found.origin) });
        throw noKeyHere(person, found.origin, chain.origin);
      }
    }
    return { status: 200, json: { person: toHex(person), keyHolder: originGateway(chain.origin), ...(await erasePerson(chain, o.store, person)) } };
  }
  const get = /^\/privacy\/persons\/([^/]+)$/.exec(path);
  if (method === 'GET' && get !== null) {
    const person = parsePersonId(get[1]!);
    if (o.reader === undefined) throw new OtiError('ERR_PRIVACY_OPEN', 'this gateway does not hold the privacy keyring; read with oti privacy show and the key file');
    const found = await locatePerson(chain, o, person);
    if (found === undefined || found.entry.body.kind !== 'privacy' || found.entry.body.op !== 'person') throw new OtiError('ERR_NOT_FOUND', 'no such person in this chain or in the peers\' chains held here', { person: toHex(person) });
    const fields = await o.reader.fields(person, found.entry.body.fields, found.origin);
    return { status: 200, json: { person: toHex(person), index: found.index, keyHolder: originGateway(found.origin), fields } };
  }
  throw new OtiError('ERR_NOT_FOUND', 'no such privacy endpoint');
}
