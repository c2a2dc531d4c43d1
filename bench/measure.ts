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
