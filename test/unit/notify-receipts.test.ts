/**
 * The receipts of committed MQTT statuses (gateway/notify/status-receipts.ts) are byte for byte
 * those of receiptFor (ledger/receipt.ts), over several blocks, a roster that changes between
 * them (new lock, new roster proofs), lock events and other entries, and they verify offline; the
 * inclusion proofs they carry (gateway/notify/inclusion-paths.ts) are ledger/merkle.ts's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, signedEvent, openChain } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { receiptFor, verifyReceipt, decodeReceipt } from '../../ledger/receipt.js';
import { decodeEntry } from '../../ledger/entry.js';
import { StatusReceipts } from '../../gateway/notify/status-receipts.js';
import { InclusionPaths } from '../../gateway/notify/inclusion-paths.js';
import { inclusionProof, leafHash, nodeHash } from '../../ledger/merkle.js';

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

void test('inclusion paths are inclusionProof for every entry of every tree size, sizes growing and going back', async () => {
  // Stored nodes of a tree of 300 leaves: level 0 the leaves, each level up the perfect pairs.
  const levels: Uint8Array[][] = [Array.from({ length: 300 }, (_, i) => leafHash(Uint8Array.of(i & 0xff, i >> 8)))];
  for (let lv = levels[0]!; lv.length > 1; ) {
    const up: Uint8Array[] = [];
    for (let i = 0; i + 1 < lv.length; i += 2) up.push(nodeHash(lv[i]!, lv[i + 1]!));
    levels.push(up);
    lv = up;
  }
  let reads = 0;
  const reader = {
    node: (level: number, index: number): Promise<Uint8Array> => {
      reads++;
      const h = levels[level]?.[index];
      return h === undefined ? Promise.reject(new Error(`no node ${level}/${index}`)) : Promise.resolve(h);
    },
  };
  const paths = new InclusionPaths(reader.node);
  for (const size of [1, 2, 3, 5, 8, 13, 64, 65, 100, 127, 128, 129, 255, 256, 257, 300, 7, 299]) {
    for (let i = 0; i < size; i++) assert.deepEqual(await paths.proof(i, size), await inclusionProof(reader, i, size), `entry ${i} of ${size}`);
  }
  // Each stored node is read once by the paths (inclusionProof's own reads are counted too).
  const before = reads;
  await paths.proof(10, 300);
  assert.equal(reads, before);
});
