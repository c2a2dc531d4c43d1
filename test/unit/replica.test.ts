/**
 * ChainReplica with lockSignatures 'audit': blocks are stored once everything but the lock
 * signatures verifies, and audit() checks those afterwards, in order, keeping its watermark in
 * the store across restarts; a forged lock signature stops the audit at its entry. Real LevelDB
 * stores on disk; the source is a real chain.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeSite, enrollLock, openChain, signedEvent, tempDir, type TestSite } from '../support/site.js';
import { ChainReplica, type ReplicaBlock } from '../../ledger/peer.js';
import { LedgerStore, lockIdKey } from '../../ledger/store.js';
import type { Chain } from '../../ledger/chain.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { SignaturePool } from '../../ledger/sigpool.js';
import { OtiError } from '../../ledger/base/errors.js';

async function blocksOf(chain: Chain, from: number, to = chain.head.n): Promise<ReplicaBlock[]> {
  const out: ReplicaBlock[] = [];
  for await (const b of chain.blocks(from, to)) out.push({ headerBytes: b.headerBytes, checkpoint: b.checkpoint, entries: await chain.entryRange(b.header.first, b.header.first + b.header.count) });
  return out;
}

/** A source chain of `blocks` blocks of `per` events; `forge` names events (1-based, over all) whose signature is forged. */
async function source(t: TestContext, site: TestSite, blocks: number, per: number, forge: ReadonlySet<number> = new Set()): Promise<Chain> {
  const { chain } = await openChain(t, site, { sealDelayMs: 1 });
  const lock = enrollLock(site, 'door');
  await chain.append({ kind: 'roster', signed: lock.statement });
  const forger = new Signer(generateKeyPair().seed);
  let n = 0;
  for (let b = 0; b < blocks; b++) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < per; i++) {
      n++;
      const cose = forge.has(n) ? coseSign1(forger, encodeLockEvent({ lock: 'door', ctr: ++lock.ctr, time: 1_700_000_000_000, type: 'unlocked' })) : signedEvent(lock);
      batch.push(chain.append({ kind: 'lock-event', cose }, { preverified: true }));
    }
    await Promise.all(batch);
    await chain.flush();
  }
  return chain;
}

async function replicaStore(t: TestContext): Promise<string> {
  return join(await tempDir(t), 'replica');
}

void test('an audited replica stores first, then checks every lock signature in order and remembers how far it got', async (t) => {
  const site = makeSite();
  const chain = await source(t, site, 6, 20);
  const path = await replicaStore(t);
  const pool = new SignaturePool(1);
  t.after(() => pool.close());
  let store = await LedgerStore.open(path);
  let r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  const all = await blocksOf(chain, 0);
  await r.append(all.slice(0, 4));
  assert.equal(r.size, (await chain.block(3)).header.first + (await chain.block(3)).header.count);
  assert.deepEqual(r.audited, { size: 0, failure: undefined }, 'nothing audited before audit()');
  // Closed before any audit: the replica comes back with nothing audited (not taken for an old, pre-audit replica).
  await store.close();
  store = await LedgerStore.open(path);
  r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  assert.equal(r.audited.size, 0);
  assert.deepEqual(await r.audit(), { size: r.size, failure: undefined });
  // More blocks; after a restart the audit goes on from its watermark.
  await r.append(all.slice(4));
  assert.ok(r.audited.size < r.size);
  await store.close();
  store = await LedgerStore.open(path);
  r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  const before = r.audited.size;
  assert.ok(before > 0 && before < r.size, `resumes from ${before}`);
  assert.deepEqual(await r.audit(), { size: chain.size, failure: undefined });
  await store.close();
  // A replica kept with signatures checked before storing counts as audited whole.
  const path2 = await replicaStore(t);
  const store2 = await LedgerStore.open(path2);
  t.after(() => store2.close());
  const full = await ChainReplica.open(store2, chain.origin, 'peer', { trust: site.trust });
  await full.append(all);
  assert.deepEqual(full.audited, { size: chain.size, failure: undefined });
  const reopened = await ChainReplica.open(store2, chain.origin, 'peer', { trust: site.trust, lockSignatures: 'audit' });
  assert.deepEqual(reopened.audited, { size: chain.size, failure: undefined });
});

void test('a forged lock signature is stored with its block but stops the audit at its entry, before and after a restart', async (t) => {
  const site = makeSite();
  const chain = await source(t, site, 5, 10, new Set([33]));
  const forgedAt = 2 + 32; // genesis, the lock's enrolment, then events 1..32
  const path = await replicaStore(t);
  const pool = new SignaturePool(1);
  t.after(() => pool.close());
  let store = await LedgerStore.open(path);
  t.after(() => store.close());
  // Checked before storing, the block is refused whole.
  const strict = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool });
  await assert.rejects(strict.append(await blocksOf(chain, 0)), (e: Error & { code?: string }) => e.code === 'ERR_LOCK_SIGNATURE' && e.message.includes(`entry ${forgedAt} `));
  assert.equal(strict.size, 0);
  await store.close();
  store = await LedgerStore.open(await replicaStore(t));
  let r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  await r.append(await blocksOf(chain, 0));
  assert.equal(r.size, chain.size);
  const state = await r.audit();
  assert.equal((state.failure as Error & { code?: string }).code, 'ERR_LOCK_SIGNATURE');
  assert.match(state.failure!.message, new RegExp(`entry ${forgedAt} `));
  assert.ok(state.size <= forgedAt);
  assert.equal((await r.audit()).failure, state.failure, 'a failed audit stays failed');
  r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  assert.equal((await r.audit()).failure?.message, state.failure!.message, 'found again after a restart');
});

void test('switched to checking before storing, a replica still audits what it stored unaudited', async (t) => {
  const site = makeSite();
  // Blocks: the gateway's enrolment, the lock's, then ten events each; event 5 (entry 6) is forged.
  const chain = await source(t, site, 6, 10, new Set([5]));
  const all = await blocksOf(chain, 0);
  const path = await replicaStore(t);
  let store = await LedgerStore.open(path);
  t.after(() => store.close());
  const audited = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, lockSignatures: 'audit' });
  await audited.append(all.slice(0, 3));
  await store.close();
  store = await LedgerStore.open(path);
  const strict = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, lockSignatures: 'before-storing' });
  // Nothing is taken as checked that was not, and blocks checked whole do not jump the watermark.
  assert.equal(strict.audited.size, 0);
  await strict.append(all.slice(3, 4));
  assert.equal(strict.audited.size, 0);
  const state = await strict.audit();
  assert.equal((state.failure as Error & { code?: string }).code, 'ERR_LOCK_SIGNATURE');
  assert.match(state.failure!.message, /entry 6 /);
  assert.ok(state.size <= 6);
});

void test('an audit interrupted by a failing signature worker is not a verdict on the chain', async (t) => {
  const site = makeSite();
  const chain = await source(t, site, 3, 10);
  const store = await LedgerStore.open(await replicaStore(t));
  t.after(() => store.close());
  const real = new SignaturePool(1);
  t.after(() => real.close());
  let fail = true;
  const pool = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'verifyPackedBatch') {
        return (buf: Uint8Array) => {
          if (fail) {
            fail = false;
            return Promise.reject(new OtiError('ERR_SIGNATURE', 'a signature worker exited'));
          }
          return target.verifyPackedBatch(buf);
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit' });
  await r.append(await blocksOf(chain, 0));
  await assert.rejects(r.audit(), (e: Error & { code?: string }) => e.code === 'ERR_SIGNATURE');
  assert.deepEqual(r.audited, { size: 0, failure: undefined });
  assert.deepEqual(await r.audit(), { size: chain.size, failure: undefined });
});

void test('the audit checks only the lock signatures: a forged one in a block that verified whole is caught, from memory and read back from the store', async (t) => {
  const site = makeSite();
  // Blocks: the gateway's enrolment, the lock's, then twelve blocks of 50 events; event 420 (entry 421) is forged.
  const chain = await source(t, site, 12, 50, new Set([420]));
  const all = await blocksOf(chain, 0);
  const pool = new SignaturePool(1);
  t.after(() => pool.close());
  // Everything but the lock signature verifies: the blocks are stored, and the audit is what catches it.
  for (const queueBytes of [undefined, 0, 20_000]) {
    const store = await LedgerStore.open(await replicaStore(t));
    t.after(() => store.close());
    const r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, pool, lockSignatures: 'audit', ...(queueBytes !== undefined ? { auditQueueBytes: queueBytes } : {}) });
    // Stored in several batches with an audit after every other one, as during a pull (with a
    // bound of 20,000 bytes the queue then holds packed signatures and blocks to read back).
    for (let i = 0; i < all.length; i += 3) {
      await r.append(all.slice(i, i + 3));
      if (i % 6 === 0) continue;
      const state = await r.audit();
      if (r.size <= 421) assert.deepEqual(state, { size: r.size, failure: undefined }, `queue bound ${queueBytes}: audited up to ${r.size}`);
    }
    assert.equal(r.size, chain.size);
    const state = await r.audit();
    assert.equal((state.failure as Error & { code?: string }).code, 'ERR_LOCK_SIGNATURE', `queue bound ${queueBytes}`);
    assert.match(state.failure!.message, /entry 421 /);
    assert.ok(state.size <= 421);
  }
});

void test('a replica\'s entry-id records, written many to a buffer, find every lock event by its lock and counter', async (t) => {
  const site = makeSite();
  // 2,100 lock events in one append: their records (about 50 bytes each) outgrow the buffer's first 16 kB.
  const chain = await source(t, site, 3, 700);
  const store = await LedgerStore.open(await replicaStore(t));
  t.after(() => store.close());
  const r = await ChainReplica.open(store, chain.origin, 'peer', { trust: site.trust, lockSignatures: 'audit' });
  await r.append(await blocksOf(chain, 0));
  const cs = await store.chain(chain.origin, 'peer');
  // Entry 0 enrols the gateway, entry 1 the lock; event ctr is entry ctr + 1.
  for (let ctr = 1; ctr <= 2100; ctr++) assert.equal(await cs.indexOfId(lockIdKey('door', ctr)), ctr + 1, `counter ${ctr}`);
  assert.equal(await cs.indexOfId(lockIdKey('door', 2101)), undefined);
  assert.deepEqual(await cs.lastLockCounter('door'), { ctr: 2100, index: 2101 });
});
