/**
 * The archive's parts put together (gateway/archive/main.ts runs it): the MySQL/MariaDB pool with
 * its schema brought up to date, the trusted sites recorded, the intake from the central broker,
 * and the HTTP API. Stopped in reverse order.
 */
import { createPool, type Pool } from 'mysql2/promise';
import type { Logger } from '../log.js';
import { OtiError } from '../../ledger/base/errors.js';
import { toHex } from '../../ledger/crypto.js';
import { readConfigFile } from '../config/mqtt-client.js';
import type { ArchiveConfig } from './config.js';
import { migrate } from './schema.js';
import { refreshStaleCoverage } from './cosignatures.js';
import { UplinkIntake } from './uplink-intake.js';
import { Archiver } from './archiver.js';
import { SitePuller, checkPullSites } from './site-puller.js';
import { ArchiveQueries } from './queries.js';
import { ArchiveApi } from './api.js';
import { SignaturePool } from '../../ledger/sigpool.js';

async function firstLine(key: string, path: string): Promise<string> {
  const line = (await readConfigFile(key, path, true)).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (line.length === 0) throw new OtiError('ERR_CONFIG', `${key}: ${path} is empty`, { key });
  return line;
}

export async function openPool(c: ArchiveConfig['mysql']): Promise<Pool> {
  const password = c.passwordFile === undefined ? undefined : await firstLine('mysql.passwordFile', c.passwordFile);
  return createPool({
    ...(c.socket !== undefined ? { socketPath: c.socket } : { host: c.host ?? '127.0.0.1', port: c.port ?? 3306 }),
    user: c.user,
    ...(password !== undefined ? { password } : {}),
    database: c.database,
    connectionLimit: c.connections,
    supportBigNumbers: true,
    bigNumberStrings: false,
  });
}

export async function startArchive(cfg: ArchiveConfig, log: Logger): Promise<{ port: number; stop: () => Promise<void> }> {
  const pool = await openPool(cfg.mysql);
  let sigPool: SignaturePool | undefined;
  let intake: UplinkIntake | undefined;
  const pullers: SitePuller[] = [];
  try {
    const version = await migrate(pool);
    for (const s of cfg.sites) {
      await pool.execute('INSERT INTO sites (site_id, site_keys) VALUES (?, ?) ON DUPLICATE KEY UPDATE site_keys = VALUES(site_keys)', [s.siteId, s.siteKeys.map((k) => toHex(k)).join(',')]);
    }
    log.info({ version, sites: cfg.sites.length }, `archive database at schema ${version}; ${cfg.sites.length} trusted site(s)`);
    const quorums = new Map(cfg.sites.map((s) => [s.siteId, s.quorum]));
    const refreshed = await refreshStaleCoverage(pool, (site) => quorums.get(site));
    if (refreshed > 0) log.info({ sites: refreshed }, `archive: confirmation worked out again for ${refreshed} site(s) whose quorum changed`);
    sigPool = cfg.verifyThreads > 0 ? new SignaturePool(cfg.verifyThreads) : undefined;
    const archiver = new Archiver(pool, cfg, log.child({ part: 'archiver' }), sigPool !== undefined ? { sigPool } : {});
    intake = new UplinkIntake(archiver, cfg, log.child({ part: 'intake' }));
    await intake.start();
    checkPullSites(cfg.pull, new Set(cfg.sites.map((s) => s.siteId)));
    for (const p of cfg.pull) {
      const puller = new SitePuller(archiver, p, cfg.maxMessageBytes, log.child({ part: 'pull', site: p.siteId }));
      pullers.push(puller);
      await puller.start();
    }
    // A gap in what the central broker delivers (docs/ARCHIVE.md §Gaps in the intake) is pulled at once where the site is pulled.
    archiver.onGap((origin, siteId, size) => pullers.find((p) => p.siteId === siteId)?.wake(origin, size));
    const unpulled = cfg.sites.map((s) => s.siteId).filter((id) => !cfg.pull.some((p) => p.siteId === id));
    if (unpulled.length > 0) {
      log.warn({ sites: unpulled.slice(0, 20) }, `archive: ${unpulled.length} trusted site(s) without pull (${unpulled.slice(0, 5).join(', ')}${unpulled.length > 5 ? ', …' : ''}): blocks the central broker drops for the archive (its queue for the archive's session, e.g. Mosquitto max_queued_messages, full during an outage) cannot be recovered for them, and their chains stay behind (docs/ARCHIVE.md §Gaps in the intake)`);
    }
    const token = await firstLine('api.tokenFile', cfg.api.tokenFile);
    const api = new ArchiveApi({ queries: new ArchiveQueries(pool), token, pageMax: cfg.api.pageMax, counts: () => ({ ...archiver.counts, connected: intake!.connected, pull: pullers.map((p) => p.status()), behind: archiver.behind() }), logger: log.child({ part: 'api' }) });
    const port = await api.listen(cfg.api.host, cfg.api.port);
    log.info({ host: cfg.api.host, port }, `archive API listening on ${cfg.api.host}:${port}`);
    return {
      port,
      stop: async () => {
        await api.close();
        for (const p of pullers) await p.stop();
        await intake?.stop();
        await sigPool?.close();
        await pool.end();
      },
    };
  } catch (e) {
    for (const p of pullers) await p.stop();
    await intake?.stop();
    await sigPool?.close();
    await pool.end();
    throw e;
  }
}

