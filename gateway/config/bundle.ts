/**
 * Provisioning bundles: what `oti gateway enroll` writes and a gateway applies on first start
 * (or `oti gateway apply-bundle` applies on the spot). docs/INSTALL.md §Provisioning bundle.
 *
 * A bundle is one UTF-8 JSON file of at most 64 KiB with exactly these members:
 *
 * ```
 * {
 *   "format": "oti-provisioning-bundle",
 *   "version": 1,
 *   "siteId": "<site id>",
 *   "siteKeys": ["<64 hex>", ...],          the site authority public keys (the trust anchor)
 *   "gatewayId": "<gateway id>",
 *   "gatewayKey": { ... },                   an oti-ed25519-key document (ledger/keyfile.ts),
 *                                            plain or encrypted under a bundle passphrase
 *   "enrolment": "<hex>",                    the site-signed roster statement (ledger/roster.ts)
 *                                            enrolling gatewayId with the key, with "expires"
 *   "created": "<ISO 8601>",
 *   "expires": "<ISO 8601>"                  equal to the statement's "expires"
 * }
 * ```
 *
 * The signed statement is what carries trust: it binds site id, gateway id, gateway public key
 * and expiry under a site key. Applying checks, in order: the document's shape (ERR_BUNDLE),
 * the statement's signature by one of `siteKeys` (ERR_ROSTER), that it enrols `gatewayId` of
 * `siteId` (ERR_BUNDLE), its expiry against `now` (ERR_BUNDLE_EXPIRED), that the private key
 * decrypts (ERR_KEY_PASSPHRASE, ERR_KEY_PASSPHRASE_REQUIRED) and is the enrolled key
 * (ERR_BUNDLE). A bundle that passes is written into the data folder exactly as
 * gateway/config/identity.ts reads it (site.json and gateway.key, 0600, plain: the gateway starts
 * unattended) and then renamed to `<name>.applied`.
 *
 * Replacing another identity (`replace`, the CLI's --force) first moves everything of the old
 * one in the data folder (IDENTITY_STATE: its identity files, its ledger, its last-checkpoint
 * record and every cursor or state that follows its chain or key; the site's privacy files too
 * when the site changes) into one new folder `<data>/identity.replaced-<UTC time>/`: the new
 * identity starts on an empty ledger, and nothing of the old one is written over or deleted.
 *
 * `siteKeys` come from the bundle itself, so whoever can write the boot partition could enrol
 * a gateway into a site of their own making; the site key fingerprints are printed on apply so
 * that an installer can compare them with the site's (docs/INSTALL.md).
 */
import { errnoCode, writeAtomicJson } from '../../ledger/base/files.js';
import { lstat, mkdir, mkdtemp, open, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprint, fromHex, generateKeyPair, toHex, type KeyPair, type Signer } from '../../ledger/crypto.js';
import { readKeyFile, writeKeyFile, KEY_FILE_MAX_BYTES } from '../../ledger/keyfile.js';
import { checkSigned, decodeSigned, encodeSigned, signStatement, type SignedStatement } from '../../ledger/roster.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { DEV_SITE_KEY_FILE, GATEWAY_KEY_FILE, SITE_FILE, ensureDataDir } from './identity.js';
import { LAST_CHECKPOINT_FILE } from '../sync/checkpoint-record.js';
import { LEDGER_DECISION_FILE } from '../sync/ledger-decision.js';
import { WITNESS_STATE_FILE } from '../sync/witness-listener.js';
import { CURSOR_FILE } from '../sync/uplink.js';
import { WEBHOOK_CURSOR_DIR } from '../notify/webhooks.js';
import { PERSONS_DIR } from '../api/persons.js';
import { PRIVACY_KEYRING_FILE, PRIVACY_PUBLIC_FILE } from '../api/privacy-setup.js';

export const BUNDLE_FORMAT = 'oti-provisioning-bundle';
export const BUNDLE_VERSION = 1;
export const BUNDLE_MAX_BYTES = 64 * 1024;
/**
 * What belongs to one gateway identity in its data folder (docs/INSTALL.md §4), moved aside
 * together when another identity replaces it. The identity files first: a replacement cut short
 * leaves a folder that refuses to start (ERR_IDENTITY_INCOMPLETE) rather than a new identity on
 * the old ledger, and applying again with --force moves the rest.
 */
export const IDENTITY_STATE: readonly string[] = [
  SITE_FILE,
  GATEWAY_KEY_FILE,
  DEV_SITE_KEY_FILE,
  LAST_CHECKPOINT_FILE,
  LEDGER_DECISION_FILE,
  'ledger',
  WITNESS_STATE_FILE,
  CURSOR_FILE,
  WEBHOOK_CURSOR_DIR,
  // The keys of the persons recorded in the old chain (their single holder).
  PERSONS_DIR,
];
/** The site's, not the gateway's: moved aside too only when the new identity is of another site. */
const SITE_STATE: readonly string[] = [PRIVACY_PUBLIC_FILE, PRIVACY_KEYRING_FILE];
const MEMBERS = ['format', 'version', 'siteId', 'siteKeys', 'gatewayId', 'gatewayKey', 'enrolment', 'created', 'expires'];

export interface Bundle {
  readonly format: typeof BUNDLE_FORMAT;
  readonly version: typeof BUNDLE_VERSION;
  readonly siteId: string;
  readonly siteKeys: readonly string[];
  readonly gatewayId: string;
  readonly gatewayKey: Record<string, unknown>;
  readonly enrolment: string;
  readonly created: string;
  readonly expires: string;
}

export interface CreateBundleOptions {
  /** The site authority, already unlocked. */
  readonly site: Signer;
  readonly siteId: string;
  /** Every current site public key (the signer's among them). */
  readonly siteKeys: readonly Uint8Array[];
  readonly gatewayId: string;
  /** Validity of the enrolment from `now`, in ms. */
  readonly validForMs: number;
  readonly now: number;
  /** Encrypt the gateway key in the bundle under this passphrase. */
  readonly passphrase?: string;
  /** The gateway key; a fresh one when absent. */
  readonly key?: KeyPair;
}

/** Makes a bundle: a gateway key and its site-signed enrolment with an expiry. */
export async function createBundle(o: CreateBundleOptions): Promise<{ bundle: Bundle; statement: SignedStatement }> {
  if (!ID_PATTERN.test(o.gatewayId)) throw new OtiError('ERR_ARGUMENT', `gateway id "${o.gatewayId}" must match ${String(ID_PATTERN)}`);
  const key = o.key ?? generateKeyPair();
  const expires = o.now + o.validForMs;
  const statement = signStatement(o.site, { site: o.siteId, op: 'enroll', role: 'gateway', id: o.gatewayId, key: key.publicKey, time: o.now, expires });
  // The key document is produced by ledger/keyfile.ts itself (same format, same encryption),
  // through a private temporary folder.
  const tmp = await mkdtemp(join(process.env['TMPDIR'] ?? '/tmp', 'oti-bundle-'));
  let gatewayKey: Record<string, unknown>;
  try {
    const path = join(tmp, 'gateway.key');
    await writeKeyFile(path, key, { label: `gateway ${o.gatewayId}`, ...(o.passphrase !== undefined ? { passphrase: o.passphrase } : {}) });
    gatewayKey = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const bundle: Bundle = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    siteId: o.siteId,
    siteKeys: o.siteKeys.map(toHex),
    gatewayId: o.gatewayId,
    gatewayKey,
    enrolment: toHex(encodeSigned(statement)),
    created: new Date(o.now).toISOString(),
    expires: new Date(expires).toISOString(),
  };
  return { bundle, statement };
}

export interface ApplyOptions {
  readonly now: number;
  /** Passphrase of an encrypted gateway key in the bundle. */
  readonly passphrase?: string;
  /** Replace an identity already in the data folder (otherwise ERR_BUNDLE). */
  readonly replace?: boolean;
}

export interface ApplyResult {
  readonly siteId: string;
  readonly gatewayId: string;
  /** Fingerprints (ledger/crypto.ts fingerprint) of the site keys and the gateway key. */
  readonly siteKeyFingerprints: readonly string[];
  readonly gatewayKeyFingerprint: string;
  readonly expires: number;
  /** Where the bundle was moved, or undefined when it could not be renamed (read-only medium). */
  readonly appliedPath: string | undefined;
  /** The data folder already held exactly this identity; nothing was written. */
  readonly alreadyApplied: boolean;
  /** With `replace`: the folder the old identity's files were moved into, and their names. */
  readonly replaced?: { readonly folder: string; readonly gatewayId: string | undefined; readonly moved: readonly string[] };
}

/**
 * Reads and checks a bundle file without writing anything; see the module comment for the checks.
 * `acceptExpired`: for its enrolment statement only (`oti gateway revoke --bundle`), not to apply.
 */
export async function readBundle(bundlePath: string, opts: { now: number; acceptExpired?: boolean }): Promise<{ bundle: Bundle; signed: SignedStatement }> {
  const raw = await readBounded(bundlePath);
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw bad(bundlePath, 'is not JSON');
  }
  const b = checkShape(bundlePath, doc);
  let signed: SignedStatement;
  try {
    signed = decodeSigned(fromHex('enrolment', b.enrolment));
  } catch (e) {
    throw new OtiError('ERR_BUNDLE', `${bundlePath}: the enrolment statement does not decode: ${(e as Error).message}`, { path: bundlePath }, { cause: e });
  }
  const trust = { siteId: b.siteId, siteKeys: b.siteKeys.map((k) => fromHex('siteKeys', k, 32)) };
  try {
    checkSigned(signed, trust);
  } catch (e) {
    if (isOtiError(e, 'ERR_ROSTER')) throw new OtiError('ERR_ROSTER', `${bundlePath} was altered or is not signed by its site: ${e.message}`, { path: bundlePath }, { cause: e });
    throw e;
  }
  const s = signed.statement;
  if (s.op !== 'enroll' || s.role !== 'gateway' || s.id !== b.gatewayId) {
    throw bad(bundlePath, `does not enrol gateway ${b.gatewayId}: its signed statement is op "${s.op}" for ${s.role} ${s.id}`);
  }
  if (s.expires === undefined) throw bad(bundlePath, 'has an enrolment without an expiry');
  if (Date.parse(b.expires) !== s.expires) throw bad(bundlePath, 'has an "expires" that differs from the signed enrolment’s');
  if (opts.now >= s.expires && opts.acceptExpired !== true) {
    throw new OtiError('ERR_BUNDLE_EXPIRED', `${bundlePath}: the enrolment of gateway ${b.gatewayId} expired at ${b.expires}; make a new bundle with oti gateway enroll`, {
      path: bundlePath,
      expires: s.expires,
    });
  }
  return { bundle: b, signed };
}

/**
 * Applies a bundle to a data folder (see the module comment). Called by `oti gateway
 * apply-bundle` and by the gateway at start-up, before the identity is loaded, when the
 * configured bundle file exists.
 */
export async function applyBundle(bundlePath: string, dataDir: string, opts: ApplyOptions): Promise<ApplyResult> {
  const { bundle: b, signed } = await readBundle(bundlePath, opts);
  await ensureDataDir(dataDir);
  const key = await unlockKey(bundlePath, dataDir, b.gatewayKey, opts.passphrase);
  if (toHex(key.publicKey) !== toHex(signed.statement.key)) {
    key.seed.fill(0);
    throw bad(bundlePath, 'has a gateway key that is not the key its enrolment names');
  }
  const site = { siteId: b.siteId, siteKeys: [...b.siteKeys], gatewayId: b.gatewayId, enrolment: b.enrolment };
  const sitePath = join(dataDir, 'site.json');
  const existing = await readFile(sitePath, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  let alreadyApplied = false;
  let previous: { siteId?: unknown; gatewayId?: unknown } | undefined;
  if (existing !== undefined) {
    alreadyApplied = sameIdentity(existing, site);
    if (!alreadyApplied && opts.replace !== true) {
      key.seed.fill(0);
      throw new OtiError('ERR_BUNDLE', `${dataDir} already holds a gateway identity (${sitePath}); move it away or apply with --force to replace it`, { path: sitePath });
    }
    previous = parseJson(existing);
  }
  let replaced: ApplyResult['replaced'];
  if (!alreadyApplied) {
    try {
      // --force replaces an identity, but never writes over anything of it: it is moved aside.
      if (opts.replace === true) {
        const moved = await moveIdentityAside(dataDir, previous?.siteId !== undefined && previous.siteId !== b.siteId);
        if (moved !== undefined) replaced = { ...moved, gatewayId: typeof previous?.gatewayId === 'string' ? previous.gatewayId : undefined };
      }
      await writeKeyFile(join(dataDir, GATEWAY_KEY_FILE), key, { label: `gateway ${b.gatewayId}` });
    } finally {
      key.seed.fill(0);
    }
    await writeAtomicJson(sitePath, site);
  }
  let appliedPath: string | undefined = `${bundlePath}.applied`;
  try {
    await rename(bundlePath, appliedPath);
  } catch {
    appliedPath = undefined;
  }
  return {
    siteId: b.siteId,
    gatewayId: b.gatewayId,
    siteKeyFingerprints: b.siteKeys.map((k) => fingerprint(fromHex('siteKeys', k, 32))),
    gatewayKeyFingerprint: fingerprint(signed.statement.key),
    expires: signed.statement.expires as number,
    appliedPath,
    alreadyApplied,
    ...(replaced !== undefined ? { replaced } : {}),
  };
}

/**
 * Moves every IDENTITY_STATE entry of `dataDir` (and SITE_STATE when `siteChanged`) into a new
 * folder `identity.replaced-<UTC time>` in it, by rename (same file system, nothing copied).
 * Undefined when there was nothing to move.
 */
async function moveIdentityAside(dataDir: string, siteChanged: boolean): Promise<{ folder: string; moved: string[] } | undefined> {
  const present: string[] = [];
  for (const name of [...IDENTITY_STATE, ...(siteChanged ? SITE_STATE : [])]) {
    if (await lstat(join(dataDir, name)).then(() => true, (e: unknown) => (errnoCode(e) === 'ENOENT' ? false : Promise.reject(e)))) present.push(name);
  }
  if (present.length === 0) return undefined;
  const folder = join(dataDir, `identity.replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  // A new folder, never an existing one (EEXIST): nothing is merged into another replacement's.
  await mkdir(folder, { mode: 0o700 });
  for (const name of present) await rename(join(dataDir, name), join(folder, name));
  await fsyncDir(folder);
  await fsyncDir(dataDir);
  return { folder, moved: present };
}

async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function readBounded(path: string): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new OtiError('ERR_NOT_FOUND', `no bundle at ${path}`, { path });
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > BUNDLE_MAX_BYTES) throw bad(path, `is not a regular file of at most ${BUNDLE_MAX_BYTES} bytes`);
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

function checkShape(path: string, doc: unknown): Bundle {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad(path, 'is not a JSON object');
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!MEMBERS.includes(k)) throw bad(path, `has an unknown member "${k}"`);
  if (d.format !== BUNDLE_FORMAT) throw bad(path, `is not an ${BUNDLE_FORMAT}`);
  if (d.version !== BUNDLE_VERSION) throw bad(path, `has version ${String(d.version)}, this gateway reads ${BUNDLE_VERSION}`);
  const id = (k: string): string => {
    const v = d[k];
    if (typeof v !== 'string' || !ID_PATTERN.test(v)) throw bad(path, `has no "${k}" or one that is not an id`);
    return v;
  };
  const siteId = id('siteId');
  const gatewayId = id('gatewayId');
  const keys = d.siteKeys;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 16 || !keys.every((k) => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k))) {
    throw bad(path, 'has a "siteKeys" that is not 1 to 16 public keys in lower-case hex');
  }
  if (typeof d.gatewayKey !== 'object' || d.gatewayKey === null || Array.isArray(d.gatewayKey)) throw bad(path, 'has a "gatewayKey" that is not a key file object');
  if (typeof d.enrolment !== 'string' || !/^([0-9a-f]{2}){1,1400}$/.test(d.enrolment)) throw bad(path, 'has an "enrolment" that is not hex');
  for (const k of ['created', 'expires']) {
    if (typeof d[k] !== 'string' || Number.isNaN(Date.parse(d[k] as string))) throw bad(path, `has a "${k}" that is not an ISO 8601 time`);
  }
  return { format: BUNDLE_FORMAT, version: BUNDLE_VERSION, siteId, siteKeys: keys as string[], gatewayId, gatewayKey: d.gatewayKey as Record<string, unknown>, enrolment: d.enrolment, created: d.created as string, expires: d.expires as string };
}

/** Decrypts the embedded key document with ledger/keyfile.ts through a 0600 file in the data folder. */
async function unlockKey(bundlePath: string, dataDir: string, doc: Record<string, unknown>, passphrase: string | undefined): Promise<KeyPair> {
  const text = JSON.stringify(doc);
  if (Buffer.byteLength(text) > KEY_FILE_MAX_BYTES) throw bad(bundlePath, 'has a "gatewayKey" that is too large');
  const tmp = join(dataDir, `.bundle-key-${process.pid}.tmp`);
  await unlink(tmp).catch(() => undefined);
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  try {
    return await readKeyFile(tmp, passphrase !== undefined ? { passphrase } : {});
  } catch (e) {
    if (isOtiError(e, 'ERR_KEY_FILE_FORMAT')) throw new OtiError('ERR_BUNDLE', `${bundlePath}: "gatewayKey" is not a valid key: ${e.message}`, { path: bundlePath }, { cause: e });
    if (isOtiError(e, 'ERR_KEY_PASSPHRASE_REQUIRED')) throw new OtiError('ERR_KEY_PASSPHRASE_REQUIRED', `${bundlePath}: the gateway key is encrypted; give the bundle passphrase`, { path: bundlePath });
    if (isOtiError(e, 'ERR_KEY_PASSPHRASE')) throw new OtiError('ERR_KEY_PASSPHRASE', `${bundlePath}: wrong bundle passphrase, or the gateway key was altered`, { path: bundlePath });
    throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

function sameIdentity(existing: string, site: { siteId: string; gatewayId: string; enrolment: string }): boolean {
  try {
    const f = JSON.parse(existing) as Record<string, unknown>;
    return f.siteId === site.siteId && f.gatewayId === site.gatewayId && f.enrolment === site.enrolment;
  } catch {
    return false;
  }
}

/** ERR_BUNDLE; `why` reads on from the path as a sentence: "is not JSON", "has …", "does not …". */
function bad(path: string, why: string): OtiError {
  return new OtiError('ERR_BUNDLE', `${path} ${why}`, { path });
}
