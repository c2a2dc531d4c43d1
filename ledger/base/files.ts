/**
 * Safe small-file I/O shared by every part that keeps files next to the ledger: bounded reads
 * that refuse FIFOs, oversized and (for secrets) group- or world-readable files, and atomic
 * writes (temp file, fsync, rename or no-clobber link, fsync of the directory). Key files, the
 * MQTT users file, webhook cursors, the person-key store, bundles and site files use them.
 */
import { constants as fsConstants } from 'node:fs';
import { link, lstat, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { OtiError } from './errors.js';

export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

export type FileProblem = 'missing' | 'not-a-file' | 'permissions' | 'too-large';

/**
 * Reads a small file the safe way, for key files, the MQTT users file and secret files: opened
 * with O_NONBLOCK (a FIFO at the path cannot hang the open; it is refused as not a regular file),
 * checked to be a regular file, for a private file without group or other permission bits, and
 * read to at most `maxBytes` (one byte past the limit is read, in case the file grew after
 * fstat). The read buffer is zeroed. Each problem becomes the caller's own error through
 * `problem`; `mode` is the octal mode for a permissions problem. Other I/O errors are thrown.
 * Returns the bytes and the file's permission bits.
 */
export async function readBoundedFile(
  path: string,
  opts: { readonly maxBytes: number; readonly private: boolean; readonly problem: (p: FileProblem, mode?: string) => Error },
): Promise<{ bytes: Buffer; mode: number }> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw opts.problem('missing');
    throw e;
  }
  try {
    const st: Stats = await fh.stat();
    if (!st.isFile()) throw opts.problem('not-a-file');
    if (opts.private && process.platform !== 'win32' && (st.mode & 0o077) !== 0) throw opts.problem('permissions', (st.mode & 0o777).toString(8).padStart(4, '0'));
    if (st.size > opts.maxBytes) throw opts.problem('too-large');
    const buf = Buffer.alloc(opts.maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    const out = n > opts.maxBytes ? undefined : Buffer.from(buf.subarray(0, n));
    buf.fill(0);
    if (out === undefined) throw opts.problem('too-large');
    return { bytes: out, mode: st.mode & 0o777 };
  } finally {
    await fh.close();
  }
}

/** Throws ERR_ARGUMENT (exists) when something is at `path`. */
export async function refuseExisting(path: string): Promise<void> {
  try {
    await lstat(path);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return;
    throw e;
  }
  throw existsError(path);
}

function existsError(path: string): OtiError {
  return new OtiError('ERR_ARGUMENT', `${path} already exists; refusing to overwrite it without overwrite: true`, {
    argument: 'path',
    path,
    exists: true,
  });
}

/**
 * Writes a file so that a crash leaves either the old or the new one, never a torn one: a temp
 * file in the same directory, fsync, then rename (overwrite) or link (no-clobber), fsync the
 * directory. Used for key files, the MQTT users file and webhook cursors.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, opts: { mode: number; overwrite: boolean }): Promise<void> {
  return writeAtomic(path, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, opts.mode, opts.overwrite);
}

async function writeAtomic(path: string, data: Uint8Array, mode: number, overwrite: boolean): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  let tmpExists = true;
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (overwrite) {
      await rename(tmp, path);
      tmpExists = false;
    } else {
      try {
        await link(tmp, path);
      } catch (e) {
        const code = errnoCode(e);
        if (code === 'EEXIST') throw existsError(path);
        // File systems without hard links: check, then rename (a small window remains).
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
        await refuseExisting(path);
        await rename(tmp, path);
        tmpExists = false;
      }
    }
  } finally {
    if (tmpExists) await unlink(tmp).catch(() => undefined);
  }
  if (process.platform !== 'win32') {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}

/**
 * Moves an existing file aside, to `<path>.replaced-<UTC time>` (never over another file), so that
 * a replaced key stays on disk: no code path writes over a key file (`--force` of the CLI moves
 * the old one aside first). Returns the new path, or undefined when there was no file.
 */
export async function moveAside(path: string): Promise<string | undefined> {
  const aside = `${path}.replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    await link(path, aside);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    if (errnoCode(e) === 'EEXIST') throw existsError(aside);
    throw e;
  }
  await unlink(path);
  return aside;
}

/** Writes JSON atomically (writeFileAtomic), mode 0644 unless given. */
export async function writeAtomicJson(path: string, value: unknown, mode = 0o644): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, { mode, overwrite: true });
}
