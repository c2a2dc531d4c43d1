/**
 * Health entries about locks (gateway/lock-health.ts): one a minute per lock; what is held back
 * meanwhile is written, counted per status, when the minute is over, whether or not the lock
 * says anything more. The minute is shortened here; the clock is the test's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LockHealthRecords } from '../../gateway/lock-health.js';
import { waitUntil } from '../support/wait.js';

const MINUTE = 150;

function rig(): { records: LockHealthRecords; written: { source: string; status: string; detail?: string }[]; clock: { t: number } } {
  const written: { source: string; status: string; detail?: string }[] = [];
  const clock = { t: 1_000_000 };
  return { records: new LockHealthRecords((e) => written.push(e), () => clock.t, MINUTE), written, clock };
}

void test('what is held back within the minute is written when it is over, with its count per status, though nothing more arrives', async () => {
  const { records, written, clock } = rig();
  records.record('door', 'replay', 'counter 3 again');
  assert.deepEqual(written, [{ kind: 'health', source: 'lock:door', status: 'replay', detail: 'counter 3 again' }], 'the first at once');
  clock.t += 10;
  records.record('door', 'replay', 'counter 4 again');
  records.record('door', 'bad-signature', 'event 9 is not signed by the enrolled key');
  records.record('door', 'replay', 'counter 5 again');
  records.record('other', 'invalid-event', 'event 1 refused');
  assert.equal(written.length, 2, 'held back; another lock has its own minute');
  assert.equal(records.holding, 1);
  clock.t += MINUTE;
  await waitUntil('the held-back record written', () => written.length === 3, 5_000);
  assert.deepEqual(written[2], { kind: 'health', source: 'lock:door', status: 'replay', detail: 'counter 5 again (held back since the last record: 2 replay, 1 bad-signature)' });
  assert.equal(records.holding, 0, 'no timer left');
  // That entry started the next minute: one more now is held, and written when it ends.
  records.record('door', 'bad-signature', 'event 10 is not signed by the enrolled key');
  assert.equal(written.length, 3);
  clock.t += MINUTE;
  await waitUntil('the next held-back record', () => written.length === 4, 5_000);
  assert.match(written[3]!.detail!, /^event 10 is not signed by the enrolled key \(held back since the last record: 1 bad-signature\)$/);
  // After a quiet minute, the next is written at once, with nothing held.
  clock.t += MINUTE;
  records.record('door', 'replay', 'counter 6 again');
  assert.deepEqual(written[4], { kind: 'health', source: 'lock:door', status: 'replay', detail: 'counter 6 again' });
  records.close();
});

void test('closing writes what is held at once; a long detail keeps its counts within the 2048 characters of a health entry', () => {
  const { records, written, clock } = rig();
  records.record('door', 'invalid-event', 'first');
  clock.t += 1;
  records.record('door', 'invalid-event', 'x'.repeat(3000));
  records.close();
  assert.equal(written.length, 2);
  assert.equal(written[1]!.detail!.length, 2048);
  assert.match(written[1]!.detail!, /x \(held back since the last record: 1 invalid-event\)$/);
  assert.equal(records.holding, 0);
});
