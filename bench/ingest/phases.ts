/**
 * bench:ingest's phases on the real gateway process: process (latency, memory, CPU per event),
 * stages (CPU per stage), trace (the ack path's segments) and flood (failed logins).
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuByStage, monotonicUs, threadCpu, threadCpuSince, STAGES } from '../cpu-stages.js';
import type { AckTrace } from '../ack-trace.js';
import { round, percentile, median as middle } from '../support.js';
import { processCpuMs } from '../measure.js';
import { floodLogins } from '../login-flood.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { processRig, rssParts } from './process-rig.js';
import { SECONDS, SNAPSHOT_DIR, MALLOC_INFO_DIR, CPUS, FLOOD_SECONDS, FLOOD_WARMUP_SECONDS, FLOOD_CLIENTS, FLOOD_ADDRESSES } from './settings.js';

/**
 * glibc's malloc_info() of process `pid` into `file` (XML: each arena's size, what is free in it
 * and in which bins), by gdb calling it in the process; needs gdb and the right to ptrace.
 */
function mallocInfo(pid: number, file: string): void {
  const gdb = [
    '-p', String(pid), '-batch', '-nx',
    '-ex', `set $f = (void *) fopen("${file}", "w")`,
    '-ex', 'call (int) malloc_info(0, $f)',
    '-ex', 'call (int) fclose($f)',
  ];
  const r = spawnSync('gdb', gdb, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) console.log(`malloc_info of ${pid} failed: ${r.error?.message ?? r.stderr}`);
}

/** p99 of the ack latencies of events recorded in [from, to). */
export function p99Between(acks: readonly { at: number; ms: number }[], from: number, to: number): { p99: number; n: number } {
  const ms = acks.filter((a) => a.at >= from && a.at < to).map((a) => a.ms).sort((a, b) => a - b);
  return { p99: round(percentile(ms, 99), 2), n: ms.length };
}

/**
 * The real gateway process at 1,000 events/s in total, on every core or pinned (`cpus`); figures
 * named `prefix`_…. With `profile`, the run is sampled with --cpu-prof and reports the CPU per
 * stage instead of latency figures (the profiler's own cost would be in them).
 */
export async function realProcess(dir: string, prefix: string, o: { cpus?: number; profile?: boolean; main?: string } = {}): Promise<Record<string, number>> {
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
  if (MALLOC_INFO_DIR !== undefined && profileDir === undefined) mallocInfo(rig.pid, join(MALLOC_INFO_DIR, `${prefix}-${Date.now()}.xml`));
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
  // The gateway's start-up (JIT, its first compactions) against the rest of the run.
  const first = rig.acks[0]?.at ?? 0;
  const early = p99Between(rig.acks, first, first + 2000);
  const late = p99Between(rig.acks, first + 2000, Infinity);
  Object.assign(out, {
    [`${prefix}_ack_p50_ms`]: round(percentile(latencies, 50), 2),
    [`${prefix}_ack_p99_ms`]: round(percentile(latencies, 99), 2),
    [`${prefix}_ack_max_ms`]: round(latencies[latencies.length - 1] ?? NaN, 2),
    [`${prefix}_ack_p99_first_2s_ms`]: early.p99,
    [`${prefix}_ack_p99_after_2s_ms`]: late.p99,
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
export async function traceProcess(dir: string, prefix: string, o: { cpus?: number; main?: string } = {}): Promise<Record<string, number>> {
  const traceFile = join(dir, 'ack-trace.json');
  await mkdir(dir, { recursive: true });
  const rig = await processRig(dir, { ...o, traceFile });
  const from = rig.acks.length;
  const windowStart = performance.timeOrigin + performance.now();
  await sleep(SECONDS * 1000);
  const windowEnd = performance.timeOrigin + performance.now();
  await rig.stop();
  const trace = JSON.parse(readFileSync(traceFile, 'utf8')) as AckTrace;
  const names = ['lock_to_decoded', 'decoded_to_taken', 'taken_to_admitted', 'admitted_to_durable', 'durable_to_lock_acked'] as const;
  const rows: number[][] = [];
  // The first 2 s of load (the gateway's start-up) apart, as in the process phase.
  const early: number[][] = [];
  const first = rig.acks[from]?.at ?? 0;
  for (const a of rig.acks.slice(from)) {
    const t = trace.events[a.id];
    if (t === undefined || t.some((x) => x === 0)) continue;
    const [decoded, taken, admitted, durable] = t;
    const row = [decoded - a.abs, taken - decoded, admitted - taken, durable - admitted, a.abs + a.ms - durable, a.ms];
    rows.push(row);
    if (a.at < first + 2000) early.push(row);
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
    out[`${prefix}_first_2s_${n}_p99_ms`] = round(percentile(early.map((r) => r[i] as number).sort((x, y) => x - y), 99), 2);
  });
  out[`${prefix}_first_2s_ack_p99_ms`] = round(percentile(early.map((r) => r[5] as number).sort((x, y) => x - y), 99), 2);
  out[`${prefix}_event_loop_delay_p99_ms`] = round(trace.loop.p99, 2);
  out[`${prefix}_event_loop_delay_max_ms`] = round(trace.loop.max, 2);
  out[`${prefix}_event_loop_stalls_over_10ms`] = trace.loop.over10ms;
  // Stalls over 40 ms under load (start-up and the drain left out): how long in all, and how much
  // of it the main thread ran or waited for a CPU. (An older build's ack-trace.js records none.)
  const st = ((trace.loop.stalls as AckTrace['loop']['stalls'] | undefined) ?? []).filter((x) => x[0] >= windowStart && x[0] < windowEnd);
  const before = ((trace.loop.stalls as AckTrace['loop']['stalls'] | undefined) ?? []).filter((x) => x[0] < windowStart);
  out[`${prefix}_stalls_over_40ms_before_load`] = before.length;
  out[`${prefix}_stalls_over_40ms_before_load_running_ms`] = round(before.reduce((m, x) => m + x[2], 0), 1);
  out[`${prefix}_stalls_over_40ms`] = st.length;
  out[`${prefix}_stalls_over_40ms_total_ms`] = round(st.reduce((m, x) => m + x[1], 0), 1);
  out[`${prefix}_stalls_over_40ms_running_ms`] = round(st.reduce((m, x) => m + x[2], 0), 1);
  out[`${prefix}_stalls_over_40ms_waiting_for_cpu_ms`] = round(st.reduce((m, x) => m + x[3], 0), 1);
  // Of the stalls' time, how much garbage collections of 10 ms or more took.
  const gcs = (trace.gc as AckTrace['gc'] | undefined) ?? [];
  const overlap = (a0: number, a1: number, b0: number, b1: number): number => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
  out[`${prefix}_stalls_over_40ms_in_gc_ms`] = round(st.reduce((m, x) => m + gcs.reduce((g, y) => g + overlap(x[0], x[0] + x[1], y[0], y[0] + y[1]), 0), 0), 1);
  out[`${prefix}_gc_pauses_over_10ms`] = gcs.length;
  out[`${prefix}_gc_pause_max_ms`] = round(gcs.reduce((m, y) => Math.max(m, y[1]), 0), 1);
  return out;
}

/**
 * The real gateway process at 1,000 events/s: FLOOD_SECONDS of plain load, then FLOOD_SECONDS
 * with FLOOD_CLIENTS clients sending CONNECTs with a wrong password for a user of its users file
 * as fast as they are answered, from FLOOD_ADDRESSES loopback source addresses. `prefix` names
 * the figures; `broker` adds broker settings (the unguarded run lifts the login limits).
 */
export async function loginFlood(dir: string, prefix: string, broker: Record<string, unknown> = {}): Promise<Record<string, number>> {
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
  // The flood's first second (every client connects at once) apart from the rest of it.
  const burst = p99Between(rig.acks, t1, t1 + 1000);
  const steady = p99Between(rig.acks, t1 + 1000, t2);
  const attempts = Object.values(answers).reduce((a, b) => a + b, 0);
  return {
    [`${prefix}_ack_p99_ms_without`]: quiet.p99,
    [`${prefix}_ack_p99_ms_during`]: loud.p99,
    [`${prefix}_ack_p99_ratio`]: round(loud.p99 / quiet.p99, 2),
    [`${prefix}_ack_p99_ms_during_first_s`]: burst.p99,
    [`${prefix}_ack_p99_ms_during_after_first_s`]: steady.p99,
    [`${prefix}_events_during`]: loud.n,
    [`${prefix}_login_attempts_per_s`]: Math.round(attempts / FLOOD_SECONDS),
    [`${prefix}_connack_4_checked`]: answers[4] ?? 0,
    [`${prefix}_connack_5_rate_limited`]: answers[5] ?? 0,
    [`${prefix}_connack_3_unavailable`]: answers[3] ?? 0,
    [`${prefix}_unanswered`]: answers[-1] ?? 0,
    [`${prefix}_unacked_after_drain`]: unacked,
  };
}

/** The median of the runs' figures; a mean of the middle two is rounded to 2 decimals. */
export function median(xs: readonly number[]): number {
  return xs.length % 2 === 1 ? middle(xs) : round(middle(xs), 2);
}