/**
 * CPU and memory accounting for the benchmarks. On a shared machine wall-clock rates move with
 * other people's load; CPU time per entry does not (much), so the benchmarks report both.
 *
 * CPU: process-wide from process.cpuUsage() (every thread of the process: main, workers, libuv
 * pool, V8 helpers), and per thread from /proc/self/task/<tid>/stat (utime + stime, proc(5)),
 * where the main thread is the task whose id is the process id. Per-thread figures are Linux
 * only; elsewhere they are omitted.
 * Memory: peak resident set split into anonymous memory (heaps, native allocations) and file
 * mappings (the node binary, LevelDB's memory-mapped tables), sampled from /proc/self/status.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { GCProfiler, getHeapSpaceStatistics } from 'node:v8';
import { round } from './support.js';

interface ThreadTimes {
  readonly name: string;
  readonly ms: number;
}

export interface CpuSnapshot {
  readonly wallMs: number;
  readonly usage: NodeJS.CpuUsage;
  readonly threads: ReadonlyMap<string, ThreadTimes>;
}

/** Kernel clock ticks per second for /proc times (USER_HZ; 100 on every Linux Node supports). */
const USER_HZ = 100;

function threadTimes(): Map<string, ThreadTimes> {
  const out = new Map<string, ThreadTimes>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const fields = s.slice(close + 2).split(' ');
      // Fields after the command: state is field 3 of stat(5); utime and stime are 14 and 15.
      const ticks = Number(fields[11]) + Number(fields[12]);
      out.set(tid, { name: s.slice(s.indexOf('(') + 1, close), ms: (ticks * 1000) / USER_HZ });
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return out;
}

export function cpuSnapshot(): CpuSnapshot {
  return { wallMs: performance.now(), usage: process.cpuUsage(), threads: threadTimes() };
}

/**
 * CPU spent since `start`, per unit of work (µs per entry when `units` counts entries): the whole
 * process, the main thread, and each other thread that used at least 1% of the total, busiest
 * first (signature workers show up there).
 */
export function cpuSince(start: CpuSnapshot, units: number): Record<string, number | string> {
  const wallMs = performance.now() - start.wallMs;
  const u = process.cpuUsage(start.usage);
  const totalUs = u.user + u.system;
  const perUnit = (us: number): number => round(us / units, 1);
  const out: Record<string, number | string> = {
    wall_s: round(wallMs / 1000, 2),
    cpu_s: round(totalUs / 1e6, 2),
    cpu_cores_busy: round(totalUs / 1000 / wallMs, 2),
    cpu_us_per_entry: perUnit(totalUs),
  };
  const now = threadTimes();
  if (now.size === 0) return out;
  const others: number[] = [];
  for (const [tid, t] of now) {
    const us = (t.ms - (start.threads.get(tid)?.ms ?? 0)) * 1000;
    if (tid === String(process.pid)) out['main_thread_us_per_entry'] = perUnit(us);
    else if (us >= totalUs / 100) others.push(us);
  }
  others.sort((a, b) => b - a);
  out['other_threads_us_per_entry'] = others.map(perUnit).join(' ');
  return out;
}

/**
 * Samples the RSS of this process (or of process `pid`) every `everyMs` until stopped; reports the
 * kernel's own peak (VmHWM: exact up to the last sample, which for another process may come up
 * to `everyMs` before it exits) and the peaks of anonymous and file-backed RSS.
 */
export class RssSampler {
  #peak = 0;
  #anon = 0;
  #file = 0;
  readonly #path: string;
  readonly #timer: NodeJS.Timeout;

  constructor(everyMs = 50, pid?: number) {
    this.#path = `/proc/${pid ?? 'self'}/status`;
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  sample(): void {
    let status: string;
    try {
      status = readFileSync(this.#path, 'utf8');
    } catch {
      return;
    }
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    this.#peak = Math.max(this.#peak, kb('VmHWM'));
    this.#anon = Math.max(this.#anon, kb('RssAnon'));
    this.#file = Math.max(this.#file, kb('RssFile'));
  }

  /** Stops sampling; peak RSS, and peak anonymous and file-backed RSS (each peak on its own), in MB. */
  stop(): { rss_peak_mb: number; rss_anon_peak_mb: number; rss_file_peak_mb: number } {
    this.sample();
    clearInterval(this.#timer);
    return { rss_peak_mb: round(this.#peak / 1024, 1), rss_anon_peak_mb: round(this.#anon / 1024, 1), rss_file_peak_mb: round(this.#file / 1024, 1) };
  }
}

/** utime + stime of process `pid` so far, in ms (Linux; 0 elsewhere or once it has ended). */
export function processCpuMs(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
  } catch {
    return 0;
  }
}

interface GcSpaces {
  readonly young: number;
  readonly old: number;
}

/** Young generation (new space and its large objects) and old generation (old space and large objects) in use, from V8's space statistics. */
function gcSpaces(spaces: readonly { spaceName: string; spaceUsedSize: number }[]): GcSpaces {
  let young = 0;
  let old = 0;
  for (const s of spaces) {
    if (s.spaceName === 'new_space' || s.spaceName === 'new_large_object_space') young += s.spaceUsedSize;
    else if (s.spaceName === 'old_space' || s.spaceName === 'large_object_space') old += s.spaceUsedSize;
  }
  return { young, old };
}

/**
 * This thread's garbage collections over a window (v8.GCProfiler, which reads V8's space
 * statistics before and after each collection): how many of each kind, their pauses, and what
 * the program put into each generation meanwhile. Per `units` (events): young-generation
 * allocation (what each collection found in new space, less what the previous one left there),
 * promotion (what scavenges moved into old space), and old-generation allocation between
 * collections (objects V8 allocates there directly: pretenured sites, large objects). Every
 * object that survives a scavenge is copied, and every promoted one is marked again by each full
 * collection: with thousands of events in flight, what each holds costs more than what it
 * allocates.
 */
export class GcWindow {
  readonly #profiler = new GCProfiler();
  readonly #start: GcSpaces;

  constructor() {
    this.#start = gcSpaces(getHeapSpaceStatistics().map((s) => ({ spaceName: s.space_name, spaceUsedSize: s.space_used_size })));
    this.#profiler.start();
  }

  stop(units: number): Record<string, number> {
    const stats = this.#profiler.stop().statistics;
    let scavenges = 0;
    let full = 0;
    let pauseUs = 0;
    let scavengeUs = 0;
    let young = 0;
    let promoted = 0;
    let oldDirect = 0;
    let prev = this.#start;
    for (const g of stats) {
      const before = gcSpaces(g.beforeGC.heapSpaceStatistics);
      const after = gcSpaces(g.afterGC.heapSpaceStatistics);
      young += Math.max(0, before.young - prev.young);
      oldDirect += Math.max(0, before.old - prev.old);
      if (g.gcType === 'Scavenge') {
        scavenges++;
        scavengeUs += g.cost;
        promoted += Math.max(0, after.old - before.old);
      } else if (g.gcType === 'MarkSweepCompact') full++;
      pauseUs += g.cost;
      prev = after;
    }
    const perEvent = (x: number): number => round(x / units, 1);
    return {
      gc_scavenges_per_1000: round((1000 * scavenges) / units, 2),
      gc_mark_compacts_per_1000: round((1000 * full) / units, 3),
      gc_pause_us_per_event: perEvent(pauseUs),
      gc_scavenge_pause_us_per_event: perEvent(scavengeUs),
      gc_young_alloc_bytes_per_event: perEvent(young),
      gc_promoted_bytes_per_event: perEvent(promoted),
      gc_old_alloc_bytes_per_event: perEvent(oldDirect),
    };
  }
}
