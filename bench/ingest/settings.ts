/**
 * bench:ingest's settings, from the environment (bench/ingest.ts's header says what each does).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 1000);
export const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
export const PTY_LOCKS = Number(process.env['BENCH_PTY_LOCKS'] ?? 10);
export const WINDOW = 8;
export const PHASES = new Set((process.env['BENCH_PHASES'] ?? 'floor,offered,max,process,trace,stages,flood').split(','));
/** The real process's runs: `all` = every core, N = pinned to cores 0..N-1 (taskset); the flood uses the first. */
export const CPUS = (process.env['BENCH_CPUS'] ?? 'all').split(',').map((c) => (c === 'all' ? undefined : Number(c)));
export const FLOOD_SECONDS = Number(process.env['BENCH_FLOOD_SECONDS'] ?? 5);
export const FLOOD_WARMUP_SECONDS = 2;
export const FLOOD_CLIENTS = Number(process.env['BENCH_FLOOD_CLIENTS'] ?? 500);
export const FLOOD_ADDRESSES = Number(process.env['BENCH_FLOOD_ADDRESSES'] ?? 250);
/** Login limits, the refusal delay and the connection caps lifted as far as the schema allows, for the comparison run (BENCH_FLOOD_UNGUARDED=1). */
export const UNGUARDED = {
  maxConnections: 65_536,
  maxConnectionsPerAddress: 65_536,
  login: { maxConcurrentChecks: 64, maxPendingChecks: 10_000, failuresPerMinutePerAddress: 1_000_000, failuresPerMinute: 1_000_000, refusalDelayMs: 0 },
};

/** More node options for the gateway (BENCH_GATEWAY_FLAGS, space-separated), to try V8 settings against the defaults. */
export const EXTRA_FLAGS = (process.env['BENCH_GATEWAY_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
/** BENCH_ALLOC_PROFILE: every real-process run samples all allocations (bench/ack-trace.ts) into BENCH_ALLOC_PROFILE.<time>.heapprofile. */
export const ALLOC_PROFILE = process.env['BENCH_ALLOC_PROFILE'];
/**
 * BENCH_GATEWAY_WRAPPER: a command (space-separated) the gateway runs under, e.g. `heaptrack -o
 * FILE` for which allocations make up the malloc heap's peak. A wrapper that does not exec node
 * (heaptrack does not) gets the RSS sampling and the stop's SIGTERM itself: its figures are not
 * the gateway's, and the gateway must then be stopped by hand after the figures are printed.
 */
export const GATEWAY_WRAPPER = (process.env['BENCH_GATEWAY_WRAPPER'] ?? '').split(' ').filter((w) => w !== '');
/** BENCH_MALLOC_INFO_DIR: the process phase writes glibc's malloc_info() of the gateway at the end of its load into this folder (gdb attaches for a moment). */
export const MALLOC_INFO_DIR = process.env['BENCH_MALLOC_INFO_DIR'];
/** BENCH_HEAP_SNAPSHOT_DIR: the process phase takes a heap snapshot of the gateway at the end of its load, into this folder. */
export const SNAPSHOT_DIR = process.env['BENCH_HEAP_SNAPSHOT_DIR'];
/** The gateway this benchmark runs: this build's, or BENCH_GATEWAY_MAIN (another build's dist/gateway/main.js). */
export const GATEWAY_MAIN = process.env['BENCH_GATEWAY_MAIN'] ?? join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'gateway', 'main.js');
/** BENCH_COMPARE: another build's dist/gateway/main.js (e.g. main's), run in turn with this one in the process, trace and stages phases (figures base_…). */
export const COMPARE = process.env['BENCH_COMPARE'];
/** BENCH_REPEAT: runs of each real-process phase (alternating with BENCH_COMPARE's); the figures are the medians. */
export const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 1);
/**
 * The ack path's timestamps (bench/ack-trace.js) of the build whose gateway `main` is: it wraps
 * that build's classes, so another build's gateway needs its own.
 */
export function ackTraceFor(main: string): string {
  return join(dirname(main), '..', 'bench', 'ack-trace.js');
}
