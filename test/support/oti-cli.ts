/**
 * The real `oti` binary (node dist/provisioning/cli.js) in a subprocess, as a technician's
 * script would run it: pipes (never a TTY) and a clean environment plus what the test gives.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(ROOT, 'dist', 'provisioning', 'cli.js');

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON (for --json); throws with both outputs when it is not JSON. */
  json<T = Record<string, unknown>>(): T;
}

export function oti(args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp', ...opts.env };
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout,
        stderr,
        json<T>() {
          try {
            return JSON.parse(stdout) as T;
          } catch {
            throw new Error(`oti ${args.join(' ')} did not print JSON: ${stdout}\n${stderr}`);
          }
        },
      }),
    );
  });
}

/** The code at the end of oti's error line on stderr (`oti: ... [ERR_X]`). */
export function errorCode(r: Run): string | undefined {
  return /\[(ERR_[A-Z_]+)\]\s*$/.exec(r.stderr.trim())?.[1];
}
