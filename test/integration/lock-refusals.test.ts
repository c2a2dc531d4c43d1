/**
 * Every error path of the lock protocol (docs/PROTOCOL.md §Flow), over a real kernel pty with the
 * real serial driver, ingest pipeline and LevelDB chain, and simulated locks on the far end: the
 * order of the checks, what a resend may differ in, events that can never be accepted, answers
 * that take too long, the window, revoked and re-keyed locks, refusals told apart from losses,
 * answers bound to the bytes they answer, one lock per line, and the protocol version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { serialRig as rig, storedEvents, bodies } from '../support/serial-rig.js';
import { waitUntil } from '../support/wait.js';
import { SimLock } from '../../drivers/simlock.js';
import { generateKeyPair, Signer, verify } from '../../ledger/crypto.js';
import { nonProfileEvents } from '../support/nonprofile.js';
import { encode } from '../../ledger/base/cbor.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { COSE_PROTECTED_EDDSA, parseCoseSign1, sigStructure } from '../../ledger/cose.js';
import { signStatement, type SignedStatement } from '../../ledger/roster.js';
import type { TestLock } from '../support/site.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LockInfo } from '../../drivers/protocol.js';

/** Answers a lock acted on, and answers about bytes it never sent (ignored). */
function answers(lock: SimLock): { nacks: [number, string, boolean][]; foreign: [number, string | undefined][]; refused: [string, boolean, readonly number[]][] } {
  const out = { nacks: [] as [number, string, boolean][], foreign: [] as [number, string | undefined][], refused: [] as [string, boolean, readonly number[]][] };
  lock.on('nack', (ctr, code, retry) => out.nacks.push([ctr, code, retry]));
  lock.on('foreign', (ctr, code) => out.foreign.push([ctr, code]));
  lock.on('refused', (code, retry, versions) => out.refused.push([code, retry, versions]));
  return out;
}

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`);
const toLe = (n: bigint): Uint8Array => Uint8Array.from(Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse());

/** A valid Ed25519 signature with a random nonce (a hedged signer): another signature than RFC 8032's. */
function hedgedSign(seed: Uint8Array, publicKey: Uint8Array, message: Uint8Array): Uint8Array {
  const h = createHash('sha512').update(seed).digest();
  const a = Buffer.from(h.subarray(0, 32));
  a[0]! &= 248;
  a[31]! &= 127;
  a[31]! |= 64;
  const r = (le(randomBytes(64)) % (L - 1n)) + 1n;
  const R = ed.Point.BASE.multiply(r).toBytes();
  const k = le(createHash('sha512').update(R).update(publicKey).update(message).digest()) % L;
  return Uint8Array.from([...R, ...toLe((r + k * le(a)) % L)]);
}

void test('1. checks in order: a stored event with a bad signature is refused for its signature, not as a replay', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('order');
  const a = answers(lock);
  lock.record();
  await waitUntil('1 acked', () => lock.acked.has(1));
  const cose = Uint8Array.from((lock.payloadOf(1) as { cose: Uint8Array }).cose);
  cose[cose.length - 1]! ^= 0x01;
  assert.ok(lock.inject({ cose }, 1));
  await waitUntil('refused', () => r.codes.length > 0);
  assert.deepEqual(r.codes, ['ERR_LOCK_SIGNATURE']);
  await waitUntil('answer seen by the lock', () => a.foreign.length > 0);
  assert.deepEqual(a.foreign, [[1, 'ERR_LOCK_SIGNATURE']], 'the answer names the altered bytes, so the lock ignores it');
});

void test('2. a resend re-signed with another valid signature over the same event bytes is a duplicate, acked with the stored entry', async (t) => {
  const r = await rig(t);
  const { lock, enrolled } = await r.lock('resign');
  const a = answers(lock);
  lock.record();
  await waitUntil('1 acked', () => lock.acked.has(1));
  const original = parseCoseSign1((lock.payloadOf(1) as { cose: Uint8Array }).cose);
  const signature = hedgedSign(enrolled.key.seed, enrolled.key.publicKey, sigStructure(original.payload));
  assert.ok(verify(enrolled.key.publicKey, sigStructure(original.payload), signature) && !bytesEqual(signature, original.signature), 'another valid signature');
  const duplicates: Uint8Array[] = [];
  r.ingest.on('duplicate', (_ev, entry) => duplicates.push(entry));
  const before = r.chain.size;
  assert.ok(lock.inject({ cose: encode([COSE_PROTECTED_EDDSA, {}, original.payload, signature]) }, 1));
  await waitUntil('acked again', () => duplicates.length > 0);
  assert.ok(bytesEqual(duplicates[0]!, lock.acked.get(1)!), 'the ack names the stored entry');
  assert.deepEqual(r.codes, [], 'not refused as a replay');
  await r.chain.flush();
  assert.equal(r.chain.size, before, 'nothing stored or recorded');
  assert.equal(a.nacks.length, 0);
});

void test('3 and 8. an event that can never be accepted is refused for good, recorded, and its counter is a refusal, not a loss', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('big-ext');
  const a = answers(lock);
  lock.record();
  lock.record();
  assert.equal(lock.recordInvalid(1100), 3);
  lock.record();
  await waitUntil('1, 2 and 4 acked', () => [1, 2, 4].every((c) => lock.acked.has(c)));
  assert.deepEqual(a.nacks.filter(([, code]) => code !== 'ERR_OUT_OF_ORDER'), [[3, 'ERR_EVENT_INVALID', false]]);
  assert.equal(lock.pending, 0, 'the lock gave the refused event up, and holds nothing');
  const gaps = (await bodies(r.chain, 'gap')).filter((b) => 'lock' in b);
  assert.deepEqual(gaps, [{ kind: 'gap', lock: 'big-ext', from: 3, to: 3, code: 'ERR_EVENT_INVALID' }], 'refused by the gateway, not lost at the lock');
  const health = await bodies(r.chain, 'health');
  assert.ok(health.some((b) => b.kind === 'health' && b.source === 'lock:big-ext' && b.status === 'invalid-event' && /ERR_ENCODING_SCHEMA: event\.ext must encode to at most 1024 bytes/.test(b.detail ?? '')), 'the refusal is recorded with the decoder’s reason');
  assert.deepEqual([...(await storedEvents(r.chain, 'big-ext')).keys()], [1, 2, 4]);
});

void test('3. correctly signed events outside the CBOR profile (other firmware’s encodings) are answered ERR_EVENT_INVALID for good, and their counters are refusals', async (t) => {
  const r = await rig(t);
  const { lock, enrolled } = await r.lock('other-fw');
  const a = answers(lock);
  const signer = new Signer(enrolled.key.seed);
  lock.record();
  const shapes = nonProfileEvents(signer, 'other-fw', 2).map((e) => e.name);
  for (let i = 0; i < shapes.length; i++) lock.recordPayload((ctr) => ({ cose: nonProfileEvents(signer, 'other-fw', ctr)[i]!.cose }));
  const last = lock.record();
  await waitUntil('the first and last acked, the others refused', () => lock.acked.has(1) && lock.acked.has(last) && lock.pending === 0, 20_000);
  assert.deepEqual(
    a.nacks.filter(([, code]) => code !== 'ERR_OUT_OF_ORDER'),
    shapes.map((_, i) => [2 + i, 'ERR_EVENT_INVALID', false]),
    `each refused for good, once (${shapes.join('; ')})`,
  );
  const gaps = (await bodies(r.chain, 'gap')).filter((b) => 'lock' in b);
  assert.deepEqual(gaps, [{ kind: 'gap', lock: 'other-fw', from: 2, to: 1 + shapes.length, code: 'ERR_EVENT_INVALID' }], 'refused by the gateway, not lost at the lock');
  const health = await bodies(r.chain, 'health');
  assert.ok(health.some((b) => b.kind === 'health' && b.source === 'lock:other-fw' && b.status === 'invalid-event' && /ERR_ENCODING_NONCANONICAL/.test(b.detail ?? '')), 'recorded with the strict decoder’s reason');
  assert.deepEqual([...(await storedEvents(r.chain, 'other-fw')).keys()], [1, last]);
});

void test('4. an event not durable within the answer deadline gets ERR_BUSY (retry) and then its ack; nothing is lost or doubled', async (t) => {
  const r = await rig(t, { chain: { sealDelayMs: 1500 }, ingest: { answerDeadlineMs: 200 } });
  const { lock } = await r.lock('slow-disk');
  const a = answers(lock);
  await waitUntil('greeted', () => lock.greeted);
  lock.record();
  await waitUntil('acked after all', () => lock.acked.has(1), 20_000);
  assert.ok(a.nacks.some(([ctr, code, retry]) => ctr === 1 && code === 'ERR_BUSY' && retry), `ERR_BUSY with retry first (${JSON.stringify(a.nacks)})`);
  assert.equal(lock.pending, 0);
  assert.equal((await storedEvents(r.chain, 'slow-disk')).size, 1);
});

void test('5. events beyond the window are nacked ERR_WINDOW with retry, and arrive once the lock keeps the window', async (t) => {
  const r = await rig(t, { window: 2, chain: { sealDelayMs: 300 } });
  const { lock, enrolled } = await r.lock('eager');
  const a = answers(lock);
  await waitUntil('greeted', () => lock.greeted);
  // The same lock's events 1..5, sent at once, ignoring the window of 2.
  const maker = new SimLock({ id: 'eager', seed: enrolled.key.seed });
  for (let i = 0; i < 5; i++) maker.record();
  for (let c = 1; c <= 5; c++) assert.ok(lock.inject(maker.payloadOf(c)!, 1));
  await waitUntil('three refused', () => a.nacks.filter(([, code]) => code === 'ERR_WINDOW').length === 3);
  assert.deepEqual(a.nacks.filter(([, code]) => code === 'ERR_WINDOW').map(([ctr, , retry]) => [ctr, retry]), [[3, true], [4, true], [5, true]]);
  assert.equal(r.notices.filter((n) => n.kind === 'rejected' && n.code === 'ERR_WINDOW').length, 3);
  await waitUntil('1 and 2 stored', async () => (await storedEvents(r.chain, 'eager')).size === 2);
});

void test('6. a revoked lock is refused for good at info, sends nothing more, and is reported', async (t) => {
  const r = await rig(t);
  const reported: string[] = [];
  r.ingest.on('unenrolled', (id) => reported.push(id));
  const revoke = (l: TestLock): SignedStatement[] => [signStatement(r.site.site, { site: r.site.siteId, op: 'revoke', role: 'lock', id: l.id, key: l.key.publicKey, time: 1_700_000_100_000 })];
  const { lock } = await r.lock('gone', { then: revoke });
  const a = answers(lock);
  await waitUntil('refused at info', () => a.refused.length > 0);
  assert.deepEqual(a.refused[0], ['ERR_LOCK_REVOKED', false, [1, 2]]);
  lock.record();
  await sleep(700);
  assert.equal(lock.sent, 0, 'a lock refused for good at info sends nothing more');
  assert.deepEqual(reported, ['gone']);
});

void test('6. a version 1 lock that is revoked has its events refused for good (ERR_LOCK_REVOKED, retry false)', async (t) => {
  const r = await rig(t);
  const revoke = (l: TestLock): SignedStatement[] => [signStatement(r.site.site, { site: r.site.siteId, op: 'revoke', role: 'lock', id: l.id, key: l.key.publicKey, time: 1_700_000_100_000 })];
  const { lock } = await r.lock('gone-v1', { protocol: 1, then: revoke });
  const a = answers(lock);
  await waitUntil('greeted', () => lock.greeted);
  const before = r.chain.size;
  lock.record();
  await waitUntil('its event refused', () => a.nacks.length > 0);
  assert.deepEqual(a.nacks, [[1, 'ERR_LOCK_REVOKED', false]]);
  assert.equal(lock.pending, 0, 'given up, as the code says');
  await r.chain.flush();
  assert.equal(r.chain.size, before, 'nothing stored');
});

void test('7. a lock announcing another key is refused at info, recorded, reported with the new key, keeps its events, and is accepted once enrolled again', async (t) => {
  const r = await rig(t);
  const reported: LockInfo[] = [];
  r.ingest.on('unenrolled', (_id, info) => info !== undefined && reported.push(info));
  const newKey = generateKeyPair();
  const { lock, enrolled } = await r.lock('rekeyed', { key: newKey });
  const a = answers(lock);
  await waitUntil('refused at info', () => a.refused.length > 0);
  assert.deepEqual(a.refused[0], ['ERR_LOCK_KEY', true, [1, 2]]);
  assert.ok(reported.length > 0 && bytesEqual(reported[0]!.key!, newKey.publicKey), 'reported with the key to enrol');
  await waitUntil('health entry', async () => (await bodies(r.chain, 'health')).some((b) => b.kind === 'health' && b.source === 'lock:rekeyed' && b.status === 'key-mismatch'));
  lock.record();
  await waitUntil('event refused with retry', () => a.nacks.length > 0);
  assert.deepEqual(a.nacks[0], [1, 'ERR_LOCK_KEY', true]);
  assert.equal(lock.pending, 1, 'the lock keeps the event');
  // The technician enrols the new key (a rotation): the lock's next resend is accepted.
  await r.chain.append({ kind: 'roster', signed: signStatement(r.site.site, { site: r.site.siteId, op: 'rotate', role: 'lock', id: 'rekeyed', key: newKey.publicKey, prev: enrolled.key.publicKey, time: 1_700_000_100_000 }) });
  await waitUntil('accepted after re-enrolment', () => lock.acked.has(1), 20_000);
  assert.equal((await storedEvents(r.chain, 'rekeyed')).size, 1);
});

void test('9. a forged frame under the lock’s id and counter draws an answer about its own bytes, which the lock ignores', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('target');
  const a = answers(lock);
  await waitUntil('greeted', () => lock.greeted);
  const forger = new SimLock({ id: 'target', seed: generateKeyPair().seed });
  forger.record('unlocked');
  assert.ok(lock.inject(forger.payloadOf(1)!, 1), 'the forged frame goes first');
  lock.record();
  await waitUntil('own event acked', () => lock.acked.has(1));
  await waitUntil('forged answer seen', () => a.foreign.length > 0);
  assert.deepEqual(a.foreign, [[1, 'ERR_LOCK_SIGNATURE']]);
  assert.deepEqual(a.nacks, [], 'the lock acted on no answer about other bytes');
  assert.ok(r.codes.includes('ERR_LOCK_SIGNATURE'));
  assert.equal((await storedEvents(r.chain, 'target')).size, 1);
});

void test('10. a serial line carries one lock: a second lock heard on it is reported as ERR_LINK_SHARED', async (t) => {
  const r = await rig(t);
  // Two locks on one pair of wires, as on an RS-485 bus: both hear the gateway, both talk.
  await r.lock('first', { shared: true });
  await r.lock('second', { shared: true });
  await waitUntil('shared line reported', () => r.notices.some((n) => n.kind === 'rejected' && n.code === 'ERR_LINK_SHARED'), 20_000);
});

void test('versions: an info of a version the gateway does not speak is refused with the versions it speaks; a version 1 lock still works', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('future');
  const a = answers(lock);
  await waitUntil('greeted', () => lock.greeted);
  assert.ok(lock.announce(3));
  await waitUntil('refused', () => a.refused.length > 0);
  assert.deepEqual(a.refused, [['ERR_PROTOCOL_VERSION', false, [1, 2]]]);
  assert.ok(r.notices.some((n) => n.kind === 'rejected' && n.code === 'ERR_PROTOCOL_VERSION'));
});

void test('versions: a lock that speaks version 1 (today’s locks) gets answers without ev and loses nothing', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('v1-lock', { protocol: 1 });
  for (let i = 0; i < 20; i++) lock.record();
  await waitUntil('20 acked', () => lock.acked.size === 20);
  assert.equal((await storedEvents(r.chain, 'v1-lock')).size, 20);
  assert.ok(r.notices.some((n) => n.kind === 'lock-seen' && n.info.lock === 'v1-lock' && n.info.v === undefined));
});
