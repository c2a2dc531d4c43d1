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
 *            with locks on kernel ptys at 1,000 events/s: ack latency p50/p99 and the gateway
 *            process's peak RSS (from /proc), the figure the 120 MB target is about
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
 * flood; default all), BENCH_FLOOD_SECONDS (default 5), BENCH_FLOOD_CLIENTS (default 500),
 * BENCH_FLOOD_ADDRESSES (default 250).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import { startGateway, freePort, writeGatewayConfig } from '../test/support/gateway-process.js';
import { writeResults, round, percentile, peakRssMb, benchChain } from './support.js';
import { floodLogins } from './login-flood.js';
import { addMqttUser } from '../gateway/broker/users.js';

const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 1000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const PTY_LOCKS = Number(process.env['BENCH_PTY_LOCKS'] ?? 10);
const WINDOW = 8;
const PHASES = new Set((process.env['BENCH_PHASES'] ?? 'floor,offered,max,process,flood').split(','));
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

/** The real gateway process with PTY_LOCKS locks on ptys, their acks timed, its RSS sampled. */
interface ProcessRig {
  readonly brokerPort: number;
  readonly apiPort: number;
  readonly locks: SimLock[];
  /** Ack latency of every event, by the time (performance.now()) it was recorded. */
  readonly acks: { at: number; ms: number }[];
  /** Peak VmRSS and its anonymous part so far, MB. */
  readonly peak: { rss: number; anon: number };
  /** Stops the locks' load, waits for their acks (up to 30 s), stops everything; resolves to the events never acked. */
  stop(): Promise<number>;
}

async function processRig(dir: string, more: Record<string, unknown> = {}): Promise<ProcessRig> {
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
  const gw = startGateway(['--config', config]);
  /** VmRSS and its anonymous part (heap, stacks, LevelDB buffers; the rest is mapped files), MB. */
  const rssOf = (): { rss: number; anon: number } => {
    try {
      const st = readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8');
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
  const acks: { at: number; ms: number }[] = [];
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
        acks.push({ at: t, ms: performance.now() - t });
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
  const stop = async (): Promise<number> => {
    for (const l of locks) l.stopAuto();
    const deadline = Date.now() + 30_000;
    while (locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(20);
    clearInterval(sampler);
    const unacked = locks.reduce((n, l) => n + l.pending, 0);
    gw.proc.kill('SIGTERM');
    await gw.exited;
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
    await Promise.all(ptys.map((p) => p.kill()));
    return unacked;
  };
  return { brokerPort, apiPort, locks, acks, peak, stop };
}

/** p99 of the ack latencies of events recorded in [from, to). */
function p99Between(acks: readonly { at: number; ms: number }[], from: number, to: number): { p99: number; n: number } {
  const ms = acks.filter((a) => a.at >= from && a.at < to).map((a) => a.ms).sort((a, b) => a - b);
  return { p99: round(percentile(ms, 99), 2), n: ms.length };
}

/** The real gateway process at 1,000 events/s in total. */
async function realProcess(dir: string): Promise<Record<string, number>> {
  const rig = await processRig(dir);
  await sleep(SECONDS * 1000);
  // The gateway's own view of its memory, from its /metrics (prom-client's process metrics).
  const metrics = await fetch(`http://127.0.0.1:${rig.apiPort}/metrics`).then((r) => r.text(), () => '');
  const gauge = (name: string): number => round(Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(metrics)?.[1] ?? NaN) / (1024 * 1024), 1);
  const unacked = await rig.stop();
  const latencies = rig.acks.map((a) => a.ms).sort((a, b) => a - b);
  return {
    process_1000_ack_p50_ms: round(percentile(latencies, 50), 2),
    process_1000_ack_p99_ms: round(percentile(latencies, 99), 2),
    process_1000_events: latencies.length,
    process_1000_unacked_after_drain: unacked,
    process_1000_rss_peak_mb: round(rig.peak.rss, 1),
    process_1000_rss_anon_peak_mb: round(rig.peak.anon, 1),
    process_1000_heap_used_mb: gauge('oti_nodejs_heap_size_used_bytes'),
    process_1000_heap_total_mb: gauge('oti_nodejs_heap_size_total_bytes'),
    process_1000_external_mb: gauge('oti_nodejs_external_memory_bytes'),
  };
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
  const rig = await processRig(dir, { broker });
  // The first seconds after start-up (JIT, first compactions) are left out of both windows.
  await sleep(FLOOD_WARMUP_SECONDS * 1000);
  const t0 = performance.now();
  await sleep(FLOOD_SECONDS * 1000);
  const t1 = performance.now();
  const flood = floodLogins(rig.brokerPort, 'bench-app', FLOOD_CLIENTS, FLOOD_ADDRESSES);
  await sleep(FLOOD_SECONDS * 1000);
  const t2 = performance.now();
  const answers = await flood.stop();
  const unacked = await rig.stop();
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
  if (PHASES.has('process')) {
    const p = await realProcess(join(dir, 'process'));
    console.log('real process at 1000/s', p);
    Object.assign(figures, p);
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
  console.log(`targets: max ≥ 15000/s (${figures['max_events_per_s']}), p99 at 1000/s < 25 ms (in-process ${figures['offered_1000_ack_p99_ms']}, real process ${figures['process_1000_ack_p99_ms']}), gateway RSS at 1000/s < 120 MB (${figures['process_1000_rss_peak_mb']})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
