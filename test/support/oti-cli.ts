/**
 * The real `oti` binary (node dist/provisioning/cli.js) in a subprocess, as a technician's
 * script would run it: pipes (never a TTY) and a clean environment plus what the test gives.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { tempDir } from './site.js';

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

/** `oti args` run in `cwd` with `env`. */
export function otiIn(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return oti(args, { cwd, env });
}

/**
 * A site made with the real oti in a new temporary folder, which it returns: `oti site init
 * --site acme --out site` (the authority key under `passphrase`), and with `gateway`, gw-1
 * enrolled (`b.json`) and its bundle applied to `data`. Each step must exit 0.
 */
export async function otiSite(t: TestContext, prefix: string, passphrase: string, opts: { gateway: boolean }): Promise<string> {
  const dir = await tempDir(t, prefix);
  const steps = [['site', 'init', '--site', 'acme', '--out', 'site']];
  if (opts.gateway) steps.push(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json'], ['gateway', 'apply-bundle', 'b.json', '--data', 'data']);
  for (const args of steps) {
    const r = await otiIn(args, dir, { OTI_PASSPHRASE: passphrase });
    assert.equal(r.code, 0, `oti ${args.join(' ')}: ${r.stderr}`);
  }
  return dir;
}
