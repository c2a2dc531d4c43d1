/**
 * The archive's configuration file (YAML or JSON; docs/ARCHIVE.md §Configuration). Every key is
 * checked here; an error is ERR_CONFIG naming the key.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { OtiError } from '../../ledger/base/errors.js';
import { fromHex } from '../../ledger/crypto.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import type { SiteTrust } from '../../ledger/roster.js';
import type { MqttClientConfig } from '../config/mqtt-client.js';

export interface ArchiveConfig {
  readonly broker: { readonly url: string; readonly username?: string; readonly passwordFile?: string; readonly clientId: string; readonly ca?: string; readonly cert?: string; readonly key?: string; readonly topicPrefix: string; readonly sessions: number; readonly topics: 'all' | 'sites' };
  readonly mysql: { readonly host?: string; readonly port?: number; readonly socket?: string; readonly user: string; readonly passwordFile?: string; readonly database: string; readonly connections: number };
  readonly sites: readonly ArchiveSite[];
  readonly api: { readonly host: string; readonly port: number; readonly tokenFile: string; readonly pageMax: number };
  /** Largest uplink message taken (bytes); bigger ones are refused as evidence-less noise. */
  readonly maxMessageBytes: number;
  /** Evidence rows kept per chain origin and code at most; beyond, refusals of that code are only counted and logged. */
  readonly maxEvidencePerChain: number;
  /** Worker threads checking lock signatures (0: on the main thread). */
  readonly verifyThreads: number;
  /** Sites pulled from directly (§Pulling from sites). */
  readonly pull: readonly PullConfig[];
}

/** A trusted site: its id and authority keys (its site.json will do), and optionally its confirmation quorum. */
export interface ArchiveSite extends SiteTrust {
  /** Gateways, the origin included, whose signatures confirm an entry; a majority of the site's archived chains when unset. */
  readonly quorum?: number;
}

/** A site's broker the archive pulls from as a read-only peer (site-puller.ts). */
export interface PullConfig extends MqttClientConfig {
  readonly siteId: string;
  readonly url: string;
  /** The name in its request and answer topics (`req/<requester>`, `range/<requester>`). */
  readonly requester: string;
}

export const DEFAULTS = { clientId: 'oti-archive', topicPrefix: 'oti-fleet', apiHost: '127.0.0.1', apiPort: 8480, pageMax: 1000, connections: 4, maxMessageBytes: 4 * 1024 * 1024, maxEvidencePerChain: 1000, sessions: 1 } as const;

/** One lock-signature thread per core the machine has (ledger/sigpool.ts). */
export function defaultVerifyThreads(): number {
  return Math.max(1, availableParallelism());
}

type Obj = Record<string, unknown>;

function bad(key: string, why: string): OtiError {
  return new OtiError('ERR_CONFIG', `archive configuration ${key}: ${why}`, { key });
}

function obj(v: unknown, key: string, allowed: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(key, 'must be a mapping');
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw bad(`${key}.${k}`, `unknown key (known: ${allowed.join(', ')})`);
  return v as Obj;
}

function str(o: Obj, k: string, key: string, dflt?: string): string {
  const v = o[k] ?? dflt;
  if (typeof v !== 'string' || v.length === 0 || v.length > 2048) throw bad(`${key}.${k}`, 'must be a non-empty text');
  return v;
}

function optStr(o: Obj, k: string, key: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k, key);
}

function int(o: Obj, k: string, key: string, min: number, max: number, dflt?: number): number {
  const v = o[k] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${key}.${k}`, `must be a whole number from ${min} to ${max}`);
  return v;
}

function site(v: unknown, i: number): ArchiveSite {
  const key = `sites[${i}]`;
  return siteTrust(obj(v, key, ['siteId', 'siteKeys', 'gatewayId', 'enrolment', 'quorum']), key);
}

/** The site id and authority keys of a `sites` entry or a site file, and its quorum if given. */
function siteTrust(o: Obj, key: string): ArchiveSite {
  const siteId = str(o, 'siteId', key);
  if (!ID_PATTERN.test(siteId)) throw bad(`${key}.siteId`, 'must be a site id');
  const keys = o['siteKeys'];
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 16 || !keys.every((k) => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k))) throw bad(`${key}.siteKeys`, 'must be a list of 1 to 16 hex Ed25519 public keys');
  return { siteId, siteKeys: (keys as string[]).map((k, j) => fromHex(`${key}.siteKeys[${j}]`, k, 32)), ...(o['quorum'] !== undefined ? { quorum: int(o, 'quorum', key, 1, 1000) } : {}) };
}

function pullList(v: unknown, p: (s: string | undefined) => string | undefined): PullConfig[] {
  if (!Array.isArray(v) || v.length > 10_000) throw bad('pull', 'must be a list of { siteId, url, username, passwordFile, ca, cert, key, clientId, requester }');
  return v.map((x, i) => {
    const key = `pull[${i}]`;
    const o = obj(x, key, ['siteId', 'url', 'username', 'passwordFile', 'ca', 'cert', 'key', 'clientId', 'requester']);
    const siteId = str(o, 'siteId', key);
    const requester = str(o, 'requester', key, 'archive');
    if (!ID_PATTERN.test(siteId)) throw bad(`${key}.siteId`, 'must be a site id');
    if (!ID_PATTERN.test(requester)) throw bad(`${key}.requester`, 'must be an id (a-z, 0-9, . _ -, at most 64)');
    const opt = <T>(k: string, val: T | undefined): { [y: string]: T } => (val === undefined ? {} : { [k]: val });
    return {
      siteId,
      url: str(o, 'url', key),
      requester,
      ...opt('username', optStr(o, 'username', key)),
      ...opt('passwordFile', p(optStr(o, 'passwordFile', key))),
      ...opt('clientId', optStr(o, 'clientId', key)),
      ...opt('ca', p(optStr(o, 'ca', key))),
      ...opt('cert', p(optStr(o, 'cert', key))),
      ...opt('key', p(optStr(o, 'key', key))),
    };
  });
}

/** Parses a configuration document; relative paths are against `base`. */
export function parseArchiveConfig(doc: unknown, base: string): ArchiveConfig {
  const top = obj(doc, '(top)', ['broker', 'mysql', 'sites', 'siteFiles', 'api', 'maxMessageBytes', 'maxEvidencePerChain', 'verifyThreads', 'pull']);
  const p = (s: string | undefined): string | undefined => (s === undefined ? undefined : resolve(base, s));
  const b = obj(top['broker'], 'broker', ['url', 'username', 'passwordFile', 'clientId', 'ca', 'cert', 'key', 'topicPrefix', 'sessions', 'topics']);
  const m = obj(top['mysql'], 'mysql', ['host', 'port', 'socket', 'user', 'passwordFile', 'database', 'connections']);
  const a = obj(top['api'] ?? {}, 'api', ['host', 'port', 'tokenFile', 'pageMax']);
  const sitesRaw = top['sites'] ?? [];
  if (!Array.isArray(sitesRaw) || sitesRaw.length > 100_000) throw bad('sites', 'must be a list of { siteId, siteKeys } (or give a site.json in siteFiles)');
  const opt = <T>(k: string, v: T | undefined): { [x: string]: T } => (v === undefined ? {} : { [k]: v });
  const sessions = int(b, 'sessions', 'broker', 1, 64, DEFAULTS.sessions);
  const topics = str(b, 'topics', 'broker', sessions > 1 ? 'sites' : 'all');
  if (topics !== 'all' && topics !== 'sites') throw bad('broker.topics', 'must be all or sites');
  if (topics === 'all' && sessions > 1) throw bad('broker.topics', 'must be sites with more than one session (each takes its share of the trusted sites)');
  return {
    broker: {
      url: str(b, 'url', 'broker'),
      ...opt('username', optStr(b, 'username', 'broker')),
      ...opt('passwordFile', p(optStr(b, 'passwordFile', 'broker'))),
      clientId: str(b, 'clientId', 'broker', DEFAULTS.clientId),
      ...opt('ca', p(optStr(b, 'ca', 'broker'))),
      ...opt('cert', p(optStr(b, 'cert', 'broker'))),
      ...opt('key', p(optStr(b, 'key', 'broker'))),
      topicPrefix: str(b, 'topicPrefix', 'broker', DEFAULTS.topicPrefix),
      sessions,
      topics,
    },
    mysql: {
      ...opt('host', optStr(m, 'host', 'mysql')),
      ...opt('port', m['port'] === undefined ? undefined : int(m, 'port', 'mysql', 1, 65535)),
      ...opt('socket', p(optStr(m, 'socket', 'mysql'))),
      user: str(m, 'user', 'mysql'),
      ...opt('passwordFile', p(optStr(m, 'passwordFile', 'mysql'))),
      database: str(m, 'database', 'mysql'),
      connections: int(m, 'connections', 'mysql', 1, 256, DEFAULTS.connections),
    },
    sites: sitesRaw.map(site),
    api: { host: str(a, 'host', 'api', DEFAULTS.apiHost), port: int(a, 'port', 'api', 0, 65535, DEFAULTS.apiPort), tokenFile: p(str(a, 'tokenFile', 'api'))!, pageMax: int(a, 'pageMax', 'api', 1, 100_000, DEFAULTS.pageMax) },
    maxMessageBytes: int(top, 'maxMessageBytes', '(top)', 1024, 256 * 1024 * 1024, DEFAULTS.maxMessageBytes),
    maxEvidencePerChain: int(top, 'maxEvidencePerChain', '(top)', 0, 10_000_000, DEFAULTS.maxEvidencePerChain),
    verifyThreads: int(top, 'verifyThreads', '(top)', 0, 256, defaultVerifyThreads()),
    pull: pullList(top['pull'] ?? [], p),
  };
}

/**
 * A `siteFiles` entry: either public site.json there is, with the same trust (site id and
 * authority keys, all that is taken): the site folder's from `oti site init` (`format: oti-site`,
 * `version: 1`) or a gateway data folder's (`gatewayId`, `enrolment` beside them).
 */
async function siteFile(path: string, i: number): Promise<ArchiveSite> {
  const key = `siteFiles[${i}]`;
  let v: unknown;
  try {
    v = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw bad(key, `${path} is not a readable JSON file (${(e as Error).message}); give the site.json of the site folder (oti site init) or of a gateway's data folder`);
  }
  const o = obj(v, key, ['format', 'version', 'siteId', 'siteKeys', 'gatewayId', 'enrolment']);
  if (o['format'] !== undefined && (o['format'] !== 'oti-site' || o['version'] !== 1)) throw bad(`${key}.format`, `${path} is not a site.json of oti site init (format oti-site, version 1) nor of a gateway's data folder`);
  return siteTrust({ siteId: o['siteId'], siteKeys: o['siteKeys'] }, key);
}

/** Reads the configuration file; `siteFiles` entries (a site folder's or a gateway's site.json, siteFile) join `sites`. */
export async function loadArchiveConfig(path: string): Promise<ArchiveConfig> {
  let doc: unknown;
  try {
    doc = parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new OtiError('ERR_CONFIG', `archive configuration ${path}: ${(e as Error).message}`, { key: '(file)' });
  }
  const files = (doc as Obj | null)?.['siteFiles'] ?? [];
  if (!Array.isArray(files) || !files.every((f) => typeof f === 'string')) throw bad('siteFiles', 'must be a list of paths');
  const cfg = parseArchiveConfig(doc, dirname(path));
  const extra = await Promise.all((files as string[]).map((f, i) => siteFile(resolve(dirname(path), f), i)));
  return { ...cfg, sites: [...cfg.sites, ...extra] };
}
