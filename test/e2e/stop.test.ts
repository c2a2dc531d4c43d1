/**
 * Stopping the gateway as operators do: SIGTERM to `npm start` (README: SIGTERM stops it) and
 * SIGKILL of a demo gateway. Nothing of the gateway may outlive it: no node holding its ports,
 * no socat holding its ptys. Processes are found by their command line, which names the test's
 * own temporary data folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { tempDir } from '../support/site.js';
import { followGateway, freePort, startGateway } from '../support/gateway-process.js';
import { waitUntil } from '../support/wait.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');

/** Live processes whose command line contains `marker`, as [pid, command line]. */
async function processesNaming(marker: string): Promise<[number, string][]> {
  const found: [number, string][] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    // A zombie has an empty command line: it holds nothing.
    if (cmd.includes(marker)) found.push([Number(name), cmd.replaceAll('\0', ' ').trim()]);
  }
  return found;
}

async function portIsFree(port: number): Promise<boolean> {
  const srv = createServer();
  return new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Kills what a failed test left behind (only processes naming its own folder). */
async function killLeftovers(marker: string): Promise<void> {
  for (const [pid] of await processesNaming(marker)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

void test('SIGTERM to the `npm start` process stops the gateway: its ports are free and no node is left', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-npm-start-');
  const dataDir = join(dir, 'data');
  t.after(() => killLeftovers(dataDir));
  const [brokerPort, apiPort] = [await freePort(), await freePort()];
  const npm = spawn('npm', ['start', '--', '--dataDir', dataDir, '--broker.host', '127.0.0.1', '--broker.port', String(brokerPort), '--api.port', String(apiPort), '--ble.enabled', 'false'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const gw = followGateway(npm);
  await gw.waitForLog('running', running, 120_000);
  assert.equal(await portIsFree(apiPort), false, 'the API port is held while the gateway runs');
  assert.ok((await processesNaming(dataDir)).some(([, cmd]) => cmd.includes('dist/gateway/main.js')), 'the gateway runs under npm');

  npm.kill('SIGTERM');
  await gw.exited;
  await waitUntil('no process of this gateway is left', async () => (await processesNaming(dataDir)).length === 0, 15_000).catch(async (e: Error) => {
    throw new Error(`${e.message}: ${JSON.stringify(await processesNaming(dataDir))}`);
  });
  assert.ok(gw.logs.some((l) => l.msg === 'stopped'), `the gateway stopped cleanly; stderr: ${gw.stderr().slice(-500)}`);
  assert.equal(await portIsFree(brokerPort), true, 'the broker port is free');
  assert.equal(await portIsFree(apiPort), true, 'the API port is free');
});

void test('SIGKILL of a demo gateway leaves none of its socat processes running', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-demo-kill-');
  const dataDir = join(dir, 'data');
  t.after(() => killLeftovers(dataDir));
  const gw = startGateway(['--demo.locks', '3', '--demo.rate', '2', '--dataDir', dataDir, '--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false']);
  t.after(() => gw.proc.kill('SIGKILL'));
  await gw.waitForLog('running', running);
  const socats = (await processesNaming(dataDir)).filter(([, cmd]) => cmd.startsWith('socat '));
  assert.equal(socats.length, 3, `one socat per demo lock: ${JSON.stringify(socats)}`);

  gw.proc.kill('SIGKILL');
  assert.equal(await gw.exited, 'SIGKILL');
  await waitUntil('every socat of the killed gateway has exited', async () => (await processesNaming(dataDir)).length === 0, 15_000).catch(async (e: Error) => {
    throw new Error(`${e.message}: ${JSON.stringify(await processesNaming(dataDir))}`);
  });
});
