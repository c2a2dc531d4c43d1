/**
 * The real archive service (`npm run archive`, gateway/archive/main.js) as a child process for
 * the end-to-end tests: started from a written configuration, killed when the test ends, and
 * handed back once its API listens and it has logged `ready` (its broker connection, or its
 * first pull).
 */
import type { TestContext } from 'node:test';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followGateway, type GatewayProcess } from './gateway-process.js';

const ARCHIVE_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'gateway', 'archive', 'main.js');

/** Stops a child (SIGTERM unless told) and waits for it, unless it has ended already. */
export async function stopProc(p: GatewayProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    p.proc.kill(signal);
    await p.exited;
  }
}

/** Starts the archive with `config`; resolves with the process and its API port once it logged a line starting with `ready`. */
export async function startArchive(t: TestContext, config: string, ready = 'archive: connected to the central broker'): Promise<GatewayProcess & { port: number }> {
  const proc = followGateway(spawn(process.execPath, [ARCHIVE_MAIN, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] }));
  t.after(() => stopProc(proc, 'SIGKILL'));
  const port = (await proc.waitForLog('archive API', (l) => l.msg.startsWith('archive API listening'))).port as number;
  await proc.waitForLog(ready, (l) => l.msg.startsWith(ready));
  return Object.assign(proc, { port });
}
