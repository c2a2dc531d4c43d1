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
 * max        the same, closed loop (every lock keeps its window full): sustainable events/s, CPU
 *            per event (the process, its main thread) and the main thread's garbage collections
 *            per event (max_gc_…: scavenges and full collections per 1,000 events, their pauses,
 *            bytes allocated young, promoted, and allocated straight into the old generation)
 * process    the real gateway process (dist/gateway/main.js, broker and notifications included)
 *            with locks on kernel ptys at 1,000 events/s (their events signed ahead, as a lock
 *            signs on its own hardware): ack latency p50/p99, the gateway
 *            process's peak RSS (from /proc; goal < 100 MB) and its CPU per event acked (from
 *            /proc: what a smaller or busier machine pays, moving less with others' load than
 *            latency does); p99 of the first 2 s of load (the gateway's start-up) and of the rest
 *            beside it. Once per entry of BENCH_CPUS: `all` (every core, figures
 *            process_1000_…) or N (the gateway pinned to cores 0..N-1 with taskset, as on a
 *            one-core budget: process_1000_cpusN_…, with ratios to every core)
 * trace      the same run with timestamps on the ack path (bench/ack-trace.ts, loaded into the
 *            gateway with --import): p50/p99 per segment from the lock to its ack, what the
 *            slowest 1 % spent in each, each segment's p99 in the first 2 s of load apart
 *            (…_first_2s_…), and the event loop's delay (figures trace_1000[_cpusN]_…);
 *            turns over 40 ms are stalls, reported with how much of them the gateway's main
 *            thread ran and how much it waited for a CPU (/proc/thread-self/schedstat)
 * stages     the same run sampled with --cpu-prof: the share of the gateway's CPU per stage
 *            (drivers, ingest, verify, ledger, notifications, broker, sync, api, logging, node,
 *            gc, native_threads; bench/cpu-stages.ts says how samples are attributed) and µs per
 *            event, figures stages_1000[_cpusN]_…
 * flood      the real process at 1,000 events/s, after 2 s of warm-up: ack p99 for
 *            BENCH_FLOOD_SECONDS of plain load, then for BENCH_FLOOD_SECONDS while
 *            BENCH_FLOOD_CLIENTS clients (from BENCH_FLOOD_ADDRESSES loopback addresses, in a
 *            child process at nice 19) send MQTT logins with wrong passwords as fast as they are answered;
 *            the ratio of the two p99s (goal ≤ 2), the p99 of the flood's first second and of
 *            the rest, and the CONNACK codes (4 checked and wrong, 5 over the address's budget,
 *            3 over the overall budget or too many waiting; `unanswered`: closed without one,
 *            over broker.maxConnections or broker.maxConnectionsPerAddress).
 *            BENCH_FLOOD_UNGUARDED=1 repeats it with the login limits, the refusal delay and
 *            the connection caps lifted, to compare
 *
 * Environment: BENCH_LOCKS (default 1000), BENCH_SECONDS (per phase, default 10),
 * BENCH_PTY_LOCKS (default 10), BENCH_PHASES (comma-separated subset of floor,offered,max,process,
 * trace,stages,flood; default all), BENCH_FLOOD_SECONDS (default 5), BENCH_FLOOD_CLIENTS (default
 * 500), BENCH_FLOOD_ADDRESSES (default 250). For the real process:
 *   BENCH_CPUS        comma-separated `all` and core counts (default all); the flood uses the first
 *   BENCH_COMPARE     another build's dist/gateway/main.js (e.g. main's): the process, trace and
 *                     stages phases run it in turn with this build (figures base_…, ratio_…_vs_base)
 *                     (the trace phase loads that build's own dist/bench/ack-trace.js into it)
 *   BENCH_REPEAT      runs of each of those phases (default 1); the figures are the medians
 *   BENCH_GATEWAY_MAIN  runs another build's dist/gateway/main.js instead of this one's
 *   BENCH_GATEWAY_FLAGS  more node options for the gateway (space-separated), to compare V8 settings
 *   BENCH_PROFILE_DIR keeps the stages phase's .cpuprofile files there (bench/profile-top.ts reads them)
 *   BENCH_GATEWAY_WRAPPER  a command the gateway runs under (`heaptrack -o FILE`; settings.ts says what it costs)
 *   BENCH_MALLOC_INFO_DIR  glibc's malloc_info() of the gateway at the end of the process phase's load (gdb)
 *   BENCH_HEAP_SNAPSHOT_DIR  a heap snapshot of the gateway at the end of the process phase's load
 *   BENCH_ALLOC_PROFILE  samples every allocation of the gateway, young ones included, into
 *                     BENCH_ALLOC_PROFILE.<time>.heapprofile (bench/ack-trace.ts)
 *   BENCH_INPROCESS_PROFILE  a main-thread CPU profile (.cpuprofile) of the max phase's measured window,
 *                     and its allocations (.heapprofile; BENCH_INPROCESS_HELD=1: only those still alive at its end)
 *   BENCH_INPROCESS_SNAPSHOT  a heap snapshot (FILE) in the middle of the max phase's window
 *   BENCH_GATEWAY_STDOUT  appends what the gateway printed besides its log lines (--trace-gc) to this file
 * The in-process phases run in this process: pin them with `taskset -c 0 npm run bench:ingest`.
 *
 * The phases live in bench/ingest/: inprocess.ts (floor, offered, max), process-rig.ts (the real
 * gateway and its pty locks), phases.ts (process, trace, stages, flood), settings.ts (the
 * environment); this file runs them and writes the figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { STAGES } from './cpu-stages.js';
import { writeResults, round, peakRssMb } from './support.js';
import { rig, close, phase, floor } from './ingest/inprocess.js';
import { realProcess, traceProcess, loginFlood, median } from './ingest/phases.js';
import { LOCKS, SECONDS, PTY_LOCKS, PHASES, CPUS, COMPARE, REPEAT, UNGUARDED } from './ingest/settings.js';

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
      // What the closed loop can reach at most: every core verifying one signature per event at
      // the floor's raw rate (or, without the floor, 25,000/s per core).
      const ceiling = Math.ceil((f?.verify ?? 25_000) * availableParallelism());
      const max = await phase(r, 0, ceiling);
      console.log('max (closed loop)', max);
      figures['max_events_per_s'] = max.events_per_s;
      figures['max_ack_p50_ms'] = max.p50_ms;
      figures['max_ack_p99_ms'] = max.p99_ms;
      figures['max_locks_out_of_signed_ahead'] = max.locks_out_of_signed_ahead;
      // CPU per event acked in the measured window: the process, and its main thread (pipeline and simulated locks).
      figures['max_cpu_us_per_event'] = max.cpu['cpu_us_per_entry'] as number;
      if (max.cpu['main_thread_us_per_entry'] !== undefined) figures['max_main_thread_us_per_event'] = max.cpu['main_thread_us_per_entry'] as number;
      // The main thread's garbage collections per event (bench/measure.ts GcWindow).
      for (const [k, v] of Object.entries(max.gc)) figures[`max_${k}`] = v;
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
      const u = await loginFlood(join(dir, 'flood-unguarded'), 'login_flood_unguarded', UNGUARDED);
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
