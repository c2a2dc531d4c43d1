/**
 * The roster rules (docs/PROTOCOL.md §Roster statements and roster rules): every statement
 * applies at most once, so a statement kept and submitted again is refused, with no clock
 * involved. A key belongs to one member, once; a revoked member takes no further statement; an
 * enrolment already applied is not applied again. The chain refuses such a statement when it is
 * appended, and a verifier refuses a chain that holds one.
 */
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, openChain, type TestSite } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { generateKeyPair, Signer, type KeyPair } from '../../ledger/crypto.js';
import { Roster, signStatement, type RosterRule, type RosterStatement, type SignedStatement } from '../../ledger/roster.js';
import { encodeEntry } from '../../ledger/entry.js';
import { ChainVerifier, verifyChain } from '../../ledger/verify.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { chainOrigin } from '../../ledger/chain.js';
import { CompactRange, leafHash } from '../../ledger/merkle.js';
import { encodeBlockHeader, blockHash, ZERO_HASH } from '../../ledger/block.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';

const T = 1_700_000_000_000;

/** ERR_ROSTER naming `rule` (details.rule), the way callers and tests tell the rules apart. */
const broke = (rule: RosterRule) => (e: unknown): boolean => isOtiError(e, 'ERR_ROSTER') && e.details?.['rule'] === rule;

function sign(site: TestSite, s: Omit<RosterStatement, 'site'>): SignedStatement {
  return signStatement(site.site, { site: site.siteId, ...s });
}

const enroll = (site: TestSite, id: string, key: KeyPair, time = T, extra: Partial<RosterStatement> = {}): SignedStatement => sign(site, { op: 'enroll', role: 'lock', id, key: key.publicKey, time, ...extra });
const rotate = (site: TestSite, id: string, prev: KeyPair, key: KeyPair, time: number): SignedStatement => sign(site, { op: 'rotate', role: 'lock', id, prev: prev.publicKey, key: key.publicKey, time });
const revoke = (site: TestSite, id: string, key: KeyPair, time: number): SignedStatement => sign(site, { op: 'revoke', role: 'lock', id, key: key.publicKey, time });

void test('a rotate statement replayed after a rotation back is refused: a retired key never comes back', () => {
  const site = makeSite();
  const [k, x, y] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  const r1 = rotate(site, 'door-1', k, x, T + 1);
  roster.apply(r1);
  // Back to the original key K, the reviewer's second step: K was retired by r1.
  assert.throws(() => roster.apply(rotate(site, 'door-1', x, k, T + 2)), broke('key-held'));
  // To the current key: nothing to hand over.
  assert.throws(() => roster.apply(rotate(site, 'door-1', x, x, T + 2)), broke('key-held'));
  assert.equal(Buffer.from(roster.get('lock', 'door-1')!.key).toString('hex'), Buffer.from(x.publicKey).toString('hex'));
  // r1 again, as it is: its prev K is no longer current, and can never be again.
  assert.throws(() => roster.apply(r1), broke('not-current'));
  roster.apply(rotate(site, 'door-1', x, y, T + 3));
  assert.throws(() => roster.apply(r1), broke('not-current'));
  assert.throws(() => roster.apply(rotate(site, 'door-1', y, x, T + 4)), broke('key-held'));
  assert.equal(roster.get('lock', 'door-1')!.history.length, 3);
});

void test('the same rules hold for gateways: a kept gateway rotation or revocation applies once', () => {
  const site = makeSite();
  const [k, x] = [generateKeyPair(), generateKeyPair()];
  const gw = (s: Omit<RosterStatement, 'site' | 'role' | 'id'>): SignedStatement => sign(site, { role: 'gateway', id: 'gw-2', ...s });
  const roster = new Roster();
  roster.apply(gw({ op: 'enroll', key: k.publicKey, time: T }));
  const r1 = gw({ op: 'rotate', prev: k.publicKey, key: x.publicKey, time: T + 1 });
  roster.apply(r1);
  assert.throws(() => roster.apply(gw({ op: 'rotate', prev: x.publicKey, key: k.publicKey, time: T + 2 })), broke('key-held'));
  assert.throws(() => roster.apply(r1), broke('not-current'));
  const rv = gw({ op: 'revoke', key: x.publicKey, time: T + 3 });
  roster.apply(rv);
  assert.throws(() => roster.apply(rv), broke('already-revoked'));
  assert.equal(roster.get('gateway', 'gw-2')!.history.length, 3);
});

void test('a revocation applies once: the same statement again, or a new one, is refused', () => {
  const site = makeSite();
  const k = generateKeyPair();
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  const rv = revoke(site, 'door-1', k, T + 1);
  roster.apply(rv);
  assert.throws(() => roster.apply(rv), broke('already-revoked'));
  assert.throws(() => roster.apply(revoke(site, 'door-1', k, T + 2)), broke('already-revoked'));
  // Nor is a revoked member rotated or enrolled again.
  assert.throws(() => roster.apply(rotate(site, 'door-1', k, generateKeyPair(), T + 3)), broke('revoked'));
  assert.throws(() => roster.apply(enroll(site, 'door-1', k, T + 4)), broke('revoked'));
  assert.equal(roster.get('lock', 'door-1')!.history.length, 2);
});

void test('a key belongs to one member: another id, another role, a retired or a revoked key are refused', () => {
  const site = makeSite();
  const [k, x, r, fresh] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  roster.apply(enroll(site, 'door-9', r));
  roster.apply(revoke(site, 'door-9', r, T + 1));
  // door-1's current key under another lock id, and for a gateway.
  assert.throws(() => roster.apply(enroll(site, 'door-2', k)), (e) => broke('key-held')(e) && /lock door-1/.test((e as Error).message));
  assert.throws(() => roster.apply(sign(site, { op: 'enroll', role: 'gateway', id: 'gw-2', key: k.publicKey, time: T })), broke('key-held'));
  // A revoked member's key.
  assert.throws(() => roster.apply(enroll(site, 'door-2', r)), broke('key-held'));
  // A key door-1 held before its rotation, enrolled or rotated to under another id.
  roster.apply(rotate(site, 'door-1', k, x, T + 2));
  assert.throws(() => roster.apply(enroll(site, 'door-2', k)), broke('key-held'));
  roster.apply(enroll(site, 'door-2', fresh));
  assert.throws(() => roster.apply(rotate(site, 'door-2', fresh, k, T + 3)), broke('key-held'));
  assert.throws(() => roster.apply(rotate(site, 'door-2', fresh, x, T + 3)), broke('key-held'));
});

void test('an enrolment applies once: a replayed one cannot undo a later change of provenance', () => {
  const site = makeSite();
  const k = generateKeyPair();
  const roster = new Roster();
  const loose = enroll(site, 'gate', k, T, { unsigned: true });
  roster.apply(loose);
  roster.apply(enroll(site, 'gate', k, T + 1));
  assert.equal(roster.get('lock', 'gate')!.unsigned, false);
  assert.throws(() => roster.apply(loose), broke('replayed'));
  // The same statement signed again by another site key is the same statement.
  const second = new Signer(generateKeyPair().seed);
  assert.throws(() => roster.apply(signStatement(second, loose.statement)), broke('replayed'));
  assert.equal(roster.get('lock', 'gate')!.unsigned, false);
  // A new enrolment (a new time) is the site's decision, and applies.
  roster.apply(enroll(site, 'gate', k, T + 2, { unsigned: true }));
  assert.equal(roster.get('lock', 'gate')!.unsigned, true);
});

void test('a roster restored from stored members, or cloned, still knows every key its members held', () => {
  const site = makeSite();
  const [k, x] = [generateKeyPair(), generateKeyPair()];
  const roster = new Roster();
  roster.apply(enroll(site, 'door-1', k));
  roster.apply(rotate(site, 'door-1', k, x, T + 1));
  const restored = new Roster();
  for (const m of roster.members()) restored.restore({ ...m });
  const back = rotate(site, 'door-1', x, k, T + 2);
  for (const r of [restored, restored.clone(), roster.clone()]) {
    assert.throws(() => r.apply(back), broke('key-held'));
    assert.throws(() => r.apply(enroll(site, 'door-2', k)), broke('key-held'));
  }
});

void test('the chain refuses a replayed rotation when it is appended, also after a reopen, and records nothing', async (t) => {
  const site = makeSite();
  const lock = enrollLock(site, 'door-1');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  const x = generateKeyPair();
  const r1 = rotate(site, 'door-1', lock.key, x, T + 1);
  await oc.chain.append({ kind: 'roster', signed: r1 });
  const size = oc.chain.size;
  await assert.rejects(oc.chain.append({ kind: 'roster', signed: rotate(site, 'door-1', x, lock.key, T + 2) }), broke('key-held'));
  await assert.rejects(oc.chain.append({ kind: 'roster', signed: r1 }), broke('not-current'));
  await assert.rejects(oc.chain.append({ kind: 'roster', signed: enroll(site, 'door-2', lock.key) }), broke('key-held'));
  assert.equal(oc.chain.size, size);
  await oc.chain.flush();
  // Reopened, the roster comes from the stored members: the retired key is still known.
  const again = await oc.reopen({ sealDelayMs: 1 });
  await assert.rejects(again.chain.append({ kind: 'roster', signed: rotate(site, 'door-1', x, lock.key, T + 3) }), broke('key-held'));
  await again.chain.append({ kind: 'roster', signed: revoke(site, 'door-1', x, T + 4) });
  await assert.rejects(again.chain.append({ kind: 'roster', signed: revoke(site, 'door-1', x, T + 5) }), broke('already-revoked'));
  assert.equal(again.chain.size, size + 1);
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
  assert.ok(!(await verify(3) instanceof Error), 'enrolment and one rotation verify');
  const refused = await verify(5);
  assert.ok(broke('key-held')(refused), String(refused));
  assert.equal((refused as { details?: Record<string, unknown> }).details?.['index'], 3);
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
