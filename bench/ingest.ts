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
 *
 * Environment: BENCH_LOCKS (default 1000), BENCH_SECONDS (per phase, default 10),
 * BENCH_PTY_LOCKS (default 10), BENCH_PHASES (comma-separated subset of floor,offered,max,process;
 * default all).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import { loadOrCreateIdentity } from '../gateway/identity.js';
import { readKeyFile } from '../ledger/keyfile.js';
import { startGateway, freePort, writeGatewayConfig } from '../test/support/gateway-process.js';
import { writeResults, round, percentile, peakRssMb, benchChain } from './support.js';

const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 1000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const PTY_LOCKS = Number(process.env['BENCH_PTY_LOCKS'] ?? 10);
const WINDOW = 8;
const PHASES = new Set((process.env['BENCH_PHASES'] ?? 'floor,offered,max,process').split(','));

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

/** The real gateway process with PTY_LOCKS locks on ptys at 1,000 events/s in total. */
async function realProcess(dir: string): Promise<Record<string, number>> {
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
  await writeGatewayConfig(config, {
    dataDir,
    broker: { host: '127.0.0.1', port: await freePort() },
    api: { port: apiPort },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { baudRate: 921600 },
    more: { log: { level: 'warn' } },
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
  const latencies: number[] = [];
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
        latencies.push(performance.now() - t);
        at.delete(ctr);
      }
    });
  }
  let rss = 0;
  let anon = 0;
  const sampler = setInterval(() => {
    const r = rssOf();
    rss = Math.max(rss, r.rss);
    anon = Math.max(anon, r.anon);
  }, 100);
  for (const l of locks) l.startAuto(1000 / PTY_LOCKS);
  await sleep(SECONDS * 1000);
  // The gateway's own view of its memory, from its /metrics (prom-client's process metrics).
  const metrics = await fetch(`http://127.0.0.1:${apiPort}/metrics`).then((r) => r.text(), () => '');
  const gauge = (name: string): number => round(Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(metrics)?.[1] ?? NaN) / (1024 * 1024), 1);
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
  latencies.sort((a, b) => a - b);
  return {
    process_1000_ack_p50_ms: round(percentile(latencies, 50), 2),
    process_1000_ack_p99_ms: round(percentile(latencies, 99), 2),
    process_1000_events: latencies.length,
    process_1000_unacked_after_drain: unacked,
    process_1000_rss_peak_mb: round(rss, 1),
    process_1000_rss_anon_peak_mb: round(anon, 1),
    process_1000_heap_used_mb: gauge('oti_nodejs_heap_size_used_bytes'),
    process_1000_heap_total_mb: gauge('oti_nodejs_heap_size_total_bytes'),
    process_1000_external_mb: gauge('oti_nodejs_external_memory_bytes'),
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
  figures['bench_rss_peak_mb'] = peakRssMb();
  const path = writeResults('ingest', figures);
  console.log('\nresults:');
  for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(40)} ${String(v)}`);
  console.log(`written to ${path}`);
  console.log(`targets: max ≥ 15000/s (${figures['max_events_per_s']}), p99 at 1000/s < 25 ms (in-process ${figures['offered_1000_ack_p99_ms']}, real process ${figures['process_1000_ack_p99_ms']}), gateway RSS at 1000/s < 120 MB (${figures['process_1000_rss_peak_mb']})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
