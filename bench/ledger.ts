/**
 * npm run bench:ledger — the ledger's throughput against the floor it competes with.
 *
 * Phases, each in a fresh child process so that memory figures are its own:
 *   floor    raw LevelDB batch writes of the same entry bytes (same batch size, sync; LevelDB's
 *            default options, where the store sets its own table cache, table size and memtable), raw
 *            node:crypto Ed25519 signing, and raw verification on one thread with node:crypto
 *   append   durable appends of pre-verified lock events; then appends with every lock
 *            signature checked (worker pool); then grows the chain to BENCH_CHAIN_ENTRIES and
 *            lets LevelDB's background compactions finish, as a store does between bursts
 *   raw      the one-core raw verification loop with this machine's verifier (libsodium where
 *            it loads): one of the chain's lock signatures over and over, ten of them, each for
 *            a slice, RAW_N checks; and beside it the loop as it was (the gateway's signature over one
 *            entry's bytes), RAW_N different signatures by the chain's 1,000 lock keys (the
 *            ratios `…_if_distinct`), the same ten signatures one after the other, and the RAW_N
 *            different ones on every core at once (one worker thread per core) against one
 *            worker alone: what this machine's cores give together
 *   verify   whole-chain verification with every lock signature checked, as users run it: the
 *            `oti verify` command in a process of its own, its peak RSS read from /proc
 *   receipts receipt verification time (this machine's verifier and @noble/ed25519)
 * The whole-chain verification runs BENCH_VERIFY_RUNS times (default 2), with the raw loop
 * before, between and after them (runs + 1 times): each is reported, and the ratios use the
 * medians, so that one raw loop measured in a noisy second does not decide the figure (the
 * loop alone measured 15,885 and 18,466/s in two quiet runs an hour apart); the spread of the
 * raw loops is printed beside them, and the median of all their slices of SLICE verifications
 * (`raw_ed25519_verify_slices_median_per_s`, the ratio `…_if_slices`: a loop slowed for part of
 * its second counts for that part only). Ratios are against the floor measured in the same run.
 * Figures go to bench/results/ledger.json.
 * On a machine shared with other work the rates move with the others' load; the CPU figures
 * (µs of this process's CPU per entry or per verification) move much less, and the *_cpu ratios
 * compare those: for the append, raw LevelDB's CPU per entry over the append's; for the verify,
 * what the rate would be with every core busy (cores × the one-core verification's CPU over
 * the verify's CPU per entry), beside the measured rate and cores busy.
 *
 * Environment: BENCH_APPEND_ENTRIES (default 200000), BENCH_CHAIN_ENTRIES (default 1000000),
 * BENCH_VERIFY_RUNS (default 2);
 * BENCH_PROFILE_DIR: the `oti verify` child also writes V8 CPU profiles there, one per thread
 * (bench/profile-top.ts reads them; its rate is then the profiler's too).
 *
 * bench/ledger/site.ts holds the site and its keys that every phase shares, bench/ledger/raw.ts
 * the raw phase's loops; this file runs the phases and writes the figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import * as ed from '@noble/ed25519';
import { createHash } from 'node:crypto';
import { generateKeyPair, keyPairFromSeed, Signer, toHex, fromHex } from '../ledger/crypto.js';
import { verifyWithOpenssl } from '../ledger/ed25519.js';
import type { SiteTrust } from '../ledger/roster.js';
import { encodeEntry } from '../ledger/entry.js';
import { LedgerStore, STORE_TABLE_OPTIONS } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { receiptFor, verifyReceipt } from '../ledger/receipt.js';
import { writeResults, round, median, peakRssMb, runPinned } from './support.js';
import { processCpuMs, RssSampler } from './measure.js';
import { cpuUs, makeEvents, siteFrom, type Setup } from './ledger/site.js';
import { phaseRaw, verifyLoops, RAW_N } from './ledger/raw.js';

// BENCH_CPUS=1 (or all,1): the same figures with the whole benchmark pinned to one core.
runPinned();

const APPEND_N = Number(process.env['BENCH_APPEND_ENTRIES'] ?? 200_000);
const CHAIN_N = Number(process.env['BENCH_CHAIN_ENTRIES'] ?? 1_000_000);
const VERIFY_RUNS = Number(process.env['BENCH_VERIFY_RUNS'] ?? 2);
if (!Number.isInteger(VERIFY_RUNS) || VERIFY_RUNS < 1) throw new Error('BENCH_VERIFY_RUNS must be a whole number of at least 1');
const LOCKS = 1000;
const IN_FLIGHT = 8192;
const BLOCK = 1024;

/** Appends every event with IN_FLIGHT appends outstanding; the rate, and the CPU of this process per entry. */
async function appendAll(chain: Chain, events: Uint8Array[], preverified: boolean): Promise<{ rate: number; cpuUs: number }> {
  const c0 = cpuUs();
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < events.length) {
      const cose = events[next++]!;
      await chain.append({ kind: 'lock-event', cose }, { preverified });
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { rate: events.length / ((performance.now() - t0) / 1000), cpuUs: (cpuUs() - c0) / events.length };
}

async function phaseFloor(setup: Setup): Promise<Record<string, number | string>> {
  const { locks } = siteFrom(setup);
  const events = makeEvents(locks, 0, APPEND_N);
  const entries = events.map((cose) => encodeEntry({ kind: 'lock-event', cose, time: 1_700_000_000_000 }, 0).bytes);
  const db = new Level<Uint8Array, Uint8Array>(join(setup.dir, 'raw'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const c0 = cpuUs();
  const t0 = performance.now();
  for (let i = 0; i < entries.length; i += BLOCK) {
    const ops = [];
    for (let j = i; j < Math.min(i + BLOCK, entries.length); j++) {
      const k = Buffer.alloc(8);
      k.writeUInt32BE(j, 4);
      ops.push({ type: 'put' as const, key: k, value: entries[j]! });
    }
    await db.batch(ops, { sync: true });
  }
  const rawLevel = entries.length / ((performance.now() - t0) / 1000);
  const rawLevelCpu = (cpuUs() - c0) / entries.length;
  await db.close();
  const signer = new Signer(keyPairFromSeed(fromHex('gw', setup.gatewaySeed)).seed);
  const msg = entries[0]!;
  const t = performance.now();
  const sigs: Uint8Array[] = [];
  for (let i = 0; i < RAW_N; i++) sigs.push(signer.sign(msg));
  const signRate = RAW_N / ((performance.now() - t) / 1000);
  return {
    raw_leveldb_batch_entries_per_s: round(rawLevel, 0),
    raw_leveldb_batch_cpu_us_per_entry: round(rawLevelCpu, 2),
    raw_ed25519_sign_per_s: round(signRate, 0),
    raw_node_crypto_verify_per_s: round(verifyLoops(verifyWithOpenssl, [sigs.map((sig) => ({ key: signer.publicKey, msg, sig }))])[0]!.rate, 0),
    entry_bytes_avg: round(entries.reduce((a, e) => a + e.length, 0) / entries.length, 0),
  };
}

async function phaseAppend(setup: Setup): Promise<Record<string, number | string>> {
  const { trust, gateway, genesis, locks } = siteFrom(setup);
  const store = await LedgerStore.open(join(setup.dir, 'ledger'));
  const pool = new SignaturePool();
  const chain = await Chain.open({ store, trust, gatewayId: 'gw-1', key: gateway, genesis, pool, maxBlockEntries: BLOCK });
  await Promise.all(locks.map((l) => chain.append({ kind: 'roster', signed: l.statement })));
  let made = 0;
  const pre = makeEvents(locks, made, APPEND_N);
  made += APPEND_N;
  const preRate = await appendAll(chain, pre, true);
  const checked = makeEvents(locks, made, APPEND_N);
  made += APPEND_N;
  const checkedRate = await appendAll(chain, checked, false);
  // Grow the chain for the verify phase (not timed).
  while (made < CHAIN_N) {
    const n = Math.min(100_000, CHAIN_N - made);
    await appendAll(chain, makeEvents(locks, made, n), true);
    made += n;
  }
  const size = chain.size;
  await chain.close();
  await pool.close();
  await store.close();
  const rssPeak = peakRssMb();
  // Writing a million entries at full speed leaves LevelDB's compactions behind; a gateway's store
  // catches up between bursts. Let it catch up here, with nothing else running, so that the verify
  // phase measures verification rather than LevelDB compacting beside it (about 6 MB more RSS and
  // some CPU). The store is opened with its own table options: tables written at LevelDB's default
  // size would double what the bounded table cache keeps mapped.
  const t = performance.now();
  const db = new Level<Uint8Array, Uint8Array>(join(setup.dir, 'ledger'), { keyEncoding: 'view', valueEncoding: 'view', ...STORE_TABLE_OPTIONS });
  await db.open();
  // On Node, level's Level is classic-level's ClassicLevel, which has getProperty.
  const native = db as unknown as { getProperty(p: string): string };
  const level0 = native.getProperty('leveldb.num-files-at-level0');
  // Compactions run in LevelDB's background thread; done when its statistics stop changing.
  let last = '';
  for (let waited = 0; waited < 300_000; waited += 1000) {
    const stats = native.getProperty('leveldb.stats');
    if (stats === last) break;
    last = stats;
    await new Promise((r) => setTimeout(r, 1000));
  }
  await db.close();
  return {
    append_preverified_entries_per_s: round(preRate.rate, 0),
    append_preverified_cpu_us_per_entry: round(preRate.cpuUs, 2),
    append_checked_entries_per_s: round(checkedRate.rate, 0),
    append_checked_cpu_us_per_entry: round(checkedRate.cpuUs, 2),
    chain_entries: size,
    append_rss_peak_mb: rssPeak,
    append_level0_files_after: Number(level0),
    append_compactions_settled_s: round((performance.now() - t) / 1000, 1),
  };
}

/**
 * Whole-chain verification as a user runs it: `oti verify --data DIR` in its own process, launched
 * by the CLI's first line, sampled from outside every 50 ms (RSS from /proc, CPU from
 * its stat): what happens in its last 50 ms, as it closes the store and exits, is not seen.
 */
async function verifyWithCli(setup: Setup, trust: SiteTrust): Promise<Record<string, number | string>> {
  writeFileSync(join(setup.dir, 'site.json'), JSON.stringify({ siteId: trust.siteId, siteKeys: trust.siteKeys.map(toHex), gatewayId: 'gw-1' }));
  const cli = fileURLToPath(new URL('../provisioning/cli.js', import.meta.url));
  // Run as an installed `oti` is: the file itself, so that its first line (#!/usr/bin/env -S …)
  // chooses the environment and node options; this node first on the PATH.
  chmodSync(cli, 0o755);
  const launch = readFileSync(cli, 'utf8').split('\n', 1)[0]!;
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };
  const profileDir = process.env['BENCH_PROFILE_DIR'];
  const t0 = performance.now();
  const child = profileDir === undefined
    ? spawn(cli, ['verify', '--data', setup.dir, '--json'], { stdio: ['ignore', 'pipe', 'inherit'], env })
    : spawnProfiled(launch, cli, ['verify', '--data', setup.dir, '--json'], env, profileDir);
  const pid = child.pid;
  if (pid === undefined) throw new Error('oti verify did not start');
  const rss = new RssSampler(50, pid);
  let cpuMs = 0;
  const cpuTimer = setInterval(() => (cpuMs = Math.max(cpuMs, processCpuMs(pid))), 50);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  // 'close': the process has exited and its stdout is read to the end.
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wallS = (performance.now() - t0) / 1000;
  clearInterval(cpuTimer);
  const mem = rss.stop();
  if (code !== 0) throw new Error(`oti verify exited with ${code}: ${out}`);
  const result = JSON.parse(out) as { ok: boolean; chains: { report: { entries: number; lockSignatures: number } }[] };
  const report = result.chains[0]!.report;
  return {
    verify_command: `${launch.slice(2)} oti verify`,
    verify_entries: report.entries,
    verify_lock_signatures: report.lockSignatures,
    verify_entries_per_s: round(report.entries / wallS, 0),
    verify_wall_s: round(wallS, 2),
    verify_cpu_s: round(cpuMs / 1000, 2),
    verify_cpu_cores_busy: round(cpuMs / 1000 / wallS, 2),
    verify_cpu_us_per_entry: round((cpuMs * 1000) / report.entries, 1),
    verify_rss_peak_mb: mem.rss_peak_mb,
    verify_rss_anon_peak_mb: mem.rss_anon_peak_mb,
    verify_rss_file_peak_mb: mem.rss_file_peak_mb,
  };
}

async function phaseVerify(setup: Setup): Promise<Record<string, number | string>> {
  return verifyWithCli(setup, siteFrom(setup).trust);
}

async function phaseReceipts(setup: Setup): Promise<Record<string, number | string>> {
  const { trust, gateway, genesis } = siteFrom(setup);
  // Receipts: build a few, verify each many times with this machine's verifier and with @noble/ed25519.
  const store = await LedgerStore.open(join(setup.dir, 'ledger'));
  const chain = await Chain.open({ store, trust, gatewayId: 'gw-1', key: gateway, genesis });
  const receipts: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) receipts.push(await receiptFor(chain, Math.floor(((i + 0.5) / 20) * chain.size)));
  const R = 1000;
  let t = performance.now();
  for (let i = 0; i < R; i++) verifyReceipt(receipts[i % receipts.length]!, trust);
  const receiptNodeUs = ((performance.now() - t) * 1000) / R;
  ed.hashes.sha512 = (m: Uint8Array) => new Uint8Array(createHash('sha512').update(m).digest());
  const nobleVerify = (pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean => ed.verify(sig, msg, pub);
  const RN = 100;
  t = performance.now();
  for (let i = 0; i < RN; i++) verifyReceipt(receipts[i % receipts.length]!, trust, { ed25519: nobleVerify });
  const receiptNobleUs = ((performance.now() - t) * 1000) / RN;
  await chain.close();
  await store.close();
  return { receipt_verify_us: round(receiptNodeUs, 0), receipt_verify_noble_us: round(receiptNobleUs, 0) };
}

/**
 * The CLI as its first line launches it (`#!/usr/bin/env -S VAR=value … node --flag …`), with
 * V8's CPU profiler on: the profiler's flags cannot go through NODE_OPTIONS, so node is started
 * here with the line's variables and flags.
 */
function spawnProfiled(launch: string, cli: string, args: string[], env: NodeJS.ProcessEnv, dir: string): ReturnType<typeof spawn> & { stdout: NonNullable<ReturnType<typeof spawn>['stdout']> } {
  const words = launch.replace(/^#!\S*env\s+(-S\s+)?/, '').split(/\s+/).filter((w) => w !== '');
  const vars: Record<string, string> = {};
  while (words.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(words[0]!)) {
    const [k, ...v] = words.shift()!.split('=');
    vars[k!] = v.join('=');
  }
  if (words.shift() !== 'node') throw new Error(`cannot read the CLI's first line: ${launch}`);
  const child = spawn(process.execPath, [...words, '--cpu-prof', `--cpu-prof-dir=${dir}`, cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...env, ...vars } });
  return child as ReturnType<typeof spawn> & { stdout: NonNullable<ReturnType<typeof spawn>['stdout']> };
}

/**
 * The whole-chain runs' figures: each run's rate and CPU per entry, and under the usual keys the
 * medians of the numeric figures (peak RSS: the largest).
 */
function verifyMedians(runs: readonly Record<string, number | string>[]): Record<string, number | string> {
  const out: Record<string, number | string> = { verify_runs: runs.length };
  runs.forEach((r, i) => {
    out[`verify_run${i + 1}_entries_per_s`] = r['verify_entries_per_s']!;
    out[`verify_run${i + 1}_cpu_us_per_entry`] = r['verify_cpu_us_per_entry']!;
    out[`verify_run${i + 1}_cpu_cores_busy`] = r['verify_cpu_cores_busy']!;
  });
  for (const [k, v] of Object.entries(runs[0]!)) {
    if (typeof v !== 'number') out[k] = v;
    else if (k.includes('rss')) out[k] = Math.max(...runs.map((r) => Number(r[k])));
    else out[k] = round(median(runs.map((r) => Number(r[k]))), 2);
  }
  return out;
}

function runPhase(phase: string, setupFile: string): Record<string, number | string> {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), phase, setupFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`phase ${phase} failed with status ${r.status}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as Record<string, number | string>;
}

async function main(): Promise<void> {
  const [phase, setupFile] = process.argv.slice(2);
  if (phase !== undefined && setupFile !== undefined) {
    const setup = JSON.parse(readFileSync(setupFile, 'utf8')) as Setup;
    const fn = { floor: phaseFloor, append: phaseAppend, raw: phaseRaw, verify: phaseVerify, receipts: phaseReceipts }[phase];
    if (fn === undefined) throw new Error(`unknown phase ${phase}`);
    console.log(JSON.stringify(await fn(setup)));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'oti-bench-ledger-'));
  try {
    const setup: Setup = { dir, siteSeed: toHex(generateKeyPair().seed), gatewaySeed: toHex(generateKeyPair().seed), lockSeeds: Array.from({ length: LOCKS }, () => toHex(generateKeyPair().seed)) };
    const setupFile = join(dir, 'setup.json');
    writeFileSync(setupFile, JSON.stringify(setup));
    console.log(`ledger benchmark: ${APPEND_N} appends per mode, ${CHAIN_N}-entry chain, ${LOCKS} locks, blocks of up to ${BLOCK}`);
    const floor = runPhase('floor', setupFile);
    console.log('floor   ', floor);
    const append = runPhase('append', setupFile);
    console.log('append  ', append);
    // The raw loop before, between and after the whole-chain runs.
    const raws: Record<string, number | string>[] = [];
    const vers: Record<string, number | string>[] = [];
    for (let i = 0; i <= VERIFY_RUNS; i++) {
      raws.push(runPhase('raw', setupFile));
      console.log(`raw ${i + 1}   `, raws[i]);
      if (i === VERIFY_RUNS) break;
      vers.push(runPhase('verify', setupFile));
      console.log(`verify ${i + 1}`, vers[i]);
    }
    const receipts = runPhase('receipts', setupFile);
    console.log('receipts', receipts);
    const rawRates = raws.map((r) => Number(r['raw_ed25519_verify_per_s']));
    const rawRate = median(rawRates);
    const rawCpu = median(raws.map((r) => Number(r['raw_ed25519_verify_cpu_us'])));
    // Every slice of every raw loop, pooled: a loop slowed for part of its second by other work
    // counts for that part only.
    const slices = raws.flatMap((r) => String(r['raw_ed25519_verify_slices']).split(' ').map(Number));
    const sliceRate = median(slices);
    const entryMsgRates = raws.map((r) => Number(r['raw_ed25519_verify_entry_msg_per_s']));
    const entryMsgSlices = raws.flatMap((r) => String(r['raw_ed25519_verify_entry_msg_slices']).split(' ').map(Number));
    const distinctRate = median(raws.map((r) => Number(r['raw_ed25519_verify_distinct_per_s'])));
    const distinctCpu = median(raws.map((r) => Number(r['raw_ed25519_verify_distinct_cpu_us'])));
    const allCores = median(raws.map((r) => Number(r['raw_ed25519_verify_distinct_all_cores_per_s'])));
    const ver = verifyMedians(vers);
    const verifyRate = Number(ver['verify_entries_per_s']);
    const raw = Number(floor['raw_leveldb_batch_entries_per_s']);
    const figures = {
      ...floor,
      ...append,
      raw_ed25519_verifier: raws[0]!['raw_ed25519_verifier']!,
      raw_ed25519_verify_runs: raws.length,
      ...Object.fromEntries(raws.flatMap((r, i) => [
        [`raw_ed25519_verify_run${i + 1}_per_s`, r['raw_ed25519_verify_per_s']!],
        [`raw_ed25519_verify_run${i + 1}_cpu_us`, r['raw_ed25519_verify_cpu_us']!],
      ])),
      raw_ed25519_verify_per_s: rawRate,
      raw_ed25519_verify_min_per_s: Math.min(...rawRates),
      raw_ed25519_verify_max_per_s: Math.max(...rawRates),
      raw_ed25519_verify_spread_pct: round(((Math.max(...rawRates) - Math.min(...rawRates)) / rawRate) * 100, 1),
      raw_ed25519_verify_cpu_us: rawCpu,
      raw_ed25519_verify_slices_median_per_s: round(sliceRate, 0),
      raw_ed25519_verify_slices_spread_pct: round(((Math.max(...slices) - Math.min(...slices)) / sliceRate) * 100, 1),
      raw_ed25519_verify_entry_msg_per_s: median(entryMsgRates),
      raw_ed25519_verify_entry_msg_spread_pct: round(((Math.max(...entryMsgRates) - Math.min(...entryMsgRates)) / median(entryMsgRates)) * 100, 1),
      raw_ed25519_verify_entry_msg_slices_median_per_s: round(median(entryMsgSlices), 0),
      raw_ed25519_verify_entry_msg_cpu_us: median(raws.map((r) => Number(r['raw_ed25519_verify_entry_msg_cpu_us']))),
      raw_ed25519_verify_distinct_per_s: round(distinctRate, 0),
      raw_ed25519_verify_distinct_cpu_us: round(distinctCpu, 2),
      raw_ed25519_verify_in_turn_per_s: round(median(raws.map((r) => Number(r['raw_ed25519_verify_in_turn_per_s']))), 0),
      raw_ed25519_verify_in_turn_cpu_us: round(median(raws.map((r) => Number(r['raw_ed25519_verify_in_turn_cpu_us']))), 2),
      raw_ed25519_verify_distinct_1_worker_per_s: round(median(raws.map((r) => Number(r['raw_ed25519_verify_distinct_1_worker_per_s']))), 0),
      raw_ed25519_verify_distinct_all_cores_per_s: round(allCores, 0),
      raw_ed25519_verify_cores: availableParallelism(),
      // What this machine's cores give together, the same loop on one worker and on one per core.
      ratio_raw_all_cores_vs_1_worker: round(allCores / median(raws.map((r) => Number(r['raw_ed25519_verify_distinct_1_worker_per_s']))), 2),
      ...ver,
      ...receipts,
      ratio_append_preverified_vs_raw_leveldb: round(Number(append['append_preverified_entries_per_s']) / raw, 2),
      ratio_append_preverified_vs_raw_leveldb_cpu: round(Number(floor['raw_leveldb_batch_cpu_us_per_entry']) / Number(append['append_preverified_cpu_us_per_entry']), 2),
      ratio_append_checked_vs_raw_leveldb: round(Number(append['append_checked_entries_per_s']) / raw, 2),
      ratio_append_checked_vs_raw_verify_1_thread: round(Number(append['append_checked_entries_per_s']) / rawRate, 2),
      ratio_verify_vs_raw_verify_1_thread: round(verifyRate / rawRate, 2),
      // What the figure would have been against the slowest and the fastest raw loop alone.
      ratio_verify_vs_raw_verify_1_thread_if_raw_min: round(verifyRate / Math.min(...rawRates), 2),
      ratio_verify_vs_raw_verify_1_thread_if_raw_max: round(verifyRate / Math.max(...rawRates), 2),
      // Against the pooled slices' median, and against the loop as it was before (the gateway's
      // signature over an entry's bytes: one SHA-512 block more per verification).
      ratio_verify_vs_raw_verify_1_thread_if_slices: round(verifyRate / sliceRate, 2),
      ratio_verify_vs_raw_verify_1_thread_if_entry_msg: round(verifyRate / median(entryMsgRates), 2),
      ratio_verify_vs_raw_verify_1_thread_cpu_if_entry_msg: round((availableParallelism() * median(raws.map((r) => Number(r['raw_ed25519_verify_entry_msg_cpu_us'])))) / Number(ver['verify_cpu_us_per_entry']), 2),
      ratio_verify_vs_raw_verify_1_thread_cpu: round((availableParallelism() * rawCpu) / Number(ver['verify_cpu_us_per_entry']), 2),
      // Against the chain's own signatures, each checked once, as the whole-chain run checks them.
      ratio_verify_vs_raw_verify_1_thread_if_distinct: round(verifyRate / distinctRate, 2),
      ratio_verify_vs_raw_verify_1_thread_cpu_if_distinct: round((availableParallelism() * distinctCpu) / Number(ver['verify_cpu_us_per_entry']), 2),
      // The share of that ceiling the whole-chain verification reaches.
      ratio_verify_vs_raw_all_cores: round(verifyRate / allCores, 2),
      ratio_verify_vs_raw_node_crypto_verify_1_thread: round(verifyRate / Number(floor['raw_node_crypto_verify_per_s']), 2),
      target_append_preverified_met: Number(append['append_preverified_entries_per_s']) >= 50_000,
      target_append_checked_met: Number(append['append_checked_entries_per_s']) >= 15_000,
      target_verify_met: verifyRate >= 25_000,
      target_verify_rss_met: Number(ver['verify_rss_peak_mb']) < 150,
    };
    console.log(`\nraw loop: ${rawRate}/s, median of ${rawRates.length} (${rawRates.join(', ')}; spread ${figures.raw_ed25519_verify_spread_pct} %); whole-chain verify: ${verifyRate}/s, median of ${vers.length}: ${figures.ratio_verify_vs_raw_verify_1_thread}x (${figures.ratio_verify_vs_raw_verify_1_thread_if_raw_max}x-${figures.ratio_verify_vs_raw_verify_1_thread_if_raw_min}x against the fastest and slowest raw loop alone; ${figures.ratio_verify_vs_raw_verify_1_thread_if_slices}x against the median of the loops' ${slices.length} slices, ${sliceRate.toFixed(0)}/s; ${figures.ratio_verify_vs_raw_verify_1_thread_if_entry_msg}x against the loop over an entry's bytes, ${figures.raw_ed25519_verify_entry_msg_per_s}/s; ${figures.ratio_verify_vs_raw_verify_1_thread_if_distinct}x against ${RAW_N} distinct signatures of the chain's, ${figures.raw_ed25519_verify_distinct_per_s}/s, the same ten signatures in turn ${figures.raw_ed25519_verify_in_turn_per_s}/s); the distinct signatures on ${availableParallelism()} core${availableParallelism() === 1 ? '' : 's'} at once: ${figures.raw_ed25519_verify_distinct_all_cores_per_s}/s, ${figures.ratio_raw_all_cores_vs_1_worker}x one worker alone; whole-chain verify ${figures.ratio_verify_vs_raw_all_cores}x that`);
    const path = writeResults('ledger', figures);
    console.log('\nresults:');
    for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(46)} ${String(v)}`);
    console.log(`written to ${path}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
