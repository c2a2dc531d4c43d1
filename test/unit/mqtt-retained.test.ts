import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RetainedQuota } from '../../gateway/broker/retained.js';

void test('each principal is capped on its own, by count and by bytes', () => {
  const q = new RetainedQuota({ maxMessages: 2, maxBytes: 100 });
  assert.equal(q.admit('a', 't1', 40), undefined);
  assert.equal(q.admit('a', 't2', 40), undefined);
  assert.equal(q.admit('a', 't3', 1), 'messages');
  assert.equal(q.admit('b', 't3', 100), undefined);
  assert.equal(q.admit('b', 't4', 1), 'bytes');
  assert.deepEqual(q.total(), { messages: 3, bytes: 180 });
});

void test('replacing counts the new size; clearing and the gateway\'s own messages free the slot', () => {
  const q = new RetainedQuota({ maxMessages: 1, maxBytes: 100 });
  assert.equal(q.admit('a', 't1', 90), undefined);
  assert.equal(q.admit('a', 't1', 100), undefined);
  assert.equal(q.admit('a', 't1', 101), 'bytes');
  assert.equal(q.admit('a', 't1', 0), undefined);
  assert.deepEqual(q.total(), { messages: 0, bytes: 0 });
  assert.equal(q.admit('a', 't2', 5), undefined);
  q.release('t2');
  assert.equal(q.admit('a', 't3', 5), undefined);
  // Another principal taking over a topic moves it to that principal's share.
  assert.equal(q.admit('b', 't3', 7), undefined);
  assert.equal(q.admit('a', 't4', 5), undefined);
  assert.deepEqual(q.total(), { messages: 2, bytes: 12 });
});
