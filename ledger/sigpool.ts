/**
 * Ed25519 verification on worker threads, for the two places that check many lock signatures:
 * ingest (append with checks) and whole-chain verification.
 *
 * A batch is packed into one buffer, so crossing to a worker costs one message, not one per
 * signature. Layout per item: u32 message length (LE), 32-byte key, 64-byte signature, message.
 * Results come back as one byte per item (1 = valid).
 *
 * Batches and results are copied into their messages, never transferred. Transferring detaches
 * an ArrayBuffer, and the first detach in a V8 isolate invalidates its "array buffer detaching"
 * protector: every optimised function that reads a typed array is thrown away and compiled
 * again, with a detach check on each access from then on. In a 100,000-entry sync catch-up that
 * recompilation cost about 7 µs of CPU per entry (docs/DECISIONS.md, issue 22); the copy costs
 * two memcpy of about 250 bytes per signature.
 * With size 0 the pool verifies on the calling thread (small machines, tests).
 *
 * A pool that shares with its caller (`callerShare`, for tools whose thread has little else to
 * do, such as `oti verify`) verifies a batch on the calling thread when each worker already has
 * one batch running and one waiting (or more: callerAfter; at most one batch in n + 1, see
 * #callersTurn): with n cores, n - 1 workers and the caller keep them all busy, one V8 isolate
 * fewer than n workers. With size 0 it verifies everything on the calling thread. Such a pool
 * also lets its caller take back a batch that a worker has not started (takeBack), for a caller
 * that would otherwise wait.
 *
 * An elastic pool (the gateway's) starts no worker: while the load is light it verifies on the
 * calling thread (a worker's V8 isolate costs about 10 MB of a Raspberry Pi's memory, and at a
 * thousand events a second verification takes under a tenth of a core); when the signatures to
 * check in one second pass `inlineMaxPerS` it starts its workers, and it stops them again after
 * `idleMs` without work.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { packedCount, verifyPacked } from './sigbatch.js';
import { OtiError } from './base/errors.js';
import { settlePromise } from './base/settle.js';
import { sigStructure } from './cose.js';

export interface SigTask {
  readonly key: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

interface Job {
  resolve: (r: Uint8Array) => void;
  reject: (e: Error) => void;
  /**
   * A pool that shares with its caller keeps each batch it posts (a copy goes to the worker)
   * and a claim on it, 0 until the worker starts it (1) or the caller takes it back (2).
   */
  buf?: Uint8Array;
  claim?: Int32Array;
}

interface PoolWorker {
  worker: Worker;
  inFlight: number;
  jobs: Map<number, Job>;
  /** Batches posted to the worker. */
  sent: number;
  /** Batches the worker has finished (it counts them before posting the results back). */
  readonly done: Int32Array;
}

/**
 * Batches a worker has not finished yet, known at once: inFlight only falls when the results'
 * message is handled, which waits for the event loop to turn, so a caller that runs long
 * without yielding would see every worker as busy.
 */
function outstanding(w: PoolWorker): number {
  return w.sent - Atomics.load(w.done, 0);
}

export interface ElasticOptions {
  /** Signatures per second below which they are checked on the calling thread (default 2000). */
  readonly inlineMaxPerS?: number;
  /** Workers are stopped after this long without work (default 60 s). */
  readonly idleMs?: number;
}

export interface PoolOptions {
  /** Start workers only under load, and stop them when idle (see above). */
  readonly elastic?: ElasticOptions;
  /** Verify on the calling thread too, when every worker has a batch waiting (not with `elastic`). */
  readonly callerShare?: boolean;
  /**
   * With `callerShare`: how many batches each worker must have (running and waiting) before the
   * caller checks one itself (default 2: one running, one waiting). A caller that does other work
   * between batches wants 3: while it checks a batch of its own, a worker with only one batch
   * waiting can finish it and sit idle until the caller has packed the next.
   */
  readonly callerAfter?: number;
}

export class SignaturePool {
  /** The most workers this pool runs. */
  readonly size: number;
  /** Whether this pool shares with its caller (it posts a batch in shared memory without a copy: SigPacker.take(true)). */
  readonly sharesWithCaller: boolean;
  readonly #workers: PoolWorker[] = [];
  readonly #elastic: Required<ElasticOptions> | undefined;
  readonly #callerShare: boolean;
  readonly #callerAfter: number;
  /** Batches sent to workers since the caller last checked one itself. */
  #sentSinceCaller = 0;
  #callerBatches = 0;
  #nextId = 0;
  #closed = false;
  /** Signatures asked for in the current one-second window, and when it started. */
  #windowCount = 0;
  #windowStart = 0;
  #lastWork = 0;
  #reaper: NodeJS.Timeout | undefined;

  constructor(size = Math.max(1, availableParallelism()), opts: PoolOptions = {}) {
    const elastic = opts.elastic;
    if (elastic !== undefined && opts.callerShare === true) throw new OtiError('ERR_ARGUMENT', 'a signature pool is elastic or shares with its caller, not both');
    this.size = size;
    this.#elastic = elastic === undefined ? undefined : { inlineMaxPerS: elastic.inlineMaxPerS ?? 2000, idleMs: elastic.idleMs ?? 60_000 };
    this.#callerShare = opts.callerShare === true;
    this.sharesWithCaller = this.#callerShare;
    this.#callerAfter = opts.callerAfter ?? 2;
    if (!Number.isInteger(this.#callerAfter) || this.#callerAfter < 1) throw new OtiError('ERR_ARGUMENT', 'callerAfter must be a whole number of at least 1');
    if (this.#elastic === undefined) for (let i = 0; i < size; i++) this.#workers.push(this.#spawn());
  }

  /**
   * For a pool that shares with its caller: whether this batch is the caller's. It is when each
   * worker has a batch running and one waiting (callerAfter, default 2), and the workers were
   * given at least one batch each since the caller last took one (so it takes at most one batch
   * in n + 1). The counts are
   * the workers' own (outstanding()), current even when the caller has not let the event loop
   * turn for a while: with counts that fell only when results were handled, a caller busy with
   * its own batch took the next one too while a worker sat idle with its results unread.
   */
  #callersTurn(): boolean {
    if (!this.#callerShare || this.#sentSinceCaller < this.#workers.length || !this.#workers.every((w) => outstanding(w) >= this.#callerAfter)) return false;
    this.#sentSinceCaller = 0;
    return true;
  }

  /** Batches checked on the calling thread so far (inline by an elastic pool, or the caller's share). */
  get callerBatches(): number {
    return this.#callerBatches;
  }

  /** Workers running now. */
  get running(): number {
    return this.#workers.length;
  }

  /** Elastic pools: whether this batch goes to the workers (started if needed) or stays here. */
  #useWorkers(buf: Uint8Array): boolean {
    const e = this.#elastic;
    if (e === undefined) return true;
    const items = packedCount(buf);
    const now = Date.now();
    this.#lastWork = now;
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#windowCount = 0;
    }
    this.#windowCount += items;
    if (this.#workers.length > 0) return true;
    if (this.#windowCount <= e.inlineMaxPerS) return false;
    for (let i = 0; i < this.size; i++) this.#workers.push(this.#spawn());
    this.#reaper = setInterval(() => this.#reap(), Math.min(e.idleMs, 10_000));
    this.#reaper.unref();
    return true;
  }

  /** Stops an elastic pool's workers once they have been idle for idleMs. */
  #reap(): void {
    const e = this.#elastic;
    if (e === undefined || Date.now() - this.#lastWork < e.idleMs || this.#workers.some((w) => w.inFlight > 0)) return;
    clearInterval(this.#reaper);
    this.#reaper = undefined;
    const idle = this.#workers.splice(0);
    for (const w of idle) void w.worker.terminate();
  }

  #spawn(): PoolWorker {
    // A worker only holds one packed batch and a cache of key objects at a time: a small heap
    // keeps its share of the process's memory small (the defaults let each grow to tens of MB
    // of garbage before collecting).
    const done = new SharedArrayBuffer(4);
    const worker = new Worker(new URL('./sigworker.js', import.meta.url), { resourceLimits: WORKER_LIMITS, workerData: { done } });
    const pw: PoolWorker = { worker, inFlight: 0, jobs: new Map(), sent: 0, done: new Int32Array(done) };
    worker.on('message', (m: { id: number; results: Uint8Array }) => {
      const job = pw.jobs.get(m.id);
      if (job === undefined) return;
      pw.jobs.delete(m.id);
      pw.inFlight--;
      job.resolve(m.results);
    });
    const fail = (e: Error): void => {
      for (const job of pw.jobs.values()) job.reject(e);
      pw.jobs.clear();
      pw.inFlight = 0;
      // Replace a worker that died, so that later batches do not wait on it forever (a worker
      // stopped by an elastic pool's reaper is no longer in the list).
      const i = this.#workers.indexOf(pw);
      if (i >= 0 && !this.#closed) this.#workers[i] = this.#spawn();
    };
    worker.on('error', (e) => fail(new OtiError('ERR_SIGNATURE', `a signature worker failed: ${e.message}`, undefined, { cause: e })));
    worker.on('exit', (code) => {
      if (!this.#closed) fail(new OtiError('ERR_SIGNATURE', `a signature worker exited with code ${code}`));
    });
    return pw;
  }

  /** Verifies every task; resolves to one byte per task, 1 where the signature is valid. */
  async verifyBatch(tasks: readonly SigTask[]): Promise<Uint8Array> {
    if (this.#closed) throw new OtiError('ERR_STORE_CLOSED', 'the signature pool is closed');
    if (tasks.length === 0) return new Uint8Array(0);
    return this.verifyPackedBatch(pack(tasks));
  }

  /**
   * Verifies a batch already packed (see pack() and SigPacker). The buffer is copied to the
   * worker, not transferred (see the top of this file); a pool that shares with its caller posts
   * a batch in shared memory as it is and keeps it for takeBack(), so the caller must not change
   * it afterwards. Resolves to one byte per item, 1 where the signature is valid.
   */
  async verifyPackedBatch(buf: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new OtiError('ERR_STORE_CLOSED', 'the signature pool is closed');
    if (buf.length === 0) return new Uint8Array(0);
    if (this.size === 0 || this.#callersTurn() || !this.#useWorkers(buf)) {
      this.#callerBatches++;
      return verifyPacked(buf);
    }
    const pw = this.#workers.reduce((a, b) => (outstanding(b) < outstanding(a) ? b : a));
    const id = this.#nextId++;
    pw.inFlight++;
    pw.sent++;
    this.#sentSinceCaller++;
    return new Promise<Uint8Array>((resolve, reject) => {
      if (this.#callerShare) {
        // Kept here for takeBack(); the worker gets a copy, or the same memory when it is shared.
        const claim = new Int32Array(new SharedArrayBuffer(4));
        pw.jobs.set(id, { resolve, reject, buf, claim });
        pw.worker.postMessage({ id, buf, claim });
        return;
      }
      pw.jobs.set(id, { resolve, reject });
      // Copied, not transferred (see the comment at the top of this file).
      pw.worker.postMessage({ id, buf });
    });
  }

  /**
   * For a pool that shares with its caller: checks here, now, the newest batch that a worker
   * holds and has not started, and settles it; false when there is none. For a caller that would
   * otherwise wait for a worker's results: it works instead of waiting, and a worker's queue
   * never outlasts the caller's own work (the end of a whole-chain verification).
   */
  takeBack(): boolean {
    if (!this.#callerShare) return false;
    for (const pw of this.#workers) {
      const ids = [...pw.jobs.keys()];
      // Newest first: a worker starts its batches in the order they were posted.
      for (let i = ids.length - 1; i >= 0; i--) {
        const job = pw.jobs.get(ids[i]!)!;
        if (job.claim === undefined || job.buf === undefined || Atomics.compareExchange(job.claim, 0, 0, 2) !== 0) break;
        pw.jobs.delete(ids[i]!);
        pw.inFlight--;
        this.#callerBatches++;
        job.resolve(verifyPacked(job.buf));
        return true;
      }
    }
    return false;
  }

  /**
   * Verifies one signature. Calls made in the same turn of the event loop are coalesced into one
   * batch (up to MAX_COALESCED), so single appends still reach the workers in bulk.
   */
  async verify(task: SigTask): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#packer.addRaw(task.key, task.msg, task.sig);
      this.#queued({ resolve, reject }, settlePromise);
    });
  }

  /**
   * Verifies a COSE_Sign1 signature by `key` over `payload` (its Sig_structure is laid out straight
   * into the coalesced batch: no task object, no copy of its own), then calls `done(ctx, ok)`, or
   * `done(ctx, error)` when the check itself failed (a worker died, the pool was closed). `done`
   * is never called before checkCose returns. Coalesced like verify(). Throws ERR_ARGUMENT for a
   * key or signature of the wrong length (nothing is queued then).
   *
   * For callers with thousands of checks in flight (the ingest pipeline): a promise and its
   * reactions per signature, kept alive until the batch returns, were measurable garbage.
   */
  checkCose<C>(key: Uint8Array, payload: Uint8Array, sig: Uint8Array, ctx: C, done: (ctx: C, result: boolean | Error) => void): void {
    if (this.#closed) throw new OtiError('ERR_STORE_CLOSED', 'the signature pool is closed');
    this.#packer.addCose(key, payload, sig);
    this.#queued(ctx, done as (ctx: unknown, result: boolean | Error) => void);
  }

  /**
   * checkCose() for a COSE payload at [start, end) of `b` and its signature at [sigStart,
   * sigStart + 64) of `b`, packed from where they lie (no views of them needed). Throws
   * ERR_ARGUMENT for a key of the wrong length or a signature outside `b`.
   */
  checkCoseAt<C>(key: Uint8Array, b: Uint8Array, start: number, end: number, sigStart: number, ctx: C, done: (ctx: C, result: boolean | Error) => void): void {
    if (this.#closed) throw new OtiError('ERR_STORE_CLOSED', 'the signature pool is closed');
    this.#packer.addCoseAt(key, b, start, end, sigStart);
    this.#queued(ctx, done as (ctx: unknown, result: boolean | Error) => void);
  }

  /** The batch being coalesced: its items packed as they come, and per item whom to tell. */
  readonly #packer = new SigPacker(16 * 1024);
  #ctxs: unknown[] = [];
  #dones: Array<(ctx: unknown, result: boolean | Error) => void> = [];
  #flushScheduled = false;

  #queued(ctx: unknown, done: (ctx: unknown, result: boolean | Error) => void): void {
    this.#ctxs.push(ctx);
    this.#dones.push(done);
    if (this.#ctxs.length >= MAX_COALESCED) this.#flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const ctxs = this.#ctxs;
    const dones = this.#dones;
    if (ctxs.length === 0) return;
    this.#ctxs = [];
    this.#dones = [];
    this.verifyPackedBatch(this.#packer.take()).then(
      (r) => {
        for (let i = 0; i < ctxs.length; i++) dones[i]!(ctxs[i], r[i] === 1);
      },
      (e: Error) => {
        for (let i = 0; i < ctxs.length; i++) dones[i]!(ctxs[i], e);
      },
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#reaper);
    // Jobs still in the workers are answered (refused), so that nobody waits on them forever.
    const closed = new OtiError('ERR_SIGNATURE', 'the signature pool was closed before this batch was checked');
    for (const pw of this.#workers) {
      for (const job of pw.jobs.values()) job.reject(closed);
      pw.jobs.clear();
    }
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
    this.#workers.length = 0;
  }
}

const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };

/** Shared batches a SigPacker keeps for reuse. */
const MAX_SPARE = 8;

/** Single checks coalesced into one batch at most. */
const MAX_COALESCED = 512;

/** The fixed start of every COSE Sig_structure here (see cose.ts): sigStructure of an empty payload minus its 0x40 head. */
const SIG_PREFIX = sigStructure(new Uint8Array(0)).subarray(0, -1);

/**
 * Packs items straight into the pool's batch layout as they come, so that a caller with many
 * signatures allocates neither a task object nor a Sig_structure per item.
 */
export class SigPacker {
  #buf: Uint8Array;
  #dv: DataView;
  #len = 0;
  #count = 0;

  constructor(capacity = 64 * 1024) {
    this.#buf = new Uint8Array(capacity);
    this.#dv = new DataView(this.#buf.buffer);
  }

  get count(): number {
    return this.#count;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#dv = new DataView(next.buffer);
  }

  /** Adds a check of `sig` over `msg` as it is (a message already laid out, e.g. a Sig_structure). */
  addRaw(key: Uint8Array, msg: Uint8Array, sig: Uint8Array): void {
    if (key.length !== 32 || sig.length !== 64) throw new OtiError('ERR_ARGUMENT', 'key must be 32 bytes and sig 64 bytes');
    this.#reserve(100 + msg.length);
    this.#dv.setUint32(this.#len, msg.length, true);
    this.#buf.set(key, this.#len + 4);
    this.#buf.set(sig, this.#len + 36);
    this.#buf.set(msg, this.#len + 100);
    this.#len += 100 + msg.length;
    this.#count++;
  }

  /** Adds a COSE_Sign1 check: the message is the Sig_structure over `payload`. */
  addCose(key: Uint8Array, payload: Uint8Array, sig: Uint8Array): void {
    if (sig.length !== 64) throw new OtiError('ERR_ARGUMENT', 'key must be 32 bytes and sig 64 bytes');
    this.addCoseAt(key, payload, 0, payload.length, -1, sig);
  }

  /**
   * addCose() for a payload at [start, end) of `b` and a signature at [sigStart, sigStart + 64)
   * of `b` (or `sig` when given), copied from where they lie.
   */
  addCoseAt(key: Uint8Array, b: Uint8Array, start: number, end: number, sigStart: number, sig?: Uint8Array): void {
    if (key.length !== 32 || (sig === undefined && (sigStart < 0 || sigStart + 64 > b.length))) throw new OtiError('ERR_ARGUMENT', 'key must be 32 bytes and sig 64 bytes');
    const n = end - start;
    const headLen = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
    const msgLen = SIG_PREFIX.length + headLen + n;
    this.#reserve(100 + msgLen);
    const buf = this.#buf;
    let o = this.#len;
    this.#dv.setUint32(o, msgLen, true);
    buf.set(key, o + 4);
    // Copied in place, byte by byte: a view of each part per signature was an allocation.
    if (sig !== undefined) buf.set(sig, o + 36);
    else for (let i = 0; i < 64; i++) buf[o + 36 + i] = b[sigStart + i]!;
    o += 100;
    buf.set(SIG_PREFIX, o);
    o += SIG_PREFIX.length;
    if (headLen === 1) buf[o++] = 0x40 | n;
    else if (headLen === 2) {
      buf[o++] = 0x58;
      buf[o++] = n;
    } else if (headLen === 3) {
      buf[o++] = 0x59;
      buf[o++] = n >> 8;
      buf[o++] = n & 0xff;
    } else {
      buf[o++] = 0x5a;
      this.#dv.setUint32(o, n, false);
      o += 4;
    }
    if (start === 0 && end === b.length) buf.set(b, o);
    else for (let i = 0; i < n; i++) buf[o + i] = b[start + i]!;
    this.#len = o + n;
    this.#count++;
  }

  /**
   * The packed batch (a fresh, exactly sized buffer, or with `shared` one
   * in a SharedArrayBuffer, which a pool that shares with its caller posts without a copy);
   * resets the packer.
   */
  take(shared = false): Uint8Array {
    let out: Uint8Array;
    if (shared) {
      // A spare one given back (release()) when one is large enough: shared memory is freed only
      // once every thread that saw it has collected it, and a SharedArrayBuffer per batch kept
      // `oti verify` 10-13 MB larger at its peak.
      const i = this.#spare.findIndex((b) => b.length >= this.#len);
      const whole = i >= 0 ? this.#spare.splice(i, 1)[0]! : new Uint8Array(new SharedArrayBuffer(Math.ceil(this.#len * 1.25)));
      whole.set(this.#buf.subarray(0, this.#len));
      out = whole.subarray(0, this.#len);
    } else out = this.#buf.slice(0, this.#len);
    this.#len = 0;
    this.#count = 0;
    return out;
  }

  /** Shared batches given back for reuse (at most MAX_SPARE). */
  readonly #spare: Uint8Array[] = [];

  /**
   * Gives back a batch from take(true) for reuse, once nobody reads it any more: its results are
   * in (a batch a worker failed on may still be read, and is not given back).
   */
  release(batch: Uint8Array): void {
    if (batch.buffer instanceof SharedArrayBuffer && this.#spare.length < MAX_SPARE) this.#spare.push(new Uint8Array(batch.buffer));
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
