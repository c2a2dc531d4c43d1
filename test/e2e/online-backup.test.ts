/**
 * `oti backup` of a running gateway (issue 21.4): the real gateway process appends demo lock
 * events while the real `oti backup` copies its data folder; `oti restore` brings the copy back
 * into a new folder, `oti verify` finds every chain whole, and the restored folder holds at least
 * the entries the gateway had before the backup began.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway } from '../support/gateway-process.js';
import { errorCode, oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';

interface Verified {
  ok: boolean;
  copy: boolean;
  chains: { role: string; ok: boolean; report?: { entries: number } }[];
}

const ownEntries = (v: Verified): number => v.chains.find((c) => c.role === 'self')?.report?.entries ?? 0;

void test('oti backup of a running gateway restores into a folder whose chain verifies', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-online-backup-');
  const dataDir = join(dir, 'data');
  const gw = startGateway(['--demo.locks', '2', '--demo.rate', '20', '--dataDir', dataDir, '--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false']);
  t.after(async () => {
    gw.proc.kill('SIGKILL');
    await gw.exited;
  });
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 120_000);

  let before = 0;
  await waitUntil('the running gateway has appended lock events', async () => {
    const v = await oti(['verify', '--data', dataDir, '--json']);
    before = v.code === 0 ? ownEntries(v.json<Verified>()) : 0;
    return before >= 20;
  });

  const env = { OTI_BACKUP_PASSPHRASE: 'online backup passphrase' };
  const b = await oti(['backup', '--data', dataDir, '--out', join(dir, 'gw.otibak'), '--json'], { env });
  assert.equal(b.code, 0, `${errorCode(b) ?? ''} ${b.stderr}`);
  assert.equal(b.json<{ live: boolean }>().live, true, 'the gateway held the ledger: the backup came from a copy');
  assert.equal(gw.proc.exitCode, null, 'the gateway kept running');

  const r = await oti(['restore', join(dir, 'gw.otibak'), '--data', join(dir, 'restored'), '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const v = await oti(['verify', '--data', join(dir, 'restored'), '--json']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const restored = v.json<Verified>();
  assert.equal(restored.copy, false, 'the restored ledger is opened in place, not in use');
  assert.ok(restored.chains.every((c) => c.ok));
  assert.ok(ownEntries(restored) >= before, `the backup holds the ${before} entries seen before it began (it has ${ownEntries(restored)})`);
});
