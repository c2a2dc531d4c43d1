/**
 * `oti privacy ...`: the site privacy keyring and personal data (docs/PRIVACY.md).
 *
 *   privacy init         <site dir>/privacy.key (keyring, encrypted, 0600) and privacy.json (public)
 *   privacy rotate       a new current key; old keys kept for history; person keys re-wrapped (--data)
 *   privacy person add   encrypts a person's fields here, posts ciphertext + wrapped key to the gateway
 *   privacy erase        destroys a person's key at the gateway and records the erasure
 *   privacy show         reads a data folder with the keyring: pseudonyms; with --plaintext the fields
 *                        of the persons whose key it holds, "(erased)" or "(no key here: held by …)"
 *
 * Person commands talk to the gateway with the privacy token (api.privacyToken), given with
 * --token or $OTI_PRIVACY_TOKEN. The keyring passphrase comes from --passphrase-file, else
 * $OTI_PRIVACY_PASSPHRASE, else a prompt.
 */
import { join } from 'node:path';
import { access } from 'node:fs/promises';
import { encode } from '../ledger/base/cbor.js';
import { toHex } from '../ledger/crypto.js';
import { decodeEntry } from '../ledger/entry.js';
import { OtiError } from '../ledger/base/errors.js';
import { moveAside } from '../ledger/base/files.js';
import {
  PrivacyKeyring,
  encryptPersonFields,
  newPersonId,
  newPersonKey,
  readKeyringFile,
  readPublicPrivacyFile,
  wrapPersonKey,
  writeKeyringFile,
  writePublicPrivacyFile,
  MAX_RAW_CRED_BYTES,
} from '../ledger/privacy.js';
import { chainOrigin } from '../ledger/chain.js';
import { entryJson, type EntryJson } from '../gateway/api/entry-json.js';
import { PersonKeyStore, PrivacyReader, parsePersonId } from '../gateway/api/persons.js';
import { ApiClient, DEFAULT_API, GATEWAY_API } from './api-client.js';
import { flag, str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import { openLedger } from './ledger-access.js';
import { readSiteTrust, SITE_DIR_OPTION } from './site.js';
import type { Terminal } from './terminal.js';

export const KEYRING_FILE = 'privacy.key';
export const PUBLIC_FILE = 'privacy.json';

const KEYRING_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  ...SITE_DIR_OPTION,
  'passphrase-file': { type: 'string', value: 'FILE', help: 'privacy keyring passphrase from FILE (else $OTI_PRIVACY_PASSPHRASE, else a prompt)' },
};

const PRIVACY_API_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  api: { type: 'string', value: 'URL', help: `the gateway’s local API (default ${DEFAULT_API}, or $OTI_API_URL)` },
  token: { type: 'string', value: 'TOKEN', help: 'the privacy token, api.privacyToken (default $OTI_PRIVACY_TOKEN)' },
};

function siteDir(p: Parsed): string {
  return str(p, 'site-dir') ?? 'site';
}

async function passphrase(p: Parsed, term: Terminal, confirm = false): Promise<string> {
  return term.passphrase({ file: str(p, 'passphrase-file'), env: 'OTI_PRIVACY_PASSPHRASE', purpose: 'privacy keyring', confirm });
}

async function unlockKeyring(p: Parsed, term: Terminal): Promise<PrivacyKeyring> {
  return readKeyringFile(join(siteDir(p), KEYRING_FILE), await passphrase(p, term));
}

function privacyApi(p: Parsed, term: Terminal): ApiClient {
  const token = str(p, 'token') ?? term.env('OTI_PRIVACY_TOKEN');
  if (token === undefined) throw usage('the privacy token is needed: --token or $OTI_PRIVACY_TOKEN');
  return new ApiClient(str(p, 'api') ?? term.env('OTI_API_URL') ?? DEFAULT_API, token, { ...GATEWAY_API, token: 'the privacy token: --token or OTI_PRIVACY_TOKEN, api.privacyToken in the gateway configuration' });
}

const init: Command = {
  name: 'privacy init',
  summary: 'Create the site privacy keyring (X25519 key + pseudonym secret) next to the site key.',
  details: [
    'Writes <site dir>/privacy.key (0600, scrypt + ChaCha20-Poly1305) and <site dir>/privacy.json (public).',
    'Copy privacy.json into each gateway data folder and give its current key to the locks: from then on, gateways accept only sealed credentials.',
  ],
  options: { ...KEYRING_OPTIONS, force: { type: 'boolean', help: 'replace an existing keyring (everything sealed to it becomes unreadable)' } },
  examples: ['oti privacy init --site-dir ./acme-hq', 'OTI_PRIVACY_PASSPHRASE=... oti privacy init --site-dir ./acme-hq --json'],
  async run(p, term) {
    const dir = siteDir(p);
    const trust = await readSiteTrust(dir);
    const keyPath = join(dir, KEYRING_FILE);
    const exists = await access(keyPath).then(() => true, () => false);
    if (exists && !flag(p, 'force')) throw new OtiError('ERR_ARGUMENT', `${keyPath} exists; refusing to replace the privacy keyring (use --force)`, { path: keyPath });
    const keyring = PrivacyKeyring.generate(trust.siteId);
    // The old keyring is moved aside, never written over.
    if (flag(p, 'force')) await moveAside(keyPath);
    await writeKeyringFile(keyPath, keyring, await passphrase(p, term, true));
    await writePublicPrivacyFile(join(dir, PUBLIC_FILE), keyring);
    const id = toHex(keyring.current.id);
    return { json: { siteId: trust.siteId, keyId: id, publicKey: toHex(keyring.current.publicKey) }, text: [`privacy keyring of ${term.bold(trust.siteId)} created: key ${id}`, `  secret: ${keyPath} (encrypted)`, `  public: ${join(dir, PUBLIC_FILE)} (copy it to every gateway data folder)`] };
  },
};

const rotate: Command = {
  name: 'privacy rotate',
  summary: 'Add a new current privacy key; history stays readable with the old keys, nothing is re-encrypted.',
  details: ['With --data (gateway stopped, or a copy), the person keys stored there are re-wrapped to the new key.', 'Then copy the new privacy.json to every gateway and give the new key to the locks.'],
  options: { ...KEYRING_OPTIONS, data: { type: 'string', value: 'DIR', help: 'a gateway data folder whose person keys to re-wrap' } },
  examples: ['oti privacy rotate --site-dir ./acme-hq --data /var/lib/oti-gateway'],
  async run(p, term) {
    const dir = siteDir(p);
    const pass = await passphrase(p, term);
    const keyring = (await readKeyringFile(join(dir, KEYRING_FILE), pass)).rotate();
    await writeKeyringFile(join(dir, KEYRING_FILE), keyring, pass, { overwrite: true });
    await writePublicPrivacyFile(join(dir, PUBLIC_FILE), keyring);
    const data = str(p, 'data');
    let rewrapped = 0;
    if (data !== undefined) {
      const store = await PersonKeyStore.open(data);
      rewrapped = await store.rewrap(keyring, (to, person, key) => wrapPersonKey(to, keyring.siteId, person, key));
      await writePublicPrivacyFile(join(data, PUBLIC_FILE), keyring);
    }
    const id = toHex(keyring.current.id);
    return { json: { keyId: id, keys: keyring.publicKeys.length, rewrapped }, text: [`new current privacy key ${id} (${keyring.publicKeys.length} keys kept)`, ...(data !== undefined ? [`re-wrapped ${rewrapped} person key(s) in ${data}`] : [])] };
  },
};

const personAdd: Command = {
  name: 'privacy person add',
  summary: 'Record a person’s fields (encrypted here under a key of their own) in the gateway’s chain.',
  details: ['Only ciphertext and the person key wrapped to the site privacy key leave this machine. Needs the public privacy.json only.', 'Prints the person id (random, not personal): keep it to erase the person later.'],
  options: {
    ...SITE_DIR_OPTION,
    ...PRIVACY_API_OPTIONS,
    field: { type: 'string', multiple: true, value: 'NAME=VALUE', help: 'a personal field, e.g. name=Alice (repeatable)' },
    cred: { type: 'string', multiple: true, value: 'HEX', help: 'a raw credential id of the person, hex (repeatable)' },
  },
  examples: ['oti privacy person add --site-dir ./acme-hq --field name="Alice Example" --field badge=B-1234 --cred 04a1b2c3'],
  async run(p, term) {
    const pub = await readPublicPrivacyFile(join(siteDir(p), PUBLIC_FILE));
    const fields: Record<string, string> = {};
    for (const f of (p.values['field'] as string[] | undefined) ?? []) {
      const i = f.indexOf('=');
      if (i < 1) throw usage('--field must be NAME=VALUE');
      fields[f.slice(0, i)] = f.slice(i + 1);
    }
    const creds = (p.values['cred'] as string[] | undefined) ?? [];
    for (const c of creds) if (!/^([0-9a-f]{2})+$/.test(c) || c.length > 2 * MAX_RAW_CRED_BYTES) throw usage(`--cred must be 1 to ${MAX_RAW_CRED_BYTES} bytes of lower-case hex`);
    if (creds.length > 0) fields['cred'] = creds.join(',');
    if (Object.keys(fields).length === 0) throw usage('give at least one --field or --cred');
    const person = newPersonId();
    const key = newPersonKey();
    let body: Uint8Array;
    try {
      body = encode({ key: wrapPersonKey(pub.current, pub.siteId, person, key), fields: encryptPersonFields(key, pub.siteId, person, fields), person });
    } finally {
      key.fill(0);
    }
    const r = await privacyApi(p, term).request('POST', '/privacy/persons', { body, type: 'application/cbor' });
    const out = JSON.parse(Buffer.from(r.body).toString('utf8')) as { index: number; person: string };
    return { json: out, text: [`person ${term.bold(out.person)} recorded at index ${out.index} (fields encrypted)`] };
  },
};

const erase: Command = {
  name: 'privacy erase',
  summary: 'Erase a person: destroy their key at the gateway (crypto-shredding) and record the erasure.',
  details: ['Every gateway that stores the chain destroys its copy when it sees the record. Backups taken earlier still hold the key: see docs/PRIVACY.md §Limits.'],
  positionals: [{ name: 'PERSON', help: 'the person id (32 hex digits) printed by oti privacy person add' }],
  options: { ...PRIVACY_API_OPTIONS, yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' } },
  examples: ['oti privacy erase 6f1c0e7d5b3a49e8a1d2c3b4a5968778 --yes'],
  async run(p, term) {
    const person = toHex(parsePersonId(p.positionals[0] ?? ''));
    await term.confirm(`Destroy the key of person ${person}? Their fields become unreadable for good.`, flag(p, 'yes'));
    const r = await privacyApi(p, term).request('POST', `/privacy/persons/${person}/erase`);
    const out = JSON.parse(Buffer.from(r.body).toString('utf8')) as { destroyed: boolean; index: number };
    return { json: out, text: [`person ${person}: key ${out.destroyed ? 'destroyed' : 'was already gone'}; erasure recorded at index ${out.index}`] };
  },
};

const show: Command = {
  name: 'privacy show',
  summary: 'Read a gateway data folder with the privacy keyring: pseudonyms, or plaintext with --plaintext.',
  details: ['Works on a running gateway’s folder (it reads a copy of the ledger).'],
  options: { ...KEYRING_OPTIONS, data: { type: 'string', value: 'DIR', help: 'the gateway data folder' }, plaintext: { type: 'boolean', help: 'also show the decrypted fields of the persons whose key this folder holds, and which gateway holds each person\'s key' } },
  examples: ['oti privacy show --site-dir ./acme-hq --data /var/lib/oti-gateway --plaintext --json'],
  async run(p, term) {
    const data = str(p, 'data', true);
    const keyring = await unlockKeyring(p, term);
    const trust = await readSiteTrust(data);
    const ledger = await openLedger(data, { copyIfLocked: true });
    const items: (EntryJson & { chain: string })[] = [];
    // Erasures recorded in any chain here: a folder written before erasure markers existed, or
    // copied while a shred was on its way, still shows those persons as erased.
    const shredded = new Set<string>();
    try {
      const chains = (await ledger.store.listChains()).filter((c) => c.origin.startsWith(chainOrigin(trust.siteId, '')));
      const own = chains.find((c) => c.role !== 'peer')?.origin;
      const reader = new PrivacyReader(keyring, await PersonKeyStore.open(data), own);
      for (const { origin, role } of chains) {
        const cs = await ledger.store.chain(origin, role);
        for await (const { index, bytes } of cs.entries(0, cs.head.size)) {
          const entry = decodeEntry(bytes);
          if (entry.body.kind === 'privacy' && entry.body.op === 'shred') shredded.add(Buffer.from(entry.body.person).toString('hex'));
          if (entry.body.kind !== 'lock-event' && entry.body.kind !== 'privacy') continue;
          items.push({ chain: origin, ...(await reader.annotate(entryJson(index, bytes), entry, flag(p, 'plaintext'), origin)) });
        }
      }
    } finally {
      await ledger.close();
    }
    const shown = items.map((e) => (e['keyHeldHere'] === false && shredded.has(String(e['person'])) ? { ...withoutKey(e, 'keyHeldHere'), erased: true } : e));
    return { json: { items: shown }, text: shown.map(showLine) };
  },
};

/** One line of `oti privacy show`: where, what, and for a person who holds the key and what is left. */
function showLine(e: EntryJson & { chain: string }): string {
  const person = e['personFields'] !== undefined ? ` ${JSON.stringify(e['personFields'])}` : e['erased'] === true ? ' (erased)' : e['keyHeldHere'] === false ? ` (no key here: held by ${String(e['keyHolder'])})` : '';
  const holder = e['keyHolder'] !== undefined && e['keyHeldHere'] !== false ? ` key at ${String(e['keyHolder'])}` : '';
  return `${e.chain} ${e.index} ${e.id} ${String(e['type'] ?? e['op'] ?? '')} ${String(e['pseudonym'] ?? e['person'] ?? '')}${holder}${person}`;
}

function withoutKey<T extends Record<string, unknown>>(o: T, key: string): T {
  const copy = { ...o };
  delete copy[key];
  return copy;
}

export const privacyCommands: readonly Command[] = [init, rotate, personAdd, erase, show];
