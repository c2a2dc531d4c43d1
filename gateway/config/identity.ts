/**
 * The gateway's identity in its data folder: which site it belongs to, the site's public keys
 * (the trust anchor), its own key, and the site-signed statement that enrolls that key.
 *
 *   <data>/site.json        { "siteId", "siteKeys": [hex], "gatewayId", "enrolment": hex }
 *   <data>/gateway.key      the gateway's private key file (0600)
 *   <data>/dev-site.key     only for a development site created on first start (0600)
 *
 * A development site is created only when the folder holds no identity at all: none of these
 * files, no last-checkpoint record and no ledger (its authority key stays in the data folder,
 * which is only acceptable for development; installers enrol real gateways with `oti`). A folder
 * that holds part of an identity stops start-up with ERR_IDENTITY_INCOMPLETE naming the missing
 * file and the remedy; no key file is ever written over (a lost site.json must not cost the
 * gateway its key, and with it its chain). Each development gateway is its own site
 * (`dev-site-<6 random hex digits>`), so several on one network do not take each other for
 * peers of the same site.
 */
import { mkdir, readFile, access } from 'node:fs/promises';
import { constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, Signer, toHex, fromHex, type KeyPair } from '../../ledger/crypto.js';
import { readKeyFile, writeKeyFile } from '../../ledger/keyfile.js';
import { writeFileAtomic } from '../../ledger/base/files.js';
import { signStatement, encodeSigned, decodeSigned, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { OtiError } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';

export interface Identity {
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  /** True when this start created a development site. */
  readonly created: boolean;
}

/** The site id of a development site made on first start. */
export const DEV_SITE_ID = 'dev-site';

/** A development site's id: `dev-site` (made before sites got a suffix) or `dev-site-<6 hex digits>`. */
export function isDevSiteId(siteId: string): boolean {
  return siteId === DEV_SITE_ID || /^dev-site-[0-9a-f]{6}$/.test(siteId);
}
export const SITE_FILE = 'site.json';
export const GATEWAY_KEY_FILE = 'gateway.key';
export const DEV_SITE_KEY_FILE = 'dev-site.key';
/** The last-checkpoint record (gateway/sync/checkpoint-record.ts) and the ledger: they too mean an identity existed. */
const TRACES = [SITE_FILE, GATEWAY_KEY_FILE, DEV_SITE_KEY_FILE, 'last-checkpoint.json', 'ledger'];

interface SiteFile {
  siteId: string;
  siteKeys: string[];
  gatewayId: string;
  enrolment: string;
}

export async function ensureDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await access(dir, constants.W_OK);
  } catch (e) {
    throw new OtiError('ERR_ARGUMENT', `the data folder ${dir} cannot be created or written: ${(e as Error).message}`, { path: dir }, { cause: e });
  }
}

/**
 * Loads the identity from `dir`; creates a development site and gateway when the folder holds
 * no trace of one. Throws ERR_IDENTITY_INCOMPLETE when a file of an existing identity is missing.
 */
export async function loadOrCreateIdentity(dir: string, opts: { passphrase?: string } = {}): Promise<Identity> {
  await ensureDataDir(dir);
  const sitePath = join(dir, SITE_FILE);
  if (!TRACES.some((f) => existsSync(join(dir, f)))) return createDevIdentity(dir, sitePath);
  const raw = await readIdentityFile(sitePath);
  const f = parseSiteFile(raw, sitePath);
  const keyPath = join(dir, GATEWAY_KEY_FILE);
  if (!existsSync(keyPath)) throw incomplete(keyPath, 'restore it from a backup (oti backup restore); without it this gateway cannot extend its chain');
  if (isDevSiteId(f.siteId) && !existsSync(join(dir, DEV_SITE_KEY_FILE))) {
    throw incomplete(join(dir, DEV_SITE_KEY_FILE), 'restore it from a backup, or move the data folder aside to start a new development site');
  }
  const key = await readKeyFile(keyPath, opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {});
  const enrolment = decodeSigned(fromHex('enrolment', f.enrolment));
  if (toHex(enrolment.statement.key) !== toHex(key.publicKey)) {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${sitePath}: the enrolment is for another key than ${keyPath}`);
  }
  return { trust: { siteId: f.siteId, siteKeys: f.siteKeys.map((k) => fromHex('siteKeys', k, 32)) }, gatewayId: f.gatewayId, key, enrolment, created: false };
}

async function readIdentityFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw incomplete(path, 'restore it from a backup (oti backup restore), or move the data folder aside and apply this gateway\'s provisioning bundle again (oti gateway apply-bundle)');
  }
}

function incomplete(path: string, remedy: string): OtiError {
  return new OtiError('ERR_IDENTITY_INCOMPLETE', `${path} is missing, but the data folder holds the rest of a gateway identity: ${remedy}; nothing was changed`, { path });
}

function parseSiteFile(raw: string, path: string): SiteFile {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${path} is not valid JSON`);
  }
  const f = v as Partial<SiteFile>;
  const bad = (field: string): OtiError => new OtiError('ERR_KEY_FILE_FORMAT', `${path}: ${field} is missing or invalid`, { field });
  if (typeof f.siteId !== 'string' || !ID_PATTERN.test(f.siteId)) throw bad('siteId');
  if (typeof f.gatewayId !== 'string' || !ID_PATTERN.test(f.gatewayId)) throw bad('gatewayId');
  if (!Array.isArray(f.siteKeys) || f.siteKeys.length === 0 || !f.siteKeys.every((k) => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k))) throw bad('siteKeys');
  if (typeof f.enrolment !== 'string' || !/^([0-9a-f]{2})+$/.test(f.enrolment)) throw bad('enrolment');
  return f as SiteFile;
}

async function createDevIdentity(dir: string, sitePath: string): Promise<Identity> {
  const siteKey = generateKeyPair();
  const key = generateKeyPair();
  // Random, so that two development gateways on one network are two sites and do not warn about each other.
  const siteId = `${DEV_SITE_ID}-${randomBytes(3).toString('hex')}`;
  const gatewayId = (hostname().toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '') || 'gateway').slice(0, 64);
  const enrolment = signStatement(new Signer(siteKey.seed), { site: siteId, op: 'enroll', role: 'gateway', id: gatewayId, key: key.publicKey, time: Date.now() });
  // Never over an existing file: writeKeyFile and writeFileAtomic refuse one.
  await writeKeyFile(join(dir, DEV_SITE_KEY_FILE), siteKey, { label: `development site authority ${siteId}` });
  await writeKeyFile(join(dir, GATEWAY_KEY_FILE), key, { label: `gateway ${gatewayId}` });
  const f: SiteFile = { siteId, siteKeys: [toHex(siteKey.publicKey)], gatewayId, enrolment: toHex(encodeSigned(enrolment)) };
  await writeFileAtomic(sitePath, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o644, overwrite: false });
  return { trust: { siteId, siteKeys: [siteKey.publicKey] }, gatewayId, key, enrolment, created: true };
}
