/**
 * The last-checkpoint record across `oti backup` and `oti restore` (the real CLI in a child
 * process); the record itself is tested in test/unit/checkpoint-record.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Signer } from '../../ledger/crypto.js';
import { signCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { CheckpointRecord, readLastCheckpoint } from '../../gateway/sync/checkpoint-record.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { tempDir } from '../support/site.js';
import { oti } from '../support/oti-cli.js';

void test('oti restore over a folder that recorded a longer chain keeps that record', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-restore-record-');
  const data = join(dir, 'data');
  const id = await loadOrCreateIdentity(data);
  const origin = `oti/${id.trust.siteId}/${id.gatewayId}`;
  const own = new Signer(id.key.seed);
  const cp = (size: number): SignedCheckpoint => signCheckpoint({ origin, size, root: new Uint8Array(32).fill(size), block: size, blockHash: new Uint8Array(32) }, own, origin);
  const write = async (size: number): Promise<void> => {
    const r = new CheckpointRecord(data, undefined, () => undefined);
    r.note(cp(size));
    await r.close();
  };
  await write(10);
  const env = { OTI_BACKUP_PASSPHRASE: 'a backup passphrase' };
  assert.equal((await oti(['backup', '--data', data, '--out', join(dir, 'gw.otibak')], { env })).code, 0);
  await write(25);
  const r = await oti(['restore', join(dir, 'gw.otibak'), '--data', data, '--force', '--yes', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { keptRecord: number }).keptRecord, 25);
  assert.equal((await readLastCheckpoint(data, origin, id.key.publicKey))?.size, 25, 'the record of the longer chain was kept');
});
