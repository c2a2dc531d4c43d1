/**
 * npm run bench:archive — the fleet archive against a raw insert, on a private MariaDB.
 *
 *   sites      BENCH_ARCHIVE_SITES simulated sites (default 100), each a real gateway chain in
 *              LevelDB (its own site key, gateway key and BENCH_ARCHIVE_LOCKS locks, default 4)
 *              holding BENCH_ARCHIVE_EVENTS lock-signed events (default 10,000), in blocks of up
 *              to 256 entries as group commit makes them; each block is turned into the uplink
 *              message the gateway sends (gateway/sync/uplink.ts).
 *   archived   every block of every site through the archive's path (gateway/archive/
 *              archived-chain.ts: strict decoding, ChainVerifier with every lock signature and
 *              checkpoint signature, counters, then the block's transaction), one worker per
 *              partition of sites (BENCH_ARCHIVE_WORKERS, default 2) as docs/ARCHIVE.md §Scale
 *              describes; no MQTT hop (the broker's share is Mosquitto's, not the archive's).
 *   raw        the same entry rows into a copy of the `entries` table with mysql2 multi-row
 *              INSERTs of 1,000 rows, no verification, same database, same run.
 * Prints both rates and their ratio (goal ≥ 0.5), the latency p50/p99 of the documented queries
 * at that size (200 each), and this process's peak RSS; writes bench/results/archive.json.
 * BENCH_ARCHIVE_PROFILE=FILE keeps a V8 CPU profile of the archived phase alone (main thread),
 * for `node dist/bench/profile-top.js FILE`.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, Signer } from '../ledger/crypto.js';
import { signStatement } from '../ledger/roster.js';
import { coseSign1 } from '../ledger/cose.js';
import { encodeLockEvent, EVENT_TYPES } from '../ledger/lockevent.js';
import { LedgerStore } from '../ledger/store.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { Chain } from '../ledger/chain.js';
import { parseCheckpoint } from '../ledger/checkpoint.js';
import { decodeEntry } from '../ledger/entry.js';
import { decodeRange, encodeRange } from '../gateway/sync/wire.js';
import { migrate } from '../gateway/archive/schema.js';
import { openPool } from '../gateway/archive/service.js';
import { ArchivedChain } from '../gateway/archive/archived-chain.js';
import { ArchiveQueries } from '../gateway/archive/queries.js';
import { defaultVerifyThreads } from '../gateway/archive/config.js';
import type { SiteTrust } from '../ledger/roster.js';
import { startMariaDb } from '../test/support/mariadb.js';
import { writeResults, round, peakRssMb, percentile } from './support.js';

const SITES = Number(process.env['BENCH_ARCHIVE_SITES'] ?? 100);
const EVENTS = Number(process.env['BENCH_ARCHIVE_EVENTS'] ?? 10_000);
const LOCKS = Number(process.env['BENCH_ARCHIVE_LOCKS'] ?? 4);
const WORKERS = Number(process.env['BENCH_ARCHIVE_WORKERS'] ?? 2);
/** Worker threads checking lock signatures (0: on the archive's thread). */
const SIG_WORKERS = Number(process.env['BENCH_ARCHIVE_SIG_WORKERS'] ?? defaultVerifyThreads());
/** Blocks per uplink message (the uplink sends one; a catch-up range several), archived as one run. */
const BLOCKS_PER_MESSAGE = Number(process.env['BENCH_ARCHIVE_BLOCKS_PER_MESSAGE'] ?? 1);
const PROFILE = process.env['BENCH_ARCHIVE_PROFILE'];
const QUERY_RUNS = 200;
const RAW_BATCH = 1000;
const T0 = 1_780_000_000_000;

interface SiteChain {
  readonly origin: string;
  readonly trust: SiteTrust;
  /** The uplink messages of its blocks, in order. */
  readonly messages: Buffer[];
}

/** One simulated site: a real chain in LevelDB, read back as uplink messages. */
async function buildSite(i: number, dir: string): Promise<SiteChain> {
  const siteId = `site-${i}`;
  const siteKey = generateKeyPair();
  const site = new Signer(siteKey.seed);
  const gw = generateKeyPair();
  const trust = { siteId, siteKeys: [siteKey.publicKey] };
  const store = await LedgerStore.open(join(dir, siteId));
  const genesis = signStatement(site, { site: siteId, op: 'enroll', role: 'gateway', id: 'gw', key: gw.publicKey, time: T0 });
  const chain = await Chain.open({ store, trust, gatewayId: 'gw', key: gw, genesis, maxBlockEntries: 256 });
  const locks = Array.from({ length: LOCKS }, (_, k) => ({ id: `lock-${i}-${k}`, key: generateKeyPair(), ctr: 0 }));
  for (const l of locks) await chain.append({ kind: 'roster', signed: signStatement(site, { site: siteId, op: 'enroll', role: 'lock', id: l.id, key: l.key.publicKey, time: T0 }) });
  const signers = locks.map((l) => new Signer(l.key.seed));
  const pending: Promise<unknown>[] = [];
  for (let e = 0; e < EVENTS; e++) {
    const k = e % LOCKS;
    const l = locks[k]!;
    l.ctr++;
    const cose = coseSign1(signers[k]!, encodeLockEvent({ lock: l.id, ctr: l.ctr, time: T0 + e * 1000, type: EVENT_TYPES[e % 2]! }));
    pending.push(chain.append({ kind: 'lock-event', time: T0 + e * 1000, cose }, { preverified: true }));
    if (pending.length >= 512) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await chain.flush();
  const messages: Buffer[] = [];
  for (let n = 0; n <= chain.head.n; n++) {
    const b = await chain.block(n);
    const entries = await chain.entryRange(b.header.first, b.header.first + b.header.count);
    messages.push(Buffer.from(encodeRange({ id: n, chain: chain.origin, first: b.header.first, entries, blocks: [{ h: b.headerBytes, cp: b.checkpoint.note }], end: true })));
  }
  const origin = chain.origin;
  await chain.close();
  await store.close();
  return { origin, trust, messages };
}

/** CPU seconds used so far by this process (all its threads) and by the MariaDB server. */
async function cpuNow(dbPid: number | undefined): Promise<{ self: number; db: number }> {
  const u = process.cpuUsage();
  let db = 0;
  if (dbPid !== undefined) {
    // /proc/<pid>/stat fields 14 and 15: utime and stime in clock ticks (100 a second on Linux).
    const f = (await readFile(`/proc/${dbPid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    db = (Number(f[11]) + Number(f[12])) / 100;
  }
  return { self: (u.user + u.system) / 1e6, db };
}

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

async function main(): Promise<void> {
  const cleanups: (() => unknown)[] = [];
  const teardown = { after: (fn: () => unknown) => cleanups.push(fn) };
  try {
    const db = await startMariaDb(teardown, 'oti_archive', { bufferPool: '256M' });
    const dir = await mkdtemp(join(tmpdir(), 'oti-bench-archive-'));
    teardown.after(() => rm(dir, { recursive: true, force: true }));
    console.log(`building ${SITES} sites × ${EVENTS} lock-signed events (${LOCKS} locks each) …`);
    const sites: SiteChain[] = [];
    for (let i = 0; i < SITES; i++) sites.push(await buildSite(i, dir));
    const entries = sites.reduce((n, s) => n + s.messages.reduce((m, b) => m + decodeRange(b, 1 << 24).entries.length, 0), 0);
    const blocks = sites.reduce((n, s) => n + s.messages.length, 0);
    console.log(`${entries} entries in ${blocks} blocks`);

    const pool = await openPool({ host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database, connections: WORKERS + 2 });
    teardown.after(() => pool.end());
    await migrate(pool);

    const sigPool = SIG_WORKERS > 0 ? new SignaturePool(SIG_WORKERS) : undefined;
    if (sigPool !== undefined) teardown.after(() => sigPool.close());
    // Archived: verification and the per-block transaction, workers partitioned by site.
    const profiler = PROFILE === undefined ? undefined : new Session();
    if (profiler !== undefined) {
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
    }
    const c0 = await cpuNow(db.proc.pid);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        for (let i = w; i < sites.length; i += WORKERS) {
          const s = sites[i]!;
          const chain = new ArchivedChain(pool, s.origin, s.trust, sigPool);
          for (let k = 0; k < s.messages.length; k += BLOCKS_PER_MESSAGE) {
            const run = s.messages.slice(k, k + BLOCKS_PER_MESSAGE).map((m) => {
              const r = decodeRange(m, 1 << 24);
              const b = r.blocks[0]!;
              return { headerBytes: b.h, checkpoint: parseCheckpoint(b.cp), entries: r.entries };
            });
            const res = await chain.acceptRun(run);
            if (res.refusal !== undefined) throw res.refusal;
          }
        }
      }),
    );
    const archivedS = (performance.now() - t0) / 1000;
    const c1 = await cpuNow(db.proc.pid);
    if (profiler !== undefined && PROFILE !== undefined) {
      const { profile } = await profiler.post('Profiler.stop');
      await writeFile(PROFILE, JSON.stringify(profile));
      profiler.disconnect();
    }
    const archivedRate = entries / archivedS;

    // Raw: the same rows, multi-row INSERT, no verification.
    await pool.query('CREATE TABLE entries_raw LIKE entries');
    const rows: unknown[][] = [];
    for (const s of sites) {
      for (const m of s.messages) {
        const r = decodeRange(m, 1 << 24);
        const n = r.id;
        r.entries.forEach((bytes, j) => {
          const e = decodeEntry(bytes);
          const ev = e.body.kind === 'lock-event' ? e.body.event : undefined;
          rows.push([s.origin, r.first + j, n, s.trust.siteId, 'gw', e.body.kind, e.time, ev?.lock ?? null, ev?.ctr ?? null, ev?.type ?? null, ev?.time ?? null, e.body.kind === 'lock-event' ? e.body.prov : null, null, null, 'verified', Buffer.from(bytes)]);
        });
      }
    }
    const c2 = await cpuNow(db.proc.pid);
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
    const c3 = await cpuNow(db.proc.pid);
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
      archivedCpuUsPerEntry: round(((c1.self - c0.self) * 1e6) / entries),
      archivedDbCpuUsPerEntry: round(((c1.db - c0.db) * 1e6) / entries),
      rawCpuUsPerEntry: round(((c3.self - c2.self) * 1e6) / rows.length),
      rawDbCpuUsPerEntry: round(((c3.db - c2.db) * 1e6) / rows.length),
      ...Object.fromEntries(Object.entries(latency).flatMap(([k, v]) => [[`${k}P50Ms`, v.p50], [`${k}P99Ms`, v.p99]])),
      peakRssMb: peakRssMb(),
    };
    console.log(`archived (verified): ${figures.archivedEntriesPerS} entries/s   raw multi-row INSERT: ${figures.rawInsertEntriesPerS} entries/s   ratio ${figures.ratio} (goal ≥ 0.5)`);
    console.log(`CPU per entry (µs, this process with its threads + mariadbd): archived ${figures.archivedCpuUsPerEntry} + ${figures.archivedDbCpuUsPerEntry}, raw ${figures.rawCpuUsPerEntry} + ${figures.rawDbCpuUsPerEntry}`);
    for (const [k, v] of Object.entries(latency)) console.log(`  ${k}: p50 ${v.p50} ms, p99 ${v.p99} ms`);
    console.log(`peak RSS ${figures.peakRssMb} MB (this process: the sites' chains being built, the archive and the raw insert)`);
    console.log(`wrote ${writeResults('archive', figures)}`);
  } finally {
    for (const f of cleanups.reverse()) await f();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
