/**
 * The last-checkpoint record (gateway/sync/checkpoint-record.ts) and the operator's decision about a
 * lost ledger (gateway/sync/ledger-decision.ts), on real files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { CheckpointRecord, readLastCheckpoint, readLastCheckpointRecord, LAST_CHECKPOINT_FILE } from '../../gateway/sync/checkpoint-record.js';
import { lossAccepted, writeLedgerDecision, LEDGER_DECISION_FILE } from '../../gateway/sync/ledger-decision.js';
import { tempDir } from '../support/site.js';

const ORIGIN = 'oti/site-1/gw-1';
const key = generateKeyPair();
const signer = new Signer(key.seed);

function checkpoint(size: number, origin = ORIGIN): SignedCheckpoint {
  const root = new Uint8Array(32).fill(size % 256);
  return signCheckpoint({ origin, size, root, block: size, blockHash: new Uint8Array(32).fill(1) }, signer, origin);
}

void test('the record follows the newest checkpoint; covering() waits until it is on disk', async (t) => {
  const dir = await tempDir(t, 'oti-record-');
  assert.equal(await readLastCheckpoint(dir, ORIGIN, key.publicKey), undefined);
  const errors: Error[] = [];
  const r = new CheckpointRecord(dir, undefined, (e) => errors.push(e));
  let covered = false;
  const waiting = r.covering(7).then(() => (covered = true));
  r.note(checkpoint(3));
  await r.covering(3);
  assert.equal(covered, false, 'not covered by a smaller checkpoint');
  assert.equal((await readLastCheckpoint(dir, ORIGIN, key.publicKey))?.size, 3);
  r.note(checkpoint(5));
  r.note(checkpoint(9));
  await waiting;
  assert.equal(covered, true);
  await r.close();
  assert.equal((await readLastCheckpoint(dir, ORIGIN, key.publicKey))?.size, 9, 'the newest one was written');
  assert.deepEqual(errors, []);
});

void test('a record noted as seen by peers says so (also for the checkpoint already on disk); the next checkpoint of the chain drops it', async (t) => {
  const dir = await tempDir(t, 'oti-record-');
  const first = checkpoint(4);
  const r = new CheckpointRecord(dir, undefined, () => undefined);
  r.note(first);
  await r.covering(4);
  assert.equal((await readLastCheckpointRecord(dir, ORIGIN, key.publicKey))?.seenByPeers, false);
  r.note(first, { seenByPeers: true });
  await r.close();
  assert.deepEqual(await readLastCheckpointRecord(dir, ORIGIN, key.publicKey).then((x) => [x?.checkpoint.note, x?.seenByPeers]), [first.note, true]);
  const again = new CheckpointRecord(dir, first, () => undefined);
  again.note(checkpoint(6));
  await again.close();
  assert.deepEqual(await readLastCheckpointRecord(dir, ORIGIN, key.publicKey).then((x) => [x?.checkpoint.size, x?.seenByPeers]), [6, false]);
});

void test('a record that is altered, of another chain or signed by another key stops start-up with a code naming the file', async (t) => {
  const dir = await tempDir(t, 'oti-record-');
  const r = new CheckpointRecord(dir, undefined, () => undefined);
  r.note(checkpoint(4));
  await r.close();
  const path = join(dir, LAST_CHECKPOINT_FILE);
  const good = await readFile(path, 'utf8');
  await assert.rejects(readLastCheckpoint(dir, ORIGIN, generateKeyPair().publicKey), (e: unknown) => isOtiError(e, 'ERR_CHECKPOINT_SIGNATURE') && e.message.includes(path));
  await assert.rejects(readLastCheckpoint(dir, 'oti/site-1/gw-2', key.publicKey), (e: unknown) => isOtiError(e) && e.message.includes(path));
  await writeFile(path, good.replace('\\n4\\n', '\\n40\\n'));
  await assert.rejects(readLastCheckpoint(dir, ORIGIN, key.publicKey), (e: unknown) => isOtiError(e, 'ERR_CHECKPOINT_SIGNATURE'));
  await writeFile(path, '{not json');
  await assert.rejects(readLastCheckpoint(dir, ORIGIN, key.publicKey), (e: unknown) => isOtiError(e, 'ERR_CHECKPOINT_FORMAT'));
});

void test('a decision accepts the loss only for the record it names, signed by the gateway key', async (t) => {
  const dir = await tempDir(t, 'oti-decision-');
  const record = checkpoint(12);
  assert.equal(await lossAccepted(dir, record, key.publicKey), false, 'no decision file');
  await writeLedgerDecision(dir, record, key.seed, Date.now());
  assert.equal(await lossAccepted(dir, record, key.publicKey), true);
  assert.equal(await lossAccepted(dir, checkpoint(13), key.publicKey), false, 'another record');
  assert.equal(await lossAccepted(dir, record, generateKeyPair().publicKey), false, 'another key');
  const path = join(dir, LEDGER_DECISION_FILE);
  const doc = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  await writeFile(path, JSON.stringify({ ...doc, time: Number(doc['time']) + 1 }));
  assert.equal(await lossAccepted(dir, record, key.publicKey), false, 'altered');
});
