/**
 * Receipts against an older checkpoint, with the newer checkpoint and the consistency proof they
 * carry, and a newer checkpoint the verifier holds (docs/PROTOCOL.md §Receipts, ledger/history.ts);
 * the statements and roster proofs are those of the older checkpoint's roster.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, signedEvent, openChain, type TestSite, type OpenedChain } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { receiptFor, verifyReceipt, decodeReceipt, encodeReceipt } from '../../ledger/receipt.js';
import { checkpointOfSize, consistencyBetween, rosterTreeAt } from '../../ledger/history.js';
import { signStatement } from '../../ledger/roster.js';
import { encodeTlogProof, receiptBytes } from '../../ledger/tlog-proof.js';

/** A chain of several blocks: one roster entry each for two locks, then events block by block. */
async function blocks(t: TestContext): Promise<{ site: TestSite; oc: OpenedChain; sizes: number[] }> {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const sizes: number[] = [oc.chain.size];
  for (let b = 0; b < 5; b++) {
    await Promise.all([0, 1, 2].map(() => oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) })));
    await oc.chain.flush();
    sizes.push(oc.chain.size);
  }
  return { site, oc, sizes };
}

const refused = (cause: string) => (e: unknown): boolean => isOtiError(e, 'ERR_RECEIPT_INVALID') && e.details?.['cause'] === cause;

void test('a receipt against an older checkpoint carries the latest one and verifies as its prefix', async (t) => {
  const { site, oc, sizes } = await blocks(t);
  const latest = oc.chain.checkpoint!;
  const old = sizes[1]!;
  const cp = await checkpointOfSize(oc.chain, old);
  assert.equal(cp?.size, old);
  const r = await receiptFor(oc.chain, 2, { size: old });
  const parts = decodeReceipt(r);
  assert.equal(parts.newer?.checkpoint, latest.note);
  const v = verifyReceipt(r, site.trust);
  assert.equal(v.checkpoint.size, old);
  assert.equal(v.newer?.size, latest.size);
  // Against the latest size it is today's receipt: no newer part.
  assert.equal(decodeReceipt(await receiptFor(oc.chain, 2, { size: latest.size })).newer, undefined);
  // A wrong proof, or a newer checkpoint that is not the gateway's, is refused.
  const badProof = encodeReceipt({ ...parts, newer: { checkpoint: parts.newer!.checkpoint, proof: parts.newer!.proof.map((h, i) => (i === 0 ? new Uint8Array(32) : h)) } });
  assert.throws(() => verifyReceipt(badProof, site.trust), refused('ERR_PROOF_INVALID'));
  const other = await blocks(t);
  const foreign = encodeReceipt({ ...parts, newer: { checkpoint: other.oc.chain.checkpoint!.note, proof: parts.newer!.proof } });
  assert.throws(() => verifyReceipt(foreign, site.trust), refused('ERR_CHECKPOINT_SIGNATURE'));
});

void test('a receipt can only be made against a size at which a signed checkpoint exists, covering the entry', async (t) => {
  const { oc, sizes } = await blocks(t);
  assert.equal(await checkpointOfSize(oc.chain, sizes[1]! + 1), undefined);
  await assert.rejects(receiptFor(oc.chain, 0, { size: sizes[1]! + 1 }), (e) => isOtiError(e, 'ERR_NOT_FOUND'));
  await assert.rejects(receiptFor(oc.chain, sizes[1]!, { size: sizes[1]! }), (e) => isOtiError(e, 'ERR_NOT_FOUND'));
  await assert.rejects(consistencyBetween(oc.chain, 3, oc.chain.size + 1), (e) => isOtiError(e, 'ERR_PROOF_RANGE'));
  assert.deepEqual(await consistencyBetween(oc.chain, 0, 5), []);
});

void test('a newer checkpoint the verifier holds: by the receipt\'s own proof, by a proof given with it, or refused', async (t) => {
  const { site, oc, sizes } = await blocks(t);
  const old = sizes[1]!;
  const mid = (await checkpointOfSize(oc.chain, sizes[3]!))!;
  const latest = oc.chain.checkpoint!;
  const r = await receiptFor(oc.chain, 2, { size: old });
  // The same size as the receipt's newer checkpoint: the receipt's proof serves.
  assert.equal(verifyReceipt(r, site.trust, { held: { checkpoint: latest.note } }).held?.size, latest.size);
  // Another size: a proof must come with it.
  assert.throws(() => verifyReceipt(r, site.trust, { held: { checkpoint: mid.note } }), refused('ERR_PROOF_INVALID'));
  const proof = await consistencyBetween(oc.chain, old, mid.size);
  assert.equal(verifyReceipt(r, site.trust, { held: { checkpoint: mid.note, proof } }).held?.size, mid.size);
  // A proof between other sizes does not do.
  const wrong = await consistencyBetween(oc.chain, sizes[2]!, mid.size);
  assert.throws(() => verifyReceipt(r, site.trust, { held: { checkpoint: mid.note, proof: wrong } }), refused('ERR_PROOF_INVALID'));
  // A checkpoint of another chain (another gateway key) is refused even with a proof.
  const other = await blocks(t);
  assert.throws(() => verifyReceipt(r, site.trust, { held: { checkpoint: other.oc.chain.checkpoint!.note, proof } }), refused('ERR_CHECKPOINT_SIGNATURE'));
  // An ordinary receipt (latest checkpoint) checks a held checkpoint of a later size with a proof.
  const plain = await receiptFor(oc.chain, 2, { size: mid.size });
  assert.equal(verifyReceipt(plain, site.trust, { held: { checkpoint: latest.note, proof: await consistencyBetween(oc.chain, mid.size, latest.size) } }).held?.size, latest.size);
});

void test('a receipt against an older checkpoint carries the roster as of that checkpoint, proven against its oti-roster line, even after a revocation', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const ev = await oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  await oc.chain.flush();
  const old = oc.chain.checkpoint!;
  assert.ok(old.roster !== undefined && ev.index < old.size);
  // After the old checkpoint: another lock enrolled, door-a revoked, more blocks.
  await oc.chain.append({ kind: 'roster', signed: enrollLock(site, 'door-b').statement });
  await oc.chain.flush();
  const revoke = signStatement(site.site, { site: site.siteId, op: 'revoke', role: 'lock', id: 'door-a', key: lock.key.publicKey, time: 1_700_000_100_000 });
  await oc.chain.append({ kind: 'roster', signed: revoke });
  await oc.chain.flush();
  const latest = oc.chain.checkpoint!;
  assert.notEqual(latest.roster!.size, old.roster.size, 'the roster changed after the old checkpoint');

  // Against the latest checkpoint the revocation is carried and the receipt does not verify.
  const today = await receiptFor(oc.chain, ev.index);
  assert.throws(() => verifyReceipt(today, site.trust), refused('ERR_LOCK_REVOKED'));
  // Against the old one: the lock's history as of then (the enrolment only), proven in the old roster tree.
  const r = await receiptFor(oc.chain, ev.index, { size: old.size });
  const parts = decodeReceipt(r);
  assert.equal(parts.lock?.length, 1);
  assert.equal(parts.checkpoint, old.note);
  assert.equal(parts.newer?.checkpoint, latest.note);
  const v = verifyReceipt(r, site.trust);
  assert.equal(v.roster, 'committed');
  assert.equal(v.provenance, 'lock-signed');
  assert.equal(v.newer?.size, latest.size);
  // The member proofs are those of the old tree: door-b was not in it, the old root is what they reach.
  assert.equal(verifyReceipt(r, site.trust).checkpoint.roster!.size, old.roster.size);
  // The latest roster's proofs (with the revocation left out) in the same receipt are refused.
  const mixed = encodeReceipt({ ...parts, lockAt: decodeReceipt(today).lockAt!, gatewayAt: decodeReceipt(today).gatewayAt! });
  assert.throws(() => verifyReceipt(mixed, site.trust), refused('ERR_ROSTER_COMMITMENT'));
  // Replayed from the entries, the old roster tree gives the old checkpoint's line.
  const tree = await rosterTreeAt(oc.chain, old, oc.chain.sealed.rosterTree);
  const d = await tree.digest();
  assert.deepEqual([d.size, Buffer.from(d.root).toString('hex')], [old.roster.size, Buffer.from(old.roster.root).toString('hex')]);
  // The tlog-proof form of the same receipt verifies the same way.
  assert.equal(verifyReceipt(receiptBytes(Buffer.from(encodeTlogProof(parts))), site.trust).roster, 'committed');
});
