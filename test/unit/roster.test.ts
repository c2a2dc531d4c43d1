/**
 * The roster rules (docs/PROTOCOL.md §Roster statements and roster rules): a statement the
 * member's history already holds may apply again only when it changes nothing, so a statement
 * kept and submitted again can never change a member back (a retired key made current again, a
 * provenance undone), with no clock involved. The chain refuses such a statement when it is
 * appended and a verifier refuses a chain that holds one; chains written under the rules before
 * this one still verify. POST /roster (handleRosterPost) answers "unchanged" for a statement
 * applied before or changing nothing, and refuses a key another current member holds.
 */
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, openChain, type TestSite } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { generateKeyPair, Signer, toHex, type KeyPair } from '../../ledger/crypto.js';
import { encodeSigned, Roster, signStatement, type RosterRule, type RosterStatement, type SignedStatement } from '../../ledger/roster.js';
import { encodeEntry } from '../../ledger/entry.js';
import { ChainVerifier, verifyChain } from '../../ledger/verify.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { chainOrigin } from '../../ledger/chain.js';
import { CompactRange, leafHash } from '../../ledger/merkle.js';
import { encodeBlockHeader, blockHash, ZERO_HASH } from '../../ledger/block.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import { handleRosterPost } from '../../gateway/api/roster-admin.js';

const T = 1_700_000_000_000;

/** ERR_ROSTER naming `rule` (details.rule), the way callers and tests tell the rules apart. */
const broke = (rule: RosterRule | 'key-held') => (e: unknown): boolean => isOtiError(e, 'ERR_ROSTER') && e.details?.['rule'] === rule;

function sign(site: TestSite, s: Omit<RosterStatement, 'site'>): SignedStatement {
  return signStatement(site.site, { site: site.siteId, ...s });
}

const enroll = (site: TestSite, id: string, key: KeyPair, time = T, extra: Partial<RosterStatement> = {}): SignedStatement => sign(site, { op: 'enroll', role: 'lock', id, key: key.publicKey, time, ...extra });
const rotate = (site: TestSite, id: string, prev: KeyPair, key: KeyPair, time: number): SignedStatement => sign(site, { op: 'rotate', role: 'lock', id, prev: prev.publicKey, key: key.publicKey, time });
const revoke = (site: TestSite, id: string, key: KeyPair, time: number): SignedStatement => sign(site, { op: 'revoke', role: 'lock', id, key: key.publicKey, time });
const keyOf = (r: Roster, id: string): string => toHex(r.get('lock', id)!.key);

void test('a rotate statement replayed after a rotation back is refused: a retired key does not come back by replay', () => {
  const site = makeSite();
  const [k, x, y] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  const r1 = rotate(site, 'door-1', k, x, T + 1);
  roster.apply(r1);
  // Back to K by a new statement: the site's decision (undoing a mistaken rotation), applied.
  roster.apply(rotate(site, 'door-1', x, k, T + 2));
  assert.equal(keyOf(roster, 'door-1'), toHex(k.publicKey));
  // r1 again, as it is: its prev K is current once more, but it was applied before.
  assert.throws(() => roster.apply(r1), broke('replayed'));
  assert.equal(keyOf(roster, 'door-1'), toHex(k.publicKey));
  // The same statement signed by another site key is the same statement.
  assert.throws(() => roster.apply(signStatement(new Signer(generateKeyPair().seed), r1.statement)), broke('replayed'));
  roster.apply(rotate(site, 'door-1', k, y, T + 3));
  assert.throws(() => roster.apply(r1), broke('not-current'));
  assert.equal(roster.get('lock', 'door-1')!.history.length, 4);
});

void test('the same rule holds for gateways: a kept gateway rotation does not apply again', () => {
  const site = makeSite();
  const [k, x] = [generateKeyPair(), generateKeyPair()];
  const gw = (s: Omit<RosterStatement, 'site' | 'role' | 'id'>): SignedStatement => sign(site, { role: 'gateway', id: 'gw-2', ...s });
  const roster = new Roster();
  roster.apply(gw({ op: 'enroll', key: k.publicKey, time: T }));
  const r1 = gw({ op: 'rotate', prev: k.publicKey, key: x.publicKey, time: T + 1 });
  roster.apply(r1);
  roster.apply(gw({ op: 'rotate', prev: x.publicKey, key: k.publicKey, time: T + 2 }));
  assert.throws(() => roster.apply(r1), broke('replayed'));
  assert.equal(toHex(roster.get('gateway', 'gw-2')!.key), toHex(k.publicKey));
});

void test('a revoked member stays revoked: a second revocation changes nothing, it is never rotated or enrolled again', () => {
  const site = makeSite();
  const k = generateKeyPair();
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  const rv = revoke(site, 'door-1', k, T + 1);
  roster.apply(rv);
  // A chain of the previous rules may hold a revocation twice; it changes nothing, so it applies.
  roster.apply(rv);
  roster.apply(revoke(site, 'door-1', k, T + 2));
  assert.equal(roster.get('lock', 'door-1')!.revoked, true);
  assert.throws(() => roster.apply(rotate(site, 'door-1', k, generateKeyPair(), T + 3)), broke('revoked'));
  assert.throws(() => roster.apply(enroll(site, 'door-1', k, T + 4)), broke('revoked'));
});

void test('a replayed enrolment cannot undo a later change of provenance; a new one can', () => {
  const site = makeSite();
  const k = generateKeyPair();
  const roster = new Roster();
  const loose = enroll(site, 'gate', k, T, { unsigned: true });
  roster.apply(loose);
  roster.apply(enroll(site, 'gate', k, T + 1));
  assert.equal(roster.get('lock', 'gate')!.unsigned, false);
  assert.throws(() => roster.apply(loose), broke('replayed'));
  assert.equal(roster.get('lock', 'gate')!.unsigned, false);
  roster.apply(enroll(site, 'gate', k, T + 2, { unsigned: true }));
  assert.equal(roster.get('lock', 'gate')!.unsigned, true);
});

void test('a roster restored from stored members, or cloned, still refuses a replay (the history travels with the member)', () => {
  const site = makeSite();
  const [k, x] = [generateKeyPair(), generateKeyPair()];
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  const r1 = rotate(site, 'door-1', k, x, T + 1);
  roster.apply(r1);
  roster.apply(rotate(site, 'door-1', x, k, T + 2));
  const restored = new Roster();
  for (const m of roster.members()) restored.restore({ ...m, history: [...m.history] });
  for (const r of [restored, restored.clone(), roster.clone()]) assert.throws(() => r.apply(r1), broke('replayed'));
});

void test('a chain written under the previous rules still verifies: a revocation twice, two ids with one key, a rotation back', async (t) => {
  const site = makeSite();
  const [k, x, shared] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  for (const signed of [enroll(site, 'door-x', k), revoke(site, 'door-x', k, T + 1), revoke(site, 'door-x', k, T + 2), enroll(site, 'door-y', shared), enroll(site, 'door-z', shared), enroll(site, 'door-w', x), rotate(site, 'door-w', x, k, T + 3), rotate(site, 'door-w', k, x, T + 4)]) {
    await oc.chain.append({ kind: 'roster', signed });
  }
  await oc.chain.flush();
  assert.equal(oc.chain.size, 9);
  const report = await verifyChain(oc.chain, { trust: site.trust });
  assert.equal(report.entries, 9);
});

void test('the chain refuses a replayed rotation when it is appended, also after a reopen, and records nothing', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-1');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const x = generateKeyPair();
  const r1 = rotate(site, 'door-1', lock.key, x, T + 1);
  await oc.chain.append({ kind: 'roster', signed: r1 });
  await oc.chain.append({ kind: 'roster', signed: rotate(site, 'door-1', x, lock.key, T + 2) });
  const size = oc.chain.size;
  await assert.rejects(oc.chain.append({ kind: 'roster', signed: r1 }), broke('replayed'));
  assert.equal(oc.chain.size, size);
  await oc.chain.flush();
  // Reopened, the roster comes from the stored members, with their histories.
  const again = await oc.reopen({ sealDelayMs: 1 });
  await assert.rejects(again.chain.append({ kind: 'roster', signed: r1 }), broke('replayed'));
  assert.equal(again.chain.size, size);
});

void test('POST /roster: a statement applied before, or one that changes nothing, is answered unchanged and not recorded; a key another current member holds is refused', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-1');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  const post = (s: SignedStatement): ReturnType<typeof handleRosterPost> => handleRosterPost(oc.chain, encodeSigned(s));
  assert.equal(typeof (await post(lock.statement)).index, 'number');
  const x = generateKeyPair();
  const r1 = rotate(site, 'door-1', lock.key, x, T + 1);
  const first = await post(r1);
  assert.equal(typeof first.index, 'number');
  const size = oc.chain.size;
  // A retry after a lost answer, and a replay after a rotation back: both unchanged, nothing recorded.
  assert.deepEqual(await post(r1), { index: null, id: null, unchanged: true, reason: 'applied-before' });
  await post(rotate(site, 'door-1', x, lock.key, T + 2));
  assert.deepEqual(await post(r1), { index: null, id: null, unchanged: true, reason: 'applied-before' });
  assert.equal(keyOf(oc.chain.roster, 'door-1'), toHex(lock.key.publicKey));
  // Enrolling again as enrolled, and revoking a revoked member: nothing to record.
  assert.deepEqual(await post(enroll(site, 'door-1', lock.key, T + 3)), { index: null, id: null, unchanged: true, reason: 'changes-nothing' });
  // A key another current member holds, under another id or role.
  await assert.rejects(post(enroll(site, 'door-2', lock.key, T + 4)), (e) => broke('key-held')(e) && /lock door-1/.test((e as Error).message));
  await assert.rejects(post(sign(site, { op: 'enroll', role: 'gateway', id: 'gw-9', key: lock.key.publicKey, time: T + 4 })), broke('key-held'));
  await post(revoke(site, 'door-1', lock.key, T + 5));
  assert.deepEqual(await post(revoke(site, 'door-1', lock.key, T + 6)), { index: null, id: null, unchanged: true, reason: 'changes-nothing' });
  // Once its holder is revoked, the key may be enrolled under a new id (a lock whose id was revoked by mistake).
  assert.equal(typeof (await post(enroll(site, 'door-2', lock.key, T + 7))).index, 'number');
  assert.equal(oc.chain.size, size + 3);
});

void test('a verifier refuses a chain that holds a replayed rotation (signed by the site, appended by a gateway that did not check)', async () => {
  const site = makeSite();
  const gw = generateKeyPair();
  const origin = chainOrigin(site.siteId, 'gw-1');
  const [k, x] = [generateKeyPair(), generateKeyPair()];
  const r1 = rotate(site, 'door-1', k, x, T + 1);
  const statements = [
    sign(site, { op: 'enroll', role: 'gateway', id: 'gw-1', key: gw.publicKey, time: T }),
    enroll(site, 'door-1', k),
    r1,
    rotate(site, 'door-1', x, k, T + 2),
    r1,
  ];
  const entries = statements.map((signed) => encodeEntry({ kind: 'roster', signed }, T).bytes);
  const verify = async (n: number): Promise<unknown> => {
    const range = CompactRange.empty();
    for (const e of entries.slice(0, n)) range.append(leafHash(e));
    const headerBytes = encodeBlockHeader({ chain: origin, n: 0, prev: ZERO_HASH, first: 0, count: n, root: range.root(), time: T });
    const checkpoint = signCheckpoint({ origin, size: n, root: range.root(), block: 0, blockHash: blockHash(headerBytes) }, new Signer(gw.seed), origin);
    const v = new ChainVerifier(origin, { trust: site.trust });
    try {
      await v.addBlock(headerBytes, checkpoint, entries.slice(0, n), false);
      return await v.finish();
    } catch (e) {
      return e;
    }
  };
  assert.ok(!(await verify(4) instanceof Error), 'enrolment, a rotation and a rotation back verify');
  const refused = await verify(5);
  assert.ok(broke('replayed')(refused), String(refused));
  assert.equal((refused as { details?: Record<string, unknown> }).details?.['index'], 4);
});

void test('a lock that cannot sign is enrolled with random bytes as its key (docs/CLI.md): its bare events are stored, verify, and it can be revoked', async (t) => {
  const site = makeSite();
  const oc = await openChain(t, site);
  // What `oti lock enroll --unsigned --key $(openssl rand -hex 32)` signs: 32 random bytes, not a key pair.
  const key = Uint8Array.from(randomBytes(32));
  await oc.chain.append({ kind: 'roster', signed: signStatement(site.site, { site: site.siteId, op: 'enroll', role: 'lock', id: 'old-gate', key, time: T, unsigned: true }) });
  const stored = await oc.chain.append({ kind: 'lock-event', unsignedEvent: encodeLockEvent({ lock: 'old-gate', ctr: 1, time: T, type: 'unlocked' }) });
  assert.equal(stored.id, 'old-gate:1');
  await oc.chain.append({ kind: 'roster', signed: signStatement(site.site, { site: site.siteId, op: 'revoke', role: 'lock', id: 'old-gate', key, time: T + 1 }) });
  const report = await verifyChain(oc.chain, { trust: site.trust });
  assert.equal(report.entries, oc.chain.size);
});
