/** The signature pool: elastic (inline while light, workers when loaded, none when idle), fixed, sharing with its caller. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { SignaturePool, SigPacker, pack, type SigTask } from '../../ledger/sigpool.js';
import { verifyPacked } from '../../ledger/sigbatch.js';
import { sigStructure } from '../../ledger/cose.js';

function tasks(n: number): SigTask[] {
  const k = generateKeyPair();
  const s = new Signer(k.seed);
  return Array.from({ length: n }, (_, i) => {
    const msg = Buffer.from(`event ${i}`);
    const sig = s.sign(msg);
    // Every seventh signature is broken: results must say so whichever thread checked it.
    if (i % 7 === 3) sig[0] = (sig[0] as number) ^ 1;
    return { key: k.publicKey, msg, sig };
  });
}

const expected = (n: number): number[] => Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 0 : 1));

void test('an elastic pool checks a light load inline, starts its workers under load and stops them when idle', async (t) => {
  const pool = new SignaturePool(2, { elastic: { inlineMaxPerS: 50, idleMs: 300 } });
  t.after(() => pool.close());
  assert.equal(pool.running, 0);
  assert.deepEqual([...(await pool.verifyBatch(tasks(20)))], expected(20));
  assert.equal(pool.running, 0, 'light load: no worker started');
  assert.deepEqual([...(await pool.verifyBatch(tasks(200)))], expected(200));
  assert.equal(pool.running, 2, 'past the inline limit: the workers run');
  const single = await Promise.all(tasks(14).map((x) => pool.verify(x)));
  assert.deepEqual(single.map((ok) => (ok ? 1 : 0)), expected(14));
  const end = Date.now() + 10_000;
  while (pool.running > 0 && Date.now() < end) await sleep(50);
  assert.equal(pool.running, 0, 'idle: the workers were stopped');
  assert.deepEqual([...(await pool.verifyBatch(tasks(10)))], expected(10), 'and light work goes on inline');
});

void test('a fixed pool keeps its workers', async (t) => {
  const pool = new SignaturePool(1);
  t.after(() => pool.close());
  assert.equal(pool.running, 1);
  assert.deepEqual([...(await pool.verifyBatch(tasks(30)))], expected(30));
});

void test('closing a pool answers the batches still in its workers', async () => {
  const pool = new SignaturePool(1);
  const pending = pool.verifyBatch(tasks(5000));
  const outcome = pending.then(
    (r) => `checked ${r.length}`,
    (e: Error & { code?: string }) => e.code,
  );
  await pool.close();
  // Either the worker finished first, or the batch is refused: never left waiting.
  const answer = await Promise.race([outcome, sleep(2000).then(() => 'still waiting')]);
  assert.ok(answer === 'checked 5000' || answer === 'ERR_SIGNATURE', answer);
});

void test('a pool that shares with its caller checks a batch itself once each worker has one running and one waiting', async (t) => {
  const pool = new SignaturePool(1, { callerShare: true });
  t.after(() => pool.close());
  const [first, second, third] = [tasks(2000), tasks(2000), tasks(50)].map((b) => pool.verifyBatch(b)) as [Promise<Uint8Array>, Promise<Uint8Array>, Promise<Uint8Array>];
  assert.equal(pool.callerBatches, 1, 'the third batch was the caller\'s');
  // It was checked before verifyBatch returned: it settles before any answer from the worker,
  // which can only arrive after this turn of the event loop.
  assert.equal(await Promise.race([third.then(() => 'caller'), first.then(() => 'worker'), second.then(() => 'worker')]), 'caller');
  assert.deepEqual([...(await third)], expected(50));
  assert.deepEqual([...(await first)], expected(2000));
  assert.deepEqual([...(await second)], expected(2000));
  // With the worker free again, the next batch goes to it.
  assert.deepEqual([...(await pool.verifyBatch(tasks(300)))], expected(300));
  assert.equal(pool.callerBatches, 1, 'a free worker gets the batch');
  assert.throws(() => new SignaturePool(1, { callerShare: true, elastic: {} }), /elastic or shares/);
});

/**
 * Sends 13 batches in one turn to a pool of 1 and of 2 workers that shares with its caller and
 * checks the order (w: the batch went to a worker, C: the caller checked it): `after` per worker
 * first (the workers, just started, have not finished any), then the caller's turn when each
 * worker has `after` to do, at most one in n + 1. The counts are the workers' own: a worker that
 * finished a batch while the caller checked its own gets the next one, so the rest of the order
 * depends on timing.
 */
async function callerTurns(t: TestContext, after: number | undefined): Promise<void> {
  const perWorker = after ?? 2;
  for (const workers of [1, 2]) {
    // Signed before the pool starts, so that the 13 batches go out within microseconds, long
    // before a worker (whose start alone takes milliseconds) can have finished one.
    const prepared = Array.from({ length: 13 }, () => tasks(100));
    const pool = new SignaturePool(workers, { callerShare: true, ...(after !== undefined ? { callerAfter: after } : {}) });
    t.after(() => pool.close());
    let seen = '';
    const batches = prepared.map((batch) => {
      const before = pool.callerBatches;
      const b = pool.verifyBatch(batch);
      seen += pool.callerBatches > before ? 'C' : 'w';
      return b;
    });
    assert.equal(seen.slice(0, perWorker * workers + 1), `${'w'.repeat(perWorker * workers)}C`, `${workers} worker(s): ${seen}`);
    for (let i = 0; i + workers < seen.length; i++) assert.ok(!/C.*C/.test(seen.slice(i, i + workers + 1)), `${workers} worker(s): two of the caller's within ${workers + 1} in ${seen}`);
    for (const b of batches) assert.deepEqual([...(await b)], expected(100));
  }
}

void test('a caller sending many batches in one turn keeps at most one in n + 1', async (t) => {
  await callerTurns(t, undefined);
  const none = new SignaturePool(0, { callerShare: true });
  assert.deepEqual([...(await none.verifyBatch(tasks(20)))], expected(20));
  assert.equal(none.callerBatches, 1, 'no worker: everything on the caller');
  await none.close();
});

void test('callerAfter: the caller takes a batch only once each worker has that many to do', async (t) => {
  // As above, but with three per worker before the caller's turn (what `oti verify` asks for).
  await callerTurns(t, 3);
  for (const callerAfter of [0, 1.5]) assert.throws(() => new SignaturePool(1, { callerShare: true, callerAfter }), /callerAfter/);
});

void test('takeBack: a caller that shares checks a batch a worker has not started, which the worker then skips', async (t) => {
  const pool = new SignaturePool(1, { callerShare: true, callerAfter: 3 });
  t.after(() => pool.close());
  // Posted within one turn: the worker (just started) has begun none of them, or only the first.
  const batches = [tasks(300), tasks(300), tasks(40)].map((b) => pool.verifyBatch(b));
  assert.equal(pool.takeBack(), true, 'the newest batch, not started, is taken back');
  assert.equal(pool.callerBatches, 1);
  assert.equal(pool.takeBack(), true, 'then the one before it');
  // The worker never answers a batch taken back: these settle from takeBack() alone.
  assert.deepEqual([...(await batches[2]!)], expected(40));
  assert.deepEqual([...(await batches[1]!)], expected(300));
  assert.deepEqual([...(await batches[0]!)], expected(300));
  assert.equal(pool.takeBack(), false, 'nothing left to take back');
  // The worker counted the two it skipped: the next batches go to it again.
  assert.deepEqual([...(await pool.verifyBatch(tasks(30)))], expected(30));
  assert.equal(pool.callerBatches, 2);
  const fixed = new SignaturePool(1);
  t.after(() => fixed.close());
  const pending = fixed.verifyBatch(tasks(30));
  assert.equal(fixed.takeBack(), false, 'a pool that does not share never takes back');
  assert.deepEqual([...(await pending)], expected(30));
});

void test('SigPacker.take(true) packs into shared memory, reused once given back', () => {
  const packer = new SigPacker(64);
  const batch = (n: number): Uint8Array => {
    for (const x of tasks(n)) packer.addRaw(x.key, x.msg, x.sig);
    return packer.take(true);
  };
  const first = batch(5);
  assert.ok(first.buffer instanceof SharedArrayBuffer);
  assert.deepEqual([...verifyPacked(first)], expected(5));
  const second = batch(5);
  assert.notEqual(second.buffer, first.buffer, 'not given back: a new one');
  packer.release(first);
  const third = batch(4);
  assert.equal(third.buffer, first.buffer, 'given back and large enough: reused');
  assert.deepEqual([...verifyPacked(third)], expected(4));
  assert.deepEqual([...verifyPacked(second)], expected(5));
  packer.release(third);
  assert.notEqual(batch(40).buffer, first.buffer, 'too small for the batch: a new one');
  assert.ok(!(packer.take().buffer instanceof SharedArrayBuffer), 'take() without shared: a plain buffer');
});

void test('checkCose packs COSE checks into the coalesced batch and answers each with its context, never before it returns', async (t) => {
  const k = generateKeyPair();
  const s = new Signer(k.seed);
  const payloads = Array.from({ length: 600 }, (_, i) => Buffer.from(`payload ${i}`.repeat(1 + (i % 40))));
  const sigs = payloads.map((p, i) => {
    const sig = s.sign(sigStructure(p));
    if (i % 7 === 3) sig[0] = (sig[0] as number) ^ 1;
    return sig;
  });
  for (const size of [0, 2]) {
    const pool = new SignaturePool(size);
    t.after(() => pool.close());
    const got = new Map<number, boolean | Error>();
    let returned = false;
    // 600 in one turn: a full batch of 512 goes at once, the rest at the next turn.
    const all = payloads.map(
      (p, i) =>
        new Promise<void>((resolve) => {
          pool.checkCose(k.publicKey, p, sigs[i]!, i, (ctx, r) => {
            assert.ok(returned, 'answered after checkCose returned');
            got.set(ctx, r);
            resolve();
          });
        }),
    );
    returned = true;
    await Promise.all(all);
    assert.deepEqual([...got.keys()].sort((a, b) => a - b), payloads.map((_, i) => i));
    assert.deepEqual(payloads.map((_, i) => (got.get(i) === true ? 1 : 0)), expected(600), `pool of ${size}`);
    assert.equal(codeOf(() => pool.checkCose(k.publicKey.subarray(1), payloads[0]!, sigs[0]!, 0, () => undefined)), 'ERR_ARGUMENT');
    // Checks still coalescing when the pool closes are answered with an error.
    const late = new Promise<boolean | Error>((resolve) => pool.checkCose(k.publicKey, payloads[0]!, sigs[0]!, 0, (_, r) => resolve(r)));
    await pool.close();
    assert.ok((await late) instanceof Error);
    assert.equal(codeOf(() => pool.checkCose(k.publicKey, payloads[0]!, sigs[0]!, 0, () => undefined)), 'ERR_STORE_CLOSED');
  }
});

void test('checkCoseAt checks a payload and signature where they lie in a larger buffer, as checkCose does', async (t) => {
  const k = generateKeyPair();
  const s = new Signer(k.seed);
  for (const size of [0, 2]) {
    const pool = new SignaturePool(size);
    t.after(() => pool.close());
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const payload = Buffer.from(`payload ${i}`.repeat(1 + (i % 9)));
        const sig = s.sign(sigStructure(payload));
        if (i % 5 === 2) sig[10] = (sig[10] as number) ^ 1;
        // [i bytes before][payload][2 bytes][signature][3 bytes after], as in a received frame.
        const b = new Uint8Array(i + payload.length + 2 + 64 + 3).fill(0xee);
        b.set(payload, i);
        b.set(sig, i + payload.length + 2);
        return new Promise<boolean | Error>((resolve) => pool.checkCoseAt(k.publicKey, b, i, i + payload.length, i + payload.length + 2, i, (_, r) => resolve(r)));
      }),
    );
    assert.deepEqual(results, Array.from({ length: 40 }, (_, i) => i % 5 !== 2), `pool of ${size}`);
    assert.equal(codeOf(() => pool.checkCoseAt(k.publicKey, new Uint8Array(70), 0, 4, 10, 0, () => undefined)), 'ERR_ARGUMENT');
  }
});

function codeOf(f: () => void): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

void test('a batch sent to a worker is copied, not transferred: nothing in the caller is detached', async (t) => {
  // A transfer detaches the caller's ArrayBuffer, and V8 then throws away and recompiles every
  // optimised function that reads typed arrays (ledger/sigpool.ts).
  const pool = new SignaturePool(1);
  t.after(() => pool.close());
  const buf = pack(tasks(40));
  const before = Buffer.from(buf);
  const results = await pool.verifyPackedBatch(buf);
  assert.equal(pool.callerBatches, 0, 'the worker checked it');
  assert.deepEqual([...results], expected(40));
  assert.equal(buf.buffer.byteLength, before.length, 'the batch\'s buffer is not detached');
  assert.deepEqual(Buffer.from(buf), before, 'and holds what it held');
});
