/**
 * A small tmpfs mounted for one test (a real file system that runs out of space), and a filler
 * file that takes all of its space. Needs root (or CAP_SYS_ADMIN); mountTmpfs() says why not
 * when it cannot mount, so that the test can skip with that reason.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';

const run = promisify(execFile);

/**
 * Mounts a tmpfs of `sizeMiB` at <dir>/tmpfs; a string with the reason when it cannot. The caller
 * unmounts it once what uses it has stopped (unmount() detaches it even if something still does).
 */
export async function mountTmpfs(dir: string, sizeMiB: number): Promise<{ path: string; unmount(): Promise<void> } | string> {
  const path = join(dir, 'tmpfs');
  await mkdir(path);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', path]);
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n')[0];
    return `cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): ${why}`;
  }
  return {
    path,
    async unmount() {
      await run('umount', ['-l', path]);
    },
  };
}

/** Writes `path` until the file system is full (ENOSPC); returns the bytes written. */
export async function fillDisk(path: string): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const fh = await open(path, 'w');
  let written = 0;
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(chunk);
      written += bytesWritten;
      if (bytesWritten < chunk.length) break;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    await fh.close();
  }
  return written;
}

export async function removeFiller(path: string): Promise<void> {
  await rm(path, { force: true });
}
