/**
 * Removes compiled files in dist/ whose TypeScript source is gone. tsc's incremental build never
 * deletes an output, so a test that was moved or deleted would otherwise still run from its old
 * place in dist/ (and a moved unit test would still run in the fast loop). `npm test` and
 * `npm run test:unit` run this after the build: `node dist/test/support/prune-dist.js`.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST = join(ROOT, 'dist');

/** The outputs under `dist` with no source under `root`: x.js and x.js.map for a missing x.ts. */
export function orphans(root: string, dist: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dist, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const m = /^(.*)\.js(\.map)?$/.exec(e.name);
    if (m === null) continue;
    const rel = relative(dist, join(e.parentPath, m[1]!));
    if (!existsSync(join(root, `${rel}.ts`))) out.push(join(e.parentPath, e.name));
  }
  return out.sort();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const stale = orphans(ROOT, DIST);
  for (const f of stale) rmSync(f);
  if (stale.length > 0) console.log(`removed ${stale.length} compiled file(s) whose source is gone: ${stale.map((f) => relative(ROOT, f)).join(', ')}`);
}
