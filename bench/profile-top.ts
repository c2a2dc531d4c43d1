/**
 * node dist/bench/profile-top.js FILE.cpuprofile [N] [PATTERN] — the N (default 30) functions
 * with the most self time in a V8 CPU profile, and for each the frames of this project that
 * called it (the nearest one above it on the stack), so that time in a shared codec or in
 * LevelDB's bindings is seen with who asked for it. PATTERN (a regular expression on
 * "function file") keeps only matching functions. For the profiles that `BENCH_PROFILE_DIR`
 * keeps from `npm run bench:ingest`.
 */
import { readFileSync } from 'node:fs';

interface Node {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly Node[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const [file, n = '30', pattern] = process.argv.slice(2);
if (file === undefined) {
  console.error('usage: node dist/bench/profile-top.js FILE.cpuprofile [N] [PATTERN]');
  process.exit(2);
}
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const parent = new Map<number, number>();
for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
const short = (url: string): string => url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:');
const name = (x: Node): string => `${x.callFrame.functionName || '(anonymous)'} ${short(x.callFrame.url)}:${x.callFrame.lineNumber + 1}`;
const own = (url: string): boolean => /\/dist\//.test(url) && !/\/dist\/ledger\/base\//.test(url);

const self = new Map<string, number>();
const callers = new Map<string, Map<string, number>>();
let busy = 0;
for (let i = 0; i < p.samples.length; i++) {
  const x = byId.get(p.samples[i] as number) as Node;
  if (x.callFrame.functionName === '(idle)') continue;
  const us = p.timeDeltas[i + 1] ?? 0;
  busy += us;
  const k = name(x);
  self.set(k, (self.get(k) ?? 0) + us);
  let up = parent.get(x.id);
  while (up !== undefined && !own((byId.get(up) as Node).callFrame.url)) up = parent.get(up);
  const c = up !== undefined ? name(byId.get(up) as Node) : '(no frame of this project)';
  const m = callers.get(k) ?? new Map<string, number>();
  m.set(c, (m.get(c) ?? 0) + us);
  callers.set(k, m);
}
const re = pattern !== undefined ? new RegExp(pattern) : undefined;
console.log(`busy ${(busy / 1000).toFixed(0)} ms`);
for (const [k, us] of [...self].filter(([k]) => re === undefined || re.test(k)).sort((a, b) => b[1] - a[1]).slice(0, Number(n))) {
  console.log(`${((100 * us) / busy).toFixed(1).padStart(5)} %  ${k}`);
  for (const [c, cu] of [...(callers.get(k) as Map<string, number>)].sort((a, b) => b[1] - a[1]).slice(0, 3)) console.log(`          ${((100 * cu) / us).toFixed(0).padStart(3)} % from ${c}`);
}
