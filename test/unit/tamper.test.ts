/**
 * Any single mutated byte of a block, checkpoint, proof or receipt makes verification fail with
 * a coded error. Receipts and checkpoints are mutated at every byte position; blocks and proofs
 * at positions chosen by fast-check.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { makeSite, enrollLock, signedEvent, openChain } from '../support/site.js';
import { OtiError } from '../../ledger/base/errors.js';
import { receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { parseCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { ChainVerifier } from '../../ledger/verify.js';
import { inclusionProof, consistencyProof, assertInclusion, assertConsistency, leafHash, rangeHash } from '../../ledger/merkle.js';
import type { StoredBlock } from '../../ledger/store.js';

function isCoded(e: unknown): boolean {
  return e instanceof OtiError && typeof e.code === 'string' && e.code.startsWith('ERR_');
}

function mutate(b: Uint8Array, pos: number, xor: number): Uint8Array {
  const c = new Uint8Array(b);
  c[pos] = c[pos]! ^ xor;
  return c;
}

async function fixture(t: TestContext) {
  const site = makeSite();
  const lock = enrollLock(site, 'door-1');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  for (let round = 0; round < 4; round++) {
    await Promise.all(Array.from({ length: 5 }, () => oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) })));
  }
  await oc.chain.append({ kind: 'gap', lock: 'door-1', from: 30, to: 31 });
  await oc.chain.append({ kind: 'health', source: 'ble', status: 'adapter-reset' });
  const blocks: StoredBlock[] = [];
  for await (const b of oc.chain.blocks(0, oc.chain.head.n)) blocks.push(b);
  const entries = async (b: StoredBlock): Promise<Uint8Array[]> => {
    const out: Uint8Array[] = [];
    for await (const { bytes } of oc.chain.entries(b.header.first, b.header.first + b.header.count)) out.push(bytes);
    return out;
  };
  return { site, lock, oc, blocks, entries };
}

void test('every single-byte change of a receipt is refused with ERR_RECEIPT_INVALID', async (t) => {
  const { site, oc } = await fixture(t);
  for (const index of [0, 1, 5, oc.chain.size - 1]) {
    const receipt = await receiptFor(oc.chain, index);
    verifyReceipt(receipt, site.trust);
    for (let pos = 0; pos < receipt.length; pos++) {
      const xor = 1 + ((pos * 37 + index) % 255);
      assert.throws(() => verifyReceipt(mutate(receipt, pos, xor), site.trust), (e: unknown) => e instanceof OtiError && e.code === 'ERR_RECEIPT_INVALID', `receipt ${index}, byte ${pos}`);
    }
  }
});

void test('every single-byte change of a checkpoint is refused with a coded error', async (t) => {
  const { oc } = await fixture(t);
  const note = Buffer.from(oc.chain.checkpoint!.note, 'utf8');
  for (let pos = 0; pos < note.length; pos++) {
    for (const xor of [0x01, 0x20, 0x80]) {
      assert.throws(() => verifyCheckpoint(parseCheckpoint(mutate(note, pos, xor)), oc.chain.origin, oc.gatewayKey.publicKey), isCoded, `byte ${pos} ^ ${xor}`);
    }
  }
});

void test('a single-byte change anywhere in a block (header, checkpoint or entries) fails its verification', async (t) => {
  const { site, oc, blocks, entries } = await fixture(t);
  const all = await Promise.all(blocks.map(entries));
  // A verifier primed with every block before block k, then handed block k with one byte changed.
  const verifierBefore = async (k: number): Promise<ChainVerifier> => {
    const v = new ChainVerifier(oc.chain.origin, { trust: site.trust });
    for (let i = 0; i < k; i++) await v.addBlock(blocks[i]!.headerBytes, blocks[i]!.checkpoint, all[i]!);
    await v.finish();
    return v;
  };
  await fc.assert(
    fc.asyncProperty(fc.nat(blocks.length - 1), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.constantFrom('header', 'checkpoint', 'entry'), async (k, at, xor, part) => {
      const b = blocks[k]!;
      const es = all[k]!;
      const v = await verifierBefore(k);
      const attempt = async (): Promise<void> => {
        if (part === 'header') {
          await v.addBlock(mutate(b.headerBytes, at % b.headerBytes.length, xor), b.checkpoint, es);
        } else if (part === 'checkpoint') {
          const note = Buffer.from(b.checkpoint.note, 'utf8');
          await v.addBlock(b.headerBytes, parseCheckpoint(mutate(note, at % note.length, xor)), es);
        } else {
          const i = at % es.length;
          const changed = es.map((e, j) => (j === i ? mutate(e, Math.floor(at / es.length) % e.length, xor) : e));
          await v.addBlock(b.headerBytes, b.checkpoint, changed);
        }
        await v.finish();
      };
      await assert.rejects(attempt(), isCoded);
    }),
    { numRuns: 300 },
  );
});

void test('a single changed byte in an inclusion or consistency proof is refused with ERR_PROOF_INVALID', async (t) => {
  const { oc } = await fixture(t);
  const cs = oc.chain;
  const size = oc.chain.size;
  const root = oc.chain.checkpoint!.root;
  await fc.assert(
    fc.asyncProperty(fc.nat(size - 1), fc.integer({ min: 1, max: size - 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (index, oldSize, at, xor) => {
      const proof = await inclusionProof(cs, index, size);
      const leaf = leafHash(await cs.entry(index));
      assertInclusion(leaf, index, size, proof, root);
      if (proof.length > 0) {
        const which = at % proof.length;
        const bad = proof.map((p, i) => (i === which ? mutate(p, Math.floor(at / proof.length) % 32, xor) : p));
        assert.throws(() => assertInclusion(leaf, index, size, bad, root), (e: unknown) => e instanceof OtiError && e.code === 'ERR_PROOF_INVALID');
      }
      const cproof = await consistencyProof(cs, oldSize, size);
      const oldRoot = await rangeHash(cs, 0, oldSize);
      assertConsistency(oldSize, size, oldRoot, root, cproof);
      if (cproof.length > 0) {
        const which = at % cproof.length;
        const bad = cproof.map((p, i) => (i === which ? mutate(p, Math.floor(at / cproof.length) % 32, xor) : p));
        assert.throws(() => assertConsistency(oldSize, size, oldRoot, root, bad), (e: unknown) => e instanceof OtiError && e.code === 'ERR_PROOF_INVALID');
      }
    }),
    { numRuns: 200 },
  );
});
