import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoginGuard } from '../../gateway/broker/login-guard.js';
import { isOtiError } from '../../ledger/base/errors.js';

const limits = { maxConcurrentChecks: 1, maxPendingChecks: 1, failuresPerMinutePerAddress: 2, failuresPerMinute: 3, trackedAddresses: 2, refusalDelayMs: 0 };

const ok = (): Promise<string> => Promise.resolve('principal');
const wrong = (): Promise<string | undefined> => Promise.resolve(undefined);

/** The budget a check was refused by (`address` or `total`), or its result. */
async function outcome(p: Promise<string | undefined>): Promise<string | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isOtiError(e, 'ERR_MQTT_LOGIN_RATE')) return String(e.details?.['budget']);
    if (isOtiError(e, 'ERR_MQTT_BUSY')) return 'busy';
    throw e;
  }
}

/** A check that runs until released, counting how many run at once. */
function gated(): { run: (result: string | undefined) => () => Promise<string | undefined>; release: () => void; peak: () => number; started: () => number } {
  let running = 0;
  let peak = 0;
  let started = 0;
  const releases: (() => void)[] = [];
  return {
    run: (result) => () => {
      running++;
      started++;
      peak = Math.max(peak, running);
      return new Promise((resolve) => releases.push(() => {
        running--;
        resolve(result);
      }));
    },
    release: () => releases.shift()?.(),
    peak: () => peak,
    started: () => started,
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

void test('only failures spend the budgets, per address and overall; budgets refill', async () => {
  let now = 0;
  const g = new LoginGuard({ ...limits, trackedAddresses: 16 }, () => now);
  for (let i = 0; i < 10; i++) assert.equal(await g.check('a', ok), 'principal');
  assert.equal(await g.check('a', wrong), undefined);
  assert.equal(await g.check('a', wrong), undefined);
  assert.equal(await outcome(g.check('a', ok)), 'address');
  assert.equal(await g.check('b', wrong), undefined);
  assert.equal(await outcome(g.check('c', ok)), 'total');
  // A check that throws (the users file unreadable) is not a failed login.
  now += 20_000;
  await assert.rejects(g.check('c', () => Promise.reject(new Error('EACCES'))));
  assert.equal(await g.check('c', ok), 'principal');
  assert.equal(await g.check('c', wrong), undefined);
  assert.equal(await outcome(g.check('d', ok)), 'total');
  assert.equal(await outcome(g.check('a', ok)), 'address');
  now += 30_000;
  assert.equal(await g.check('a', ok), 'principal');
});

void test('many correct logins from one address at once all get checked; none is refused', async () => {
  const g = new LoginGuard({ ...limits, maxPendingChecks: 40 });
  const results = await Promise.all(Array.from({ length: 40 }, () => outcome(g.check('a', ok))));
  assert.deepEqual(new Set(results), new Set(['principal']));
});

void test('logins waiting in line are refused unchecked once the checks before them spend the budget', async () => {
  const g = new LoginGuard({ ...limits, maxPendingChecks: 10 });
  const gate = gated();
  const all = Array.from({ length: 6 }, () => outcome(g.check('a', gate.run(undefined))));
  for (let i = 0; i < 2; i++) {
    await turn();
    gate.release();
  }
  assert.deepEqual(await Promise.all(all), [undefined, undefined, 'address', 'address', 'address', 'address']);
  assert.equal(gate.started(), 2);
});

void test('with checks in parallel, no more run than the budgets could pay for if all failed', async () => {
  const g = new LoginGuard({ ...limits, maxConcurrentChecks: 4, maxPendingChecks: 10, failuresPerMinute: 100 });
  const gate = gated();
  // Address a may fail twice: two of its checks run, the others wait; b's go ahead of them.
  const a = Array.from({ length: 4 }, () => outcome(g.check('a', gate.run(undefined))));
  const b = outcome(g.check('b', gate.run('principal')));
  await turn();
  assert.equal(gate.started(), 3);
  for (let i = 0; i < 3; i++) gate.release();
  assert.equal(await b, 'principal');
  assert.deepEqual(await Promise.all(a), [undefined, undefined, 'address', 'address']);
  assert.equal(gate.started(), 3);
  assert.equal(gate.peak(), 3);
});

void test('only the most recently seen addresses are remembered', async () => {
  const g = new LoginGuard({ ...limits, failuresPerMinute: 100 }, () => 0);
  await g.check('a', wrong);
  await g.check('a', wrong);
  assert.equal(await outcome(g.check('a', ok)), 'address');
  await g.check('b', ok);
  await g.check('c', ok);
  assert.equal(await g.check('a', ok), 'principal');
});

void test('checks run one at a time, one waits, the next is ERR_MQTT_BUSY', async () => {
  const g = new LoginGuard(limits);
  const gate = gated();
  const first = g.check('a', gate.run('1'));
  const second = g.check('b', gate.run('2'));
  await assert.rejects(g.check('c', gate.run('3')), (e: unknown) => isOtiError(e, 'ERR_MQTT_BUSY'));
  gate.release();
  assert.equal(await first, '1');
  await turn();
  gate.release();
  assert.equal(await second, '2');
  assert.equal(gate.peak(), 1);
});
