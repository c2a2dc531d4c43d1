/**
 * listen() (ledger/base/events.ts): typed listeners added and removed as one. The
 * `@ts-expect-error` lines are the compile-time half: the build fails if a misspelt event name or
 * a wrong argument type were accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { listen } from '../../ledger/base/events.js';

interface Events {
  block: [n: number];
  error: [e: Error];
}

void test('listen adds typed listeners and one call removes them all', () => {
  const em = new EventEmitter<Events>();
  const seen: string[] = [];
  const stop = listen(em, { block: (n) => seen.push(`block ${n.toFixed(0)}`), error: (e) => seen.push(e.message) });
  em.emit('block', 3);
  em.emit('error', new Error('boom'));
  stop();
  em.emit('block', 4);
  assert.deepEqual(seen, ['block 3', 'boom']);
  assert.equal(em.listenerCount('block') + em.listenerCount('error'), 0);
  // @ts-expect-error: no such event
  listen(em, { blocks: () => undefined });
  // @ts-expect-error: block carries a number
  listen(em, { block: (s: string) => s });
});
