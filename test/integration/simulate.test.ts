/**
 * Simulated locks on an enrolled site (issue 14.7): `--demo` refuses an enrolled gateway with
 * ERR_CONFIG pointing to `oti lock simulate`; that command drives a simulated lock on a real pty
 * to the real gateway process, the installer enrols its key with `oti lock enroll`, its events
 * are acknowledged, and a second run continues its counters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { oti, CLI } from '../support/oti-cli.js';
import { startGateway, writeGatewayConfig } from '../support/gateway-process.js';
import { ptyPair } from '../../drivers/pty.js';
import { waitUntil } from '../support/wait.js';

const PASS = 'correct horse battery staple';

void test('an enrolled gateway refuses --demo, naming oti lock simulate; a simulated lock enrolled with oti lock enroll is acknowledged', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-simulate-');
  const env = { OTI_PASSPHRASE: PASS };
  assert.equal((await oti(['site', 'init', '--site', 'acme', '--out', 'site'], { cwd: dir, env })).code, 0);
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json'], { cwd: dir, env })).code, 0);
  assert.equal((await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data'], { cwd: dir })).code, 0);
  const data = join(dir, 'data');

  const demo = startGateway(['--ble.enabled', 'false', '--broker.port', '0', '--api.port', '0', '--discovery.enabled', 'false', '--demo'], { OTI_DATA_DIR: data });
  t.after(() => demo.proc.kill('SIGKILL'));
  assert.equal(await demo.exited, 2);
  assert.match(demo.stderr(), /demo mode needs the development site.*oti lock simulate.*\[ERR_CONFIG\]/s);

  const pty = await ptyPair(dir, 'sim');
  t.after(() => pty.kill());
  const config = await writeGatewayConfig(join(dir, 'gw.yaml'), { dataDir: data, broker: { host: '127.0.0.1', port: 0 }, api: { port: 0 }, serialPorts: [pty.gateway], more: { discovery: { enabled: false } } });
  const gw = startGateway(['--config', config]);
  t.after(() => gw.proc.kill('SIGKILL'));
  const api = String((await gw.waitForLog('API', (l) => l.msg.startsWith('local API on ')))['url']);

  const simulate = (count: number): { done: Promise<{ code: number | null; stdout: string }>; stderr: () => string } => {
    const c = spawn(process.execPath, [CLI, 'lock', 'simulate', '--id', 'sim-1', '--port', pty.lock, '--rate', '20', '--count', String(count), '--json'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => c.kill('SIGKILL'));
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    return { done: new Promise((resolve) => c.once('exit', (code) => resolve({ code, stdout: out }))), stderr: () => err };
  };
  const first = simulate(10);
  await waitUntil('the simulated lock prints its key', () => /key [0-9a-f]{64}/.test(first.stderr()));
  const key = (/key ([0-9a-f]{64})/.exec(first.stderr()) as RegExpExecArray)[1] as string;
  const enrol = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'sim-1', '--key', key, '--api', api, '--yes'], { cwd: dir, env });
  assert.equal(enrol.code, 0, enrol.stderr);
  const r1 = await first.done;
  assert.equal(r1.code, 0, first.stderr());
  const j1 = JSON.parse(r1.stdout) as { acked: number; next: number };
  assert.ok(j1.acked >= 10, `${j1.acked} acknowledged`);

  // A second run continues the counters: its events are acknowledged, not refused as replays.
  const second = simulate(5);
  const r2 = await second.done;
  assert.equal(r2.code, 0, second.stderr());
  assert.ok((JSON.parse(r2.stdout) as { acked: number }).acked >= 5);
  assert.doesNotMatch(second.stderr(), /ERR_REPLAY/);
  const res = await fetch(`${api}/events?lock=sim-1&limit=100`);
  const events = ((await res.json()) as { items: unknown[] }).items;
  assert.ok(events.length >= 15, `${events.length} events of sim-1 in the chain`);
});
