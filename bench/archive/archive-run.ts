/**
 * The archived phase of bench:archive, in a process of its own (so that its CPU and memory are the
 * archive's): every block of every site through the archive's path (gateway/archive/
 * archived-chain.ts: strict decoding, ChainVerifier with every lock signature and checkpoint
 * signature, counters, the tree nodes, then the block's transaction), `workers` partitions of
 * sites side by side as docs/ARCHIVE.md §Scale describes, each taking one message at a time as
 * the uplink intake does. No MQTT hop: the broker's share is Mosquitto's, not the archive's.
 *
 * node dist/bench/archive/archive-run.js SETUP.json — prints one JSON line of figures.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { SignaturePool } from '../../ledger/sigpool.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeRange } from '../../gateway/sync/wire.js';
import { openPool } from '../../gateway/archive/service.js';
import { ArchivedChain } from '../../gateway/archive/archived-chain.js';
import { cpuSnapshot, cpuSince, RssSampler } from '../measure.js';
import { readMessages, trustOf, type SiteFile } from './sites.js';

export interface RunSetup {
  readonly db: { host: string; port: number; user: string; passwordFile: string; database: string };
  readonly sites: readonly SiteFile[];
  /** Partitions of sites archived side by side. */
  readonly workers: number;
  /** Threads checking lock signatures (0: on the archive's thread). */
  readonly signatureWorkers: number;
  /** Blocks handed to the archive together (a catch-up range carries several). */
  readonly blocksPerMessage: number;
  /** Where to keep a CPU profile of the main thread, if anywhere. */
  readonly profile?: string;
}

async function main(): Promise<void> {
  const setup = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as RunSetup;
  const rss = new RssSampler(100);
  const pool = await openPool({ ...setup.db, connections: setup.workers + 1 });
  const sigPool = setup.signatureWorkers > 0 ? new SignaturePool(setup.signatureWorkers) : undefined;
  const profiler = setup.profile === undefined ? undefined : new Session();
  if (profiler !== undefined) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  const entries = setup.sites.reduce((n, s) => n + s.entries, 0);
  const start = cpuSnapshot();
  await Promise.all(
    Array.from({ length: setup.workers }, async (_, w) => {
      for (let i = w; i < setup.sites.length; i += setup.workers) {
        const s = setup.sites[i]!;
        const chain = new ArchivedChain(pool, s.origin, trustOf(s), sigPool);
        const messages = await readMessages(s);
        for (let k = 0; k < messages.length; k += setup.blocksPerMessage) {
          const run = messages.slice(k, k + setup.blocksPerMessage).map((m) => {
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
  const cpu = cpuSince(start, entries);
  if (profiler !== undefined && setup.profile !== undefined) {
    const { profile } = await profiler.post('Profiler.stop');
    await writeFile(setup.profile, JSON.stringify(profile));
    profiler.disconnect();
  }
  await sigPool?.close();
  await pool.end();
  console.log(JSON.stringify({ entries, ...cpu, ...rss.stop() }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
