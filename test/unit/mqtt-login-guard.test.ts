import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoginGuard } from '../../gateway/broker/login-guard.js';
import { isOtiError } from '../../ledger/base/errors.js';

const limits = { maxConcurrentChecks: 1, maxPendingChecks: 1, failuresPerMinutePerAddress: 2, failuresPerMinute: 3, trackedAddresses: 2, refusalDelayMs: 0 };

void test('failures are counted per address and overall; successes give their reservation back; budgets refill', () => {
  let now = 0;
  const g = new LoginGuard(limits, () => now);
  const ok = g.admit('a');
  assert.notEqual(typeof ok, 'string');
  if (typeof ok !== 'string') ok.succeeded();
  assert.notEqual(typeof g.admit('a'), 'string');
  assert.notEqual(typeof g.admit('a'), 'string');
  assert.equal(g.admit('a'), 'address');
  assert.notEqual(typeof g.admit('b'), 'string');
  assert.equal(g.admit('c'), 'total');
  // 'c' was refused by the overall budget, so its own reservation was given back.
  now += 20_000;
  assert.notEqual(typeof g.admit('c'), 'string');
  assert.equal(g.admit('a'), 'total');
  now += 30_000;
  assert.notEqual(typeof g.admit('a'), 'string');
});

void test('only the most recently seen addresses are remembered', () => {
  const g = new LoginGuard({ ...limits, failuresPerMinute: 100 }, () => 0);
  g.admit('a');
  g.admit('a');
  assert.equal(g.admit('a'), 'address');
  g.admit('b');
  g.admit('c');
  assert.notEqual(typeof g.admit('a'), 'string');
});

void test('checks run one at a time, one waits, the next is ERR_MQTT_BUSY', async () => {
  const g = new LoginGuard(limits);
  let running = 0;
  let peak = 0;
  const releases: (() => void)[] = [];
  const work = (): Promise<number> => {
    running++;
    peak = Math.max(peak, running);
    return new Promise<number>((resolve) => releases.push(() => {
      running--;
      resolve(1);
    }));
  };
  const first = g.check(work);
  const second = g.check(work);
  await assert.rejects(g.check(work), (e: unknown) => isOtiError(e, 'ERR_MQTT_BUSY'));
  releases.shift()?.();
  await first;
  await new Promise((r) => setImmediate(r));
  releases.shift()?.();
  assert.equal(await second, 1);
  assert.equal(peak, 1);
});
