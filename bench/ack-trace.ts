/**
 * Timestamps on the ack path of the real gateway process, for bench:ingest's `trace` phase:
 * loaded into the gateway with `node --import dist/bench/ack-trace.js` (nothing of it is in the
 * gateway itself). It wraps, on their prototypes, the serial driver's hand-out of a decoded
 * event, the pipeline's taking of an event, its admission to the chain (signature checked, the
 * lock's order kept) and its ack once durable, and records for each event the time of each
 * (ms since the epoch with µs resolution: `performance.timeOrigin + performance.now()`, which
 * the benchmark's own process reads the same way). It also samples the event loop's delay. At
 * exit it writes them as JSON to $OTI_ACK_TRACE.
 *
 * With $OTI_ALLOC_PROFILE it also samples every allocation, including the objects that die
 * young (which `--heap-prof` leaves out), and writes the profile there at exit: what the
 * young-generation collections are paid for.
 */
import { openSync, readSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { SerialDriver } from '../drivers/serial.js';
import { Ingest } from '../gateway/ingest.js';
import { IngestAnswers } from '../gateway/ingest-answers.js';
import type { ReceivedEvent } from '../drivers/driver.js';

/** What one event went through, by `<lock>:<ctr>`: decoded, taken, admitted, durable (ack written at once after). */
export interface AckTrace {
  readonly events: Record<string, [decoded: number, taken: number, admitted: number, durable: number]>;
  /**
   * Event loop delay over the whole run, ms; `stalls`: each turn of more than STALL_MS, as [start
   * (ms since the epoch), length, main thread's time on a CPU meanwhile, its time waiting for a CPU
   * (both ms, from /proc/thread-self/schedstat)]: a stall spent waiting is the machine's, one spent
   * running is the gateway's own work.
   */
  readonly loop: { readonly p50: number; readonly p99: number; readonly max: number; readonly over10ms: number; readonly stalls: [at: number, ms: number, cpuMs: number, waitMs: number][] };
  /** Garbage collections of 10 ms or more: [start (ms since the epoch), length in ms, kind (perf_hooks' NODE_PERFORMANCE_GC_*)]. */
  readonly gc: [at: number, ms: number, kind: number][];
}

/** A turn of the event loop longer than this is a stall, recorded with what the thread did meanwhile. */
const STALL_MS = 40;

/** This (the main) thread's time on a CPU and waiting on a run queue so far, ms; zeros where /proc has no schedstat. */
const schedstat = ((): (() => [number, number]) => {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return () => [0, 0];
  }
  const buf = Buffer.alloc(128);
  return () => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const [run, wait] = buf.toString('latin1', 0, n).split(' ');
    return [Number(run) / 1e6, Number(wait) / 1e6];
  };
})();

const out = process.env['OTI_ACK_TRACE'];
if (out !== undefined) {
  const now = (): number => performance.timeOrigin + performance.now();
  const events = new Map<string, [number, number, number, number]>();
  const slot = (ev: ReceivedEvent): [number, number, number, number] => {
    const k = `${ev.lock}:${ev.ctr}`;
    let s = events.get(k);
    if (s === undefined) events.set(k, (s = [0, 0, 0, 0]));
    return s;
  };
  type Method = (this: unknown, ...a: never[]) => unknown;
  const wrap = (proto: object, name: string, at: 0 | 1 | 2 | 3, argIndex: number): void => {
    const p = proto as Record<string, Method>;
    const orig = p[name];
    if (orig === undefined) throw new Error(`ack-trace: no ${name} to wrap`);
    p[name] = function (this: unknown, ...a: never[]) {
      const ev = a[argIndex] as unknown;
      // admit() is given a waiting entry holding the event.
      const e = (typeof ev === 'object' && ev !== null && 'ev' in ev ? (ev as { ev: ReceivedEvent }).ev : ev) as ReceivedEvent;
      const s = slot(e);
      if (s[at] === 0) s[at] = now();
      return orig.apply(this, a);
    };
  };
  wrap(SerialDriver.prototype, 'handOut', 0, 0);
  wrap(Ingest.prototype, 'handle', 1, 1);
  wrap(Ingest.prototype, 'admit', 2, 0);
  wrap(IngestAnswers.prototype, 'ack', 3, 1);
  const gc: AckTrace['gc'] = [];
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.duration >= 10) gc.push([performance.timeOrigin + e.startTime, e.duration, ((e as { detail?: { kind?: number } }).detail?.kind ?? 0)]);
  });
  gcs.observe({ entryTypes: ['gc'] });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let over10 = 0;
  let last = now();
  const stalls: AckTrace['loop']['stalls'] = [];
  let lastSched = schedstat();
  const tick = setInterval(() => {
    const t = now();
    const sched = schedstat();
    if (t - last > 15) over10++;
    if (t - last > STALL_MS) stalls.push([last, t - last, sched[0] - lastSched[0], sched[1] - lastSched[1]]);
    last = t;
    lastSched = sched;
  }, 5);
  tick.unref();
  process.on('exit', () => {
    h.disable();
    const trace: AckTrace = {
      events: Object.fromEntries(events),
      loop: { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, over10ms: over10, stalls },
      gc,
    };
    writeFileSync(out, JSON.stringify(trace));
  });
}

const allocOut = process.env['OTI_ALLOC_PROFILE'];
if (allocOut !== undefined) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  process.on('exit', () => {
    // The main thread's session answers synchronously.
    session.post('HeapProfiler.stopSampling', (err, r) => {
      if (err === null) writeFileSync(allocOut, JSON.stringify(r.profile));
    });
  });
}
