/**
 * The receipts of committed MQTT statuses (gateway/notify/status-receipts.ts) are byte for byte
 * those of receiptFor (ledger/receipt.ts), over several blocks, a roster that changes between
 * them (new lock, new roster proofs), lock events and other entries, and they verify offline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, signedEvent, openChain } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { receiptFor, verifyReceipt, decodeReceipt } from '../../ledger/receipt.js';
import { decodeEntry } from '../../ledger/entry.js';
import { StatusReceipts } from '../../gateway/notify/status-receipts.js';

void test('status receipts are the bytes of receiptFor, block after block, and verify', async (t) => {
  const site = makeSite();
  const a = enrollLock(site, 'door-a');
  const b = enrollLock(site, 'door-b');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  const receipts = new StatusReceipts(oc.chain);
  await oc.chain.append({ kind: 'roster', signed: a.statement });
  await oc.chain.flush();
  const versions = new Set<number>();
  for (let block = 0; block < 12; block++) {
    // The second lock is enrolled half way: the roster tree (and its proofs) change.
    if (block === 6) await oc.chain.append({ kind: 'roster', signed: b.statement });
    await Promise.all(Array.from({ length: 1 + (block % 4) }, () => oc.chain.append({ kind: 'lock-event', cose: signedEvent(block >= 6 && block % 2 === 0 ? b : a) })));
    await oc.chain.flush();
    // Every entry against the newest checkpoint, with and without the decoded entry given.
    for (let i = 0; i < oc.chain.size; i++) {
      const expected = await receiptFor(oc.chain, i);
      const raw = await oc.chain.entry(i);
      assert.deepEqual(Buffer.from(await receipts.receipt(i)), Buffer.from(expected), `entry ${i} after block ${block}`);
      assert.deepEqual(Buffer.from(await receipts.receipt(i, decodeEntry(raw))), Buffer.from(expected));
      versions.add(decodeReceipt(expected).gatewayAt !== undefined ? 2 : 1);
    }
    verifyReceipt(await receipts.receipt(oc.chain.size - 1), site.trust);
  }
  // This chain's checkpoints commit to the roster: version 2 receipts, with the roster proofs.
  assert.deepEqual([...versions], [2]);
  await assert.rejects(receipts.receipt(oc.chain.size), (e) => isOtiError(e, 'ERR_NOT_FOUND'));
});
