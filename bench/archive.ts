/**
 * npm run bench:archive — the fleet archive against a raw insert, on a private MariaDB.
 *
 *   sites      BENCH_ARCHIVE_SITES simulated sites (default 100), each a real gateway chain in
 *              LevelDB (its own site key, gateway key and BENCH_ARCHIVE_LOCKS locks, default 4)
 *              holding BENCH_ARCHIVE_EVENTS lock-signed events (default 10,000), in blocks of up
 *              to 256 entries as group commit makes them; each block is turned into the uplink
 *              message the gateway sends (bench/archive/sites.ts), kept on disk.
 *   archived   every block of every site through the archive's path, in a process of its own
 *              (bench/archive/archive-run.ts): BENCH_ARCHIVE_WORKERS partitions of sites (default
 *              2) side by side, BENCH_ARCHIVE_SIG_WORKERS signature threads (default: the
 *              archive's own default), BENCH_ARCHIVE_BLOCKS_PER_MESSAGE blocks per message (1).
 *   raw        the same entry rows into a copy of the `entries` table with mysql2 multi-row
 *              INSERTs of 1,000 rows on as many connections, no verification, same database,
 *              same run.
 * Prints both rates and their ratio (goal ≥ 0.5), CPU per entry (the archive's process, its main
 * thread, its other threads; mariadbd), the latency p50/p99 of the documented queries at that
 * size (200 each) and the archive process's peak RSS; writes bench/results/archive.json.
 * BENCH_ARCHIVE_PROFILE=FILE keeps a V8 CPU profile of the archive's main thread, for
 * `node dist/bench/profile-top.js FILE`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeEntry } from '../ledger/entry.js';
import { decodeRange } from '../gateway/sync/wire.js';
import { migrate } from '../gateway/archive/schema.js';
import { openPool } from '../gateway/archive/service.js';
import { ArchiveQueries } from '../gateway/archive/queries.js';
import { defaultVerifyThreads } from '../gateway/archive/config.js';
import { startMariaDb } from '../test/support/mariadb.js';
import { writeResults, round, percentile, runPinned } from './support.js';
import { processCpuMs } from './measure.js';
import { buildSite, readMessages, T0, type SiteFile } from './archive/sites.js';
import type { RunSetup } from './archive/archive-run.js';

// BENCH_CPUS=1 (or all,1): the same figures with the whole benchmark pinned to one core.
runPinned();

const SITES = Number(process.env['BENCH_ARCHIVE_SITES'] ?? 100);
const EVENTS = Number(process.env['BENCH_ARCHIVE_EVENTS'] ?? 10_000);
const LOCKS = Number(process.env['BENCH_ARCHIVE_LOCKS'] ?? 4);
const WORKERS = Number(process.env['BENCH_ARCHIVE_WORKERS'] ?? 2);
const SIG_WORKERS = Number(process.env['BENCH_ARCHIVE_SIG_WORKERS'] ?? defaultVerifyThreads());
const BLOCKS_PER_MESSAGE = Number(process.env['BENCH_ARCHIVE_BLOCKS_PER_MESSAGE'] ?? 1);
const PROFILE = process.env['BENCH_ARCHIVE_PROFILE'];
const QUERY_RUNS = 200;
const RAW_BATCH = 1000;

async function timed(runs: number, f: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await f(i);
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { p50: round(percentile(ms, 50), 2), p99: round(percentile(ms, 99), 2) };
}

/** Runs the archived phase in its own process; its figures. */
async function runArchive(setupFile: string): Promise<Record<string, number | string>> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./archive/archive-run.js', import.meta.url)), setupFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`the archive's process exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, number | string>;
}

async function main(): Promise<void> {
  const cleanups: (() => unknown)[] = [];
  const teardown = { after: (fn: () => unknown) => cleanups.push(fn) };
  try {
    const db = await startMariaDb(teardown, 'oti_archive', { bufferPool: '256M' });
    const dir = await mkdtemp(join(tmpdir(), 'oti-bench-archive-'));
    teardown.after(() => rm(dir, { recursive: true, force: true }));
    console.log(`building ${SITES} sites × ${EVENTS} lock-signed events (${LOCKS} locks each) …`);
    const sites: SiteFile[] = [];
    for (let i = 0; i < SITES; i++) sites.push(await buildSite(i, dir, EVENTS, LOCKS));
    const entries = sites.reduce((n, s) => n + s.entries, 0);
    const blocks = sites.reduce((n, s) => n + s.blocks, 0);
    console.log(`${entries} entries in ${blocks} blocks`);

    const conn = { host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database };
    const pool = await openPool({ ...conn, connections: WORKERS + 2 });
    teardown.after(() => pool.end());
    await migrate(pool);

    // Archived: the archive's own process, verification and the per-block transactions.
    const setup: RunSetup = { db: conn, sites, workers: WORKERS, signatureWorkers: SIG_WORKERS, blocksPerMessage: BLOCKS_PER_MESSAGE, ...(PROFILE !== undefined ? { profile: PROFILE } : {}) };
    const setupFile = join(dir, 'setup.json');
    await writeFile(setupFile, JSON.stringify(setup));
    const db0 = processCpuMs(db.proc.pid!);
    const archived = await runArchive(setupFile);
    const archivedDbUs = ((processCpuMs(db.proc.pid!) - db0) * 1000) / entries;
    const archivedRate = entries / Number(archived['wall_s']);

    // Raw: the same rows, multi-row INSERT, no verification.
    await pool.query('CREATE TABLE entries_raw LIKE entries');
    const rows: unknown[][] = [];
    for (const s of sites) {
      for (const m of await readMessages(s)) {
        const r = decodeRange(m, 1 << 24);
        r.entries.forEach((bytes, j) => {
          const e = decodeEntry(bytes);
          const ev = e.body.kind === 'lock-event' ? e.body.event : undefined;
          rows.push([s.origin, r.first + j, r.id, s.siteId, 'gw', e.body.kind, e.time, ev?.lock ?? null, ev?.ctr ?? null, ev?.type ?? null, ev?.time ?? null, e.body.kind === 'lock-event' ? e.body.prov : null, null, null, 'verified', Buffer.from(bytes)]);
        });
      }
    }
    const db2 = processCpuMs(db.proc.pid!);
    const c2 = process.cpuUsage();
    const t1 = performance.now();
    const conns = await Promise.all(Array.from({ length: WORKERS }, () => pool.getConnection()));
    await Promise.all(
      conns.map(async (c, w) => {
        for (let i = w * RAW_BATCH; i < rows.length; i += WORKERS * RAW_BATCH) {
          await c.query('INSERT INTO entries_raw (origin, idx, block_n, site_id, gateway_id, kind, time, lock_id, ctr, event_type, event_time, provenance, credential, person, status, bytes) VALUES ?', [rows.slice(i, i + RAW_BATCH)]);
        }
        c.release();
      }),
    );
    const rawS = (performance.now() - t1) / 1000;
    const c3 = process.cpuUsage(c2);
    const rawDbUs = ((processCpuMs(db.proc.pid!) - db2) * 1000) / rows.length;
    const rawRate = rows.length / rawS;

    // Queries at that size.
    const q = new ArchiveQueries(pool);
    const span = EVENTS * 1000;
    const latency = {
      eventsBySiteAndPeriod: await timed(QUERY_RUNS, (i) => q.events({ site: `site-${i % SITES}`, from: T0 + ((i * 7919) % span), to: T0 + ((i * 7919) % span) + 3_600_000, limit: 100 })),
      eventsByLockAndType: await timed(QUERY_RUNS, (i) => q.events({ lock: `lock-${i % SITES}-${i % LOCKS}`, type: 'unlocked', limit: 100 })),
      gapsBySite: await timed(QUERY_RUNS, (i) => q.gaps({ site: `site-${i % SITES}`, from: T0, to: T0 + span, limit: 100 })),
      chainsOfSite: await timed(QUERY_RUNS, (i) => q.chains(`site-${i % SITES}`)),
      receipt: await timed(Math.min(QUERY_RUNS, 50), (i) => q.receipt(sites[i % SITES]!.origin, LOCKS + ((i * 104_729) % EVENTS))),
    };
    const figures = {
      sites: SITES,
      eventsPerSite: EVENTS,
      entries,
      blocks,
      workers: WORKERS,
      signatureWorkers: SIG_WORKERS,
      blocksPerMessage: BLOCKS_PER_MESSAGE,
      archivedEntriesPerS: round(archivedRate),
      rawInsertEntriesPerS: round(rawRate),
      ratio: round(archivedRate / rawRate, 2),
      archivedCpuUsPerEntry: archived['cpu_us_per_entry']!,
      archivedMainThreadCpuUsPerEntry: archived['main_thread_us_per_entry'] ?? '',
      archivedOtherThreadsCpuUsPerEntry: archived['other_threads_us_per_entry'] ?? '',
      archivedCpuCoresBusy: archived['cpu_cores_busy']!,
      archivedDbCpuUsPerEntry: round(archivedDbUs),
      rawCpuUsPerEntry: round((c3.user + c3.system) / rows.length),
      rawDbCpuUsPerEntry: round(rawDbUs),
      ...Object.fromEntries(Object.entries(latency).flatMap(([k, v]) => [[`${k}P50Ms`, v.p50], [`${k}P99Ms`, v.p99]])),
      archivePeakRssMb: archived['rss_peak_mb']!,
    };
    console.log(`archived (verified): ${figures.archivedEntriesPerS} entries/s   raw multi-row INSERT: ${figures.rawInsertEntriesPerS} entries/s   ratio ${figures.ratio} (goal ≥ 0.5)`);
    console.log(`CPU per entry (µs): archive ${figures.archivedCpuUsPerEntry} (main thread ${figures.archivedMainThreadCpuUsPerEntry}, others ${figures.archivedOtherThreadsCpuUsPerEntry}; ${figures.archivedCpuCoresBusy} cores busy) + mariadbd ${figures.archivedDbCpuUsPerEntry}; raw ${figures.rawCpuUsPerEntry} + mariadbd ${figures.rawDbCpuUsPerEntry}`);
    for (const [k, v] of Object.entries(latency)) console.log(`  ${k}: p50 ${v.p50} ms, p99 ${v.p99} ms`);
    console.log(`archive process peak RSS ${figures.archivePeakRssMb} MB`);
    console.log(`wrote ${writeResults('archive', figures)}`);
  } finally {
    for (const f of cleanups.reverse()) await f();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
