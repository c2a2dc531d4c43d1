/**
 * The first run as a newcomer has it: the real gateway process on an empty data folder creates a
 * development site of its own (two of them are two sites, so they never take each other for
 * peers), prints the next steps once, and the printed commands work as printed: `npx oti status`
 * and `oti mqtt user add` with the real binary, then the printed mosquitto_sub line in a shell.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { tempDir } from '../support/site.js';
import { startGateway, type GatewayProcess } from '../support/gateway-process.js';
import { ROOT } from '../support/oti-cli.js';

const ARGS = ['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false', '--discovery.enabled', 'false'];
const run = promisify(execFile);

async function started(gw: GatewayProcess): Promise<{ site: string; steps: string[] | undefined }> {
  const api = (await gw.waitForLog('API', (l) => l.msg.startsWith('local API on'))).url as string;
  const line = await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));
  // The next steps, when printed, are logged in the same turn as the running line, long before
  // the gateway answers a request made after it.
  assert.equal((await fetch(`${api}/health`)).status, 200);
  const steps = gw.logs.find((l) => Array.isArray(l.nextSteps))?.nextSteps as string[] | undefined;
  return { site: line.site as string, steps };
}

async function stop(gw: GatewayProcess): Promise<void> {
  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, gw.stderr());
}

void test('a first start makes a development site of its own and prints next steps once, which work as printed', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-first-');
  const a = startGateway(ARGS, { OTI_DATA_DIR: join(dir, 'a') });
  const b = startGateway(ARGS, { OTI_DATA_DIR: join(dir, 'b') });
  t.after(() => {
    for (const g of [a, b]) if (g.proc.exitCode === null) g.proc.kill('SIGKILL');
  });
  const first = await started(a);
  const other = await started(b);
  assert.match(first.site, /^dev-site-[0-9a-f]{6}$/);
  assert.match(other.site, /^dev-site-[0-9a-f]{6}$/);
  assert.notEqual(first.site, other.site, 'two development gateways are two sites');
  await stop(b);

  const steps = first.steps;
  assert.ok(steps !== undefined, 'next steps on the first start');
  const status = steps.find((l) => l.startsWith('npx oti status '));
  const addUser = steps.find((l) => l.includes('oti mqtt user add'));
  const watch = steps.find((l) => l.startsWith('mosquitto_sub '));
  assert.ok(status !== undefined && addUser !== undefined && watch !== undefined, steps.join('\n'));
  assert.ok(steps.includes('npm run demo'));

  // The printed commands, run as printed in one shell, one after the other (in the repository,
  // where npx finds oti): what the newcomer's terminal does. No OTI_MQTT_PASSWORD from outside.
  const env = { ...process.env };
  delete env.OTI_MQTT_PASSWORD;
  const shell = (line: string): Promise<{ stdout: string }> => run('sh', ['-c', line], { cwd: ROOT, env, timeout: 60_000 });
  assert.match((await shell(status)).stdout, new RegExp(`site: ${first.site}`));
  const commands = steps.filter((l) => !l.startsWith(' '));
  const upToWatch = commands.slice(commands.indexOf(status) + 1, commands.indexOf(watch));
  const seen = await shell(['set -e', ...upToWatch, `${watch} -C 1 -W 30`].join('\n'));
  assert.match(seen.stdout, new RegExp(`^oti/${first.site}/gateways/[^ ]+/state \\{"state":"online"`, 'm'));

  // A restart says nothing more.
  await stop(a);
  const again = startGateway(ARGS, { OTI_DATA_DIR: join(dir, 'a') });
  t.after(() => {
    if (again.proc.exitCode === null) again.proc.kill('SIGKILL');
  });
  const restart = await started(again);
  assert.equal(restart.site, first.site);
  assert.equal(restart.steps, undefined, 'the next steps are printed once');
  await stop(again);
});

void test('the gateway answers --help and --version before reading any configuration, and writes nothing', async (t) => {
  const dir = await tempDir(t, 'oti-first-');
  const help = await run(process.execPath, [join(ROOT, 'dist', 'gateway', 'main.js'), '--help'], { env: { ...process.env, OTI_DATA_DIR: join(dir, 'data') } });
  assert.match(help.stdout, /^Usage: npm start -- /m);
  assert.match(help.stdout, /^ {2}broker\.port +OTI_BROKER_PORT$/m);
  const version = await run(process.execPath, [join(ROOT, 'dist', 'gateway', 'main.js'), '--version']);
  assert.match(version.stdout, /^oti-gateway \d+\.\d+\.\d+\n$/);
  assert.equal(existsSync(join(dir, 'data')), false);
});
