/**
 * The parts of a fleet-tier test: a real gateway process (`--demo`: simulated locks on kernel
 * ptys, its own development site) uplinking to a central broker, its /status, what the
 * archive's tables hold of a chain, a site's own Mosquitto (its users, the ACL docs/ARCHIVE.md
 * §Pulling from sites gives the archive's user) and the archive's configuration file; uplink
 * messages of a chain's blocks, and the forged and equivocating ones an archive must refuse.
 */
import type { TestContext } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startGateway, freePort, type GatewayProcess } from './gateway-process.js';
import type { TestMariaDb } from './mariadb.js';
import { startMosquitto, type Mosquitto } from './mosquitto.js';
import { tempDir } from './site.js';
import { stopProc } from './archive-process.js';
import { toHex, generateKeyPair, Signer, type KeyPair } from '../../ledger/crypto.js';
import { decodeRange, encodeRange } from '../../gateway/sync/wire.js';
import { blockHash, decodeBlockHeader, encodeBlockHeader } from '../../ledger/block.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import type { ChainReader } from '../../ledger/reader.js';

export interface FleetGateway {
  readonly gw: GatewayProcess;
  readonly data: string;
  readonly api: number;
}

/**
 * Gateway `name` in `dir/name`, with `demoLocks` locks at 20 events/s, uplinking as user `uplink` with `password`;
 * its embedded broker on `brokerPort` (default: a free one it picks).
 */
export async function uplinkingGateway(t: TestContext, dir: string, name: string, broker: { url: string; caFile: string }, demoLocks: number, password: string, brokerPort = 0): Promise<FleetGateway> {
  const data = join(dir, name);
  const passwordFile = join(dir, `${name}.uplink-password`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  const api = await freePort();
  const gw = startGateway(
    [
      ...['--broker.host', '127.0.0.1', '--broker.port', String(brokerPort), '--api.port', String(api), '--ble.enabled', 'false', '--discovery.enabled', 'false'],
      ...['--demo.locks', String(demoLocks), '--demo.rate', '20'],
      ...['--uplink.url', broker.url, '--uplink.username', 'uplink', '--uplink.passwordFile', passwordFile, '--uplink.ca', broker.caFile, '--uplink.window', '4'],
    ],
    { OTI_DATA_DIR: data },
  );
  t.after(() => stopProc(gw, 'SIGKILL'));
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));
  return { gw, data, api };
}

export interface UplinkView {
  readonly chain: { origin: string; size: number; blocks: number };
  readonly uplink?: { connected: boolean; next: number; behind: number };
}

export async function uplinkStatus(g: FleetGateway): Promise<UplinkView> {
  return (await (await fetch(`http://127.0.0.1:${g.api}/status`)).json()) as UplinkView;
}

/** Entries and blocks of `origin` in the archive's tables, and its highest entry index (-1 when none). */
export async function archivedCounts(db: TestMariaDb, origin: string): Promise<{ entries: number; blocks: number; maxIdx: number }> {
  const c = await db.root();
  try {
    const [e] = await c.query(`SELECT COUNT(*) AS n, COALESCE(MAX(idx), -1) AS m FROM ${db.database}.entries WHERE origin = ?`, [origin]);
    const [b] = await c.query(`SELECT COUNT(*) AS n FROM ${db.database}.blocks WHERE origin = ?`, [origin]);
    const er = (e as { n: number; m: number }[])[0]!;
    return { entries: Number(er.n), blocks: Number((b as { n: number }[])[0]!.n), maxIdx: Number(er.m) };
  } finally {
    await c.end();
  }
}

/**
 * The ACL of a site's Mosquitto: each of `gateways` may read and write everything under `oti/`,
 * the archive's user exactly the four filters docs/ARCHIVE.md §Pulling from sites names.
 */
export function siteAcl(siteId: string, gateways: readonly string[], archiveUser = 'archive'): string[] {
  return [
    ...gateways.flatMap((g) => [`user ${g}`, 'topic readwrite oti/#']),
    `user ${archiveUser}`,
    `topic read oti/${siteId}/chain/+/checkpoint`,
    `topic read oti/${siteId}/chain/+/cosig/+`,
    `topic read oti/${siteId}/chain/+/range/${archiveUser}`,
    `topic write oti/${siteId}/chain/+/req/${archiveUser}`,
  ];
}

/**
 * A site's own Mosquitto (plain MQTT): `users` in its password file, `acl` (siteAcl) in its ACL
 * file when given, `moreConfig` lines (a bridge) after the rest. Stopped when the test ends.
 */
export async function siteMosquitto(t: TestContext, users: Record<string, string>, opts: { acl?: readonly string[]; moreConfig?: readonly string[]; maxPacketBytes?: number } = {}): Promise<Mosquitto> {
  const more = [...(opts.moreConfig ?? [])];
  if (opts.acl !== undefined) {
    const acl = join(await tempDir(t, 'oti-site-acl-'), 'acl');
    await writeFile(acl, [...opts.acl, ''].join('\n'));
    more.unshift(`acl_file ${acl}`);
  }
  return startMosquitto(t, users, { moreConfig: more, ...(opts.maxPacketBytes !== undefined ? { maxPacketBytes: opts.maxPacketBytes } : {}) });
}

/** What an archive test configures (docs/ARCHIVE.md §Configuration); the secrets go into files of their own. */
export interface ArchiveTestConfig {
  /** The central broker and the archive's password on it. */
  readonly broker: { readonly url: string; readonly caFile: string; readonly password: string; readonly username?: string; readonly clientId?: string; readonly sessions?: number };
  readonly db: TestMariaDb;
  /** The API's bearer token. */
  readonly token: string;
  readonly sites?: readonly { readonly siteId: string; readonly siteKeys: readonly Uint8Array[]; readonly quorum?: number }[];
  readonly siteFiles?: readonly string[];
  /** Sites pulled through their brokers, each with the archive's password there. */
  readonly pull?: readonly { readonly siteId: string; readonly url: string; readonly username: string; readonly password: string }[];
  readonly verifyThreads?: number;
  /** The configuration file's name in the folder (archive.yaml). */
  readonly file?: string;
}

/** Writes the archive's configuration (and its password and token files) into `dir`; its path. */
export async function writeArchiveConfig(dir: string, c: ArchiveTestConfig): Promise<string> {
  const secret = async (name: string, value: string): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, `${value}\n`, { mode: 0o600 });
    return file;
  };
  const b = c.broker;
  const config = join(dir, c.file ?? 'archive.yaml');
  await writeFile(
    config,
    stringify({
      broker: { url: b.url, username: b.username ?? 'archive', passwordFile: await secret('archive.broker-password', b.password), ca: b.caFile, ...(b.clientId !== undefined ? { clientId: b.clientId } : {}), ...(b.sessions !== undefined ? { sessions: b.sessions } : {}) },
      mysql: { host: '127.0.0.1', port: c.db.port, user: c.db.user, passwordFile: c.db.passwordFile, database: c.db.database },
      ...(c.sites !== undefined ? { sites: c.sites.map((s) => ({ siteId: s.siteId, siteKeys: s.siteKeys.map((k) => toHex(k)), ...(s.quorum !== undefined ? { quorum: s.quorum } : {}) })) } : {}),
      ...(c.siteFiles !== undefined ? { siteFiles: c.siteFiles } : {}),
      ...(c.pull !== undefined ? { pull: await Promise.all(c.pull.map(async (p) => ({ siteId: p.siteId, url: p.url, username: p.username, passwordFile: await secret(`archive.pull-${p.siteId}.password`, p.password) }))) } : {}),
      api: { host: '127.0.0.1', port: 0, tokenFile: await secret('archive.token', c.token) },
      ...(c.verifyThreads !== undefined ? { verifyThreads: c.verifyThreads } : {}),
    }),
  );
  return config;
}

/** The uplink message of block `n` of `chain`: what the uplink sends (docs/ARCHIVE.md §Uplink). */
export async function blockMessage(chain: ChainReader, n: number): Promise<Buffer> {
  const b = await chain.block(n);
  const entries = await chain.entryRange(b.header.first, b.header.first + b.header.count);
  return Buffer.from(encodeRange({ id: n, chain: chain.origin, first: b.header.first, entries, blocks: [{ h: b.headerBytes, cp: b.checkpoint.note }], end: true }));
}

/** A block that extends the chain after `last` (an uplink message), linked correctly, but whose checkpoint is signed by a key that is not the gateway's. */
export function forgedNext(last: Buffer): Buffer {
  const m = decodeRange(last, 1 << 20);
  const prev = decodeBlockHeader(m.blocks[0]!.h);
  const entries = m.entries.slice(-1);
  const header = encodeBlockHeader({ chain: m.chain, n: prev.n + 1, prev: blockHash(m.blocks[0]!.h), first: prev.first + prev.count, count: entries.length, root: prev.root, time: prev.time + 1 });
  const cp = signCheckpoint({ origin: m.chain, size: prev.first + prev.count + entries.length, root: prev.root, block: prev.n + 1, blockHash: blockHash(header) }, new Signer(generateKeyPair().seed), m.chain);
  return Buffer.from(encodeRange({ id: 0, chain: m.chain, first: prev.first + prev.count, entries, blocks: [{ h: header, cp: cp.note }], end: true }));
}

/** Another block of the same number as `last` (an uplink message), with its checkpoint signed by the gateway's own key: equivocation. */
export function equivocating(last: Buffer, gatewayKey: KeyPair): Buffer {
  const m = decodeRange(last, 1 << 20);
  const h = decodeBlockHeader(m.blocks[0]!.h);
  const header = encodeBlockHeader({ ...h, time: h.time + 1 });
  const cp = signCheckpoint({ origin: m.chain, size: h.first + h.count, root: h.root, block: h.n, blockHash: blockHash(header) }, new Signer(gatewayKey.seed), m.chain);
  return Buffer.from(encodeRange({ ...m, blocks: [{ h: header, cp: cp.note }] }));
}

/**
 * The uplink message `real` (one block) with its header renumbered to block `n` starting at entry
 * `first`, ahead of what an archive holds: with the original checkpoint, which then names another
 * block and size (no signature covers the new header), or, given `signer` (not the gateway's
 * key), with a checkpoint that describes the new header, signed by it.
 */
export function forgedAhead(real: Buffer, n: number, first: number, signer?: Signer): Buffer {
  const m = decodeRange(real, 1 << 20);
  const header = encodeBlockHeader({ ...decodeBlockHeader(m.blocks[0]!.h), n, first });
  const h = decodeBlockHeader(header);
  const cp = signer === undefined ? m.blocks[0]!.cp : signCheckpoint({ origin: m.chain, size: first + h.count, root: h.root, block: n, blockHash: blockHash(header) }, signer, m.chain).note;
  return Buffer.from(encodeRange({ ...m, first, blocks: [{ h: header, cp }] }));
}
