/** Rate-limited logging of a repeated line, such as a sync refusal (gateway/repeat-log.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RepeatLog } from '../../gateway/repeat-log.js';

void test('the first refusal of a kind is logged, the rest of the window counted, then logged with the count', () => {
  const log = new RepeatLog(60_000);
  assert.deepEqual(log.admit('gw-b', 'ERR_ROSTER', 0), { suppressed: 0 });
  // 6 a second for a minute: none logged.
  let logged = 0;
  for (let ms = 100; ms < 60_000; ms += 166) if (log.admit('gw-b', 'ERR_ROSTER', ms) !== undefined) logged++;
  assert.equal(logged, 0);
  // Another kind (peer or code) has its own window.
  assert.deepEqual(log.admit('gw-c', 'ERR_ROSTER', 1000), { suppressed: 0 });
  assert.deepEqual(log.admit('gw-b', 'ERR_PROOF_INVALID', 1000), { suppressed: 0 });
  const next = log.admit('gw-b', 'ERR_ROSTER', 60_000);
  assert.deepEqual(next, { suppressed: 361 });
  assert.equal(log.admit('gw-b', 'ERR_ROSTER', 60_001), undefined);
});

void test('memory is bounded by the number of kinds kept', () => {
  const log = new RepeatLog(60_000, 4);
  for (let i = 0; i < 10; i++) log.admit(`gw-${i}`, 'ERR_ROSTER', 0);
  // gw-0 was forgotten (oldest), so it is logged again at once; gw-9 is still in its window.
  assert.deepEqual(log.admit('gw-0', 'ERR_ROSTER', 1), { suppressed: 0 });
  assert.equal(log.admit('gw-9', 'ERR_ROSTER', 1), undefined);
});
