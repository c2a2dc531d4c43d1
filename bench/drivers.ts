/**
 * npm run bench:drivers — the lock path's throughput.
 *
 * codec     serial frames of lock-signed events: decoded (COBS, CRC-32, strict CBOR, COSE) per
 *           second, and decoded + signature-verified per second; against the floor of raw
 *           verification of the same signatures on one thread (the gateway's verifier,
 *           ledger/ed25519.ts: libsodium where it loads, else node:crypto).
 * end2end   simulated locks on real kernel ptys (socat) → serial drivers → ingest pipeline →
 *           durable LevelDB chain (signatures in the worker pool) → acks back over the ptys:
 *           events/s and the ack latency each lock sees (from recording the event to its ack),
 *           p50/p99; against raw durable appends of the same kind of events in the same run.
 * Figures go to bench/results/drivers.json.
 *
 * Environment: BENCH_FRAMES (default 50000), BENCH_LOCKS (default 16 ptys, one lock each),
 * BENCH_SECONDS (default 10), BENCH_RATE (events/s per lock, default 0 = as fast as acks allow).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, Signer, verify } from '../ledger/crypto.js';
import { coseSign1, parseCoseSign1, sigStructure } from '../ledger/cose.js';
import { encodeLockEvent } from '../ledger/lockevent.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { encodeFrame, FrameDecoder } from '../drivers/framing.js';
import { decodeLockMessage, encodeMessage, MESSAGE_MAX_BYTES } from '../drivers/protocol.js';
import { SerialDriver } from '../drivers/serial.js';
import { SerialSimLink } from '../drivers/simlink.js';
import { SimLock } from '../drivers/simlock.js';
import { Ingest } from '../gateway/ingest.js';
import { ptyPair, type PtyPair } from '../drivers/pty.js';
import { writeResults, round, percentile, peakRssMb, benchChain, runPinned } from './support.js';

// BENCH_CPUS=1 (or all,1): the same figures with the whole benchmark pinned to one core.
runPinned();

const FRAMES = Number(process.env['BENCH_FRAMES'] ?? 50_000);
const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 16);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const RATE = Number(process.env['BENCH_RATE'] ?? 0);

function codec(): Record<string, number> {
  const signers = Array.from({ length: 16 }, () => new Signer(generateKeyPair().seed));
  const frames: Uint8Array[] = [];
  for (let i = 0; i < FRAMES; i++) {
    const signer = signers[i % signers.length] as Signer;
    const cose = coseSign1(signer, encodeLockEvent({ lock: `lock-${i % signers.length}`, ctr: i + 1, time: 1_700_000_000_000 + i, type: 'unlocked', cred: Uint8Array.of(1, 2, 3, 4) }));
    frames.push(encodeFrame(encodeMessage({ t: 'event', oldest: i + 1, cose })));
  }
  const keys = new Map(signers.map((s, i) => [`lock-${i}`, s.publicKey]));
  // Feed the byte stream in 4 KiB reads, as a serial port delivers it.
  const stream = Buffer.concat(frames);
  const chunks: Uint8Array[] = [];
  for (let p = 0; p < stream.length; p += 4096) chunks.push(stream.subarray(p, p + 4096));

  const run = (check: boolean): number => {
    const dec = new FrameDecoder(MESSAGE_MAX_BYTES);
    let ok = 0;
    const t0 = performance.now();
    for (const c of chunks) {
      for (const r of dec.push(c)) {
        if (!r.ok) throw new Error(r.code);
        const m = decodeLockMessage(r.body);
        if (m.t !== 'event' || !('cose' in m)) throw new Error('not a signed event');
        if (check) {
          const cose = parseCoseSign1(m.cose);
          if (!verify(keys.get(m.lock) as Uint8Array, sigStructure(cose.payload), cose.signature)) throw new Error('bad signature');
        }
        ok++;
      }
    }
    if (ok !== FRAMES) throw new Error(`decoded ${ok} of ${FRAMES}`);
    return FRAMES / ((performance.now() - t0) / 1000);
  };
  const tasks = frames.map((f, i) => {
    const m = decodeLockMessage(new FrameDecoder(MESSAGE_MAX_BYTES).push(f).map((r) => (r.ok ? r.body : new Uint8Array()))[0] as Uint8Array);
    const cose = parseCoseSign1((m as { cose: Uint8Array }).cose);
    return { key: keys.get(`lock-${i % signers.length}`) as Uint8Array, msg: sigStructure(cose.payload), sig: cose.signature };
  });
  const t0 = performance.now();
  for (const t of tasks) if (!verify(t.key, t.msg, t.sig)) throw new Error('bad signature');
  const rawVerify = FRAMES / ((performance.now() - t0) / 1000);
  run(false); // warm-up
  const decoded = run(false);
  const verified = run(true);
  return {
    frames_decoded_per_s: Math.round(decoded),
    frames_decoded_verified_per_s: Math.round(verified),
    floor_raw_verify_per_s: Math.round(rawVerify),
    frame_bytes: Math.round(stream.length / FRAMES),
    decode_mb_per_s: round((stream.length / (1024 * 1024)) * (decoded / FRAMES), 1),
    ratio_decoded_verified_vs_raw_verify: round(verified / rawVerify, 2),
  };
}

/** Raw durable appends of lock-signed events, pre-verified, as many in flight as the e2e run has. */
async function floorAppend(dir: string): Promise<number> {
  const bc = await benchChain(dir);
  const chain = bc.chain;
  const signers: Signer[] = [];
  for (let i = 0; i < LOCKS; i++) signers.push(new Signer((await bc.enrolLock(`lock-${i}`)).seed));
  const n = 20_000;
  const coses = Array.from({ length: n }, (_, i) => coseSign1(signers[i % LOCKS] as Signer, encodeLockEvent({ lock: `lock-${i % LOCKS}`, ctr: Math.floor(i / LOCKS) + 1, time: Date.now(), type: 'unlocked' })));
  const t0 = performance.now();
  const window = LOCKS * 8;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await chain.append({ kind: 'lock-event', cose: coses[i] as Uint8Array }, { preverified: true });
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  const rate = n / ((performance.now() - t0) / 1000);
  await bc.close();
  return rate;
}

async function endToEnd(dir: string): Promise<Record<string, number>> {
  const pool = new SignaturePool(1);
  const bc = await benchChain(join(dir, 'ledger'), pool);
  const chain = bc.chain;
  const ingest = new Ingest({ chain, pool, queueLimit: 1024 });
  const ptys: PtyPair[] = [];
  const drivers: SerialDriver[] = [];
  const links: SerialSimLink[] = [];
  const locks: SimLock[] = [];
  const latencies: number[] = [];
  for (let i = 0; i < LOCKS; i++) {
    const key = await bc.enrolLock(`lock-${i}`);
    const pty = await ptyPair(dir, `p${i}`);
    ptys.push(pty);
    const driver = new SerialDriver({ path: pty.gateway, gatewayId: 'gw', window: 8, baudRate: 921600 });
    await driver.start();
    ingest.attach(driver);
    drivers.push(driver);
    const lock = new SimLock({ id: `lock-${i}`, seed: key.seed, resendMs: 5000, rememberAcks: false });
    const recordedAt = new Map<number, number>();
    lock.on('ack', (ctr) => {
      const t = recordedAt.get(ctr);
      if (t !== undefined) {
        latencies.push(performance.now() - t);
        recordedAt.delete(ctr);
      }
      // Closed loop: as fast as acks come back, the window kept full.
      if (RATE === 0 && measuring) record(lock, recordedAt);
    });
    (lock as SimLock & { recordedAt?: Map<number, number> }).recordedAt = recordedAt;
    locks.push(lock);
    const link = new SerialSimLink(lock, { path: pty.lock, baudRate: 921600 });
    link.start();
    links.push(link);
  }
  let measuring = false;
  function record(lock: SimLock, at: Map<number, number>): void {
    at.set(lock.counter, performance.now());
    lock.record();
  }
  while (!locks.every((l) => l.connected)) await sleep(10);
  await sleep(200);
  let committed = 0;
  ingest.on('committed', () => committed++);
  const rss: number[] = [];
  const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 250);
  measuring = true;
  const t0 = performance.now();
  for (const l of locks) {
    const at = (l as SimLock & { recordedAt: Map<number, number> }).recordedAt;
    if (RATE > 0) {
      const period = 1000 / RATE;
      const tick = setInterval(() => measuring && record(l, at), period);
      tick.unref();
    } else {
      for (let k = 0; k < 8; k++) record(l, at);
    }
  }
  const startCommitted = committed;
  await sleep(SECONDS * 1000);
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const done = committed - startCommitted;
  clearInterval(sampler);
  // Let the rest drain, then check every recorded event was acked exactly as stored.
  const deadline = Date.now() + 30_000;
  while (locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(50);
  const unacked = locks.reduce((n, l) => n + l.pending, 0);
  for (const l of locks) l.close();
  await Promise.all(links.map((l) => l.close()));
  await Promise.all(drivers.map((d) => d.stop()));
  await ingest.close();
  await bc.close();
  await pool.close();
  await Promise.all(ptys.map((p) => p.kill()));
  latencies.sort((a, b) => a - b);
  return {
    e2e_locks: LOCKS,
    e2e_events_per_s: Math.round(done / elapsed),
    e2e_ack_p50_ms: round(percentile(latencies, 50), 2),
    e2e_ack_p99_ms: round(percentile(latencies, 99), 2),
    e2e_unacked_after_drain: unacked,
    e2e_rss_peak_mb: round(Math.max(...rss) / (1024 * 1024), 1),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'oti-bench-drivers-'));
try {
  console.log(`drivers benchmark: ${FRAMES} frames; ${LOCKS} simulated locks on ptys for ${SECONDS} s (${RATE === 0 ? 'closed loop, window 8' : `${RATE} events/s each`})`);
  const c = codec();
  console.log('codec   ', c);
  const floor = await floorAppend(join(dir, 'floor', 'ledger'));
  const e = await endToEnd(join(dir, 'e2e'));
  console.log('end2end ', e);
  const figures = {
    ...c,
    ...e,
    floor_append_preverified_per_s: Math.round(floor),
    ratio_e2e_vs_raw_append: round((e['e2e_events_per_s'] as number) / floor, 2),
    rss_peak_mb: peakRssMb(),
  };
  const path = writeResults('drivers', figures);
  console.log('\nresults:');
  for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(40)} ${String(v)}`);
  console.log(`written to ${path}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
