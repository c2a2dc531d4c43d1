/**
 * A gateway identity with a file missing (hardening issue 13.7): start-up stops with
 * ERR_IDENTITY_INCOMPLETE naming the file and the remedy, and no key file is written over. A
 * development identity is made only in a folder with no trace of one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { tempDir } from '../support/site.js';
import { startGateway } from '../support/gateway-process.js';

const KEY_FILES = ['gateway.key', 'dev-site.key'];

async function bytesOf(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const f of KEY_FILES) out.set(f, await readFile(join(dir, f)).catch(() => Buffer.alloc(0)));
  return out;
}

for (const missing of ['site.json', 'gateway.key', 'dev-site.key']) {
  void test(`an identity without ${missing} stops with ERR_IDENTITY_INCOMPLETE naming it; no key file is rewritten`, async (t) => {
    const dir = join(await tempDir(t, 'oti-identity-'), 'data');
    const first = await loadOrCreateIdentity(dir);
    assert.equal(first.created, true);
    await rm(join(dir, missing));
    const before = await bytesOf(dir);
    await assert.rejects(loadOrCreateIdentity(dir), (e: unknown) => {
      assert.ok(isOtiError(e, 'ERR_IDENTITY_INCOMPLETE'), String(e));
      assert.equal(e.details?.['path'], join(dir, missing));
      assert.match(e.message, new RegExp(`${missing.replace('.', '\\.')} is missing`));
      assert.match(e.message, /backup|bundle/);
      return true;
    });
    assert.deepEqual(await bytesOf(dir), before, 'the key files are byte for byte what they were');
    assert.ok(!(await readdir(dir)).includes(missing), `${missing} was not made again`);
  });
}

void test('a folder holding only a ledger gets no development identity', async (t) => {
  const dir = join(await tempDir(t, 'oti-identity-'), 'data');
  await mkdir(join(dir, 'ledger'), { recursive: true });
  await assert.rejects(loadOrCreateIdentity(dir), (e: unknown) => isOtiError(e, 'ERR_IDENTITY_INCOMPLETE'));
  assert.deepEqual((await readdir(dir)).sort(), ['ledger']);
});

void test('the gateway process refuses to start without site.json, naming it, and keeps its key', { timeout: 60_000 }, async (t) => {
  const dir = join(await tempDir(t, 'oti-identity-'), 'data');
  await loadOrCreateIdentity(dir);
  await rm(join(dir, 'site.json'));
  const before = await bytesOf(dir);
  const gw = startGateway(['--ble.enabled', 'false', '--broker.port', '0', '--api.port', '0', '--discovery.enabled', 'false'], { OTI_DATA_DIR: dir });
  t.after(() => gw.proc.kill('SIGKILL'));
  assert.equal(await gw.exited, 1);
  assert.match(gw.stderr(), /site\.json is missing/);
  assert.match(gw.stderr(), /\[ERR_IDENTITY_INCOMPLETE\]/);
  assert.deepEqual(await bytesOf(dir), before);
});
