/**
 * Storage: the data folder exists (the check creates nothing), is writable and private, and small
 * writes with fsync are fast enough for the ledger's one-fsync-per-block group commit. An SD
 * card with a p99 fsync above WARN_P99_MS slows acknowledgements; above FAIL_P99_MS it cannot
 * sustain a busy site.
 */
import { access, open, rm, stat, mkdtemp } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { result, why, type CheckResult } from './result.js';

export const WARN_P99_MS = 50;
export const FAIL_P99_MS = 500;

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/** Checks the data folder without creating it: a missing one is reported (the gateway creates it on its first start). */
export async function checkDataDir(dir: string): Promise<CheckResult> {
  const exists = await stat(dir).then(() => true, () => false);
  if (!exists) {
    const parent = dirname(dir);
    const writable = await access(parent, constants.W_OK).then(() => true, () => false);
    return writable
      ? result('data folder', 'warn', `${dir} does not exist yet; the gateway creates it on its first start`, `start the gateway once, or create it for the gateway user: install -d -o oti -g oti -m 0700 ${dir}`, { missing: true })
      : result('data folder', 'fail', `${dir} does not exist and ${parent} is not writable by this user`, `create it for the gateway user: install -d -o oti -g oti -m 0700 ${dir}`, { missing: true });
  }
  try {
    await access(dir, constants.W_OK | constants.R_OK);
  } catch (e) {
    return result('data folder', 'fail', `${dir} cannot be created or written: ${why(e)}`, `create it for the gateway user: install -d -o oti -g oti -m 0700 ${dir}`);
  }
  const st = await stat(dir);
  const issues: string[] = [];
  if ((st.mode & 0o077) !== 0) issues.push(`${dir} is mode ${(st.mode & 0o777).toString(8)}, readable by others`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) issues.push(`${dir} belongs to uid ${st.uid}, not to this user (uid ${process.getuid()})`);
  const key = await stat(join(dir, 'gateway.key')).catch(() => undefined);
  if (key !== undefined && (key.mode & 0o077) !== 0) issues.push(`gateway.key is mode ${(key.mode & 0o777).toString(8)}`);
  if (issues.length > 0) return result('data folder', 'warn', issues.join('; '), `chown -R oti:oti ${dir} && chmod 0700 ${dir} && chmod 0600 ${dir}/*.key`);
  return result('data folder', 'pass', `${dir} is writable and private (0700)`);
}

export async function checkFsync(dir: string, files: number): Promise<CheckResult> {
  let tmp: string;
  try {
    tmp = await mkdtemp(join(dir, '.doctor-fsync-'));
  } catch (e) {
    return result('storage fsync', 'fail', `cannot write in ${dir}: ${why(e)}`, 'fix the data folder first (see above)');
  }
  const times: number[] = [];
  try {
    const block = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < files; i++) {
      const t0 = performance.now();
      const fh = await open(join(tmp, `f${i}`), 'w');
      await fh.write(block);
      await fh.sync();
      await fh.close();
      times.push(performance.now() - t0);
    }
  } catch (e) {
    return result('storage fsync', 'fail', `write + fsync failed: ${why(e)}`, 'check the SD card (dmesg for I/O errors) and free space (df -h)');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const p50 = percentile(times, 0.5);
  const p99 = percentile(times, 0.99);
  const data = { files, p50Ms: Number(p50.toFixed(2)), p99Ms: Number(p99.toFixed(2)) };
  const detail = `${files} × 4 KiB write + fsync: p50 ${data.p50Ms} ms, p99 ${data.p99Ms} ms`;
  const remedy = 'use an A1/A2-rated SD card or an SSD over USB; check that the data folder is not on a network file system';
  if (p99 > FAIL_P99_MS) return result('storage fsync', 'fail', `${detail} (above ${FAIL_P99_MS} ms)`, remedy, data);
  if (p99 > WARN_P99_MS) return result('storage fsync', 'warn', `${detail} (above ${WARN_P99_MS} ms)`, remedy, data);
  return result('storage fsync', 'pass', detail, undefined, data);
}
