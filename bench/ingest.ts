/**
 * npm run bench:ingest — the gateway's sustainable ingest: lock-signed events from many simulated
 * locks to durable acks.
 *
 * floor      raw durable appends of pre-verified events (no protocol, no signature checks) and raw
 *            verification on one thread with the gateway's verifier (libsodium where it loads),
 *            measured in the same run
 * offered    in-process transport (the protocol codec without a wire) → ingest pipeline →
 *            LevelDB chain with signatures checked in the worker pool → acks: achieved rate and
 *            ack latency p50/p99 (from the lock recording the event to the lock holding its ack)
 *            at offered loads of 100, 1,000 and 10,000 events/s across BENCH_LOCKS locks
 * max        the same, closed loop (every lock keeps its window full): sustainable events/s
 * process    the real gateway process (dist/gateway/main.js, broker and notifications included)
 *            with locks on kernel ptys at 1,000 events/s: ack latency p50/p99, the gateway
 *            process's peak RSS (from /proc; goal < 100 MB) and its CPU per event acked (from
 *            /proc: what a smaller or busier machine pays, moving less with others' load than
 *            latency does). Once per entry of BENCH_CPUS: `all` (every core, figures
 *            process_1000_…) or N (the gateway pinned to cores 0..N-1 with taskset, as on a
 *            one-core budget: process_1000_cpusN_…, with ratios to every core)
 * trace      the same run with timestamps on the ack path (bench/ack-trace.ts, loaded into the
 *            gateway with --import): p50/p99 per segment from the lock to its ack, what the
 *            slowest 1 % spent in each, and the event loop's delay (figures trace_1000[_cpusN]_…)
 * stages     the same run sampled with --cpu-prof: the share of the gateway's CPU per stage
 *            (drivers, ingest, verify, ledger, notifications, broker, sync, api, logging, node,
 *            gc, native_threads; bench/cpu-stages.ts says how samples are attributed) and µs per
 *            event, figures stages_1000[_cpusN]_…
 * flood      the real process at 1,000 events/s, after 2 s of warm-up: ack p99 for
 *            BENCH_FLOOD_SECONDS of plain load, then for BENCH_FLOOD_SECONDS while
 *            BENCH_FLOOD_CLIENTS clients (from BENCH_FLOOD_ADDRESSES loopback addresses, in a
 *            child process at nice 19) send MQTT logins with wrong passwords as fast as they are answered;
 *            the ratio of the two p99s (goal ≤ 2) and the CONNACK codes (4 checked and wrong,
 *            5 over the address's budget, 3 over the overall budget or too many waiting).
 *            BENCH_FLOOD_UNGUARDED=1 repeats it with the login limits lifted, to compare
 *
 * Environment: BENCH_LOCKS (default 1000), BENCH_SECONDS (per phase, default 10),
 * BENCH_PTY_LOCKS (default 10), BENCH_PHASES (comma-separated subset of floor,offered,max,process,
 * trace,stages,flood; default all), BENCH_FLOOD_SECONDS (default 5), BENCH_FLOOD_CLIENTS (default
 * 500), BENCH_FLOOD_ADDRESSES (default 250). For the real process:
 *   BENCH_CPUS        comma-separated `all` and core counts (default all); the flood uses the first
 *   BENCH_COMPARE     another build's dist/gateway/main.js (e.g. main's): the process, trace and
 *                     stages phases run it in turn with this build (figures base_…, ratio_…_vs_base)
 *   BENCH_REPEAT      runs of each of those phases (default 1); the figures are the medians
 *   BENCH_GATEWAY_MAIN  runs another build's dist/gateway/main.js instead of this one's
 *   BENCH_GATEWAY_FLAGS  more node options for the gateway (space-separated), to compare V8 settings
 *   BENCH_PROFILE_DIR keeps the stages phase's .cpuprofile files there (bench/profile-top.ts reads them)
 *   BENCH_HEAP_SNAPSHOT_DIR  a heap snapshot of the gateway at the end of the process phase's load
 *   BENCH_ALLOC_PROFILE  samples every allocation of the gateway, young ones included, into
 *                     BENCH_ALLOC_PROFILE.<time>.heapprofile (bench/ack-trace.ts)
 *   BENCH_GATEWAY_STDOUT  appends what the gateway printed besides its log lines (--trace-gc) to this file
 * The in-process phases run in this process: pin them with `taskset -c 0 npm run bench:ingest`.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, Signer, verify, type KeyPair } from '../ledger/crypto.js';
import { coseSign1, parseCoseSign1, sigStructure } from '../ledger/cose.js';
import { encodeLockEvent } from '../ledger/lockevent.js';
import { signStatement } from '../ledger/roster.js';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { InProcessDriver } from '../drivers/inprocess.js';
import { SimLock } from '../drivers/simlock.js';
import { SerialSimLink } from '../drivers/simlink.js';
import { ptyPair, type PtyPair } from '../drivers/pty.js';
import { Ingest } from '../gateway/ingest.js';
import { loadOrCreateIdentity } from '../gateway/config/identity.js';
import { readKeyFile } from '../ledger/keyfile.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { followGateway, freePort, writeGatewayConfig, GATEWAY_NODE_FLAGS } from '../test/support/gateway-process.js';
import { cpuByStage, monotonicUs, threadCpu, threadCpuSince, STAGES } from './cpu-stages.js';
import type { AckTrace } from './ack-trace.js';
import { writeResults, round, percentile, peakRssMb, benchChain } from './support.js';
import { processCpuMs } from './measure.js';
import { floodLogins } from './login-flood.js';
import { addMqttUser } from '../gateway/broker/users.js';

const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 1000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const PTY_LOCKS = Number(process.env['BENCH_PTY_LOCKS'] ?? 10);
const WINDOW = 8;
const PHASES = new Set((process.env['BENCH_PHASES'] ?? 'floor,offered,max,process,trace,stages,flood').split(','));
/** The real process's runs: `all` = every core, N = pinned to cores 0..N-1 (taskset); the flood uses the first. */
const CPUS = (process.env['BENCH_CPUS'] ?? 'all').split(',').map((c) => (c === 'all' ? undefined : Number(c)));
const FLOOD_SECONDS = Number(process.env['BENCH_FLOOD_SECONDS'] ?? 5);
const FLOOD_WARMUP_SECONDS = 2;
const FLOOD_CLIENTS = Number(process.env['BENCH_FLOOD_CLIENTS'] ?? 500);
const FLOOD_ADDRESSES = Number(process.env['BENCH_FLOOD_ADDRESSES'] ?? 250);
/** Login limits lifted as far as the schema allows, for the comparison run (BENCH_FLOOD_UNGUARDED=1). */
const UNGUARDED = { maxConcurrentChecks: 64, maxPendingChecks: 10_000, failuresPerMinutePerAddress: 1_000_000, failuresPerMinute: 1_000_000 };

interface Rig {
  readonly chain: Chain;
  readonly store: LedgerStore;
  readonly pool: SignaturePool;
  readonly ingest: Ingest;
  readonly driver: InProcessDriver;
  readonly locks: SimLock[];
}

async function rig(dir: string): Promise<Rig> {
  const pool = new SignaturePool(2);
  const bc = await benchChain(join(dir, 'ledger'), pool);
  const { chain, store } = bc;
  // The gateway's defaults: queue limit, seal delay, block size.
  const ingest = new Ingest({ chain, pool });
  const driver = new InProcessDriver({ gatewayId: 'gw', window: WINDOW });
  await driver.start();
  ingest.attach(driver);
  const locks: SimLock[] = [];
  for (let i = 0; i < LOCKS; i++) {
    const key = await bc.enrolLock(`lock-${i}`);
    const lock = new SimLock({ id: `lock-${i}`, seed: key.seed, resendMs: 30_000, rememberAcks: false });
    driver.connect(lock);
    locks.push(lock);
  }
  return { chain, store, pool, ingest, driver, locks };
}

async function close(r: Rig): Promise<void> {
  for (const l of r.locks) l.close();
  await r.driver.stop();
  await r.ingest.close();
  await r.chain.close();
  await r.pool.close();
  await r.store.close();
}

/** Measures one phase: `rate` events/s in total (0 = closed loop), for SECONDS. */
async function phase(r: Rig, rate: number): Promise<{ events_per_s: number; p50_ms: number; p99_ms: number; rss_mb: number }> {
  // Sign the phase's events ahead: the locks' signing is not the gateway's work.
  const expected = rate === 0 ? 20_000 * SECONDS : rate * SECONDS;
  for (const l of r.locks) l.prepare(Math.ceil((expected * 1.2) / r.locks.length) + WINDOW);
  const latencies: number[] = [];
  const recordedAt = new Map<SimLock, Map<number, number>>();
  let measuring = true;
  let acked = 0;
  const listeners: Array<() => void> = [];
  for (const l of r.locks) {
    const at = new Map<number, number>();
    recordedAt.set(l, at);
    const onAck = (ctr: number): void => {
      const t = at.get(ctr);
      if (t === undefined) return;
      at.delete(ctr);
      latencies.push(performance.now() - t);
      acked++;
      if (rate === 0 && measuring) record(l);
    };
    l.on('ack', onAck);
    listeners.push(() => l.off('ack', onAck));
  }
  function record(l: SimLock): void {
    (recordedAt.get(l) as Map<number, number>).set(l.counter, performance.now());
    l.record();
  }
  let rss = 0;
  const sampler = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 100);
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  if (rate === 0) {
    for (const l of r.locks) for (let k = 0; k < WINDOW; k++) record(l);
  } else {
    // Spread the offered load evenly over the locks, in 10 ms ticks.
    let sent = 0;
    let next = 0;
    timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * rate);
      for (; sent < due; sent++) record(r.locks[next++ % r.locks.length] as SimLock);
    }, 10);
  }
  await sleep(SECONDS * 1000);
  measuring = false;
  clearInterval(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const done = acked;
  // Drain before the next phase.
  const deadline = Date.now() + 60_000;
  while (r.locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(20);
  clearInterval(sampler);
  for (const off of listeners) off();
  latencies.sort((a, b) => a - b);
  return { events_per_s: Math.round(done / elapsed), p50_ms: round(percentile(latencies, 50), 2), p99_ms: round(percentile(latencies, 99), 2), rss_mb: round(rss / (1024 * 1024), 1) };
}

async function floor(dir: string): Promise<{ append: number; verify: number }> {
  const bc = await benchChain(join(dir, 'floor'));
  const chain = bc.chain;
  const keys: KeyPair[] = [];
  for (let i = 0; i < 100; i++) keys.push(await bc.enrolLock(`lock-${i}`));
  const n = 30_000;
  const signers = keys.map((k) => new Signer(k.seed));
  const coses = Array.from({ length: n }, (_, i) => coseSign1(signers[i % 100] as Signer, encodeLockEvent({ lock: `lock-${i % 100}`, ctr: Math.floor(i / 100) + 1, time: Date.now(), type: 'unlocked' })));
  const tasks = coses.slice(0, 10_000).map((c, i) => {
    const p = parseCoseSign1(c);
    return { key: (keys[i % 100] as KeyPair).publicKey, msg: sigStructure(p.payload), sig: p.signature };
  });
  let t = performance.now();
  for (const x of tasks) verify(x.key, x.msg, x.sig);
  const verifyRate = tasks.length / ((performance.now() - t) / 1000);
  t = performance.now();
  let i = 0;
  await Promise.all(
    Array.from({ length: 2048 }, async () => {
      while (i < n) await chain.append({ kind: 'lock-event', cose: coses[i++] as Uint8Array }, { preverified: true });
    }),
  );
  const appendRate = n / ((performance.now() - t) / 1000);
  await bc.close();
  return { append: appendRate, verify: verifyRate };
}

/** How the real gateway process runs: on every core, or pinned to the first `cpus` (taskset). */
interface ProcessOptions {
  /** Pinned to cores 0..cpus-1 with `taskset`; undefined = every core. */
  readonly cpus?: number;
  /** Sampled with `--cpu-prof` into this folder (written when the gateway exits). */
  readonly profileDir?: string;
  /** Other configuration sections (broker settings for the flood). */
  readonly more?: Record<string, unknown>;
  /** Timestamps on the ack path (bench/ack-trace.ts) written to this file at the gateway's exit. */
  readonly traceFile?: string;
  /** The gateway's main.js: this build's (default) or another's (BENCH_COMPARE). */
  readonly main?: string;
}

/** More node options for the gateway (BENCH_GATEWAY_FLAGS, space-separated), to try V8 settings against the defaults. */
const EXTRA_FLAGS = (process.env['BENCH_GATEWAY_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
/** BENCH_ALLOC_PROFILE: every real-process run samples all allocations (bench/ack-trace.ts) into BENCH_ALLOC_PROFILE.<time>.heapprofile. */
const ALLOC_PROFILE = process.env['BENCH_ALLOC_PROFILE'];
/** BENCH_HEAP_SNAPSHOT_DIR: the process phase takes a heap snapshot of the gateway at the end of its load, into this folder. */
const SNAPSHOT_DIR = process.env['BENCH_HEAP_SNAPSHOT_DIR'];
/** The gateway this benchmark runs: this build's, or BENCH_GATEWAY_MAIN (another build's dist/gateway/main.js). */
const GATEWAY_MAIN = process.env['BENCH_GATEWAY_MAIN'] ?? join(fileURLToPath(new URL('.', import.meta.url)), '..', 'gateway', 'main.js');
/** BENCH_COMPARE: another build's dist/gateway/main.js (e.g. main's), run in turn with this one in the process, trace and stages phases (figures base_…). */
const COMPARE = process.env['BENCH_COMPARE'];
/** BENCH_REPEAT: runs of each real-process phase (alternating with BENCH_COMPARE's); the figures are the medians. */
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 1);
const ACK_TRACE = join(fileURLToPath(new URL('.', import.meta.url)), 'ack-trace.js');

/** The real gateway process with PTY_LOCKS locks on ptys, their acks timed, its RSS sampled. */
interface ProcessRig {
  readonly brokerPort: number;
  readonly apiPort: number;
  readonly pid: number;
  readonly locks: SimLock[];
  /** Ack latency of every event, by the time (performance.now()) it was recorded; `id` is `<lock>:<ctr>`, `abs` the record time in ms since the epoch. */
  readonly acks: { at: number; ms: number; id: string; abs: number }[];
  /** Peak VmRSS and its anonymous part so far, MB. */
  readonly peak: { rss: number; anon: number };
  /** Stops the locks' load, waits for their acks (up to 30 s), stops everything; resolves to the events never acked and the gateway's threads' CPU ms just before it was stopped. */
  stop(): Promise<{ unacked: number; threads: ReturnType<typeof threadCpu> }>;
}

async function processRig(dir: string, o: ProcessOptions = {}): Promise<ProcessRig> {
  const more = o.more ?? {};
  const dataDir = join(dir, 'gw');
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const keys = Array.from({ length: PTY_LOCKS }, () => generateKeyPair());
  {
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment });
    for (const [i, k] of keys.entries()) await chain.append({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op: 'enroll', role: 'lock', id: `pty-lock-${i}`, key: k.publicKey, time: Date.now() }) });
    await chain.close();
    await store.close();
  }
  const ptys: PtyPair[] = [];
  for (let i = 0; i < PTY_LOCKS; i++) ptys.push(await ptyPair(dir, `pty-${i}`));
  const config = join(dir, 'gateway.yaml');
  const apiPort = await freePort();
  const brokerPort = await freePort();
  const { broker: brokerMore, ...rest } = more;
  const broker = { host: '127.0.0.1', port: brokerPort, ...(brokerMore as Record<string, unknown> | undefined) };
  await writeGatewayConfig(config, {
    dataDir,
    broker,
    api: { port: apiPort },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { baudRate: 921600 },
    more: { log: { level: 'warn' }, ...rest },
  });
  // The node options of npm start and the systemd unit, and the bench's own additions.
  const nodeArgs = [
    ...GATEWAY_NODE_FLAGS,
    ...EXTRA_FLAGS,
    ...(SNAPSHOT_DIR !== undefined ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOT_DIR}`] : []),
    ...(o.profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : []),
    ...(o.traceFile !== undefined || ALLOC_PROFILE !== undefined ? ['--import', ACK_TRACE] : []),
    o.main ?? GATEWAY_MAIN,
    '--config',
    config,
  ];
  const cmd = o.cpus !== undefined ? ['taskset', '-c', `0-${o.cpus - 1}`, process.execPath, ...nodeArgs] : [process.execPath, ...nodeArgs];
  // taskset execs node: the child's pid is the gateway's.
  const env = { ...process.env, ...(o.traceFile !== undefined ? { OTI_ACK_TRACE: o.traceFile } : {}), ...(ALLOC_PROFILE !== undefined && o.profileDir === undefined ? { OTI_ALLOC_PROFILE: `${ALLOC_PROFILE}.${Date.now()}.heapprofile` } : {}) };
  const gw = followGateway(spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env }));
  const pid = gw.proc.pid as number;
  /** VmRSS and its anonymous part (heap, stacks, LevelDB buffers; the rest is mapped files), MB. */
  const rssOf = (): { rss: number; anon: number } => {
    try {
      const st = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? 0) / 1024;
      return { rss: kb('VmRSS'), anon: kb('RssAnon') };
    } catch {
      return { rss: 0, anon: 0 };
    }
  };
  // The gateway logs at warn: wait until every pty is open on its side instead of for a log line.
  const locks = keys.map((k, i) => new SimLock({ id: `pty-lock-${i}`, seed: k.seed, resendMs: 5000, rememberAcks: false }));
  const links = locks.map((l, i) => new SerialSimLink(l, { path: (ptys[i] as PtyPair).lock, baudRate: 921600 }));
  for (const l of links) l.start();
  const ready = Date.now() + 30_000;
  while (Date.now() < ready) {
    locks[0]?.record();
    await sleep(200);
    if (locks.every((l) => l.connected) && (locks[0]?.ackCount ?? 0) > 0) break;
  }
  const acks: { at: number; ms: number; id: string; abs: number }[] = [];
  for (const l of locks) {
    const at = new Map<number, number>();
    const orig = l.record.bind(l);
    l.record = (type) => {
      at.set(l.counter, performance.now());
      return orig(type);
    };
    l.on('ack', (ctr) => {
      const t = at.get(ctr);
      if (t !== undefined) {
        acks.push({ at: t, ms: performance.now() - t, id: `${l.id}:${ctr}`, abs: performance.timeOrigin + t });
        at.delete(ctr);
      }
    });
  }
  const peak = { rss: 0, anon: 0 };
  const sampler = setInterval(() => {
    const r = rssOf();
    peak.rss = Math.max(peak.rss, r.rss);
    peak.anon = Math.max(peak.anon, r.anon);
  }, 100);
  for (const l of locks) l.startAuto(1000 / PTY_LOCKS);
  const stop = async (): Promise<{ unacked: number; threads: ReturnType<typeof threadCpu> }> => {
    for (const l of locks) l.stopAuto();
    const deadline = Date.now() + 30_000;
    while (locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(20);
    clearInterval(sampler);
    const unacked = locks.reduce((n, l) => n + l.pending, 0);
    const threads = threadCpu(pid);
    gw.proc.kill('SIGTERM');
    await gw.exited;
    // What the gateway printed besides its log lines (node's --trace-gc, for one).
    const keep = process.env['BENCH_GATEWAY_STDOUT'];
    if (keep !== undefined) appendFileSync(keep, gw.logs.filter((l) => l.level === 30 && typeof l.msg === 'string' && !('time' in l)).map((l) => `${l.msg}\n`).join(''));
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
    await Promise.all(ptys.map((p) => p.kill()));
    return { unacked, threads };
  };
  return { brokerPort, apiPort, pid, locks, acks, peak, stop };
}

/**
 * Where a process's resident memory is, from /proc/PID/smaps, MB: the node binary, LevelDB's
 * memory-mapped tables, other files (shared libraries, native addons), the main malloc heap,
 * and other anonymous memory (V8's heaps, other malloc arenas, thread stacks).
 */
function rssParts(pid: number): Record<string, number> {
  const parts: Record<string, number> = { node_binary: 0, leveldb_tables: 0, other_files: 0, malloc_heap: 0, anonymous: 0 };
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return {};
  }
  let kind = 'anonymous';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head !== null) {
      const path = head[1] ?? '';
      kind = path === '[heap]' ? 'malloc_heap' : path.endsWith('.ldb') ? 'leveldb_tables' : path === process.execPath || /\/node$/.test(path) ? 'node_binary' : path.startsWith('/') ? 'other_files' : 'anonymous';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) parts[kind] = (parts[kind] ?? 0) + Number(rss[1]) / 1024;
  }
  for (const k of Object.keys(parts)) parts[k] = round(parts[k] as number, 1);
  return parts;
}

/** p99 of the ack latencies of events recorded in [from, to). */
function p99Between(acks: readonly { at: number; ms: number }[], from: number, to: number): { p99: number; n: number } {
  const ms = acks.filter((a) => a.at >= from && a.at < to).map((a) => a.ms).sort((a, b) => a - b);
  return { p99: round(percentile(ms, 99), 2), n: ms.length };
}

/**
 * The real gateway process at 1,000 events/s in total, on every core or pinned (`cpus`); figures
 * named `prefix`_…. With `profile`, the run is sampled with --cpu-prof and reports the CPU per
 * stage instead of latency figures (the profiler's own cost would be in them).
 */
async function realProcess(dir: string, prefix: string, o: { cpus?: number; profile?: boolean; main?: string } = {}): Promise<Record<string, number>> {
  // BENCH_PROFILE_DIR keeps the profiles (one folder per run) for a closer look, e.g. in Chrome's DevTools.
  const keep = process.env['BENCH_PROFILE_DIR'];
  const profileDir = o.profile === true ? join(keep !== undefined ? keep : dir, keep !== undefined ? `${prefix}-${Date.now()}` : 'profile') : undefined;
  if (profileDir !== undefined) await mkdir(profileDir, { recursive: true });
  const rig = await processRig(dir, { ...(o.cpus !== undefined ? { cpus: o.cpus } : {}), ...(o.main !== undefined ? { main: o.main } : {}), ...(profileDir !== undefined ? { profileDir } : {}) });
  const cpu0 = processCpuMs(rig.pid);
  const threads0 = threadCpu(rig.pid);
  const mono0 = monotonicUs();
  const events0 = rig.acks.length;
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const cpuMs = processCpuMs(rig.pid) - cpu0;
  const threads = threadCpuSince(threads0, threadCpu(rig.pid));
  const mono1 = monotonicUs();
  const wallMs = performance.now() - t0;
  const events = rig.acks.length - events0;
  // The gateway's own view of its memory, from its /metrics (prom-client's process metrics).
  const metrics = await fetch(`http://127.0.0.1:${rig.apiPort}/metrics`).then((r) => r.text(), () => '');
  const gauge = (name: string): number => round(Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(metrics)?.[1] ?? NaN) / (1024 * 1024), 1);
  const parts = rssParts(rig.pid);
  if (SNAPSHOT_DIR !== undefined && profileDir === undefined) {
    // Written synchronously by the gateway (it stalls meanwhile): wait for the file to be complete.
    process.kill(rig.pid, 'SIGUSR2');
    await sleep(5000);
  }
  const { unacked } = await rig.stop();
  const out: Record<string, number> = {};
  if (profileDir !== undefined) {
    // Per stage: share of the gateway's CPU while under load (start-up left out), and µs per event acked meanwhile.
    const stages = cpuByStage(profileDir, rig.pid, threads, [mono0, mono1]);
    let total = 0;
    for (const ms of stages.values()) total += ms;
    const acked = events;
    for (const s of STAGES) {
      const ms = stages.get(s) ?? 0;
      out[`${prefix}_cpu_share_${s}`] = round(ms / total, 3);
      out[`${prefix}_cpu_us_per_event_${s}`] = round((ms * 1000) / acked, 1);
    }
    out[`${prefix}_cpu_us_per_event_total`] = round((total * 1000) / acked, 1);
    // The threads that run no JavaScript, by name (LevelDB's compaction thread, libuv's pool, V8's helpers).
    for (const [tid, t] of [...threads].sort((x, y) => x[0] - y[0])) if (t.ms > 0) console.log(`  thread ${tid} ${t.name.padEnd(16)} ${(t.ms / 1000).toFixed(2)} s CPU, ${((t.ms * 1000) / acked).toFixed(1)} µs/event`);
    return out;
  }
  const latencies = rig.acks.map((a) => a.ms).sort((a, b) => a - b);
  Object.assign(out, {
    [`${prefix}_ack_p50_ms`]: round(percentile(latencies, 50), 2),
    [`${prefix}_ack_p99_ms`]: round(percentile(latencies, 99), 2),
    [`${prefix}_ack_max_ms`]: round(latencies[latencies.length - 1] ?? NaN, 2),
    [`${prefix}_events`]: latencies.length,
    [`${prefix}_unacked_after_drain`]: unacked,
    [`${prefix}_cpu_us_per_event`]: round((cpuMs * 1000) / Math.max(1, events), 1),
    [`${prefix}_cpu_cores_busy`]: round(cpuMs / wallMs, 3),
    [`${prefix}_rss_peak_mb`]: round(rig.peak.rss, 1),
    [`${prefix}_rss_anon_peak_mb`]: round(rig.peak.anon, 1),
    [`${prefix}_heap_used_mb`]: gauge('oti_nodejs_heap_size_used_bytes'),
    [`${prefix}_heap_total_mb`]: gauge('oti_nodejs_heap_size_total_bytes'),
    [`${prefix}_external_mb`]: gauge('oti_nodejs_external_memory_bytes'),
    ...Object.fromEntries(Object.entries(parts).map(([k, v]) => [`${prefix}_rss_end_${k}_mb`, v])),
  });
  return out;
}

/**
 * The real gateway process at 1,000 events/s with timestamps on its ack path (bench/ack-trace.ts):
 * where an event's time goes, as p50 and p99 of each segment, and the mean of each segment over
 * the slowest 1 % of events (what the p99 is made of). Segments: lock → decoded (the lock's
 * window, the pty, the driver's framing and decoding), decoded → taken (the driver's queue),
 * taken → admitted (signature check, the lock's order), admitted → durable (group commit: seal
 * delay, the block's LevelDB write with sync), durable → lock has the ack (ack encoding, the pty,
 * this process).
 */
async function traceProcess(dir: string, prefix: string, o: { cpus?: number; main?: string } = {}): Promise<Record<string, number>> {
  const traceFile = join(dir, 'ack-trace.json');
  await mkdir(dir, { recursive: true });
  const rig = await processRig(dir, { ...o, traceFile });
  const from = rig.acks.length;
  await sleep(SECONDS * 1000);
  await rig.stop();
  const trace = JSON.parse(readFileSync(traceFile, 'utf8')) as AckTrace;
  const names = ['lock_to_decoded', 'decoded_to_taken', 'taken_to_admitted', 'admitted_to_durable', 'durable_to_lock_acked'] as const;
  const rows: number[][] = [];
  for (const a of rig.acks.slice(from)) {
    const t = trace.events[a.id];
    if (t === undefined || t.some((x) => x === 0)) continue;
    const [decoded, taken, admitted, durable] = t;
    rows.push([decoded - a.abs, taken - decoded, admitted - taken, durable - admitted, a.abs + a.ms - durable, a.ms]);
  }
  const out: Record<string, number> = { [`${prefix}_events_traced`]: rows.length };
  const total = rows.map((r) => r[5] as number).sort((x, y) => x - y);
  out[`${prefix}_ack_p50_ms`] = round(percentile(total, 50), 2);
  out[`${prefix}_ack_p99_ms`] = round(percentile(total, 99), 2);
  const slowest = [...rows].sort((x, y) => (y[5] as number) - (x[5] as number)).slice(0, Math.max(1, Math.floor(rows.length / 100)));
  names.forEach((n, i) => {
    const col = rows.map((r) => r[i] as number).sort((x, y) => x - y);
    out[`${prefix}_${n}_p50_ms`] = round(percentile(col, 50), 2);
    out[`${prefix}_${n}_p99_ms`] = round(percentile(col, 99), 2);
    out[`${prefix}_${n}_slowest1pct_mean_ms`] = round(slowest.reduce((m, r) => m + (r[i] as number), 0) / slowest.length, 2);
  });
  out[`${prefix}_event_loop_delay_p99_ms`] = round(trace.loop.p99, 2);
  out[`${prefix}_event_loop_delay_max_ms`] = round(trace.loop.max, 2);
  out[`${prefix}_event_loop_stalls_over_10ms`] = trace.loop.over10ms;
  return out;
}

/**
 * The real gateway process at 1,000 events/s: FLOOD_SECONDS of plain load, then FLOOD_SECONDS
 * with FLOOD_CLIENTS clients sending CONNECTs with a wrong password for a user of its users file
 * as fast as they are answered, from FLOOD_ADDRESSES loopback source addresses. `prefix` names
 * the figures; `broker` adds broker settings (the unguarded run lifts the login limits).
 */
async function loginFlood(dir: string, prefix: string, broker: Record<string, unknown> = {}): Promise<Record<string, number>> {
  await mkdir(join(dir, 'gw'), { recursive: true, mode: 0o700 });
  await addMqttUser(join(dir, 'gw', 'mqtt-users.json'), 'bench-app', 'app', 'the-right-password');
  const rig = await processRig(dir, { more: { broker }, ...(CPUS[0] !== undefined ? { cpus: CPUS[0] } : {}) });
  // The first seconds after start-up (JIT, first compactions) are left out of both windows.
  await sleep(FLOOD_WARMUP_SECONDS * 1000);
  const t0 = performance.now();
  await sleep(FLOOD_SECONDS * 1000);
  const t1 = performance.now();
  const flood = floodLogins(rig.brokerPort, 'bench-app', FLOOD_CLIENTS, FLOOD_ADDRESSES);
  await sleep(FLOOD_SECONDS * 1000);
  const t2 = performance.now();
  const answers = await flood.stop();
  const { unacked } = await rig.stop();
  const quiet = p99Between(rig.acks, t0, t1);
  const loud = p99Between(rig.acks, t1, t2);
  const attempts = Object.values(answers).reduce((a, b) => a + b, 0);
  return {
    [`${prefix}_ack_p99_ms_without`]: quiet.p99,
    [`${prefix}_ack_p99_ms_during`]: loud.p99,
    [`${prefix}_ack_p99_ratio`]: round(loud.p99 / quiet.p99, 2),
    [`${prefix}_events_during`]: loud.n,
    [`${prefix}_login_attempts_per_s`]: Math.round(attempts / FLOOD_SECONDS),
    [`${prefix}_connack_4_checked`]: answers[4] ?? 0,
    [`${prefix}_connack_5_rate_limited`]: answers[5] ?? 0,
    [`${prefix}_connack_3_unavailable`]: answers[3] ?? 0,
    [`${prefix}_unanswered`]: answers[-1] ?? 0,
    [`${prefix}_unacked_after_drain`]: unacked,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : round(((s[m - 1] as number) + (s[m] as number)) / 2, 2);
}

const dir = mkdtempSync(join(tmpdir(), 'oti-bench-ingest-'));
try {
  console.log(`ingest benchmark: ${LOCKS} in-process locks, ${SECONDS} s per phase; ${PTY_LOCKS} pty locks against the real gateway process`);
  const figures: Record<string, number> = {};
  let f: { append: number; verify: number } | undefined;
  if (PHASES.has('floor')) {
    f = await floor(dir);
    console.log('floor   ', { append: Math.round(f.append), verify: Math.round(f.verify) });
    figures['floor_append_preverified_per_s'] = Math.round(f.append);
    figures['floor_raw_verify_per_s'] = Math.round(f.verify);
  }
  if (PHASES.has('offered') || PHASES.has('max')) {
    const r = await rig(join(dir, 'inproc'));
    for (const load of PHASES.has('offered') ? [100, 1000, 10_000] : []) {
      const p = await phase(r, load);
      console.log(`offered ${load}/s`, p);
      figures[`offered_${load}_events_per_s`] = p.events_per_s;
      figures[`offered_${load}_ack_p50_ms`] = p.p50_ms;
      figures[`offered_${load}_ack_p99_ms`] = p.p99_ms;
      figures[`offered_${load}_rss_mb`] = p.rss_mb;
    }
    if (PHASES.has('max')) {
      const max = await phase(r, 0);
      console.log('max (closed loop)', max);
      figures['max_events_per_s'] = max.events_per_s;
      figures['max_ack_p50_ms'] = max.p50_ms;
      figures['max_ack_p99_ms'] = max.p99_ms;
      if (f !== undefined) {
        figures['ratio_max_vs_raw_append'] = round(max.events_per_s / f.append, 2);
        figures['ratio_max_vs_raw_verify_one_core'] = round(max.events_per_s / f.verify, 2);
      }
    }
    await close(r);
  }
  // The real process: each phase REPEAT times, in turn with the BENCH_COMPARE build when given; medians.
  const variants: Array<{ tag: string; main?: string }> = [...(COMPARE !== undefined ? [{ tag: 'base_', main: COMPARE }] : []), { tag: '' }];
  for (const cpus of PHASES.has('process') || PHASES.has('stages') || PHASES.has('trace') ? CPUS : []) {
    const name = cpus === undefined ? 'process_1000' : `process_1000_cpus${cpus}`;
    const where = cpus === undefined ? 'every core' : `pinned to ${cpus} core(s)`;
    const runs = new Map<string, Record<string, number>[]>();
    for (let r = 0; r < REPEAT; r++) {
      for (const v of variants) {
        const o = { ...(cpus !== undefined ? { cpus } : {}), ...(v.main !== undefined ? { main: v.main } : {}) };
        const what = `${v.tag === '' ? 'this build' : `BENCH_COMPARE ${v.main}`}, run ${r + 1}/${REPEAT}`;
        const add = (p: Record<string, number>): void => {
          const k = v.tag;
          runs.set(k, [...(runs.get(k) ?? []), p]);
        };
        const figs: Record<string, number> = {};
        if (PHASES.has('process')) {
          const p = await realProcess(join(dir, `${v.tag}${name}-${r}`), name, o);
          console.log(`real process at 1000/s, ${where} (${what})`, p);
          Object.assign(figs, p);
        }
        if (PHASES.has('trace')) {
          const tr = name.replace('process_', 'trace_');
          const p = await traceProcess(join(dir, `${v.tag}${tr}-${r}`), tr, o);
          console.log(`real process at 1000/s, ${where}, ack path (bench/ack-trace.js) (${what})`, p);
          Object.assign(figs, p);
        }
        if (PHASES.has('stages')) {
          const st = name.replace('process_', 'stages_');
          const p = await realProcess(join(dir, `${v.tag}${st}-${r}`), st, { ...o, profile: true });
          console.log(`real process at 1000/s, ${where}, CPU per stage (--cpu-prof) (${what})`);
          for (const x of STAGES) console.log(`  ${x.padEnd(15)} ${(100 * (p[`${st}_cpu_share_${x}`] ?? 0)).toFixed(1).padStart(5)} %  ${String(p[`${st}_cpu_us_per_event_${x}`]).padStart(7)} µs/event`);
          console.log(`  ${'total'.padEnd(15)} ${'100.0'.padStart(5)} %  ${String(p[`${st}_cpu_us_per_event_total`]).padStart(7)} µs/event`);
          Object.assign(figs, p);
        }
        add(figs);
      }
    }
    for (const [tag, list] of runs) {
      for (const k of Object.keys(list[0] ?? {})) figures[`${tag}${k}`] = median(list.map((f) => f[k] as number));
      if (REPEAT > 1) figures[`${tag}${name}_runs`] = list.length;
    }
  }
  // This build against BENCH_COMPARE's, measured in turn in this run: ratios of the medians.
  if (COMPARE !== undefined) {
    for (const k of Object.keys(figures)) {
      if (k.startsWith('base_') || figures[`base_${k}`] === undefined) continue;
      if (!/(_p50_ms|_p99_ms|_rss_peak_mb|_rss_anon_peak_mb|_cpu_us_per_event|_cpu_us_per_event_total|_heap_used_mb|_heap_total_mb)$/.test(k)) continue;
      figures[`ratio_${k}_vs_base`] = round((figures[k] as number) / (figures[`base_${k}`] as number), 2);
    }
  }
  // Ratios against baselines measured in this run: the in-process pipeline, and every core.
  const inproc = figures['offered_1000_ack_p99_ms'];
  for (const cpus of CPUS) {
    const name = cpus === undefined ? 'process_1000' : `process_1000_cpus${cpus}`;
    const p99 = figures[`${name}_ack_p99_ms`];
    if (p99 === undefined) continue;
    if (inproc !== undefined) figures[`ratio_${name}_p99_vs_inprocess`] = round(p99 / inproc, 2);
    if (cpus !== undefined && figures['process_1000_ack_p99_ms'] !== undefined) {
      figures[`ratio_${name}_p99_vs_all_cores`] = round(p99 / (figures['process_1000_ack_p99_ms'] as number), 2);
      figures[`ratio_${name}_cpu_per_event_vs_all_cores`] = round((figures[`${name}_cpu_us_per_event`] as number) / (figures['process_1000_cpu_us_per_event'] as number), 2);
    }
  }
  if (PHASES.has('flood')) {
    const p = await loginFlood(join(dir, 'flood'), 'login_flood');
    console.log('failed-login flood, default limits', p);
    Object.assign(figures, p);
    if (process.env['BENCH_FLOOD_UNGUARDED'] === '1') {
      const u = await loginFlood(join(dir, 'flood-unguarded'), 'login_flood_unguarded', { login: UNGUARDED });
      console.log('failed-login flood, limits lifted', u);
      Object.assign(figures, u);
    }
  }
  figures['bench_rss_peak_mb'] = peakRssMb();
  const path = writeResults('ingest', figures);
  console.log('\nresults:');
  for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(40)} ${String(v)}`);
  console.log(`written to ${path}`);
  if (figures['login_flood_ack_p99_ratio'] !== undefined) console.log(`failed-login flood: ack p99 ${figures['login_flood_ack_p99_ms_during']} ms during vs ${figures['login_flood_ack_p99_ms_without']} ms without = ${figures['login_flood_ack_p99_ratio']}× (goal ≤ 2×)`);
  console.log(`targets: max ≥ 15000/s (${figures['max_events_per_s']}), p99 at 1000/s < 25 ms (in-process ${figures['offered_1000_ack_p99_ms']}, real process ${figures['process_1000_ack_p99_ms']}), gateway RSS at 1000/s < 100 MB (${figures['process_1000_rss_peak_mb']})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
