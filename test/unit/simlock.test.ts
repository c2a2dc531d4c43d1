import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimLock } from '../../drivers/simlock.js';
import { decodeLockMessage, encodeMessage, encodeAck, eventHash, type LockMessage } from '../../drivers/protocol.js';
import { generateKeyPair } from '../../ledger/crypto.js';
import { decodeLockPayload } from '../../ledger/entry.js';

/** A lock on a fake link that records what it sends, greeted with `window`. */
function linked(lock: SimLock, window: number): Uint8Array[] {
  const sent: Uint8Array[] = [];
  lock.connect((m) => sent.push(m), { announceInfo: true });
  lock.receive(encodeMessage({ t: 'hello', v: lock.protocol, gw: 'gw', window }));
  sent.length = 0;
  return sent;
}

function eventOf(m: Uint8Array): Extract<LockMessage, { t: 'event' }> {
  const d = decodeLockMessage(m);
  assert.equal(d.t, 'event');
  return d as Extract<LockMessage, { t: 'event' }>;
}

void test('SimLock.prepare: events signed ahead are sent in counter order, across several prepares, then signed as recorded', (t) => {
  const key = generateKeyPair();
  const lock = new SimLock({ id: 'lock-a', seed: key.seed, resendMs: 60_000 });
  t.after(() => lock.close());
  lock.prepare(3);
  lock.prepare(2);
  lock.prepare(0);
  const sent = linked(lock, 16);
  for (let i = 0; i < 7; i++) lock.record();
  assert.equal(sent.length, 7);
  sent.forEach((m, i) => {
    const ev = eventOf(m);
    assert.equal(ev.ctr, i + 1);
    assert.ok('cose' in ev);
    // Each is a whole COSE_Sign1 of its own counter (decoded strictly, not as a view of its neighbours).
    const p = decodeLockPayload(Uint8Array.from(ev.cose), true);
    assert.equal(p.event.ctr, i + 1);
    assert.equal(p.event.lock, 'lock-a');
  });
});

void test('SimLock.skip drops what was signed ahead; history 0 keeps no acknowledged event to replay', (t) => {
  const key = generateKeyPair();
  const lock = new SimLock({ id: 'lock-b', seed: key.seed, resendMs: 60_000, history: 0 });
  t.after(() => lock.close());
  lock.prepare(4);
  const sent = linked(lock, 16);
  lock.record();
  lock.skip(2);
  lock.record();
  assert.deepEqual(sent.map((m) => eventOf(m).ctr), [1, 4]);
  const first = eventOf(sent[0]!);
  assert.ok('cose' in first);
  lock.receive(encodeAck('lock-b', 1, new Uint8Array(32), eventHash(first.cose)));
  assert.equal(lock.ackCount, 1);
  assert.equal(lock.replay(1), false);
  assert.equal(lock.payloadOf(1), undefined);
});

void test('SimLock keeps 64 acknowledged events for replay by default', (t) => {
  const key = generateKeyPair();
  const lock = new SimLock({ id: 'lock-c', seed: key.seed, resendMs: 60_000 });
  t.after(() => lock.close());
  const sent = linked(lock, 16);
  lock.record();
  const first = eventOf(sent[0]!);
  assert.ok('cose' in first);
  lock.receive(encodeAck('lock-c', 1, new Uint8Array(32), eventHash(first.cose)));
  assert.equal(lock.replay(1), true);
});

void test('SimLock.prepare: an answer about an event signed ahead is checked against the hash made ahead with it', (t) => {
  const key = generateKeyPair();
  const lock = new SimLock({ id: 'lock-c', seed: key.seed, resendMs: 60_000 });
  t.after(() => lock.close());
  lock.prepare(3);
  const sent = linked(lock, 16);
  lock.record();
  lock.record();
  const [first, second] = sent.map((m) => eventOf(m));
  assert.ok(first !== undefined && 'cose' in first && second !== undefined && 'cose' in second);
  const foreign: number[] = [];
  lock.on('foreign', (ctr) => foreign.push(ctr));
  // The ack of counter 1 naming the bytes of counter 2: about other bytes, ignored.
  lock.receive(encodeAck('lock-c', 1, new Uint8Array(32), eventHash(second.cose)));
  assert.deepEqual(foreign, [1]);
  assert.equal(lock.ackCount, 0);
  lock.receive(encodeAck('lock-c', 1, new Uint8Array(32), eventHash(first.cose)));
  lock.receive(encodeAck('lock-c', 2, new Uint8Array(32), eventHash(second.cose)));
  assert.deepEqual(foreign, [1]);
  assert.equal(lock.ackCount, 2);
});
