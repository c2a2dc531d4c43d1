import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionRegistry } from '../../gateway/broker/sessions.js';

void test('a principal over its cap discards its session offline longest; other principals are untouched', () => {
  const r = new SessionRegistry({ maxPerPrincipal: 2, expiryMs: 1000 });
  const a = {}, b = {}, c = {}, other = {};
  assert.deepEqual(r.open('u', 's1', a), []);
  assert.deepEqual(r.open('u', 's2', b), []);
  assert.deepEqual(r.open('v', 's9', other), []);
  r.closed('s2', b, 10);
  r.closed('s1', a, 20);
  assert.deepEqual(r.open('u', 's3', c), ['s2']);
  assert.equal(r.size, 3);
  assert.ok(r.has('s9'));
});

void test('at the cap with every session connected, a new one is refused', () => {
  const r = new SessionRegistry({ maxPerPrincipal: 1, expiryMs: 1000 });
  assert.deepEqual(r.open('u', 's1', {}), []);
  assert.equal(r.open('u', 's2', {}), undefined);
  assert.equal(r.size, 1);
});

void test('offline sessions expire; a taken-over session stays online when the old connection closes', () => {
  const r = new SessionRegistry({ maxPerPrincipal: 4, expiryMs: 1000 });
  const first = {}, second = {};
  r.open('u', 's1', first);
  r.open('u', 's1', second);
  r.closed('s1', first, 0);
  r.open('u', 's2', {});
  const h = {};
  r.open('u', 's3', h);
  r.closed('s3', h, 100);
  assert.deepEqual(r.expire(1099), []);
  assert.deepEqual(r.expire(1100), ['s3']);
  assert.ok(r.has('s1') && r.has('s2'));
});
