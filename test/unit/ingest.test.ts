/**
 * The ingest pipeline's own guarantees, against a real chain and a driver at the hardware edge:
 * every event is answered exactly once and its place released, even when a listener or the
 * signature pool fails; a lock's events are admitted in order whatever order their checks end in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, openChain, signedEvent } from '../support/site.js';
import { FakeDriver } from '../support/fake-driver.js';
import { waitUntil } from '../support/wait.js';
import { Ingest } from '../../gateway/ingest.js';
import type { SignaturePool, SigTask } from '../../ledger/sigpool.js';
import { verify } from '../../ledger/crypto.js';
import { sigStructure } from '../../ledger/cose.js';

/**
 * `stalled`: nothing becomes durable until the test calls chain.flush() (a disk that stalls,
 * deterministically), and answers are due 50 ms after an event is read.
 */
async function rig(t: Parameters<typeof openChain>[0], pool?: SignaturePool, stalled = false) {
  const site = makeSite();
  const opened = await openChain(t, site, { sealDelayMs: 1 });
  const lock = enrollLock(site, 'front');
  await opened.chain.append({ kind: 'roster', signed: lock.statement });
  // Reopened so that blocks are sealed only by flush() (it seals at once).
  const { chain } = stalled ? await opened.reopen({ sealDelayMs: 600_000 }) : opened;
  const driver = new FakeDriver();
  const ingest = new Ingest({ chain, ...(pool !== undefined ? { pool } : {}), ...(stalled ? { answerDeadlineMs: 50 } : {}) });
  const faults: Error[] = [];
  ingest.on('fault', (e) => faults.push(e));
  ingest.attach(driver);
  t.after(async () => {
    await driver.stop();
    await ingest.close();
  });
  return { chain, lock, driver, ingest, faults };
}

void test('a listener that throws does not leave an event unanswered or its place taken', async (t) => {
  const { lock, driver, ingest, faults } = await rig(t);
  let throwOn: 'received' | 'committed' | undefined = 'committed';
  ingest.on('committed', () => {
    if (throwOn === 'committed') throw new Error('committed listener failed');
  });
  ingest.on('received', () => {
    if (throwOn === 'received') throw new Error('received listener failed');
  });
  driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('the first answer', () => driver.answers.length === 1);
  // Acked (it is durable) and released; the listener's failure is a fault, not a second answer.
  assert.deepEqual(driver.answers[0], { lock: 'front', ctr: 1, ok: true });
  await waitUntil('depth back to 0', () => ingest.depth === 0);
  assert.match(faults[0]?.message ?? '', /committed listener failed/);
  throwOn = 'received';
  driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('the second answer', () => driver.answers.length === 2);
  // Nothing was checked: the lock keeps the event and sends it again.
  assert.deepEqual(driver.answers[1], { lock: 'front', ctr: 2, ok: false, code: 'ERR_BUSY' });
  await waitUntil('depth back to 0', () => ingest.depth === 0);
  throwOn = undefined;
  driver.push(lock, signedEvent(lock, 'locked', { ctr: 2 }), 2);
  await waitUntil('the third answer', () => driver.answers.length === 3);
  assert.deepEqual(driver.answers[2], { lock: 'front', ctr: 2, ok: true });
  await ingest.close();
  assert.equal(ingest.depth, 0);
});

void test('checks that end out of order still admit in order; a failing pool asks the lock to resend', async (t) => {
  // A pool that answers in reverse order of asking, or fails, on demand.
  const asked: { task: SigTask; resolve: (ok: boolean) => void; reject: (e: Error) => void }[] = [];
  const pool = {
    checkCose: <C>(key: Uint8Array, payload: Uint8Array, sig: Uint8Array, ctx: C, done: (ctx: C, result: boolean | Error) => void) => {
      asked.push({ task: { key, msg: sigStructure(payload), sig }, resolve: (ok) => done(ctx, ok), reject: (e) => done(ctx, e) });
    },
    // The same check with the payload and signature where the driver's decoder found them.
    checkCoseAt: <C>(key: Uint8Array, b: Uint8Array, start: number, end: number, sigStart: number, ctx: C, done: (ctx: C, result: boolean | Error) => void) => {
      asked.push({ task: { key, msg: sigStructure(b.subarray(start, end)), sig: b.subarray(sigStart, sigStart + 64) }, resolve: (ok) => done(ctx, ok), reject: (e) => done(ctx, e) });
    },
  } as unknown as SignaturePool;
  const { chain, lock, driver, ingest, faults } = await rig(t, pool);
  for (let i = 0; i < 5; i++) driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('five checks asked', () => asked.length === 5);
  for (const a of asked.splice(0).reverse()) a.resolve(verify(a.task.key, a.task.msg, a.task.sig));
  await waitUntil('five acks', () => driver.answers.length === 5);
  assert.deepEqual(driver.answers.map((a) => `${a.ctr} ${a.ok}`), ['1 true', '2 true', '3 true', '4 true', '5 true']);
  const stored = await chain.entryRange(chain.size - 5, chain.size);
  assert.equal(stored.length, 5);
  driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('a sixth check asked', () => asked.length === 1);
  asked.pop()!.reject(new Error('worker died'));
  await waitUntil('the sixth answer', () => driver.answers.length === 6);
  assert.deepEqual(driver.answers[5], { lock: 'front', ctr: 6, ok: false, code: 'ERR_BUSY' });
  assert.match(faults[0]?.message ?? '', /worker died/);
  await waitUntil('depth back to 0', () => ingest.depth === 0);
});

void test('a paused pipeline (a full disk) answers each event read meanwhile ERR_BUSY at once, and admits again once resumed', async (t) => {
  const { chain, lock, driver, ingest } = await rig(t, undefined, true);
  const first = signedEvent(lock);
  driver.push(lock, first, 1);
  await waitUntil('event 1 nacked ERR_BUSY at its deadline (not durable)', () => driver.answers.length === 1);
  ingest.pause();
  assert.ok(ingest.isPaused);
  // A resend of the event not yet durable, and the next event: both answered at once.
  driver.push(lock, first, 1);
  const second = signedEvent(lock);
  driver.push(lock, second, 2);
  await waitUntil('both answered', () => driver.answers.length === 3);
  assert.deepEqual(driver.answers, [
    { lock: 'front', ctr: 1, ok: false, code: 'ERR_BUSY' },
    { lock: 'front', ctr: 1, ok: false, code: 'ERR_BUSY' },
    { lock: 'front', ctr: 2, ok: false, code: 'ERR_BUSY' },
  ]);
  assert.equal(driver.queued, 0, 'nothing left unanswered with the driver');
  // Space again: event 1 is durable and acked; the lock's resend of 2 is admitted.
  ingest.resume();
  await waitUntil('event 1 acked once the disk writes again', async () => (await chain.flush(), driver.answers.length === 4));
  driver.push(lock, second, 2);
  await waitUntil('event 2 nacked ERR_BUSY at its deadline', () => driver.answers.length === 5);
  await waitUntil('event 2 acked', async () => (await chain.flush(), driver.answers.length === 6));
  assert.deepEqual(driver.answers.slice(3), [
    { lock: 'front', ctr: 1, ok: true },
    { lock: 'front', ctr: 2, ok: false, code: 'ERR_BUSY' },
    { lock: 'front', ctr: 2, ok: true },
  ]);
  await waitUntil('depth back to 0', () => ingest.depth === 0);
});

void test('resends of an event not yet durable are answered ERR_BUSY within their own deadline, then acked with its entry; nothing is stored twice', async (t) => {
  const { chain, lock, driver, ingest } = await rig(t, undefined, true);
  const duplicates: number[] = [];
  ingest.on('duplicate', (ev) => duplicates.push(ev.ctr));
  const first = signedEvent(lock);
  driver.push(lock, first, 1);
  await waitUntil('event 1 nacked ERR_BUSY', () => driver.answers.length === 1);
  // Two resends of it and the next event, while the disk still stalls.
  driver.push(lock, first, 1);
  driver.push(lock, first, 1);
  driver.push(lock, signedEvent(lock), 2);
  await waitUntil('each answered ERR_BUSY within its deadline', () => driver.answers.length === 4);
  assert.ok(driver.answers.every((a) => a.code === 'ERR_BUSY'), JSON.stringify(driver.answers));
  assert.deepEqual(driver.answers.map((a) => a.ctr).sort(), [1, 1, 1, 2]);
  const before = chain.size;
  await waitUntil('all four acked once the disk writes again', async () => (await chain.flush(), driver.answers.length === 8));
  assert.deepEqual(driver.answers.slice(4).map((a) => `${a.ctr} ${a.ok}`).sort(), ['1 true', '1 true', '1 true', '2 true']);
  assert.deepEqual(duplicates, [1, 1]);
  assert.equal(chain.size, before + 2, 'the two events, stored once each');
  await waitUntil('depth back to 0', () => ingest.depth === 0);
});

void test('acks a driver answers with one shared promise are told and released together once it settles, and each refused as a fault when it rejects', async (t) => {
  const { lock, driver, ingest, faults } = await rig(t);
  let settle: { resolve: () => void; reject: (e: Error) => void } = { resolve: () => undefined, reject: () => undefined };
  const deferred = (): Promise<void> => new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  let shared = deferred();
  const sent: number[] = [];
  driver.ack = (ev) => {
    sent.push(ev.ctr);
    return shared;
  };
  const committed: number[] = [];
  ingest.on('committed', (ev) => committed.push(ev.ctr));
  for (let i = 0; i < 3; i++) driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('three acks sent', () => sent.length === 3);
  await new Promise((resolve) => setImmediate(resolve));
  // Sent, not yet gone out: nobody is told and the places are held.
  assert.deepEqual(committed, []);
  assert.equal(ingest.depth, 3);
  settle.resolve();
  await waitUntil('three committed', () => committed.length === 3);
  assert.deepEqual(committed, [1, 2, 3]);
  await waitUntil('places released', () => ingest.depth === 0);
  shared = deferred();
  for (let i = 0; i < 2; i++) driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('two more acks sent', () => sent.length === 5);
  settle.reject(new Error('the link went away'));
  await waitUntil('places released', () => ingest.depth === 0);
  assert.equal(faults.filter((e) => /the link went away/.test(e.message)).length, 2);
  assert.deepEqual(committed, [1, 2, 3]);
});
