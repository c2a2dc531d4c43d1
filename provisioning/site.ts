/**
 * `oti site init` and the site folder it writes, which the other provisioning commands read:
 *
 *   <site dir>/site.key    the site authority private key, passphrase-encrypted (0600)
 *   <site dir>/site.json   public: { "format": "oti-site", "version": 1, "siteId", "siteKeys": [hex] }
 *
 * The site folder belongs on the installer organisation's offline machine, never on a gateway.
 * site.json has the same "siteId" and "siteKeys" members as a gateway data folder's site.json,
 * so either can be given wherever site keys are asked for (e.g. `oti receipt verify`).
 */
import { mkdir, readFile, access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprint, fromHex, generateKeyPair, Signer, toHex } from '../ledger/crypto.js';
import { readKeyFile, writeKeyFile } from '../ledger/keyfile.js';
import { moveAside } from '../ledger/base/files.js';
import { OtiError } from '../ledger/base/errors.js';
import { ID_PATTERN } from '../ledger/schema.js';
import type { SiteTrust } from '../ledger/roster.js';
import { writeAtomicJson } from '../ledger/base/files.js';
import { flag, str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import type { Terminal } from './terminal.js';

/** The site key signs every enrolment of the site: its passphrase has at least this many characters. */
export const SITE_PASSPHRASE_MIN = 12;
export const SITE_KEY_FILE = 'site.key';
export const SITE_FILE = 'site.json';
const SITE_FILE_MAX = 64 * 1024;

export const PASSPHRASE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  'passphrase-file': { type: 'string', value: 'FILE', help: 'read the site key passphrase from FILE (else $OTI_PASSPHRASE, else a prompt)' },
};

export const SITE_DIR_OPTION: Readonly<Record<string, OptionSpec>> = {
  'site-dir': { type: 'string', value: 'DIR', help: 'the site folder made by oti site init (default ./site)' },
};

export interface UnlockedSite extends SiteTrust {
  readonly signer: Signer;
}

/**
 * Site trust from a site folder, a gateway data folder, a site.json file, or 64-hex public
 * key(s) separated by commas (then the site id must come from `siteId`).
 */
export async function readSiteTrust(where: string, siteId?: string): Promise<SiteTrust> {
  if (/^[0-9a-f]{64}(,[0-9a-f]{64})*$/.test(where)) {
    if (siteId === undefined) throw usage('with site keys given as hex, --site ID is needed too');
    return { siteId, siteKeys: where.split(',').map((k) => fromHex('site key', k, 32)) };
  }
  const path = (await stat(where).catch(() => undefined))?.isDirectory() === true ? join(where, SITE_FILE) : where;
  let raw: string;
  try {
    const st = await stat(path);
    if (st.size > SITE_FILE_MAX) throw new OtiError('ERR_KEY_FILE_FORMAT', `${path} is larger than ${SITE_FILE_MAX} bytes`);
    raw = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new OtiError('ERR_NOT_FOUND', `no site information at ${path} (run oti site init, or give a gateway data folder)`, { path });
    throw e;
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${path} is not JSON`, { path });
  }
  if (typeof v.siteId !== 'string' || !ID_PATTERN.test(v.siteId)) throw new OtiError('ERR_KEY_FILE_FORMAT', `${path}: siteId is missing or invalid`, { path });
  if (!Array.isArray(v.siteKeys) || v.siteKeys.length === 0 || !v.siteKeys.every((k) => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k))) {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${path}: siteKeys is missing or invalid`, { path });
  }
  if (siteId !== undefined && siteId !== v.siteId) throw usage(`${path} is for site ${v.siteId}, not ${siteId}`);
  return { siteId: v.siteId, siteKeys: (v.siteKeys as string[]).map((k) => fromHex('siteKeys', k, 32)) };
}

/** Reads the site folder and decrypts its authority key (passphrase from file, env or prompt). */
export async function unlockSite(p: Parsed, term: Terminal): Promise<UnlockedSite> {
  const dir = str(p, 'site-dir') ?? 'site';
  const trust = await readSiteTrust(dir);
  const passphrase = await term.passphrase({ file: str(p, 'passphrase-file'), env: 'OTI_PASSPHRASE', purpose: `site authority key of ${trust.siteId}` });
  const pair = await readKeyFile(join(dir, SITE_KEY_FILE), { passphrase });
  try {
    if (!trust.siteKeys.some((k) => toHex(k) === toHex(pair.publicKey))) {
      throw new OtiError('ERR_KEY_FILE_FORMAT', `${join(dir, SITE_KEY_FILE)} is not one of the keys listed in ${join(dir, SITE_FILE)}`);
    }
    return { ...trust, signer: new Signer(pair.seed) };
  } finally {
    pair.seed.fill(0);
  }
}

const siteInit: Command = {
  name: 'site init',
  summary: 'Create a site: its authority key (encrypted under a passphrase) and its public site.json.',
  details: [
    'Writes <out>/site.key (0600, encrypted with scrypt + AES-256-GCM) and <out>/site.json (public).',
    'Keep the site folder offline; gateways only ever receive bundles made from it.',
    'The passphrase (at least 12 characters) is asked twice on a terminal; scripts set OTI_PASSPHRASE or --passphrase-file.',
  ],
  options: {
    site: { type: 'string', value: 'ID', help: 'site id (lower case letters, digits, . _ -; at most 64)' },
    out: { type: 'string', value: 'DIR', help: 'folder to create (default ./site)' },
    force: { type: 'boolean', help: 'replace an existing site in DIR (its old key is moved aside to site.key.replaced-<time>)' },
    ...PASSPHRASE_OPTIONS,
  },
  examples: ['oti site init --site acme-hq --out ./acme-hq', 'OTI_PASSPHRASE=... oti site init --site acme-hq --out ./acme-hq --json'],
  async run(p, term) {
    const siteId = str(p, 'site', true);
    if (!ID_PATTERN.test(siteId)) throw usage(`--site must match ${String(ID_PATTERN)}`);
    const dir = str(p, 'out') ?? 'site';
    const force = flag(p, 'force');
    const keyPath = join(dir, SITE_KEY_FILE);
    const exists = await access(keyPath).then(
      () => true,
      () => false,
    );
    if (exists && !force) throw new OtiError('ERR_ARGUMENT', `${keyPath} exists; refusing to overwrite a site key (use --force to replace it)`, { path: keyPath });
    const passphrase = await term.passphrase({ file: str(p, 'passphrase-file'), env: 'OTI_PASSPHRASE', purpose: `site authority key of ${siteId}`, confirm: true, minLength: SITE_PASSPHRASE_MIN });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pair = generateKeyPair();
    try {
      // The old key is moved aside, never written over.
      if (force) await moveAside(keyPath);
      await writeKeyFile(keyPath, pair, { passphrase, label: `site authority ${siteId}` });
    } finally {
      pair.seed.fill(0);
    }
    await writeAtomicJson(join(dir, SITE_FILE), { format: 'oti-site', version: 1, siteId, siteKeys: [toHex(pair.publicKey)] });
    const fp = fingerprint(pair.publicKey);
    return {
      json: { siteId, dir, siteKey: toHex(pair.publicKey), fingerprint: fp },
      text: [`site ${term.bold(siteId)} created in ${dir}`, `  authority key ${fp} (encrypted in ${keyPath})`, `  public site information: ${join(dir, SITE_FILE)}`],
    };
  },
};

export const siteCommands: readonly Command[] = [siteInit];
