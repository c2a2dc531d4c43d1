/** drivers/queue.ts EventQueue: put() at once with room, back-pressure while full, false once closed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventQueue } from '../../drivers/queue.js';

void test('EventQueue.put: true at once with room, waits while full, false once closed', async () => {
  const q = new EventQueue<number>(2);
  assert.equal(await q.put(1), true);
  assert.equal(await q.put(2), true);
  assert.equal(q.length, 2);
  // Full: the third waits until the consumer takes one.
  let third: boolean | undefined;
  const p3 = q.put(3).then((r) => (third = r));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(third, undefined);
  const it = q[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await p3;
  assert.equal(third, true);
  assert.deepEqual(await it.next(), { value: 2, done: false });
  assert.deepEqual(await it.next(), { value: 3, done: false });
  // A consumer waiting: handed over at once.
  const next = it.next();
  assert.equal(await q.put(4), true);
  assert.deepEqual(await next, { value: 4, done: false });
  // Full again, then closed: the waiting producer and later ones get false.
  await q.put(5);
  await q.put(6);
  const waiting = q.put(7);
  q.close();
  assert.equal(await waiting, false);
  assert.equal(await q.put(8), false);
  assert.deepEqual(await it.next(), { value: undefined, done: true });
});

void test('EventQueue.offer and whenRoom: a producer that waits without a promise per item', async () => {
  const q = new EventQueue<number>(1);
  assert.equal(q.hasRoom, true);
  assert.equal(q.offer(1), true);
  assert.equal(q.hasRoom, false);
  assert.equal(q.offer(2), false, 'full: nothing added');
  assert.equal(q.length, 1);
  let woken = 0;
  q.whenRoom(() => woken++);
  q.whenRoom(() => woken++);
  const it = q[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  assert.equal(woken, 1, 'one producer woken per item taken');
  assert.equal(q.offer(2), true);
  // The consumer waiting counts as room.
  assert.deepEqual(await it.next(), { value: 2, done: false });
  const next = it.next();
  assert.equal(q.hasRoom, true);
  assert.equal(q.offer(3), true);
  assert.deepEqual(await next, { value: 3, done: false });
  q.close();
  assert.equal(woken, 2, 'the rest woken when the queue closes');
  q.whenRoom(() => woken++);
  assert.equal(woken, 3, 'at once once closed');
  assert.equal(q.offer(4), false);
});

void test('EventQueue.poll: takes what is there without a promise, wakes a producer as next() would, undefined when empty', async () => {
  const q = new EventQueue<number>(2);
  assert.equal(q.poll(), undefined);
  q.offer(1);
  q.offer(2);
  let woken = 0;
  q.whenRoom(() => woken++);
  assert.equal(q.poll(), 1);
  assert.equal(woken, 1);
  assert.equal(q.offer(3), true);
  const it = q[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 2, done: false });
  assert.equal(q.poll(), 3);
  assert.equal(q.poll(), undefined);
  // Empty: the consumer waits on next(), and an item offered then is handed to it, not left for poll().
  const next = it.next();
  q.offer(4);
  assert.equal(q.poll(), undefined);
  assert.deepEqual(await next, { value: 4, done: false });
  q.close();
  assert.equal(q.poll(), undefined);
});
