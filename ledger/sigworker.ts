/**
 * Worker side of SignaturePool: verifies packed batches and posts one byte per signature back;
 * a batch with a claim is started only if the caller has not taken it back first.
 * Before posting, it counts the batch as done in the shared counter the pool gave it (workerData),
 * which the pool reads to know how much work the worker still has without waiting for the message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { verifyPacked } from './sigbatch.js';

const done = new Int32Array((workerData as { done: SharedArrayBuffer }).done);

parentPort?.on('message', (m: { id: number; buf: Uint8Array; claim?: Int32Array }) => {
  // A batch the caller took back (SignaturePool.takeBack) is counted done and not answered.
  if (m.claim !== undefined && Atomics.compareExchange(m.claim, 0, 0, 1) !== 0) {
    Atomics.add(done, 0, 1);
    return;
  }
  const results = verifyPacked(m.buf);
  Atomics.add(done, 0, 1);
  // Copied, not transferred: a transfer would detach, see ledger/sigpool.ts.
  parentPort?.postMessage({ id: m.id, results });
});
