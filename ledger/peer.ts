/**
 * A replica of a chain received from other gateways: blocks are verified with ChainVerifier (the
 * same rules as any verifier: links, roots, roster, lock signatures, checkpoint signatures) and
 * only then written, a run of blocks in one durable batch, in the same layout as a gateway's own
 * chain (ledger/store.ts). Used for peer chains (role "peer") and, when a gateway recovers its
 * own chain from peers after a restore, for its own chain (role "self") before Chain.open.
 *
 * With `lockSignatures: 'audit'` the blocks are stored once everything but the lock signatures
 * verifies (every entry against the block root and the gateway's signed checkpoint, the roster,
 * the counters), and audit() checks the lock signatures of what is stored afterwards, in order,
 * on the worker pool, keeping its watermark in the store. Only those signatures: the blocks were
 * verified whole before storing, so the audit does not decode them or check their checkpoints
 * again; it takes the signatures packed when the blocks were stored, or reads them back from the
 * store past a memory bound and after a restart (ledger/peer-audit.ts). A catch-up is then bound
 * by hashing and storage instead of one Ed25519 verification per entry; what the audit has not
 * passed is not cosigned (gateway/sync/node.ts). docs/SYNC.md §Verification.
 *
 * Between sessions the verifier is rebuilt from the store (compact range from the stored peaks,
 * hash of the last block, roster as of the head) and, for each lock first seen in a session, the
 * last stored counter is checked too, so counters increase across resumptions as within one.
 */
import { OtiError, isOtiError, type ErrorCode } from './base/errors.js';
import { CompactRange } from './merkle.js';
import { blockHash, ZERO_HASH } from './block.js';
import type { SignedCheckpoint } from './checkpoint.js';
import { Roster, type SiteTrust } from './roster.js';
import { ChainVerifier, type EntrySink, type VerifyOptions } from './verify.js';
import { verify as nodeVerify } from './crypto.js';
import { verifyPacked } from './sigbatch.js';
import { AUDIT_CHUNK_BLOCKS, AUDIT_CHUNK_SIGNATURES, AUDIT_QUEUE_BYTES, readAuditChunk, storedRosterBefore, type AuditChunk } from './peer-audit.js';
import { PackedPuts, readU64, u64, type BatchOp, type ChainStore, type LedgerStore } from './store.js';
import type { ChainHead, ChainRole } from './reader.js';
import { StoredChain } from './stored-chain.js';
import type { SignaturePool } from './sigpool.js';

export interface ReplicaBlock {
  readonly headerBytes: Uint8Array;
  readonly checkpoint: SignedCheckpoint;
  readonly entries: readonly Uint8Array[];
}

export interface ReplicaOptions {
  readonly trust: SiteTrust;
  readonly pool?: SignaturePool;
  /** When lock signatures are checked: before storing (default), or by audit() after. */
  readonly lockSignatures?: 'before-storing' | 'audit';
  /** Packed lock signatures kept in memory for the audit, at most (default AUDIT_QUEUE_BYTES, ledger/peer-audit.ts); beyond, the audit reads the entries back. */
  readonly auditQueueBytes?: number;
}

/** Where the audit of a replica's lock signatures stands. */
export interface AuditState {
  /** Entries whose lock signatures have been checked, from the start of the chain. */
  readonly size: number;
  /** The first failure; the audit stops there (and finds it again after a restart). */
  readonly failure: Error | undefined;
}

const AUDITED_KEY = Buffer.from('audited');
/** Blocks checked between two saves of the audit watermark, at least. */
const AUDIT_SAVE_BLOCKS = AUDIT_CHUNK_BLOCKS;
/** What the stored entries themselves are wrong about: an audit that finds one stops there. */
const AUDIT_FAILURES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ERR_LOCK_SIGNATURE', 'ERR_LOCK_UNKNOWN', 'ERR_ENTRY_INVALID', 'ERR_ROSTER']);

export class ChainReplica extends StoredChain {
  /** The store under it, for writes (reads go through StoredChain). */
  readonly #cs: ChainStore;
  readonly #opts: VerifyOptions;
  #verifier: ChainVerifier | undefined;
  #checkpoint: SignedCheckpoint | undefined;
  #roster: Roster;
  /** Locks whose stored last counter was already compared in this session. */
  readonly #checkedLocks = new Set<string>();
  #busy: Promise<void> = Promise.resolve();
  /** Whether lock signatures are left to the audit (mode 'audit'). */
  readonly #auditing: boolean;
  /** Audit: the next block to check, the entries checked, the run going on, the failure. */
  #auditBlock: number;
  #auditSize: number;
  /** Blocks stored and not audited, in order, with their packed lock signatures while within AUDIT_QUEUE_BYTES (ledger/peer-audit.ts). */
  readonly #auditQueue: AuditChunk[] = [];
  #auditQueueBytes = 0;
  readonly #auditQueueMax: number;
  /** The roster before block `next`, as the audit's reading from the store left it. */
  #auditRoster: { next: number; roster: Roster } | undefined;
  #auditRun: Promise<AuditState> | undefined;
  #auditFailure: Error | undefined;
  /** Whether the watermark is in the store (else it goes in with the first blocks stored). */
  #auditSaved: boolean;
  #auditStop = false;

  private constructor(cs: ChainStore, opts: VerifyOptions, roster: Roster, checkpoint: SignedCheckpoint | undefined, mode: 'before-storing' | 'audit', audit: { block: number; size: number; saved: boolean; queueBytes: number }) {
    super(cs);
    this.#cs = cs;
    this.#opts = opts;
    this.#roster = roster;
    this.#checkpoint = checkpoint;
    this.#auditing = mode === 'audit';
    this.#auditBlock = audit.block;
    this.#auditSize = audit.size;
    this.#auditSaved = audit.saved;
    this.#auditQueueMax = audit.queueBytes;
  }

  static async open(store: LedgerStore, origin: string, role: ChainRole, opts: ReplicaOptions): Promise<ChainReplica> {
    const cs = await store.chain(origin, role);
    const roster = new Roster();
    for (const m of await cs.rosterMembers()) roster.restore(m);
    const checkpoint = cs.head.n >= 0 ? (await cs.block(cs.head.n)).checkpoint : undefined;
    // The audit watermark, in either mode: a replica switched from 'audit' to 'before-storing'
    // still has to audit what it stored unaudited. A chain stored before audits existed (and a
    // new one) has nothing unaudited.
    const saved = await cs.meta.get(AUDITED_KEY);
    const block = saved === undefined ? cs.head.n + 1 : Math.min(readU64(saved), cs.head.n + 1);
    const audit = { block, size: block === 0 ? 0 : await sizeAfter(cs, block - 1), saved: saved !== undefined, queueBytes: opts.auditQueueBytes ?? AUDIT_QUEUE_BYTES };
    const vopts: VerifyOptions = { trust: opts.trust, ...(opts.pool !== undefined ? { pool: opts.pool } : {}) };
    const mode = opts.lockSignatures ?? 'before-storing';
    return new ChainReplica(cs, mode === 'audit' ? { ...vopts, lockSignatures: 'collect' } : vopts, roster, checkpoint, mode, audit);
  }

  /** The checkpoint of the last stored block (signed by the chain's gateway). */
  get checkpoint(): SignedCheckpoint | undefined {
    return this.#checkpoint;
  }

  /** The roster as of the stored head. */
  get roster(): Roster {
    return this.#roster;
  }

  /** The chain gateway's key as of the stored head, if the chain has started. */
  gatewayKey(gatewayId: string): Uint8Array | undefined {
    return this.#roster.get('gateway', gatewayId)?.key;
  }

  /**
   * Verifies `blocks` (consecutive, starting at the stored head) and stores them in one batch.
   * Nothing is written unless every block, every entry and every lock signature verifies; on
   * failure the coded error of the first problem is thrown and the replica is unchanged.
   * Calls are serialised.
   */
  append(blocks: readonly ReplicaBlock[]): Promise<void> {
    const run = this.#busy.then(() => this.#append(blocks));
    this.#busy = run.catch(() => undefined);
    return run;
  }

  async #append(blocks: readonly ReplicaBlock[]): Promise<void> {
    if (blocks.length === 0) return;
    const v = this.#verifier ?? (await this.#resume());
    this.#verifier = undefined; // restored below only when everything verified
    const cs = this.#cs;
    const head = cs.head;
    const ops: BatchOp[] = [];
    // The interior nodes the verifier computes are the ones stored: not hashed a second time.
    const onNode = (level: number, i: number, hash: Uint8Array): void => {
      const op = cs.nodeOp(level, i, hash);
      if (op !== undefined) ops.push(op);
    };
    const all: Uint8Array[] = [];
    // The entry-id records of lock events, one buffer for all (PackedPuts).
    const puts = new PackedPuts();
    ops.push({ type: 'puts', puts });
    const rosterChanged = new Set<string>();
    // Each lock's first event in this session, checked against the stored counters after its block.
    const firstSeen: { lock: string; ctr: number; index: number }[] = [];
    const sink: EntrySink = {
      lockEvent: (index, lock, idBytes, ctr) => {
        if (!this.#checkedLocks.has(lock)) {
          this.#checkedLocks.add(lock);
          firstSeen.push({ lock, ctr, index });
        }
        cs.lockIdPut(puts, lock, ctr, index, idBytes);
      },
      entry: (index, entry, leaf) => {
        ops.push(cs.hashIdOp(leaf, index));
        const body = entry.body;
        if (body.kind === 'roster') rosterChanged.add(`${body.signed.statement.role}/${body.signed.statement.id}`);
      },
    };
    // Audit mode: the verifier packs the lock signatures of the entries it checks (from where they
    // lie), taken here into chunks for audit() while the queue is within its bound and follows on
    // from the stored head; beyond the bound they are dropped and the queue names the blocks, which
    // audit() reads back.
    const last = this.#auditQueue[this.#auditQueue.length - 1];
    const queued = this.#auditing && (last === undefined || last.to === head.n);
    const packing = queued && this.#auditQueueBytes < this.#auditQueueMax;
    const chunks: AuditChunk[] = [];
    let chunkFrom = head.n + 1;
    const takeChunk = (to: number): void => {
      const { packed, indexes } = v.takeSignatures();
      if (packing) chunks.push({ from: chunkFrom, to, sizeAfter: v.size, packed, indexes, rosterBefore: undefined });
      chunkFrom = to + 1;
    };
    let blockN = head.n;
    for (const b of blocks) {
      blockN++;
      await v.addBlock(b.headerBytes, b.checkpoint, b.entries, sink, onNode);
      for (const f of firstSeen) await this.#checkStoredCounter(f.lock, f.ctr, f.index);
      firstSeen.length = 0;
      for (const e of b.entries) all.push(e);
      if (this.#auditing && (v.collected >= AUDIT_CHUNK_SIGNATURES || blockN - chunkFrom + 1 >= AUDIT_CHUNK_BLOCKS)) takeChunk(blockN);
    }
    if (this.#auditing && chunkFrom <= blockN) takeChunk(blockN);
    await v.finish();
    const tail = cs.entryOps(head.size, all, ops);
    for (const k of rosterChanged) {
      const [role, id] = k.split('/') as ['gateway' | 'lock', string];
      ops.push(cs.rosterOp(v.roster.get(role, id)!));
    }
    const lastBlock = blocks[blocks.length - 1]!;
    const lastN = head.n + blocks.length;
    for (let i = 0; i < blocks.length; i++) ops.push(cs.blockOp(head.n + 1 + i, blocks[i]!.headerBytes, blocks[i]!.checkpoint));
    const newHead: ChainHead = { n: lastN, size: v.size, peaks: [...v.peaks] };
    ops.push(cs.headOp(newHead));
    // Blocks checked whole move the watermark along, when it is level with the stored head;
    // else it stays where the audit has to go on from.
    const level = !this.#auditing && this.#auditFailure === undefined && this.#auditBlock === head.n + 1;
    const watermark = level ? lastN + 1 : this.#auditBlock;
    if (level || !this.#auditSaved) ops.push({ type: 'put', sublevel: cs.meta, key: AUDITED_KEY, value: u64(watermark) });
    await cs.store.write(ops);
    this.#auditSaved = true;
    if (level) {
      this.#auditBlock = watermark;
      this.#auditSize = newHead.size;
    }
    cs.commit(newHead, tail);
    if (packing) {
      for (const c of chunks) {
        this.#auditQueue.push(c);
        this.#auditQueueBytes += c.packed!.length + 8 * c.indexes.length;
      }
    } else if (queued) {
      this.#auditQueue.push({ from: head.n + 1, to: lastN, sizeAfter: newHead.size, packed: undefined, indexes: [], rosterBefore: this.#roster });
    }
    this.#checkpoint = lastBlock.checkpoint;
    this.#roster = v.roster.clone();
    this.#verifier = v;
  }

  /** How far the lock signatures of the stored entries have been checked (before storing, or by audit()). */
  get audited(): AuditState {
    return { size: this.#auditSize, failure: this.#auditFailure };
  }

  /**
   * Checks the lock signatures of the stored blocks not audited yet, in order, and saves the
   * watermark as it goes. One run at a time (a call during a run gets that run). Resolves with
   * the state reached; a signature that fails stops the audit there for good (state.failure).
   */
  audit(): Promise<AuditState> {
    if (this.#auditFailure !== undefined || this.#auditBlock > this.head.n) return Promise.resolve(this.audited);
    this.#auditRun ??= this.#audit().finally(() => (this.#auditRun = undefined));
    return this.#auditRun;
  }

  /** Stops a running audit at the next block (for shutdown); audit() starts it again. */
  stopAudit(): void {
    this.#auditStop = true;
  }

  async #audit(): Promise<AuditState> {
    this.#auditStop = false;
    const pool = this.#opts.pool;
    // Chunks go to the pool with a few in flight, and are settled in order: the first bad
    // signature in chain order is the one reported.
    const limit = pool === undefined ? 0 : 2 * pool.size + 1;
    const inFlight: { chunk: AuditChunk; done: Promise<void> }[] = [];
    let saved = this.#auditBlock;
    let next = this.#auditBlock;
    const settle = async (): Promise<void> => {
      const { chunk, done } = inFlight.shift()!;
      await done;
      if (chunk.to + 1 > this.#auditBlock) {
        this.#auditBlock = chunk.to + 1;
        this.#auditSize = chunk.sizeAfter;
      }
      if (this.#auditBlock - saved >= AUDIT_SAVE_BLOCKS) saved = await this.#saveAuditMark();
    };
    try {
      while (next <= this.head.n && !this.#auditStop) {
        const chunk = await this.#nextAuditChunk(next);
        next = chunk.to + 1;
        const done = this.#checkChunk(chunk);
        done.catch(() => undefined); // observed by settle()
        inFlight.push({ chunk, done });
        while (inFlight.length > limit) await settle();
      }
      while (inFlight.length > 0) await settle();
      if (this.#auditBlock > saved) await this.#saveAuditMark();
    } catch (e) {
      // Only a verification failure stops the audit for good; anything else (the store
      // closing, a signature worker dying) is for the caller, and the next run starts again
      // from the last chunk passed (from the watermark after a restart).
      if (!isOtiError(e) || !AUDIT_FAILURES.has(e.code)) throw e;
      this.#auditFailure = e as Error;
    }
    return this.audited;
  }

  /** Saves the audit watermark as it stands; returns it. */
  async #saveAuditMark(): Promise<number> {
    const mark = this.#auditBlock;
    await this.#cs.store.write([{ type: 'put', sublevel: this.#cs.meta, key: AUDITED_KEY, value: u64(mark) }]);
    return mark;
  }

  /** The chunk of blocks to audit from block `from` on: packed when appended, else read back from the store. */
  async #nextAuditChunk(from: number): Promise<AuditChunk> {
    const q = this.#auditQueue;
    // Chunks behind the audit (passed by a run interrupted, then read back) are dropped; a packed
    // chunk is used whole or not at all.
    while (q.length > 0 && (q[0]!.to < from || (q[0]!.packed !== undefined && q[0]!.from < from))) this.#dropQueued();
    const head = q[0];
    if (head?.packed !== undefined && head.from === from) {
      this.#dropQueued();
      return head;
    }
    let roster: Roster;
    if (this.#auditRoster?.next === from) roster = this.#auditRoster.roster;
    else if (head?.from === from && head.rosterBefore !== undefined) roster = head.rosterBefore.clone();
    else roster = await storedRosterBefore(this.#cs, from === 0 ? 0 : await sizeAfter(this.#cs, from - 1));
    // Moved along by the read: valid again only once the read has ended.
    this.#auditRoster = undefined;
    // Up to the next packed chunk, or through an unpacked one (what is not read of it is read next time).
    const to = head === undefined ? this.head.n : head.packed !== undefined ? head.from - 1 : head.to;
    const chunk = await readAuditChunk(this.#cs, from, to, roster);
    if (chunk === undefined) throw new OtiError('ERR_STORE_CORRUPT', `block ${from} of ${this.origin} is missing below its head`);
    this.#auditRoster = { next: chunk.to + 1, roster };
    if (head !== undefined && head.packed === undefined && head.from === from) {
      this.#dropQueued();
      if (chunk.to < head.to) q.unshift({ ...head, from: chunk.to + 1, rosterBefore: undefined });
    }
    return chunk;
  }

  #dropQueued(): void {
    const c = this.#auditQueue.shift()!;
    if (c.packed !== undefined) this.#auditQueueBytes -= c.packed.length + 8 * c.indexes.length;
  }

  /** Checks a chunk's lock signatures (on the pool when there is one); throws ERR_LOCK_SIGNATURE at the first that fails. */
  async #checkChunk(chunk: AuditChunk): Promise<void> {
    const packed = chunk.packed!;
    const pool = this.#opts.pool;
    const results = packed.length === 0 ? new Uint8Array(0) : pool !== undefined ? await pool.verifyPackedBatch(packed) : verifyPacked(packed, this.#opts.ed25519 ?? nodeVerify);
    const bad = results.findIndex((r) => r !== 1);
    if (bad >= 0) {
      const index = chunk.indexes[bad]!;
      throw new OtiError('ERR_LOCK_SIGNATURE', `entry ${index} of ${this.origin}: the lock signature does not verify`, { origin: this.origin, index });
    }
  }

  /** A lock's first event in this session must be above the counter stored before it. */
  async #checkStoredCounter(lock: string, ctr: number, index: number): Promise<void> {
    const last = await this.#cs.lastLockCounter(lock);
    if (last !== undefined && ctr <= last.ctr) {
      throw new OtiError('ERR_ENTRY_INVALID', `entry ${index} of ${this.origin}: counter ${ctr} of lock ${lock} does not increase (stored ${last.ctr})`, { origin: this.origin, index });
    }
  }

  /** A verifier that continues from the stored head. */
  async #resume(): Promise<ChainVerifier> {
    this.#checkedLocks.clear();
    const head = this.head;
    if (head.n < 0) return new ChainVerifier(this.origin, this.#opts);
    const last = await this.#cs.block(head.n);
    const range = CompactRange.fromPeaks(head.size, [...head.peaks]);
    return new ChainVerifier(this.origin, this.#opts, { range, prevHash: head.n >= 0 ? blockHash(last.headerBytes) : ZERO_HASH, nextBlock: head.n + 1, roster: this.#roster, rosterCommitted: last.checkpoint.roster !== undefined });
  }
}

/** Entries in the chain up to and including block n. */
async function sizeAfter(cs: ChainStore, n: number): Promise<number> {
  const h = (await cs.block(n)).header;
  return h.first + h.count;
}
