import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RefusedCounters, REFUSALS_KEPT } from '../../gateway/refusals.js';

void test('a gap splits into runs lost at the lock and runs refused with one code each', () => {
  const r = new RefusedCounters();
  r.note(4, 'ERR_EVENT_INVALID');
  r.note(5, 'ERR_EVENT_INVALID');
  r.note(7, 'ERR_LOCK_SIGNATURE');
  r.note(20, 'ERR_EVENT_INVALID');
  assert.deepEqual(r.split(3, 9), [
    { from: 3, to: 3 },
    { from: 4, to: 5, code: 'ERR_EVENT_INVALID' },
    { from: 6, to: 6 },
    { from: 7, to: 7, code: 'ERR_LOCK_SIGNATURE' },
    { from: 8, to: 9 },
  ]);
  assert.deepEqual(r.split(3, 9), [{ from: 3, to: 9 }], 'a refusal is used once');
  assert.deepEqual(r.split(20, 20), [{ from: 20, to: 20, code: 'ERR_EVENT_INVALID' }]);
});

void test('refusals kept are bounded: the oldest noted are forgotten first', () => {
  const r = new RefusedCounters();
  for (let c = 1; c <= REFUSALS_KEPT + 10; c++) r.note(c, 'ERR_EVENT_INVALID');
  assert.deepEqual(r.split(1, 10), [{ from: 1, to: 10 }]);
  assert.deepEqual(r.split(11, 11), [{ from: 11, to: 11, code: 'ERR_EVENT_INVALID' }]);
});
