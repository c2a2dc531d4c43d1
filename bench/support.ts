/** Shared helpers for the benchmarks: result files, percentiles, RSS sampling. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

/** Writes one flat JSON object of figures to bench/results/NAME.json (units in the keys). */
export function writeResults(name: string, figures: Record<string, number | string | boolean>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(figures, null, 2)}\n`);
  return path;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function mb(bytes: number): number {
  return round(bytes / (1024 * 1024), 1);
}

/** Peak RSS of this process so far, in MB (getrusage max RSS). */
export function peakRssMb(): number {
  return round(process.resourceUsage().maxRSS / 1024, 1);
}
