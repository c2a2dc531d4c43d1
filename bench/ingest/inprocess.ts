/**
 * bench:ingest's in-process phases (floor, offered, max): the pipeline in this process.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { Session } from 'node:inspector/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Signer, verify, type KeyPair } from '../../ledger/crypto.js';
import { coseSign1, parseCoseSign1, sigStructure } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import type { LedgerStore } from '../../ledger/store.js';
import type { Chain } from '../../ledger/chain.js';
import { SignaturePool } from '../../ledger/sigpool.js';
import { InProcessDriver } from '../../drivers/inprocess.js';
import { SimLock } from '../../drivers/simlock.js';
import { Ingest } from '../../gateway/ingest.js';
import { round, percentile, benchChain, median } from '../support.js';
import { cpuSnapshot, cpuSince, GcWindow } from '../measure.js';
import { LOCKS, SECONDS, WINDOW } from './settings.js';

export interface Rig {
  readonly chain: Chain;
  readonly store: LedgerStore;
  readonly pool: SignaturePool;
  readonly ingest: Ingest;
  readonly driver: InProcessDriver;
  readonly locks: SimLock[];
}

export async function rig(dir: string): Promise<Rig> {
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
    const lock = new SimLock({ id: `lock-${i}`, seed: key.seed, resendMs: 30_000, rememberAcks: false, history: 0 });
    driver.connect(lock);
    locks.push(lock);
  }
  return { chain, store, pool, ingest, driver, locks };
}

export async function close(r: Rig): Promise<void> {
  for (const l of r.locks) l.close();
  await r.driver.stop();
  await r.ingest.close();
  await r.chain.close();
  await r.pool.close();
  await r.store.close();
}

/**
 * Measures one phase: `rate` events/s in total (0 = closed loop, which can take at most
 * `ceilingPerS`), for SECONDS.
 */
export async function phase(r: Rig, rate: number, ceilingPerS = 20_000): Promise<{ events_per_s: number; p50_ms: number; p99_ms: number; rss_mb: number; locks_out_of_signed_ahead: number; cpu: Record<string, number | string>; gc: Record<string, number> }> {
  // Sign the phase's events ahead: the locks' signing is not the gateway's work. A lock that runs
  // out signs as it records, on this process's main thread, inside the measured window
  // (locks_out_of_signed_ahead says how many did).
  const expected = (rate === 0 ? ceilingPerS : rate) * SECONDS;
  for (const l of r.locks) l.prepare(Math.ceil((expected * 1.2) / r.locks.length) + WINDOW);
  const latencies: number[] = [];
  // When each event in flight was recorded, in whole µs since `base`: a small integer stored in
  // the Map's own table, where performance.now() was a heap number per event in flight (promoted
  // and marked with the gateway's objects: the benchmark's cost, measured in the same process).
  const base = performance.now();
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
      latencies.push(performance.now() - base - t / 1000);
      acked++;
      if (rate === 0 && measuring) record(l);
    };
    l.on('ack', onAck);
    listeners.push(() => l.off('ack', onAck));
  }
  function record(l: SimLock): void {
    (recordedAt.get(l) as Map<number, number>).set(l.counter, Math.round((performance.now() - base) * 1000));
    l.record();
  }
  let rss = 0;
  const sampler = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 100);
  // BENCH_INPROCESS_PROFILE=FILE.cpuprofile: the main thread's CPU profile of the closed loop's
  // measured window only (signing ahead and set-up left out), for bench/profile-top.ts, and its
  // allocations sampled into FILE.heapprofile.
  const profileTo = rate === 0 ? process.env['BENCH_INPROCESS_PROFILE'] : undefined;
  const session = profileTo !== undefined ? new Session() : undefined;
  if (session !== undefined) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    // Every allocation sampled, young objects included (what the scavenges copy and free); with
    // BENCH_INPROCESS_HELD=1 only what is still alive at the window's end (what the events in
    // flight hold, each object of which the scavenges copy and promote).
    const all = process.env['BENCH_INPROCESS_HELD'] !== '1';
    await session.post('HeapProfiler.startSampling', { samplingInterval: all ? 16 * 1024 : 4 * 1024, includeObjectsCollectedByMajorGC: all, includeObjectsCollectedByMinorGC: all });
  }
  const t0 = performance.now();
  const cpu0 = cpuSnapshot();
  // The main thread's garbage collections over the window (what each event allocates and holds).
  const gcs = new GcWindow();
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
  const snapshotTo = rate === 0 ? process.env['BENCH_INPROCESS_SNAPSHOT'] : undefined;
  if (snapshotTo !== undefined) {
    await sleep((SECONDS * 1000) / 2);
    writeHeapSnapshot(snapshotTo);
    await sleep((SECONDS * 1000) / 2);
  } else await sleep(SECONDS * 1000);
  measuring = false;
  const outOfSignedAhead = r.locks.filter((l) => l.preparedLeft === 0).length;
  clearInterval(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const done = acked;
  // CPU per event acked over the measured window: the whole process, its main thread (the
  // pipeline, and the simulated locks' own work: recording, the codec's encoding, the acks'
  // decoding) and each other thread (the two signature workers first).
  const cpu = cpuSince(cpu0, Math.max(1, done));
  const gc = gcs.stop(Math.max(1, done));
  if (session !== undefined && profileTo !== undefined) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(profileTo, JSON.stringify(profile));
    const { profile: heap } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(`${profileTo.replace(/\.cpuprofile$/, '')}.heapprofile`, JSON.stringify(heap));
    session.disconnect();
  }
  // Drain before the next phase.
  const deadline = Date.now() + 60_000;
  while (r.locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(20);
  clearInterval(sampler);
  for (const off of listeners) off();
  latencies.sort((a, b) => a - b);
  return { events_per_s: Math.round(done / elapsed), p50_ms: round(percentile(latencies, 50), 2), p99_ms: round(percentile(latencies, 99), 2), rss_mb: round(rss / (1024 * 1024), 1), locks_out_of_signed_ahead: outOfSignedAhead, cpu, gc };
}

export async function floor(dir: string): Promise<{ append: number; verify: number }> {
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
  // The median of five passes over the same 10,000 distinct signatures: one pass (half a second)
  // moved by up to 15 % from run to run on the shared machine.
  const rates: number[] = [];
  for (let pass = 0; pass < 5; pass++) {
    const t0 = performance.now();
    for (const x of tasks) verify(x.key, x.msg, x.sig);
    rates.push(tasks.length / ((performance.now() - t0) / 1000));
  }
  const verifyRate = median(rates);
  const t = performance.now();
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