/**
 * gateway/stages.ts: the runtime's start and stop order. Stops run in reverse start order, each
 * even when an earlier one failed; a start that fails registers no stop of its own, and a stop
 * registered before a start (a driver) runs all the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stages } from '../../gateway/stages.js';
import { silentLogger } from '../../gateway/log.js';

void test('parts stop in reverse start order, each even if an earlier stop failed', async () => {
  const stages = new Stages(silentLogger());
  const stopped: string[] = [];
  const a = await stages.start('a', () => 'part a', (p) => void stopped.push(p));
  await stages.start('b', () => Promise.resolve(2), () => {
    stopped.push('b');
    throw new Error('b would not stop');
  });
  stages.onStop('c', () => void stopped.push('c'));
  assert.equal(a, 'part a');
  assert.deepEqual(stages.stopOrder, ['c', 'b', 'a']);
  await assert.rejects(stages.stop(), /b would not stop/);
  assert.deepEqual(stopped, ['c', 'b', 'part a']);
  await assert.rejects(stages.stop(), /b would not stop/, 'a second stop is the same stop');
  assert.deepEqual(stopped, ['c', 'b', 'part a']);
});

void test('a part whose start fails is not stopped; what started before it is, and a stop registered first runs', async () => {
  const stages = new Stages(silentLogger());
  const stopped: string[] = [];
  await stages.start('store', () => 1, () => void stopped.push('store'));
  stages.onStop('driver', () => void stopped.push('driver'));
  await assert.rejects(stages.start('broker', () => Promise.reject(new Error('port in use')), () => void stopped.push('broker')), /port in use/);
  await stages.stop();
  assert.deepEqual(stopped, ['driver', 'store']);
});
