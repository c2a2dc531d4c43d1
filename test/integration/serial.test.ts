/**
 * The serial driver over real kernel ptys (socat), with simulated locks on the far end and the
 * real ingest pipeline and LevelDB chain behind it: events flow, acks return after durability,
 * the cable is pulled and plugged back 20 times mid-stream without losing or doubling anything,
 * and each protocol fault gets its documented answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { serialRig as rig, storedEvents, bodies } from '../support/serial-rig.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { waitUntil } from '../support/wait.js';

void test('events flow from a lock over a pty and every ack names the durable entry', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('front-door');
  for (let i = 0; i < 200; i++) lock.record(i % 2 === 0 ? 'unlocked' : 'locked');
  await waitUntil('all 200 acked', () => lock.acked.size === 200);
  assert.equal(lock.pending, 0);
  const stored = await storedEvents(r.chain, 'front-door');
  assert.equal(stored.size, 200);
  for (const [ctr, hash] of lock.acked) assert.ok(bytesEqual(stored.get(ctr) as Uint8Array, hash), `ack of ${ctr} names the stored entry`);
  const seen = r.notices.filter((n) => n.kind === 'lock-seen' && n.info.lock === 'front-door').length;
  assert.ok(seen >= 1 && seen <= 3, `the hello/info exchange ends after a round or two (${seen} infos)`);
  assert.equal(r.driver.status().state, 'running');
});

void test('pulling the cable 20 times mid-stream loses nothing and stores nothing twice', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('back-door');
  lock.startAuto(200);
  for (let i = 0; i < 20; i++) {
    await sleep(60 + Math.floor(Math.random() * 60));
    await r.pty.restart();
  }
  lock.stopAuto();
  const total = lock.counter - 1;
  assert.ok(total > 100, `the lock recorded events throughout (${total})`);
  await waitUntil(`all ${total} events acked`, () => lock.acked.size === total, 60_000);
  const stored = await storedEvents(r.chain, 'back-door');
  assert.deepEqual([...stored.keys()].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i + 1));
  for (const [ctr, hash] of lock.acked) assert.ok(bytesEqual(stored.get(ctr) as Uint8Array, hash));
  assert.equal((await bodies(r.chain, 'gap')).filter((b) => 'lock' in b).length, 0, 'no counter gap: the lock kept every event');
  // Restarts that come while the driver is still backing off from the previous one merge into one
  // outage, so under load it may see fewer than 20; it must have seen most of them.
  assert.ok(r.driver.status().counters.reconnects >= 10, `the driver reconnected again and again (${r.driver.status().counters.reconnects})`);
  assert.ok((await bodies(r.chain, 'gap')).some((b) => 'source' in b && b.source === r.driver.id), 'the blind intervals are recorded');
});

void test('corrupt frames are rejected with a code and the events still arrive once', async (t) => {
  const r = await rig(t);
  const { lock, link } = await r.lock('side-door');
  await waitUntil('link up', () => lock.connected);
  link.setCorruptRate(0.2);
  for (let i = 0; i < 100; i++) lock.record();
  await waitUntil('all 100 acked despite corruption', () => lock.acked.size === 100, 60_000);
  assert.ok(link.corrupted > 0);
  const rejected = r.notices.filter((n) => n.kind === 'rejected');
  assert.ok(rejected.length > 0);
  for (const n of rejected) assert.match(n.kind === 'rejected' ? n.code : '', /^ERR_(FRAME|MESSAGE|ENCODING)_?/);
  assert.equal((await storedEvents(r.chain, 'side-door')).size, 100);
});

void test('a replayed counter is refused and recorded; a repeated identical event is acked again', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('vault');
  for (let i = 0; i < 5; i++) lock.record();
  await waitUntil('5 acked', () => lock.acked.size === 5);
  const nacks: [number, string, boolean][] = [];
  lock.on('nack', (ctr, code, retry) => nacks.push([ctr, code, retry]));
  // The answer to the forged content names those bytes (ev), not the lock's event 2: ignored.
  const foreign: [number, string | undefined][] = [];
  lock.on('foreign', (ctr, code) => foreign.push([ctr, code]));
  const duplicates: number[] = [];
  r.ingest.on('duplicate', (ev, entry) => {
    duplicates.push(ev.ctr);
    assert.ok(bytesEqual(entry, lock.acked.get(ev.ctr) as Uint8Array), 'the duplicate is acked with the stored hash');
  });
  const before = r.chain.size;
  assert.ok(lock.replay(3), 'identical resend of 3');
  assert.ok(lock.forgeReplay(2), 'other content under counter 2');
  await waitUntil('replay refused', () => foreign.length > 0);
  assert.deepEqual(foreign, [[2, 'ERR_REPLAY']]);
  assert.deepEqual(nacks, [], 'no answer the lock acts on');
  assert.deepEqual(r.codes, ['ERR_REPLAY']);
  assert.deepEqual(duplicates, [3]);
  await waitUntil('health record', async () => (await bodies(r.chain, 'health')).length === 1);
  const health = (await bodies(r.chain, 'health'))[0];
  assert.ok(health !== undefined && health.kind === 'health' && health.source === 'lock:vault' && health.status === 'replay');
  assert.equal((await storedEvents(r.chain, 'vault')).size, 5, 'nothing stored twice');
  assert.equal(r.chain.size, before + 1, 'only the health record was added');
});

void test('a lock that restarts while the line stays open is greeted again and resends what it holds', async (t) => {
  const r = await rig(t);
  const { lock, link } = await r.lock('reset-door');
  for (let i = 0; i < 5; i++) lock.record();
  await waitUntil('5 acked', () => lock.acked.size === 5);
  link.setAckDelay(300); // acks still on the way when the lock resets
  for (let i = 0; i < 5; i++) lock.record();
  link.restartLock();
  link.setAckDelay(0);
  for (let i = 0; i < 5; i++) lock.record();
  await waitUntil('all 15 acked after the restart', () => lock.acked.size === 15);
  assert.equal((await storedEvents(r.chain, 'reset-door')).size, 15);
});

void test('counters the lock lost become one gap entry', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('gate');
  for (let i = 0; i < 3; i++) lock.record();
  await waitUntil('3 acked', () => lock.acked.size === 3);
  lock.skip(5); // the lock lost counters 4..8 before it could send them
  lock.record();
  await waitUntil('event 9 acked', () => lock.acked.has(9));
  const gaps = (await bodies(r.chain, 'gap')).filter((b) => 'lock' in b);
  assert.deepEqual(gaps, [{ kind: 'gap', lock: 'gate', from: 4, to: 8 }]);
  assert.deepEqual([...(await storedEvents(r.chain, 'gate')).keys()], [1, 2, 3, 9]);
});

void test('a lock that is not enrolled is refused with retry, reported with its key, and nothing is stored', async (t) => {
  const r = await rig(t);
  const unenrolled: { lock: string; key: Uint8Array | undefined }[] = [];
  r.ingest.on('unenrolled', (lock, info) => unenrolled.push({ lock, key: info?.key }));
  const { lock } = await r.lock('stranger', { enrolled: false });
  const nacks: [string, boolean][] = [];
  lock.on('nack', (_ctr, code, retry) => nacks.push([code, retry]));
  const before = r.chain.size;
  lock.record();
  await waitUntil('refused', () => nacks.length > 0);
  assert.deepEqual(nacks[0], ['ERR_LOCK_UNKNOWN', true]);
  assert.equal(lock.pending, 1, 'the lock keeps the event');
  assert.equal(unenrolled[0]?.lock, 'stranger');
  assert.ok(unenrolled[0]?.key !== undefined && bytesEqual(unenrolled[0].key, lock.publicKey as Uint8Array), 'the report carries the key to enrol');
  await r.chain.flush();
  assert.equal(r.chain.size, before);
});

void test('an unsigned lock enrolled as unsigned is accepted; its events are stored as unsigned', async (t) => {
  const r = await rig(t);
  const { lock } = await r.lock('old-lock', { unsigned: true });
  for (let i = 0; i < 10; i++) lock.record();
  await waitUntil('10 acked', () => lock.acked.size === 10);
  const evs = (await bodies(r.chain, 'lock-event')).filter((b) => b.kind === 'lock-event' && b.prov === 'unsigned');
  assert.equal(evs.length, 10);
});

void test('slow acks: the lock resends, the gateway acks the duplicates without storing them twice', async (t) => {
  const r = await rig(t);
  const { lock, link } = await r.lock('slow');
  link.setAckDelay(500); // longer than the lock's 300 ms resend timeout
  for (let i = 0; i < 20; i++) lock.record();
  await waitUntil('20 acked', () => lock.acked.size === 20, 60_000);
  assert.ok(lock.sent > 20, 'the lock resent');
  assert.equal((await storedEvents(r.chain, 'slow')).size, 20);
});
