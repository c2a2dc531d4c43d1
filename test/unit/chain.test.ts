import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSite, enrollLock, signedEvent, openChain, tempDir } from '../support/site.js';
import { LedgerStore } from '../../ledger/store.js';
import type { AppendResult } from '../../ledger/chain.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { rangeHash, verifyInclusion, leafHash } from '../../ledger/merkle.js';
import { verifyCheckpoint } from '../../ledger/checkpoint.js';
import { decodeEntry, encodeEntry, type EntryInput } from '../../ledger/entry.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { toHex } from '../../ledger/crypto.js';

void test('concurrent appends share blocks, resolve once durable, and survive a reopen', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'front-door');
  const oc = await openChain(t, site, { sealDelayMs: 10 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const events = Array.from({ length: 300 }, () => signedEvent(lock));
  const results = await Promise.all(events.map((cose) => oc.chain.append({ kind: 'lock-event', cose })));
  assert.equal(oc.chain.size, 302);
  const blocks = new Set(results.map((r) => r.block));
  assert.ok(blocks.size < 300, `300 concurrent appends should share blocks, used ${blocks.size}`);
  results.forEach((r, i) => {
    assert.equal(r.index, 2 + i);
    assert.equal(r.id, `front-door:${i + 1}`);
  });
  const cp = oc.chain.checkpoint!;
  verifyCheckpoint(cp, oc.chain.origin, oc.gatewayKey.publicKey);
  assert.deepEqual(cp.root, await rangeHash(oc.chain, 0, 302));

  const again = await oc.reopen();
  assert.equal(again.chain.size, 302);
  assert.equal(await again.chain.indexOf('front-door:17'), 18);
  assert.equal(await again.chain.lastCounter('front-door'), 300);
  const bytes = await again.chain.entry(18);
  assert.ok(verifyInclusion(leafHash(bytes), 18, 302, await import('../../ledger/merkle.js').then((m) => m.inclusionProof(again.chain, 18, 302)), cp.root));
  const r = await again.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  assert.equal(r.index, 302);
});

void test('append refuses unknown locks, bad signatures and counters that do not increase', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'back-door');
  const stranger = enrollLock(site, 'stranger');
  const oc = await openChain(t, site);
  await assert.rejects(oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) }), (e) => isOtiError(e, 'ERR_LOCK_UNKNOWN'));
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  // signed by another lock's key
  const forged = signedEvent({ ...stranger, id: 'back-door', ctr: 10 } as typeof stranger);
  await assert.rejects(oc.chain.append({ kind: 'lock-event', cose: forged }), (e) => isOtiError(e, 'ERR_LOCK_SIGNATURE'));
  const first = signedEvent(lock);
  await oc.chain.append({ kind: 'lock-event', cose: first });
  await assert.rejects(oc.chain.append({ kind: 'lock-event', cose: first }), (e) => isOtiError(e, 'ERR_ENTRY_INVALID'));
  assert.equal(oc.chain.size, 3);
});

void test('the ledger folder is created 0700, as private as the data folder around it', async (t) => {
  // Twenty in a row: LevelDB's object starts opening (and creating the folder 0755) as soon as it
  // is made, which raced the store's own mkdir in a few opens of every hundred.
  const dir = await tempDir(t);
  for (let i = 0; i < 20; i++) {
    const path = join(dir, `${i}`, 'data', 'ledger');
    const store = await LedgerStore.open(path);
    await store.close();
    assert.equal((await stat(path)).mode & 0o777, 0o700, path);
  }
});

void test('the newest entries, their proofs and lookups, served from memory, are what a freshly opened store gives', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'side-door');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const { inclusionProof } = await import('../../ledger/merkle.js');
  const proofs = new Map<number, Uint8Array[]>();
  let last = 0;
  // Blocks of sizes that end inside, at and across 16-entry chunks.
  for (const n of [1, 3, 12, 16, 5, 20, 7, 40, 1]) {
    const results = await Promise.all(Array.from({ length: n }, () => oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) })));
    last += n;
    const size = oc.chain.size;
    const root = oc.chain.checkpoint!.root;
    for (let i = Math.max(0, size - 40); i < size; i++) {
      const proof = await inclusionProof(oc.chain, i, size);
      assert.ok(verifyInclusion(leafHash(await oc.chain.entry(i)), i, size, proof, root), `entry ${i} of ${size}`);
      proofs.set(i, proof);
    }
    assert.equal(await oc.chain.indexOf(`side-door:${last}`), results.at(-1)!.index);
    assert.equal(await oc.chain.indexOf(`side-door:${last + 1}`), undefined);
    assert.equal(await oc.chain.indexOf(`side-door:${last + 1000}`), undefined);
  }
  const size = oc.chain.size;
  const again = await oc.reopen();
  for (const [i, proof] of [...proofs].filter(([i]) => i >= size - 40)) assert.deepEqual(await inclusionProof(again.chain, i, size), proof, `proof of entry ${i}`);
  assert.equal(await again.chain.indexOf(`side-door:${last}`), size - 1);
  assert.equal(await again.chain.indexOf(`side-door:${last + 1}`), undefined);
});

void test('a result gives the same id and decoding whichever way its entry was appended, and a lock enrolled here starts with no counter', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'side-door');
  const bare = enrollLock(site, 'bare-door', { unsigned: true });
  const oc = await openChain(t, site);
  const enrolled = await oc.chain.append({ kind: 'roster', signed: lock.statement });
  await oc.chain.append({ kind: 'roster', signed: bare.statement });
  // Enrolled in this chain and never before: no event can be stored for it.
  assert.equal(await oc.chain.lastCounter('side-door'), -1);
  assert.equal(enrolled.id, toHex(enrolled.leafHash));
  assert.equal(enrolled.entry.body.kind, 'roster');
  // Pre-verified (no decoding made while appending), checked here (decoded to check it), unsigned.
  const cose = signedEvent(lock);
  const fast = await oc.chain.append({ kind: 'lock-event', cose }, { preverified: true });
  const checked = await oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  const ev = encodeLockEvent({ lock: 'bare-door', ctr: 1, time: 1_700_000_000_001, type: 'locked' });
  const unsigned = await oc.chain.append({ kind: 'lock-event', unsignedEvent: ev });
  for (const [r, id] of [[fast, 'side-door:1'], [checked, 'side-door:2'], [unsigned, 'bare-door:1']] as const) {
    assert.equal(r.id, id);
    const stored = await oc.chain.entry(r.index);
    assert.deepEqual(r.leafHash, leafHash(stored));
    assert.deepEqual(r.entry, decodeEntry(stored));
  }
  const body = fast.entry.body;
  assert.ok(body.kind === 'lock-event' && body.prov === 'lock-signed');
  assert.deepEqual(body.cose, new Uint8Array(cose));
  assert.deepEqual(fast.entry, encodeEntry({ kind: 'lock-event', cose, time: fast.entry.time }, 0).entry);
});

void test('a block whose first entry came while the block before was written is sealed when its first entry has waited sealDelayMs: at once when that write ends, if it has', async (t) => {
  const site = makeSite();
  let clock = 1_700_000_000_000;
  const oc = await openChain(t, site, { sealDelayMs: 1000, now: () => clock });
  // Only setTimeout is mocked: LevelDB's writes still complete on their own.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const roster = (id: string): EntryInput => ({ kind: 'roster', signed: enrollLock(site, id).statement });
  /** Whether `p` settles within `ms` of real time, turning the event loop meanwhile (setImmediate is not mocked). */
  const settlesWithin = async (p: Promise<unknown>, ms: number): Promise<boolean> => {
    let done = false;
    void p.then(() => (done = true), () => (done = true));
    const end = performance.now() + ms;
    while (!done && performance.now() < end) await new Promise((r) => setImmediate(r));
    return done;
  };
  /** Appends `first`, seals its block by its timer, and appends `second` while that block is written, `waited` ms before the write ends. */
  const duringWrite = async (first: string, second: string, waited: number): Promise<[AppendResult, Promise<AppendResult>]> => {
    const p = oc.chain.append(roster(first));
    assert.equal(await settlesWithin(p, 200), false, `${first} waits for its seal delay`);
    t.mock.timers.tick(1000);
    const q = oc.chain.append(roster(second));
    clock += waited;
    return [await p, q];
  };
  // b has waited 10 ms when a's write ends: it waits for the rest of its delay.
  const [ra, b] = await duringWrite('lock-a', 'lock-b', 10);
  assert.equal(await settlesWithin(b, 300), false, 'b waits for the rest of its seal delay');
  t.mock.timers.tick(990);
  assert.equal(await settlesWithin(b, 5000), true, 'b is sealed 1000 ms after it arrived');
  const rb = await b;
  assert.equal(rb.block, ra.block + 1);
  // d has waited the whole delay when c's write ends: it is sealed then, without a timer.
  const [rc, d] = await duringWrite('lock-c', 'lock-d', 1000);
  assert.equal(await settlesWithin(d, 5000), true, 'd is sealed when c\'s write ends');
  assert.equal(rc.block, rb.block + 1);
  assert.equal((await d).block, rc.block + 1);
});
