/** Worker side of SignaturePool: verifies packed batches and posts one byte per signature back. */
import { parentPort } from 'node:worker_threads';
import { verifyPacked } from './sigbatch.js';

parentPort?.on('message', (m: { id: number; buf: Uint8Array }) => {
  const results = verifyPacked(m.buf);
  parentPort?.postMessage({ id: m.id, results }, [results.buffer as ArrayBuffer]);
});
