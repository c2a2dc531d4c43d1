/** ledger/base/fifo.ts: order, length and iteration hold across the compaction of its front. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fifo } from '../../ledger/base/fifo.js';

void test('items leave in the order they came, across compactions and emptying', () => {
  const q = new Fifo<number>(4);
  assert.equal(q.shift(), undefined);
  assert.equal(q.peek(), undefined);
  let next = 0;
  let expected = 0;
  // Push two for every one taken, then drain: the head passes the compaction point many times.
  for (let round = 0; round < 50; round++) {
    q.push(next++);
    q.push(next++);
    assert.equal(q.peek(), expected);
    assert.equal(q.shift(), expected++);
    assert.equal(q.length, next - expected);
  }
  const seen: number[] = [];
  q.forEach((x) => seen.push(x));
  assert.deepEqual(seen, Array.from({ length: next - expected }, (_, i) => expected + i));
  while (q.length > 0) assert.equal(q.shift(), expected++);
  assert.equal(expected, next);
  assert.equal(q.shift(), undefined);
  q.push(7);
  assert.equal(q.length, 1);
  assert.equal(q.shift(), 7);
});

void test('Fifo.clear drops every item, wherever the head is', () => {
  const q = new Fifo<number>(2);
  for (let i = 0; i < 5; i++) q.push(i);
  q.shift();
  q.shift();
  q.clear();
  assert.equal(q.length, 0);
  assert.equal(q.peek(), undefined);
  assert.equal(q.shift(), undefined);
  q.push(9);
  assert.deepEqual([q.length, q.shift()], [1, 9]);
});
