import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { makeSite, enrollLock, signedEvent, openChain, enrollGateway, tempDir } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { verifyChain } from '../../ledger/verify.js';
import { SignaturePool } from '../../ledger/sigpool.js';
import { receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { compareWithChain, verifyEvidence, encodeEvidence, decodeEvidence } from '../../ledger/evidence.js';
import { LedgerStore, u64 } from '../../ledger/store.js';
import { decodeEntry, encodeEntry, lockEventScan, scanLockEventEntry, scanLockEventEntryAt } from '../../ledger/entry.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import type { EntrySpans } from '../../ledger/reader.js';
import { Chain } from '../../ledger/chain.js';
import { fastEncode, decodeTrusted } from '../../ledger/base/cbor.js';
import { join } from 'node:path';
import { CompactRange, leafHash } from '../../ledger/merkle.js';
import { encodeBlockHeader, blockHash, ZERO_HASH } from '../../ledger/block.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import { Signer } from '../../ledger/crypto.js';

ed.hashes.sha512 = (m: Uint8Array) => new Uint8Array(createHash('sha512').update(m).digest());
const nobleVerify = (pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean => ed.verify(sig, msg, pub);

/** Block 0 of chain `origin` holding `entries`, signed with the gateway key `seed`: its header and checkpoint. */
function firstBlock(origin: string, seed: Uint8Array, entries: readonly Uint8Array[], time: number): { headerBytes: Uint8Array; checkpoint: ReturnType<typeof signCheckpoint> } {
  const range = CompactRange.empty();
  for (const e of entries) range.append(leafHash(e));
  const headerBytes = encodeBlockHeader({ chain: origin, n: 0, prev: ZERO_HASH, first: 0, count: entries.length, root: range.root(), time });
  const checkpoint = signCheckpoint({ origin, size: entries.length, root: range.root(), block: 0, blockHash: blockHash(headerBytes) }, new Signer(seed), origin);
  return { headerBytes, checkpoint };
}

async function populated(t: TestContext, events = 400) {
  const site = makeSite();
  const locks = [enrollLock(site, 'door-a'), enrollLock(site, 'door-b'), enrollLock(site, 'gate', { unsigned: true })];
  const oc = await openChain(t, site, { sealDelayMs: 1, maxBlockEntries: 64 });
  for (const l of locks) await oc.chain.append({ kind: 'roster', signed: l.statement });
  const work: Promise<unknown>[] = [];
  for (let i = 0; i < events; i++) {
    const l = locks[i % 3]!;
    if (l.id === 'gate') {
      l.ctr++;
      const { encodeLockEvent } = await import('../../ledger/lockevent.js');
      work.push(oc.chain.append({ kind: 'lock-event', unsignedEvent: encodeLockEvent({ lock: 'gate', ctr: l.ctr, time: 1, type: 'door-ajar' }) }));
    } else {
      work.push(oc.chain.append({ kind: 'lock-event', cose: signedEvent(l) }));
    }
    if (i % 50 === 49) await Promise.all(work.splice(0));
  }
  await Promise.all(work);
  return { site, locks, oc };
}

void test('a whole chain and a range verify, on worker threads and inline, with progress', async (t) => {
  const { site, oc } = await populated(t);
  const pool = new SignaturePool(2);
  t.after(() => pool.close());
  const seen: number[] = [];
  const full = await verifyChain(oc.chain, { trust: site.trust, pool, onProgress: (p) => seen.push(p.entries) });
  assert.equal(full.entries, oc.chain.size);
  assert.equal(full.unsignedEvents, 133);
  assert.equal(full.lockSignatures, 267);
  assert.deepEqual(full.root, oc.chain.checkpoint!.root);
  assert.equal(seen.length, oc.chain.head.n + 1);
  assert.ok(seen.every((v, i) => i === 0 || v > seen[i - 1]!));
  const inline = await verifyChain(oc.chain, { trust: site.trust, ed25519: nobleVerify });
  assert.deepEqual(inline.root, full.root);
  const mid = Math.floor(oc.chain.head.n / 2);
  const range = await verifyChain(oc.chain, { trust: site.trust, pool, fromBlock: mid, toBlock: oc.chain.head.n });
  assert.equal(range.blocks, oc.chain.head.n - mid + 1);
  assert.deepEqual(range.root, full.root);
});

void test('a chain is refused under the wrong site keys', async (t) => {
  const { oc } = await populated(t, 30);
  const other = makeSite();
  await assert.rejects(verifyChain(oc.chain, { trust: { siteId: 'site-1', siteKeys: other.trust.siteKeys } }), (e) => isOtiError(e, 'ERR_ROSTER'));
});

void test('an entry rewritten on disk is found by verification, and the store refuses to open a corrupt tail', async (t) => {
  const { site, oc } = await populated(t, 120);
  // Tampering goes to the store under the chain, as a disk error or an attacker would.
  const cs = await oc.store.chain(oc.chain.origin, 'self');
  // Rewrite one stored event inside chunk 2 with another valid event of the same lock.
  const chunk = (decodeTrusted((await cs.chunks.get(u64(2)))!) as Uint8Array[]).slice();
  const forged = (await cs.entry(2 * 16 + 7)).slice();
  forged[forged.length - 1] = forged[forged.length - 1]! ^ 1; // the entry's time
  chunk[7] = forged;
  await oc.store.write([{ type: 'put', sublevel: cs.chunks, key: u64(2), value: fastEncode.bytesArray(chunk) }]);
  const fresh = await oc.reopen();
  await assert.rejects(verifyChain(fresh.chain, { trust: site.trust }), (e) => isOtiError(e, 'ERR_BLOCK_INVALID'));

  // Corrupt the last chunk: the chain must not open for use.
  const last = Math.floor((fresh.chain.size - 1) / 16);
  const freshStore = await fresh.store.chain(fresh.chain.origin, 'self');
  const tail = (decodeTrusted((await freshStore.chunks.get(u64(last)))!) as Uint8Array[]).slice();
  const e0 = tail[0]!.slice();
  e0[e0.length - 1] = e0[e0.length - 1]! ^ 1;
  tail[0] = e0;
  await fresh.store.write([{ type: 'put', sublevel: freshStore.chunks, key: u64(last), value: fastEncode.bytesArray(tail) }]);
  await assert.rejects(fresh.reopen(), (e) => isOtiError(e, 'ERR_STORE_CORRUPT'));
});

void test('receipts verify offline with only the site keys, with node:crypto and with @noble/ed25519 alone', async (t) => {
  const { site, oc } = await populated(t, 60);
  for (const index of [0, 3, 10, oc.chain.size - 1]) {
    const r = await receiptFor(oc.chain, index);
    const a = verifyReceipt(r, site.trust);
    const b = verifyReceipt(r, site.trust, { ed25519: nobleVerify });
    assert.equal(a.index, index);
    assert.equal(b.provenance, a.provenance);
  }
  const lockSigned = verifyReceipt(await receiptFor(oc.chain, 4), site.trust, { ed25519: nobleVerify });
  assert.equal(lockSigned.provenance, 'lock-signed');
  const r4 = await receiptFor(oc.chain, 4);
  assert.throws(() => verifyReceipt(r4, makeSite().trust), (e: unknown) => isOtiError(e, 'ERR_RECEIPT_INVALID') && e.details?.['cause'] === 'ERR_ROSTER');
});

void test('two checkpoints of one chain that are not consistent make equivocation evidence', async (t) => {
  const site = makeSite();
  const gw = enrollGateway(site, 'gw-1');
  const lock = enrollLock(site, 'door-a');
  // The same gateway key writes two different histories (a restored backup that forked).
  const mk = async (dir: string, n: number): Promise<{ store: LedgerStore; chain: Chain }> => {
    const store = await LedgerStore.open(join(dir, 'ledger'));
    const chain = await Chain.open({ store, trust: site.trust, gatewayId: 'gw-1', key: gw.key, genesis: gw.statement, sealDelayMs: 1 });
    await chain.append({ kind: 'roster', signed: lock.statement });
    for (let i = 0; i < n; i++) await chain.append({ kind: 'health', source: 'test', status: `${dir.slice(-4)}-${i}` });
    t.after(async () => {
      await chain.close();
      await store.close();
    });
    return { store, chain };
  };
  const a = await mk(await tempDir(t), 5);
  const b = await mk(await tempDir(t), 9);
  const key = gw.key.publicKey;
  const ev = await compareWithChain(b.chain, b.chain.checkpoint!, a.chain.checkpoint!, key);
  assert.ok(ev !== undefined);
  assert.ok(verifyEvidence(ev, key));
  assert.ok(verifyEvidence(decodeEvidence(encodeEvidence(ev)), key, nobleVerify));
  const id = await b.store.recordEvidence('equivocation', encodeEvidence(ev));
  assert.equal((await b.store.listEvidence())[0]!.key, `equivocation/${id}`);
  // An honest older checkpoint of the same chain is consistent: no evidence.
  const older = b.chain.checkpoint!;
  await b.chain.append({ kind: 'health', source: 'test', status: 'later' });
  assert.equal(await compareWithChain(b.chain, b.chain.checkpoint!, older, key), undefined);
  // Evidence does not verify under another key, nor when tampered.
  assert.equal(verifyEvidence(ev, enrollGateway(site, 'x').key.publicKey), false);
  assert.equal(verifyEvidence({ ...ev, root: ev.a.root }, key), false);
});

void test('a gap of the lock form with a refusal code (docs/PROTOCOL.md §Entries) verifies in the chain and in a receipt; a malformed code is refused', async (t) => {
  const { site, oc } = await populated(t, 6);
  const refused = await oc.chain.append({ kind: 'gap', lock: 'door-a', from: 3, to: 4, code: 'ERR_EVENT_INVALID' });
  const lost = await oc.chain.append({ kind: 'gap', lock: 'door-a', from: 5, to: 5 });
  await oc.chain.flush();
  const report = await verifyChain(oc.chain, { trust: site.trust, ed25519: nobleVerify });
  assert.equal(report.entries, oc.chain.size);
  const r = verifyReceipt(await receiptFor(oc.chain, refused.index), site.trust, { ed25519: nobleVerify });
  assert.equal(r.provenance, 'gateway');
  assert.deepEqual(decodeEntry(await oc.chain.entry(refused.index)).body, { kind: 'gap', lock: 'door-a', from: 3, to: 4, code: 'ERR_EVENT_INVALID' });
  assert.deepEqual(decodeEntry(await oc.chain.entry(lost.index)).body, { kind: 'gap', lock: 'door-a', from: 5, to: 5 });
  await assert.rejects(oc.chain.append({ kind: 'gap', lock: 'door-a', from: 6, to: 6, code: 'not a code' }), (e: unknown) => isOtiError(e, 'ERR_ENCODING_SCHEMA'));
});

void test('whole-chain verification (lock events checked where they lie) and block by block with decodings hold the same rules on counters and locks', async () => {
  const { ChainVerifier } = await import('../../ledger/verify.js');
  const { encodeEntry } = await import('../../ledger/entry.js');
  const site = makeSite();
  const gw = enrollGateway(site, 'gw-1');
  const origin = `oti/${site.siteId}/gw-1`;
  // Two locks whose ids have the same length, and a third that is not enrolled.
  const a = enrollLock(site, 'lock-a');
  const b = enrollLock(site, 'lock-b');
  const c = enrollLock(site, 'lock-c');
  const now = 1_700_000_000_000;
  const entry = (input: Parameters<typeof encodeEntry>[0]): Uint8Array => encodeEntry(input, now).bytes;
  const head = [entry({ kind: 'roster', signed: gw.statement }), entry({ kind: 'roster', signed: a.statement }), entry({ kind: 'roster', signed: b.statement })];
  const event = (lock: typeof a, ctr: number): Uint8Array => entry({ kind: 'lock-event', cose: signedEvent(lock, 'unlocked', { ctr }) });
  /** One block 0 of `entries`, signed by the gateway. */
  /** The entries as spans of two buffers, each entry between bytes that do not belong to it (as in a stored chunk). */
  const asSpans = (entries: Uint8Array[]): EntrySpans => {
    const half = Math.ceil(entries.length / 2);
    const pos = new Int32Array(3 * entries.length);
    const bufs = [entries.slice(0, half), entries.slice(half)].map((part, b) => {
      const out: number[] = [0xff, 0x1b];
      part.forEach((e, j) => {
        const i = b * half + j;
        pos[3 * i] = b;
        pos[3 * i + 1] = out.length;
        out.push(...e);
        pos[3 * i + 2] = out.length;
        out.push(0x18, 0xa1, 0x00);
      });
      return Uint8Array.from(out);
    });
    return { count: entries.length, bufs, pos };
  };
  const check = async (entries: Uint8Array[], mode: 'scan' | 'collect' | 'spans'): Promise<unknown> => {
    const v = new ChainVerifier(origin, { trust: site.trust });
    const { headerBytes, checkpoint } = firstBlock(origin, gw.key.seed, entries, now);
    try {
      await v.addBlock(headerBytes, checkpoint, mode === 'spans' ? asSpans(entries) : entries, mode === 'collect');
      return await v.finish();
    } catch (e) {
      return e;
    }
  };
  const good = [...head, event(a, 1), event(b, 1), event(a, 2), event(b, 5), event(a, 3)];
  const cases: { entries: Uint8Array[]; code: string | undefined; index?: number }[] = [
    { entries: good, code: undefined },
    { entries: [...good, event(b, 5)], code: 'ERR_ENTRY_INVALID', index: good.length },
    { entries: [...good, event(a, 2)], code: 'ERR_ENTRY_INVALID', index: good.length },
    { entries: [...good, event(c, 9)], code: 'ERR_LOCK_UNKNOWN', index: good.length },
    { entries: [...head, event(c, 1), ...good.slice(head.length)], code: 'ERR_LOCK_UNKNOWN', index: head.length },
  ];
  // A forged signature, and a lock event whose entry is cut short by a byte.
  const forged = event(b, 6).slice();
  const where = lockEventScan();
  assert.ok(scanLockEventEntry(forged, where));
  forged[where.sigStart + 5] = forged[where.sigStart + 5]! ^ 1;
  const cut = event(a, 4).subarray(0, -1);
  cases.push({ entries: [...good, forged], code: 'ERR_LOCK_SIGNATURE', index: good.length }, { entries: [...good, cut], code: 'ERR_ENCODING_MALFORMED', index: good.length });
  for (const [k, x] of cases.entries()) {
    for (const mode of ['scan', 'collect', 'spans'] as const) {
      const r = await check(x.entries, mode);
      if (x.code === undefined) {
        assert.ok(!(r instanceof Error), `case ${k}, ${mode}: ${String(r)}`);
        assert.equal((r as { lockSignatures: number }).lockSignatures, 5);
        assert.deepEqual((r as { root: Uint8Array }).root, (await check(x.entries, 'scan') as { root: Uint8Array }).root);
      } else {
        assert.ok(isOtiError(r, x.code as never), `case ${k}, ${mode}: ${String(r)}`);
        assert.equal((r as { details?: { index?: number } }).details?.index, x.index);
      }
    }
  }
});

void test('with a pool that shares with this thread and takes batches back, the failure reported is still the first in chain order', async (t) => {
  const { ChainVerifier } = await import('../../ledger/verify.js');
  const site = makeSite();
  const gw = enrollGateway(site, 'gw-1');
  const origin = `oti/${site.siteId}/gw-1`;
  const a = enrollLock(site, 'lock-a');
  const now = 1_700_000_000_000;
  const entry = (input: Parameters<typeof encodeEntry>[0]): Uint8Array => encodeEntry(input, now).bytes;
  const head = [entry({ kind: 'roster', signed: gw.statement }), entry({ kind: 'roster', signed: a.statement })];
  const events = Array.from({ length: 60 }, (_, i) => entry({ kind: 'lock-event', cose: signedEvent(a, 'unlocked', { ctr: i + 1 }) }));
  const forge = (e: Uint8Array): Uint8Array => {
    const out = new Uint8Array(e); // a copy (encodeEntry's bytes are a Buffer, whose slice() is a view)
    const where = lockEventScan();
    assert.ok(scanLockEventEntry(out, where));
    out[where.sigStart + 5] = out[where.sigStart + 5]! ^ 1;
    return out;
  };
  const pool = new SignaturePool(1, { callerShare: true, callerAfter: 3 });
  t.after(() => pool.close());
  const check = async (entries: Uint8Array[], withPool: boolean): Promise<unknown> => {
    const { headerBytes, checkpoint } = firstBlock(origin, gw.key.seed, entries, now);
    // Batches of two: many in flight, most of them still queued for the worker at the end.
    const v = new ChainVerifier(origin, { trust: site.trust, signatureBatch: 2, ...(withPool ? { pool } : {}) });
    try {
      await v.addBlock(headerBytes, checkpoint, entries, false);
      return await v.finish();
    } catch (e) {
      return e;
    }
  };
  const good = [...head, ...events];
  const before = pool.callerBatches;
  const pooled = await check(good, true);
  assert.ok(pool.callerBatches > before, 'this thread checked some of the batches');
  assert.deepEqual((pooled as { root: Uint8Array }).root, ((await check(good, false)) as { root: Uint8Array }).root);
  assert.equal((pooled as { lockSignatures: number }).lockSignatures, 60);
  const cases = [
    { name: 'one forged', at: [head.length + 33], index: head.length + 33 },
    { name: 'two forged', at: [head.length + 5, head.length + 51], index: head.length + 5 },
    { name: 'forged last', at: [good.length - 1], index: good.length - 1 },
  ];
  for (const c of cases) {
    const entries = good.map((e, i) => (c.at.includes(i) ? forge(e) : e));
    for (const withPool of [true, false]) {
      const result = await check(entries, withPool);
      assert.ok(isOtiError(result, 'ERR_LOCK_SIGNATURE'), `${c.name}: ${String(result)}`);
      assert.equal((result as { details?: { index?: number } }).details?.index, c.index, `${c.name}, pool ${withPool}`);
    }
  }
});

void test('a verifier that collects lock signatures tells its sink of each entry and hands the signatures over in chain order, holding every other rule', async () => {
  const { ChainVerifier } = await import('../../ledger/verify.js');
  const { SigPacker } = await import('../../ledger/sigpool.js');
  const { verifyPacked } = await import('../../ledger/sigbatch.js');
  const site = makeSite();
  const gw = enrollGateway(site, 'gw-1');
  const origin = `oti/${site.siteId}/gw-1`;
  const a = enrollLock(site, 'lock-a');
  const gate = enrollLock(site, 'gate', { unsigned: true });
  const now = 1_700_000_000_000;
  const entry = (input: Parameters<typeof encodeEntry>[0]): Uint8Array => encodeEntry(input, now).bytes;
  const head = [entry({ kind: 'roster', signed: gw.statement }), entry({ kind: 'roster', signed: a.statement }), entry({ kind: 'roster', signed: gate.statement })];
  const event = (ctr: number): Uint8Array => entry({ kind: 'lock-event', cose: signedEvent(a, 'unlocked', { ctr }) });
  const unsigned = (ctr: number): Uint8Array => entry({ kind: 'lock-event', unsignedEvent: encodeLockEvent({ lock: 'gate', ctr, time: 1, type: 'door-ajar' }) });
  const run = async (entries: Uint8Array[]) => {
    const { headerBytes, checkpoint } = firstBlock(origin, gw.key.seed, entries, now);
    const v = new ChainVerifier(origin, { trust: site.trust, lockSignatures: 'collect' });
    const told: unknown[] = [];
    const sink = {
      lockEvent: (index: number, lock: string, idBytes: Uint8Array | undefined, ctr: number) => told.push(['lock', index, lock, idBytes === undefined ? undefined : Buffer.from(idBytes).toString('utf8'), ctr]),
      entry: (index: number, e: ReturnType<typeof decodeEntry>, leaf: Uint8Array) => told.push(['entry', index, e.body.kind, Buffer.from(leaf).toString('hex')]),
    };
    const checked = await v.addBlock(headerBytes, checkpoint, entries, sink);
    assert.equal(checked.entries.length, 0, 'nothing collected beside the sink');
    await v.finish();
    return { told, collected: v.collected, taken: v.takeSignatures(), after: v.takeSignatures() };
  };
  const good = [...head, event(1), unsigned(1), event(2), event(7)];
  const r = await run(good);
  assert.deepEqual(r.told, [
    ...head.map((e, i) => ['entry', i, 'roster', Buffer.from(leafHash(e)).toString('hex')]),
    ['lock', 3, 'lock-a', 'lock-a', 1],
    ['lock', 4, 'gate', 'gate', 1],
    ['lock', 5, 'lock-a', 'lock-a', 2],
    ['lock', 6, 'lock-a', 'lock-a', 7],
  ]);
  // The signed events' signatures, in chain order, packed as SigPacker packs them from the decodings.
  assert.equal(r.collected, 3);
  assert.deepEqual(r.taken.indexes, [3, 5, 6]);
  const expected = new SigPacker();
  for (const i of [3, 5, 6]) {
    const body = decodeEntry(good[i]!).body;
    assert.ok(body.kind === 'lock-event' && body.prov === 'lock-signed');
    expected.addCose(a.key.publicKey, body.parsed.payload, body.parsed.signature);
  }
  assert.deepEqual(Buffer.from(r.taken.packed), Buffer.from(expected.take()));
  assert.deepEqual([...verifyPacked(r.taken.packed)], [1, 1, 1]);
  assert.equal(r.after.indexes.length, 0, 'taken once');
  // A forged signature is not checked here: it is handed over, and found where it lies.
  const forged = event(8).slice();
  const where = lockEventScan();
  assert.ok(scanLockEventEntry(forged, where));
  forged[where.sigStart + 5] = forged[where.sigStart + 5]! ^ 1;
  const f = await run([...good, forged]);
  assert.deepEqual([...verifyPacked(f.taken.packed)], [1, 1, 1, 0]);
  assert.equal(f.taken.indexes[3], good.length);
  // Every other rule still holds: a counter that does not increase, an unknown lock.
  await assert.rejects(run([...good, event(7)]), (e) => isOtiError(e, 'ERR_ENTRY_INVALID'));
  const other = enrollLock(site, 'lock-z');
  await assert.rejects(run([...good, entry({ kind: 'lock-event', cose: signedEvent(other) })]), (e) => isOtiError(e, 'ERR_LOCK_UNKNOWN'));
});

void test('a lock event scanned inside a larger buffer gets the answer and offsets a copy of its bytes gets, wherever its end is put', () => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  for (const bytes of [encodeEntry({ kind: 'lock-event', cose: signedEvent(lock) }, 1_700_000_000_000).bytes, encodeEntry({ kind: 'lock-event', unsignedEvent: encodeLockEvent({ lock: 'gate', ctr: 1, time: 1, type: 'door-ajar' }) }, 5).bytes]) {
    // The entry at offset 7 of a buffer that goes on with bytes of another entry.
    const buf = new Uint8Array(7 + bytes.length + 40);
    buf.fill(0x1b);
    buf.set(bytes, 7);
    buf.set(bytes.subarray(0, 40), 7 + bytes.length);
    for (let end = bytes.length - 12; end <= bytes.length + 12; end++) {
      const whole = lockEventScan();
      const inside = lockEventScan();
      const ok = scanLockEventEntry(buf.slice(7, 7 + end), whole);
      assert.equal(scanLockEventEntryAt(buf, 7, 7 + end, inside), ok, `end ${end}`);
      assert.equal(ok, end === bytes.length);
      if (ok) for (const k of ['lockStart', 'lockEnd', 'eventStart', 'eventEnd', 'sigStart', ...(whole.sigStart < 0 ? [] : (['coseStart', 'coseEnd'] as const))] as const) assert.equal(inside[k], whole[k] < 0 ? whole[k] : whole[k] + 7, k);
    }
  }
});

void test('a stored range read as spans holds the bytes entryRange gives, and a corrupt chunk is refused the same way', async (t) => {
  const { oc } = await populated(t, 90);
  const cs = await oc.store.chain(oc.chain.origin, 'self');
  for (const [from, to] of [[0, cs.head.size], [5, 6], [15, 17], [16, 32], [3, 61], [40, 40]] as const) {
    const list = await cs.entryRange(from, to);
    const spans = await cs.entrySpans(from, to);
    assert.equal(spans.count, list.length);
    for (let i = 0; i < list.length; i++) assert.deepEqual(Uint8Array.from(spans.bufs[spans.pos[3 * i]!]!.subarray(spans.pos[3 * i + 1]!, spans.pos[3 * i + 2]!)), Uint8Array.from(list[i]!), `entry ${from + i}`);
  }
  const chunk = (await cs.chunks.get(u64(1)))!.slice();
  await oc.store.write([{ type: 'put', sublevel: cs.chunks, key: u64(1), value: chunk.subarray(0, chunk.length - 1) }]);
  await assert.rejects(cs.entryRange(0, 40), (e) => isOtiError(e, 'ERR_STORE_CORRUPT'));
  await assert.rejects(cs.entrySpans(0, 40), (e) => isOtiError(e, 'ERR_STORE_CORRUPT'));
});
