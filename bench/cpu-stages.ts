/**
 * CPU per stage of the real gateway process, from V8's sampling profiles (`node --cpu-prof`, one
 * `.cpuprofile` per thread that ran JavaScript) and the kernel's per-thread CPU times.
 *
 * Each sample of a JavaScript thread is given to one stage: walking its stack from the leaf
 * towards the root, the first frame whose source belongs to a stage decides (by folder of dist/
 * or by package under node_modules). Shared code — Node's own modules, ledger/base/, the CBOR
 * and MQTT packet codecs — belongs to no stage, so its time goes to the stage that called it.
 * A sample with no such frame is `node` (the event loop, streams and timers of Node itself);
 * V8's `(garbage collector)` is `gc`; `(idle)` is not CPU and is left out. The samples of a
 * thread share its CPU time (utime + stime from /proc) in proportion; the CPU of threads that
 * run no JavaScript (LevelDB's writes and compactions, libuv's pool, V8's helpers) is
 * `native_threads`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly startTime: number;
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export const STAGES = ['drivers', 'ingest', 'verify', 'ledger', 'notifications', 'broker', 'sync', 'api', 'logging', 'node', 'gc', 'native_threads'] as const;
export type Stage = (typeof STAGES)[number];

/** Source → stage, first match wins; `null` = shared code, decided by its caller. */
const RULES: ReadonlyArray<readonly [RegExp, Stage | null]> = [
  [/\/dist\/ledger\/base\//, null],
  [/\/dist\/ledger\/(sigpool|sigbatch|sigworker|ed25519|crypto|cose)\.js/, 'verify'],
  [/\/node_modules\/(sodium-native|@noble\/ed25519)\//, 'verify'],
  [/\/dist\/ledger\//, 'ledger'],
  [/\/node_modules\/(classic-level|abstract-level|level|level-transcoder|module-error|maybe-combine-errors)\//, 'ledger'],
  [/\/dist\/drivers\//, 'drivers'],
  [/\/node_modules\/(@serialport|serialport)\//, 'drivers'],
  [/\/dist\/gateway\/(ingest|ingest-answers|refusals)\.js/, 'ingest'],
  [/\/dist\/gateway\/notify\//, 'notifications'],
  [/\/dist\/gateway\/broker\//, 'broker'],
  [/\/node_modules\/(aedes|aedes-persistence|aedes-packet|mqemitter|hyperid|fastparallel|fastfall|fastseries|reusify|retimer|qlobber|uuid)\//, 'broker'],
  [/\/dist\/gateway\/sync\//, 'sync'],
  [/\/node_modules\/(mqtt|mqtt-packet|bl|readable-stream|commist|number-allocator|rfdc|debug)\//, null],
  [/\/dist\/gateway\/api\//, 'api'],
  [/\/node_modules\/(prom-client|tdigest|bintrees)\//, 'api'],
  [/\/dist\/gateway\/log\.js/, 'logging'],
  [/\/node_modules\/(pino|pino-std-serializers|sonic-boom|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free|thread-stream|safe-stable-stringify)\//, 'logging'],
];

function stageOf(url: string): Stage | null {
  if (url === '') return null;
  for (const [re, stage] of RULES) if (re.test(url)) return stage;
  return null;
}

/** Monotonic clock (CLOCK_MONOTONIC, which V8's profiles use too), µs. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The samples' times (µs, CLOCK_MONOTONIC): sample i was taken at times[i]. */
function sampleTimes(profile: CpuProfile): number[] {
  const out: number[] = [];
  let t = profile.startTime;
  for (const d of profile.timeDeltas) out.push((t += d));
  return out;
}

/** CPU ms per stage of one profile's samples within `window`, given the thread's CPU ms over it (samples share it in proportion). */
function attribute(profile: CpuProfile, cpuMs: number, window: readonly [number, number], into: Map<Stage, number>): void {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // The stage of each node, memoised: the first staged frame from it towards the root.
  const memo = new Map<number, Stage | 'idle'>();
  const stageOfNode = (id: number): Stage | 'idle' => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const path: number[] = [];
    let s: Stage | 'idle' = 'node';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const m = memo.get(at);
      if (m !== undefined) {
        s = m;
        break;
      }
      path.push(at);
      const f = (byId.get(at) as ProfileNode).callFrame;
      if (f.functionName === '(idle)') {
        s = 'idle';
        break;
      }
      if (f.functionName === '(garbage collector)') {
        s = 'gc';
        break;
      }
      const st = stageOf(f.url);
      if (st !== null) {
        s = st;
        break;
      }
    }
    for (const p of path) memo.set(p, s);
    return s;
  };
  // A sample lasts until the next one (timeDeltas[i] is the gap before sample i).
  const busy = new Map<Stage, number>();
  let total = 0;
  const at = sampleTimes(profile);
  for (let i = 0; i < profile.samples.length; i++) {
    if ((at[i] as number) < window[0] || (at[i] as number) >= window[1]) continue;
    const s = stageOfNode(profile.samples[i] as number);
    if (s === 'idle') continue;
    const us = profile.timeDeltas[i + 1] ?? 0;
    busy.set(s, (busy.get(s) ?? 0) + us);
    total += us;
  }
  if (total === 0) return;
  for (const [s, us] of busy) into.set(s, (into.get(s) ?? 0) + (cpuMs * us) / total);
}

/** utime + stime per thread id of process `pid`, ms, with the thread's name. */
export function threadCpu(pid: number): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const f = s.slice(close + 2).split(' ');
      out.set(Number(tid), { name: s.slice(s.indexOf('(') + 1, close), ms: ((Number(f[11]) + Number(f[12])) * 1000) / 100 });
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** CPU ms per thread between two threadCpu() readings. */
export function threadCpuSince(before: ReadonlyMap<number, { name: string; ms: number }>, after: ReadonlyMap<number, { name: string; ms: number }>): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  for (const [tid, t] of after) out.set(tid, { name: t.name, ms: t.ms - (before.get(tid)?.ms ?? 0) });
  return out;
}

/**
 * Per-stage CPU of a process whose profiles are in `dir` (written at its exit), over `window`
 * (CLOCK_MONOTONIC µs, monotonicUs()). `threads`: its threads' CPU ms over the same window
 * (threadCpuSince; `pid` names the main thread). Worker threads, whose profiles are the other
 * files, are counted at their busy sample time. Returns ms per stage, the stages summing to the
 * process's CPU (the profiler's own thread left out).
 */
export function cpuByStage(dir: string, pid: number, threads: ReadonlyMap<number, { name: string; ms: number }>, window: readonly [number, number]): Map<Stage, number> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const out = new Map<Stage, number>();
  // The profiler's own thread is the measurement's cost, not the gateway's.
  let total = 0;
  for (const t of threads.values()) if (t.name !== 'v8:ProfEvntProc') total += t.ms;
  let js = 0;
  for (const f of files) {
    // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; Node's thread id 0 is the main thread.
    const parts = f.split('.');
    const threadId = Number(parts[4]);
    const profile = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    let ms: number;
    if (threadId === 0) ms = threads.get(pid)?.ms ?? 0;
    else {
      // A worker's OS thread is not named after its Node thread id; its share is its busy sample time.
      const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
      const at = sampleTimes(profile);
      let us = 0;
      for (let i = 0; i < profile.samples.length; i++) {
        if ((at[i] as number) >= window[0] && (at[i] as number) < window[1] && !idle.has(profile.samples[i] as number)) us += profile.timeDeltas[i + 1] ?? 0;
      }
      ms = us / 1000;
    }
    attribute(profile, ms, window, out);
    js += ms;
  }
  out.set('native_threads', Math.max(0, total - js));
  return out;
}
