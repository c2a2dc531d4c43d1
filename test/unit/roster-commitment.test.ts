/**
 * The roster commitment (docs/PROTOCOL.md §Roster commitment): a checkpoint names the roster
 * after its block, so a receipt cannot leave out a revocation, and a gateway cannot commit to a
 * roster its chain does not hold. Chains and receipts from before the commitment still verify,
 * and say that they carry none.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { makeSite, enrollLock, signedEvent, openChain, type TestSite } from '../support/site.js';
import { isOtiError, type OtiError } from '../../ledger/base/errors.js';
import { decodeReceipt, encodeReceipt, receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { ChainVerifier, verifyChain } from '../../ledger/verify.js';
import { parseCheckpoint, signCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { Signer } from '../../ledger/crypto.js';
import { Roster, signStatement } from '../../ledger/roster.js';
import { RosterTree } from '../../ledger/roster-commitment.js';
import { decodeEntry } from '../../ledger/entry.js';
import type { OpenedChain } from '../support/site.js';
import { tempDir } from '../support/site.js';
import { ChainReplica } from '../../ledger/peer.js';
import { LedgerStore } from '../../ledger/store.js';
import { join } from 'node:path';

const LEGACY = JSON.parse(readFileSync(new URL('../../../test/vectors/protocol-1.0.json', import.meta.url), 'utf8')) as {
  site: string;
  origin: string;
  keys: { site: { publicKey: string } };
  entries: { entry: string }[];
  blocks: { header: string; checkpoint: string; first: number; count: number }[];
  receipt: { receipt: string };
};
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

const refusedWith = (cause: string) => (e: unknown): boolean => isOtiError(e, 'ERR_RECEIPT_INVALID') && (e as OtiError).details?.['cause'] === cause;

/** A chain where lock door-a sent one event and was then revoked. */
async function revokedLock(t: TestContext): Promise<{ site: TestSite; oc: OpenedChain; eventIndex: number }> {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  await oc.chain.append({ kind: 'roster', signed: enrollLock(site, 'door-b').statement });
  const ev = await oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  const revoke = signStatement(site.site, { site: site.siteId, op: 'revoke', role: 'lock', id: 'door-a', key: lock.key.publicKey, time: 1_700_000_100_000 });
  await oc.chain.append({ kind: 'roster', signed: revoke });
  return { site, oc, eventIndex: ev.index };
}

void test('a receipt whose lock revocation was left out is refused: ERR_ROSTER_COMMITMENT', async (t) => {
  const { site, oc, eventIndex } = await revokedLock(t);
  const honest = await receiptFor(oc.chain, eventIndex);
  // The honest receipt carries the revocation, and the verifier says so.
  assert.throws(() => verifyReceipt(honest, site.trust), refusedWith('ERR_LOCK_REVOKED'));
  const parts = decodeReceipt(honest);
  assert.equal(parts.lock?.length, 2);
  // A gateway hiding the revocation: the enrolment alone, with the proof it was given.
  const hidden = encodeReceipt({ ...parts, lock: parts.lock!.slice(0, 1) });
  assert.throws(() => verifyReceipt(hidden, site.trust), refusedWith('ERR_ROSTER_COMMITMENT'));
  // ... or with the roster proofs dropped, as if it were a version 1 receipt.
  const v1 = { entry: parts.entry, index: parts.index, proof: parts.proof, checkpoint: parts.checkpoint, gateway: parts.gateway, lock: parts.lock!.slice(0, 1) };
  assert.throws(() => verifyReceipt(encodeReceipt(v1), site.trust), refusedWith('ERR_ROSTER_COMMITMENT'));
  // ... or with the proof of another lock's leaf.
  const other = await new RosterTree(oc.chain.roster).proof('lock', 'door-b');
  assert.throws(() => verifyReceipt(encodeReceipt({ ...parts, lock: parts.lock!.slice(0, 1), lockAt: other }), site.trust), refusedWith('ERR_ROSTER_COMMITMENT'));
});

void test('a receipt of an unrevoked lock verifies as committed; gateway statements that are not its leaf are refused', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const ev = await oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  const receipt = await receiptFor(oc.chain, ev.index);
  const v = verifyReceipt(receipt, site.trust);
  assert.equal(v.roster, 'committed');
  assert.equal(v.provenance, 'lock-signed');
  assert.equal(v.checkpoint.roster?.size, 2);
  // The gateway's statements with one more (a replayed enrolment) do not match its leaf either.
  const parts = decodeReceipt(receipt);
  assert.throws(() => verifyReceipt(encodeReceipt({ ...parts, gateway: [...parts.gateway, parts.gateway[0]!] }), site.trust), refusedWith('ERR_ROSTER_COMMITMENT'));
});

/** Every stored block of the chain with its entries, for feeding a ChainVerifier. */
async function storedBlocks(oc: OpenedChain): Promise<{ headerBytes: Uint8Array; checkpoint: SignedCheckpoint; entries: Uint8Array[] }[]> {
  const out = [];
  for await (const b of oc.chain.blocks(0)) out.push({ headerBytes: b.headerBytes, checkpoint: b.checkpoint, entries: await oc.chain.entryRange(b.header.first, b.header.first + b.header.count) });
  return out;
}

void test('chain verification refuses a checkpoint that commits to a roster without the revocation', async (t) => {
  const { site, oc } = await revokedLock(t);
  await verifyChain(oc.chain, { trust: site.trust });
  const blocks = await storedBlocks(oc);
  const last = blocks.at(-1)!;
  // The gateway signs its last checkpoint over the roster as it was before the revocation.
  const before = new Roster();
  for (const b of blocks) for (const e of b.entries) {
    const body = decodeEntry(e).body;
    if (body.kind === 'roster' && body.signed.statement.op !== 'revoke') before.apply(body.signed);
  }
  const lying = signCheckpoint({ ...last.checkpoint, roster: await new RosterTree(before).digest() }, new Signer(oc.gatewayKey.seed), oc.chain.origin);
  const verifier = new ChainVerifier(oc.chain.origin, { trust: site.trust });
  for (const b of blocks.slice(0, -1)) await verifier.addBlock(b.headerBytes, b.checkpoint, b.entries);
  await assert.rejects(verifier.addBlock(last.headerBytes, lying, last.entries), (e) => isOtiError(e, 'ERR_ROSTER_COMMITMENT'));
});

void test('a chain whose checkpoints drop the commitment after carrying it is refused', async (t) => {
  const { site, oc } = await revokedLock(t);
  const blocks = await storedBlocks(oc);
  assert.ok(blocks.length >= 2);
  const last = blocks.at(-1)!;
  const cp = last.checkpoint;
  const dropped = signCheckpoint({ origin: cp.origin, size: cp.size, root: cp.root, block: cp.block, blockHash: cp.blockHash }, new Signer(oc.gatewayKey.seed), oc.chain.origin);
  const verifier = new ChainVerifier(oc.chain.origin, { trust: site.trust });
  for (const b of blocks.slice(0, -1)) await verifier.addBlock(b.headerBytes, b.checkpoint, b.entries);
  await assert.rejects(verifier.addBlock(last.headerBytes, dropped, last.entries), (e) => isOtiError(e, 'ERR_CHECKPOINT_MISMATCH'));
});

void test('a replica (sync) refuses a lying commitment and a dropped one, also after reopening its store', async (t) => {
  const { site, oc } = await revokedLock(t);
  const blocks = await storedBlocks(oc);
  const last = blocks.at(-1)!;
  const cp = last.checkpoint;
  const signer = new Signer(oc.gatewayKey.seed);
  const dropped = signCheckpoint({ origin: cp.origin, size: cp.size, root: cp.root, block: cp.block, blockHash: cp.blockHash }, signer, oc.chain.origin);
  const lying = signCheckpoint({ ...cp, roster: { size: cp.roster!.size, root: new Uint8Array(32).fill(7) } }, signer, oc.chain.origin);
  const path = join(await tempDir(t), 'replica');
  let store = await LedgerStore.open(path);
  let replica = await ChainReplica.open(store, oc.chain.origin, 'peer', { trust: site.trust });
  await replica.append(blocks.slice(0, -1));
  await store.close();
  store = await LedgerStore.open(path);
  t.after(() => store.close());
  replica = await ChainReplica.open(store, oc.chain.origin, 'peer', { trust: site.trust });
  await assert.rejects(replica.append([{ ...last, checkpoint: lying }]), (e) => isOtiError(e, 'ERR_ROSTER_COMMITMENT'));
  await assert.rejects(replica.append([{ ...last, checkpoint: dropped }]), (e) => isOtiError(e, 'ERR_CHECKPOINT_MISMATCH'));
  await replica.append([last]);
  assert.equal(replica.size, oc.chain.size);
});

void test('a chain and a receipt from before the commitment (protocol 1.0 vectors) verify and say they carry none', async () => {
  const trust = { siteId: LEGACY.site, siteKeys: [hex(LEGACY.keys.site.publicKey)] };
  const verifier = new ChainVerifier(LEGACY.origin, { trust });
  for (const b of LEGACY.blocks) {
    const cp = parseCheckpoint(b.checkpoint);
    assert.equal(cp.roster, undefined);
    await verifier.addBlock(hex(b.header), cp, LEGACY.entries.slice(b.first, b.first + b.count).map((e) => hex(e.entry)));
  }
  assert.equal((await verifier.finish()).entries, LEGACY.entries.length);
  const v = verifyReceipt(hex(LEGACY.receipt.receipt), trust);
  assert.equal(v.roster, 'uncommitted');
  assert.equal(v.provenance, 'lock-signed');
});
