/**
 * The gateway's identity in its data folder: which site it belongs to, the site's public keys
 * (the trust anchor), its own key, and the site-signed statement that enrolls that key.
 *
 *   <data>/site.json        { "siteId", "siteKeys": [hex], "gatewayId", "enrolment": hex }
 *   <data>/gateway.key      the gateway's private key file (0600)
 *   <data>/dev-site.key     only for a development site created on first start (0600)
 *
 * With no identity yet, a development site `dev-site-<6 random hex digits>` is created (its
 * authority key stays in the data folder, which is only acceptable for development; installers
 * enrol real gateways with `oti`). Each development gateway is its own site, so several on one
 * network do not take each other for peers of the same site.
 */
import { mkdir, readFile, writeFile, rename, access } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, Signer, toHex, fromHex, type KeyPair } from '../ledger/crypto.js';
import { readKeyFile, writeKeyFile } from '../ledger/keyfile.js';
import { signStatement, encodeSigned, decodeSigned, type SignedStatement, type SiteTrust } from '../ledger/roster.js';
import { OtiError } from '../ledger/errors.js';
import { ID_PATTERN } from '../ledger/schema.js';

export interface Identity {
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  /** True when this start created a development site. */
  readonly created: boolean;
}

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

/** Loads the identity from `dir`, creating a development site and gateway when there is none. */
export async function loadOrCreateIdentity(dir: string, opts: { passphrase?: string } = {}): Promise<Identity> {
  await ensureDataDir(dir);
  const sitePath = join(dir, 'site.json');
  let raw: string | undefined;
  try {
    raw = await readFile(sitePath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (raw === undefined) return createDevIdentity(dir, sitePath);
  const f = parseSiteFile(raw, sitePath);
  const key = await readKeyFile(join(dir, 'gateway.key'), opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {});
  const enrolment = decodeSigned(fromHex('enrolment', f.enrolment));
  if (toHex(enrolment.statement.key) !== toHex(key.publicKey)) {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${sitePath}: the enrolment is for another key than ${join(dir, 'gateway.key')}`);
  }
  return { trust: { siteId: f.siteId, siteKeys: f.siteKeys.map((k) => fromHex('siteKeys', k, 32)) }, gatewayId: f.gatewayId, key, enrolment, created: false };
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
  const siteId = `dev-site-${randomBytes(3).toString('hex')}`;
  const gatewayId = (hostname().toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '') || 'gateway').slice(0, 64);
  const enrolment = signStatement(new Signer(siteKey.seed), { site: siteId, op: 'enroll', role: 'gateway', id: gatewayId, key: key.publicKey, time: Date.now() });
  await writeKeyFile(join(dir, 'dev-site.key'), siteKey, { label: `development site authority ${siteId}`, overwrite: true });
  await writeKeyFile(join(dir, 'gateway.key'), key, { label: `gateway ${gatewayId}`, overwrite: true });
  const f: SiteFile = { siteId, siteKeys: [toHex(siteKey.publicKey)], gatewayId, enrolment: toHex(encodeSigned(enrolment)) };
  const tmp = `${sitePath}.tmp`;
  await writeFile(tmp, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, sitePath);
  return { trust: { siteId, siteKeys: [siteKey.publicKey] }, gatewayId, key, enrolment, created: true };
}
