/**
 * Ed25519 verification on worker threads, for the two places that check many lock signatures:
 * ingest (append with checks) and whole-chain verification.
 *
 * A batch is packed into one transferable buffer, so crossing to a worker costs one copy-free
 * message, not one per signature. Layout per item: u32 message length (LE), 32-byte key,
 * 64-byte signature, message. Results come back as one byte per item (1 = valid).
 * With size 0 the pool verifies on the calling thread (small machines, tests).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { verify } from './crypto.js';
import { OtiError } from './errors.js';

export interface SigTask {
  readonly key: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

interface Job {
  resolve: (r: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  inFlight: number;
  jobs: Map<number, Job>;
}

export class SignaturePool {
  readonly size: number;
  readonly #workers: PoolWorker[] = [];
  #nextId = 0;
  #closed = false;

  constructor(size = Math.max(1, availableParallelism())) {
    this.size = size;
    for (let i = 0; i < size; i++) this.#workers.push(this.#spawn());
  }

  #spawn(): PoolWorker {
    const worker = new Worker(new URL('./sigworker.js', import.meta.url));
    const pw: PoolWorker = { worker, inFlight: 0, jobs: new Map() };
    worker.on('message', (m: { id: number; results: Uint8Array }) => {
      const job = pw.jobs.get(m.id);
      if (job === undefined) return;
      pw.jobs.delete(m.id);
      pw.inFlight--;
      job.resolve(m.results);
    });
    worker.on('error', (e) => {
      for (const job of pw.jobs.values()) job.reject(e);
      pw.jobs.clear();
    });
    return pw;
  }

  /** Verifies every task; resolves to one byte per task, 1 where the signature is valid. */
  async verifyBatch(tasks: readonly SigTask[]): Promise<Uint8Array> {
    if (this.#closed) throw new OtiError('ERR_STORE_CLOSED', 'the signature pool is closed');
    if (tasks.length === 0) return new Uint8Array(0);
    if (this.size === 0) return verifyPacked(pack(tasks));
    const buf = pack(tasks);
    const pw = this.#workers.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const id = this.#nextId++;
    pw.inFlight++;
    return new Promise<Uint8Array>((resolve, reject) => {
      pw.jobs.set(id, { resolve, reject });
      pw.worker.postMessage({ id, buf }, [buf.buffer as ArrayBuffer]);
    });
  }

  /**
   * Verifies one signature. Calls made in the same turn of the event loop are coalesced into one
   * batch (up to 512), so single appends still reach the workers in bulk.
   */
  async verify(task: SigTask): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ task, resolve, reject });
      if (this.#queue.length >= 512) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #queue: { task: SigTask; resolve: (ok: boolean) => void; reject: (e: Error) => void }[] = [];
  #flushScheduled = false;

  #flush(): void {
    this.#flushScheduled = false;
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    this.verifyBatch(q.map((x) => x.task)).then(
      (r) => q.forEach((x, i) => x.resolve(r[i] === 1)),
      (e: Error) => q.forEach((x) => x.reject(e)),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
    this.#workers.length = 0;
  }
}

export function pack(tasks: readonly SigTask[]): Uint8Array {
  let total = 0;
  for (const t of tasks) total += 4 + 32 + 64 + t.msg.length;
  const buf = new Uint8Array(total);
  const dv = new DataView(buf.buffer);
  let o = 0;
  for (const t of tasks) {
    if (t.key.length !== 32 || t.sig.length !== 64) throw new OtiError('ERR_ARGUMENT', 'key must be 32 bytes and sig 64 bytes');
    dv.setUint32(o, t.msg.length, true);
    buf.set(t.key, o + 4);
    buf.set(t.sig, o + 36);
    buf.set(t.msg, o + 100);
    o += 100 + t.msg.length;
  }
  return buf;
}

export function verifyPacked(buf: Uint8Array): Uint8Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const results: number[] = [];
  let o = 0;
  while (o < buf.length) {
    const len = dv.getUint32(o, true);
    const key = buf.subarray(o + 4, o + 36);
    const sig = buf.subarray(o + 36, o + 100);
    const msg = buf.subarray(o + 100, o + 100 + len);
    results.push(verify(key, msg, sig) ? 1 : 0);
    o += 100 + len;
  }
  return Uint8Array.from(results);
}
