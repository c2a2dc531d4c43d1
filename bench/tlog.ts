/**
 * npm run bench:tlog — C2SP tlog-tiles (docs/PROTOCOL.md §Tiles) against the floor they compete
 * with, in one run:
 *   raw      the chain's entry chunks read straight from LevelDB (values as stored, not decoded):
 *            the same bytes the tiles are made of
 *   serve    full level-0 hash tiles and entry bundles spread over the chain, and the first
 *            level-1 hash tile (stored nodes, not computed) again and again, fetched over HTTP from
 *            the local API (gateway/api/server.ts, its real HTTP server, in this process; 4 requests in
 *            flight on keep-alive connections), tiles per second
 *   export   `oti export`'s exportChain of the whole chain to a temp folder
 * Ratios are raw time over tile time (1 = as fast as reading the store). Figures go to
 * bench/results/tlog.json.
 *
 * Environment: BENCH_TLOG_ENTRIES (default 1000000), BENCH_TLOG_REQUESTS (default 2000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Signer } from '../ledger/crypto.js';
import { coseSign1 } from '../ledger/cose.js';
import { encodeLockEvent } from '../ledger/lockevent.js';
import { TILE_WIDTH, tilePath, type TileResource } from '../ledger/tiles.js';
import { LocalApi } from '../gateway/api/server.js';
import { GatewayMetrics } from '../gateway/api/metrics.js';
import { exportChain } from '../provisioning/export.js';
import { u64, type ChainStore } from '../ledger/store.js';
import { writeResults, round, mb, peakRssMb, benchChain, runPinned } from './support.js';

// BENCH_CPUS=1 (or all,1): the same figures with the whole benchmark pinned to one core.
runPinned();

const ENTRIES = Number(process.env['BENCH_TLOG_ENTRIES'] ?? 1_000_000);
const REQUESTS = Number(process.env['BENCH_TLOG_REQUESTS'] ?? 2000);
const IN_FLIGHT = 4;
const LOCKS = 8;

/** Fills the chain with lock events signed by LOCKS locks (the common entry), pre-verified. */
async function fill(b: Awaited<ReturnType<typeof benchChain>>): Promise<void> {
  const locks = await Promise.all(Array.from({ length: LOCKS }, async (_, i) => ({ id: `lock-${i}`, signer: new Signer((await b.enrolLock(`lock-${i}`)).seed) })));
  let k = 0;
  const worker = async (): Promise<void> => {
    while (b.chain.size + 64 < ENTRIES && k < ENTRIES) {
      const i = k++;
      const lock = locks[i % LOCKS]!;
      const cose = coseSign1(lock.signer, encodeLockEvent({ lock: lock.id, ctr: Math.floor(i / LOCKS) + 1, time: 1_700_000_000_000 + i, type: i % 2 === 0 ? 'unlocked' : 'locked', cred: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }));
      await b.chain.append({ kind: 'lock-event', cose }, { preverified: true });
    }
  };
  await Promise.all(Array.from({ length: 256 }, worker));
  await b.chain.flush();
}

/** Reads the raw chunk values of entries [from, to) (16 entries a value); returns bytes read. */
async function rawChunks(cs: ChainStore, from: number, to: number): Promise<number> {
  let bytes = 0;
  for await (const v of cs.chunks.values({ gte: u64(Math.floor(from / 16)), lt: u64(Math.ceil(to / 16)) })) bytes += v.length;
  return bytes;
}

/** Picks `count` full tiles spread over the chain (deterministic). */
function tiles(kind: TileResource['kind'], level: number, full: number, count: number): TileResource[] {
  return Array.from({ length: count }, (_, i) => {
    const n = (i * 7919) % full;
    return kind === 'hash' ? { kind, level, n, width: TILE_WIDTH } : { kind: kind as 'entries', n, width: TILE_WIDTH };
  });
}

async function serve(api: string, origin: string, list: TileResource[]): Promise<{ perSecond: number; mbPerSecond: number }> {
  let next = 0;
  let bytes = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const r = list[next++]!;
      const res = await fetch(`${api}/tlog/${origin}/${tilePath(r)}`);
      if (res.status !== 200) throw new Error(`${tilePath(r)}: HTTP ${res.status}`);
      bytes += (await res.arrayBuffer()).byteLength;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const s = (performance.now() - t0) / 1000;
  return { perSecond: list.length / s, mbPerSecond: bytes / s / (1024 * 1024) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'oti-bench-tlog-'));
  try {
    console.log(`tlog benchmark: ${ENTRIES}-entry chain, ${REQUESTS} requests per tile kind`);
    const b = await benchChain(join(dir, 'ledger'));
    let t = performance.now();
    await fill(b);
    const fillS = (performance.now() - t) / 1000;
    // The raw floor reads the store's chunks directly (the ledger's own layout, ledger/store.ts).
    const cs = await b.store.chain(b.chain.origin, 'self');
    const size = cs.head.size;
    const fullTiles = Math.floor(size / TILE_WIDTH);
    console.log(`  chain of ${size} entries written in ${round(fillS)} s`);

    // Floor: the whole chain's chunks, raw.
    t = performance.now();
    const rawBytes = await rawChunks(cs, 0, size);
    const rawAllS = (performance.now() - t) / 1000;

    const api = await LocalApi.start({ host: '127.0.0.1', port: 0, chain: b.chain, metrics: new GatewayMetrics(), status: () => ({ gateway: 'gw', site: 'bench', version: 'bench', startedAt: Date.now(), drivers: [] }) });
    const origin = cs.origin;
    const level0 = tiles('hash', 0, fullTiles, REQUESTS);
    // The raw floor for a tile: the chunks of its 256 entries, read from the store.
    t = performance.now();
    let rawTileBytes = 0;
    for (const r of level0) rawTileBytes += await rawChunks(cs, r.n * TILE_WIDTH, (r.n + 1) * TILE_WIDTH);
    const rawTilesPerS = REQUESTS / ((performance.now() - t) / 1000);
    const hash0 = await serve(api.url, origin, level0);
    const bundles = await serve(api.url, origin, tiles('entries', 0, fullTiles, REQUESTS));
    // The first level-1 tile (full from 65,536 entries; its nodes are read from the store, not
    // computed), fetched REQUESTS times.
    const level1Nodes = Math.min(TILE_WIDTH, Math.floor(size / TILE_WIDTH));
    const hash1 = level1Nodes > 0 ? await serve(api.url, origin, Array.from({ length: REQUESTS }, () => ({ kind: 'hash' as const, level: 1, n: 0, width: level1Nodes }))) : undefined;
    await api.close();

    const out = join(dir, 'export');
    t = performance.now();
    const exp = await exportChain(cs, join(out, origin));
    const exportS = (performance.now() - t) / 1000;
    await b.close();

    const figures = {
      entries: size,
      chain_fill_s: round(fillS),
      raw_chunks_read_all_s: round(rawAllS, 2),
      raw_chunks_mb: mb(rawBytes),
      raw_tiles_per_s: round(rawTilesPerS, 0),
      raw_tiles_mb_per_s: round(rawTileBytes / (REQUESTS / rawTilesPerS) / (1024 * 1024)),
      api_level0_hash_tiles_per_s: round(hash0.perSecond, 0),
      api_entry_bundles_per_s: round(bundles.perSecond, 0),
      api_entry_bundles_mb_per_s: round(bundles.mbPerSecond),
      api_level1_hash_tiles_per_s: hash1 === undefined ? 0 : round(hash1.perSecond, 0),
      api_level1_tile_width: level1Nodes,
      ratio_level0_hash_tiles_vs_raw: round(hash0.perSecond / rawTilesPerS, 3),
      ratio_entry_bundles_vs_raw: round(bundles.perSecond / rawTilesPerS, 3),
      export_s: round(exportS, 2),
      export_files: exp.files,
      export_mb: mb(exp.bytes),
      export_entries_per_s: round(size / exportS, 0),
      ratio_export_time_vs_raw_read: round(exportS / rawAllS, 1),
      in_flight_requests: IN_FLIGHT,
      peak_rss_mb: peakRssMb(),
    };
    console.log(figures);
    console.log(`written to ${writeResults('tlog', figures)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
