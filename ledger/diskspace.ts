/**
 * Telling a full disk from other write failures, and probing for space to come back.
 *
 * Node's own file operations fail with `code` ENOSPC (no space left) or EDQUOT (over quota).
 * LevelDB does not pass errno on: classic-level reports every failed write as LEVEL_IO_ERROR
 * with LevelDB's text, `IO error: <file>: <strerror(errno)>`. A failed LevelDB write is a full
 * disk when the file system says so now (probeSpace: the folder has less than MIN_FREE_BYTES
 * available, or cannot take a small synced write), or when that text ends with strerror of
 * ENOSPC or EDQUOT: a compaction that failed for lack of space has removed its partial output
 * by the time the write that reports it fails, so the probe alone would miss it. Any other I/O
 * error stays what it was.
 */
import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Errno codes that mean the disk (or the user's quota) has no room. */
const SPACE_CODES = new Set(['ENOSPC', 'EDQUOT']);

/**
 * Below this much space available to the gateway's user the disk counts as full. LevelDB's
 * largest routine write is one memtable flushed to a table (its 4 MiB write buffer); with less
 * than that free, the next flush or compaction fails again at once.
 */
export const MIN_FREE_BYTES = 4 * 1024 * 1024;
/** Bytes written (and synced) by the probe: enough to cross a file system block, cheap on an SD card. */
export const PROBE_BYTES = 64 * 1024;
export const PROBE_FILE = '.space-probe';

/** Backoff between probes while the disk is full: from the first to the last, doubling. */
export const SPACE_RETRY_MIN_MS = 250;
export const SPACE_RETRY_MAX_MS = 4000;

/** True when `e`, or an error in its `cause` chain, carries ENOSPC or EDQUOT. */
export function hasSpaceErrno(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c !== undefined && c !== null && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && SPACE_CODES.has(code)) return true;
  }
  return false;
}

/** strerror(3) of ENOSPC and EDQUOT (glibc and musl), as LevelDB puts them at the end of its I/O errors. */
const SPACE_STRERROR = /: (no space left on device|disk quota exceeded)$/i;

/** The LevelDB I/O error in `e`'s `cause` chain, if there is one. */
function storeIoError(e: unknown): Error | undefined {
  for (let c: unknown = e, depth = 0; c !== undefined && c !== null && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    if ((c as { code?: unknown }).code === 'LEVEL_IO_ERROR') return c as Error;
  }
  return undefined;
}

/**
 * Whether the folder `dir` can take writes now: at least MIN_FREE_BYTES available to this user
 * (statfs) and a PROBE_BYTES file written, synced and removed (which also catches a quota
 * statfs does not show). False on ENOSPC/EDQUOT; other errors are thrown.
 */
export async function probeSpace(dir: string): Promise<boolean> {
  const fs = await statfs(dir);
  if (fs.bavail * fs.bsize < MIN_FREE_BYTES) return false;
  const path = join(dir, PROBE_FILE);
  try {
    const fh = await open(path, 'w', 0o600);
    try {
      await fh.write(Buffer.alloc(PROBE_BYTES));
      await fh.sync();
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if (hasSpaceErrno(e)) return false;
    throw e;
  } finally {
    await unlink(path).catch(() => undefined);
  }
}

/**
 * Whether a failed write into `dir` failed because the disk is full: an ENOSPC/EDQUOT error, or
 * a LevelDB I/O error that says so or comes while the folder has no room (probeSpace).
 */
export async function isDiskFull(e: unknown, dir: string): Promise<boolean> {
  if (hasSpaceErrno(e)) return true;
  const io = storeIoError(e);
  if (io === undefined) return false;
  if (SPACE_STRERROR.test(io.message)) return true;
  try {
    return !(await probeSpace(dir));
  } catch {
    return false;
  }
}

/** Bounded exponential backoff for the probe: attempt 0, 1, 2, … → 250 ms, 500 ms, … 4 s. */
export function spaceRetryDelay(attempt: number): number {
  return Math.min(SPACE_RETRY_MAX_MS, SPACE_RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
}
