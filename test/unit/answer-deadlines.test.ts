/** One timer for every admitted event's answer deadline (gateway/answer-deadlines.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerDeadlines } from '../../gateway/answer-deadlines.js';
import { waitUntil } from '../support/wait.js';

interface Item {
  readonly name: string;
  readonly deadline: number;
  settled: boolean;
  overdue: boolean;
}

void test('items past their deadline and not settled are due once; settled ones never are', async () => {
  let clock = 1000;
  const due: string[] = [];
  const q = new AnswerDeadlines<Item>(
    () => clock,
    (i) => i.settled,
    (i) => due.push(i.name),
  );
  const item = (name: string, deadline: number): Item => ({ name, deadline, settled: false, overdue: false });
  const a = item('a', 1040);
  const b = item('b', 1020);
  const c = item('c', 1030);
  const d = item('d', 1010);
  const late = item('late', 1_000_000);
  // Added out of deadline order (admission is not quite arrival order).
  for (const i of [a, b, c, d, late]) q.add(i);
  assert.equal(q.size, 5);
  // a settles first: it leaves at once (it is first in admission order); c settles but waits behind b.
  a.settled = true;
  c.settled = true;
  q.settled();
  assert.equal(q.size, 4, 'b, c (settled), d, late');
  await waitUntil('d due (its deadline was armed first)', () => due.length >= 1);
  clock = 1050;
  await waitUntil('b due', () => due.length === 2);
  assert.deepEqual(due.sort(), ['b', 'd']);
  // b and d stay held until settled, and are not told twice.
  b.settled = true;
  d.settled = true;
  q.settled();
  assert.equal(q.size, 1, 'only the late one is held');
  late.settled = true;
  q.settled();
  assert.equal(q.size, 0);
  q.close();
});

void test('a clock that does not move still sees each deadline fire once', async () => {
  const due: string[] = [];
  const q = new AnswerDeadlines<Item>(
    () => 0,
    (i) => i.settled,
    (i) => due.push(i.name),
  );
  q.add({ name: 'y', deadline: 10, settled: false, overdue: false });
  q.add({ name: 'x', deadline: 5, settled: false, overdue: false });
  await waitUntil('both due', () => due.length === 2);
  assert.deepEqual(due, ['x', 'y']);
  q.close();
});
