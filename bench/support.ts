/** Shared helpers for the benchmarks: result files, percentiles, RSS sampling. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { generateKeyPair, Signer, type KeyPair } from '../ledger/crypto.js';
import { signStatement } from '../ledger/roster.js';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import type { SignaturePool } from '../ledger/sigpool.js';

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

/** The core count this run is pinned to by runPinned() (BENCH_PINNED_CPUS), if it is. */
const PINNED = process.env['BENCH_PINNED_CPUS'] === undefined ? undefined : Number(process.env['BENCH_PINNED_CPUS']);

/**
 * Writes one flat JSON object of figures to bench/results/NAME.json (units in the keys); a run
 * pinned by runPinned() to N cores writes NAME-cpusN.json, with `pinnedCpus: N` among the figures.
 */
export function writeResults(name: string, figures: Record<string, number | string | boolean>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, PINNED === undefined ? `${name}.json` : `${name}-cpus${PINNED}.json`);
  writeFileSync(path, `${JSON.stringify(PINNED === undefined ? figures : { pinnedCpus: PINNED, ...figures }, null, 2)}\n`);
  return path;
}

/**
 * BENCH_CPUS for a benchmark whose whole process tree is what it measures (bench:ledger, sync,
 * drivers, tlog, archive; bench:ingest pins only the gateway, and reads BENCH_CPUS itself): a
 * comma-separated list of `all` (every core, the default) and core counts N. For each N the
 * benchmark runs again under `taskset -c 0-(N-1)` (its children, the baselines included,
 * inherit the pinning, so each ratio compares like with like on N cores), and writes its
 * figures to NAME-cpusN.json. Returns whether this process goes on as the `all` run; exits when
 * the list holds no `all`.
 */
export function runPinned(): boolean {
  if (PINNED !== undefined) return true;
  const list = (process.env['BENCH_CPUS'] ?? 'all').split(',').map((c) => c.trim());
  for (const c of list) {
    if (c === 'all') continue;
    const n = Number(c);
    if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_CPUS: ${c} is neither all nor a core count`);
    console.log(`— pinned to ${n} core${n === 1 ? '' : 's'} (taskset -c 0-${n - 1}) —`);
    const r = spawnSync('taskset', ['-c', `0-${n - 1}`, process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, BENCH_PINNED_CPUS: String(n) } });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  if (!list.includes('all')) process.exit(0);
  if (list.length > 1) console.log('— every core —');
  // The benchmark's own child processes (bench:ledger's phases) run as this one does.
  process.env['BENCH_CPUS'] = 'all';
  return true;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The middle value; of an even count, the mean of the middle two. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function mb(bytes: number): number {
  return round(bytes / (1024 * 1024), 1);
}

/** Peak RSS of this process so far, in MB (getrusage max RSS). */
export function peakRssMb(): number {
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

/** A fresh bench site and its gateway "gw" chain in `dir`, with a way to enrol locks. */
export interface BenchChain {
  readonly store: LedgerStore;
  readonly chain: Chain;
  /** Enrols lock `id` with a new key and returns the key. */
  enrolLock(id: string): Promise<KeyPair>;
  close(): Promise<void>;
}

export async function benchChain(dir: string, pool?: SignaturePool): Promise<BenchChain> {
  const siteKey = generateKeyPair();
  const site = new Signer(siteKey.seed);
  const gw = generateKeyPair();
  const store = await LedgerStore.open(dir);
  const genesis = signStatement(site, { site: 'bench', op: 'enroll', role: 'gateway', id: 'gw', key: gw.publicKey, time: Date.now() });
  const chain = await Chain.open({ store, trust: { siteId: 'bench', siteKeys: [siteKey.publicKey] }, gatewayId: 'gw', key: gw, genesis, ...(pool !== undefined ? { pool } : {}) });
  return {
    store,
    chain,
    async enrolLock(id) {
      const key = generateKeyPair();
      await chain.append({ kind: 'roster', signed: signStatement(site, { site: 'bench', op: 'enroll', role: 'lock', id, key: key.publicKey, time: Date.now() }) });
      return key;
    },
    async close() {
      await chain.close();
      await store.close();
    },
  };
}
