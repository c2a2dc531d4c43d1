/**
 * The real `oti` against a running gateway process, where a command must see that the gateway
 * holds the data folder: `oti restore` refuses to replace it (the gateway would go on writing into
 * the folder moved aside), `oti doctor` reports the gateway's own serial line as held by it, and
 * `oti lock list --data` says that it read a copy. And a gateway's longest error message (the
 * ERR_LEDGER_LOST reason, with its data folder's path and the command to run) reaches the
 * technician whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startTestGateway, freePort, writeGatewayConfig } from '../support/gateway-process.js';
import { errorCode, otiIn, otiSite } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { ptyPair } from '../../drivers/pty.js';
import { Signer } from '../../ledger/crypto.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import { CheckpointRecord } from '../../gateway/sync/checkpoint-record.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';

const PASS = 'site passphrase for the live CLI test';

void test('with the gateway running: restore refuses, doctor passes its serial line, lock list --data says it read a copy', { timeout: 120_000 }, async (t) => {
  const dir = await otiSite(t, 'oti-cli-live-', PASS, { gateway: true });
  const data = join(dir, 'data');
  const pty = await ptyPair(dir, 'door');
  t.after(() => pty.kill());
  const apiPort = await freePort();
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir: data,
    broker: { host: '127.0.0.1', port: 0 },
    api: { port: apiPort },
    serialPorts: [pty.gateway],
    more: { discovery: { enabled: false } },
  });
  const gw = startTestGateway(t, ['--config', config]);
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));
  const env = { OTI_BACKUP_PASSPHRASE: 'backup passphrase for the live test' };

  // A backup taken while it runs, then restored over its folder: refused, nothing moved.
  assert.equal((await otiIn(['backup', '--data', 'data', '--out', 'gw.otibak'], dir, env)).code, 0);
  const restore = await otiIn(['restore', 'gw.otibak', '--data', 'data', '--force', '--yes'], dir, env);
  assert.equal(restore.code, 1, restore.stderr);
  assert.equal(errorCode(restore), 'ERR_STORE_LOCKED');
  assert.match(restore.stderr, /stop it first \(systemctl stop oti-gateway\)/);
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('before-restore') || n.includes('restoring')), [], 'nothing moved aside or extracted');
  assert.equal(gw.proc.exitCode, null, 'the gateway runs on');

  // Its serial line is held by it: a pass that says so, not "cannot lock port".
  const doctor = await otiIn(['doctor', '--config', config, '--no-ble', '--fsync-files', '2', '--json'], dir);
  const checks = doctor.json<{ checks: { name: string; status: string; detail: string; data?: { heldByGateway?: boolean } }[] }>().checks;
  assert.equal(checks.find((c) => c.name === 'gateway running')?.status, 'pass');
  const serial = checks.find((c) => c.name === `serial ${pty.gateway}`);
  assert.equal(serial?.status, 'pass', serial?.detail);
  assert.match(serial?.detail ?? '', /held by the running gateway/);
  assert.equal(serial?.data?.heldByGateway, true);

  // The roster read from the data folder: a copy, and the output says so.
  const list = await otiIn(['lock', 'list', '--all', '--data', 'data'], dir);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^the gateway is running: read a copy of the ledger$/m);
  assert.match(list.stdout, /gw-1/);
  assert.equal((await otiIn(['lock', 'list', '--data', 'data', '--json'], dir)).json<{ copy: boolean }>().copy, true);

  // Stopped, the same restore goes ahead.
  assert.equal(await gw.stop(), 0, gw.stderr());
  const after = await otiIn(['restore', 'gw.otibak', '--data', 'data', '--force', '--yes'], dir, env);
  assert.equal(after.code, 0, after.stderr);
  assert.ok((await readdir(dir)).some((n) => n.startsWith('data.before-restore-')));
});

void test('the ERR_LEDGER_LOST reason of a waiting gateway is printed whole, with its data folder and the command to run', { timeout: 120_000 }, async (t) => {
  const base = await tempDir(t, 'oti-cli-lost-');
  // A long path, as an installer's may be: the reason names it and ends with the remedy.
  const data = join(base, 'a-data-folder-with-a-long-name-as-some-installations-have', 'another-level-of-folders-for-good-measure', 'gateway-data');
  const id = await loadOrCreateIdentity(data);
  const origin = `oti/${id.trust.siteId}/${id.gatewayId}`;
  const record = new CheckpointRecord(data, undefined, () => undefined);
  record.note(signCheckpoint({ origin, size: 25, root: new Uint8Array(32).fill(7), block: 3, blockHash: new Uint8Array(32) }, new Signer(id.key.seed), origin));
  await record.close();
  const apiPort = await freePort();
  const gw = startTestGateway(t, ['--dataDir', data, '--api.port', String(apiPort), '--broker.host', '127.0.0.1', '--broker.port', '0', '--ble.enabled', 'false', '--discovery.enabled', 'false']);
  await gw.waitForLog('ledger lost', (l) => l.msg.startsWith('ledger lost: '));
  const api = ['--api', `http://127.0.0.1:${apiPort}`];
  let status = await otiIn(['status', ...api], base);
  await waitUntil('the waiting gateway answers', async () => {
    status = await otiIn(['status', ...api], base);
    return status.code === 1;
  });
  assert.equal(errorCode(status), 'ERR_API');
  assert.ok(status.stderr.length > 300, 'longer than the old bound');
  assert.ok(status.stderr.includes(`oti ledger accept-loss --data ${data} [ERR_LEDGER_LOST]`), status.stderr);
  assert.equal(existsSync(join(data, 'ledger-decision.json')), false);
});
