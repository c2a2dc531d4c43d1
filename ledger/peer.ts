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
 * on the worker pool, keeping its watermark in the store. A catch-up is then bound by hashing
 * and storage instead of one Ed25519 verification per entry; what the audit has not passed is
 * not cosigned (gateway/sync/node.ts). docs/SYNC.md §Verification.
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
import { ChainVerifier, verifierAt, type VerifyOptions } from './verify.js';
import { readU64, u64, type BatchOp, type ChainStore, type LedgerStore } from './store.js';
import type { ChainHead, ChainReader, ChainRole, StoredBlock } from './reader.js';
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
}

/** Where the audit of a replica's lock signatures stands. */
export interface AuditState {
  /** Entries whose lock signatures have been checked, from the start of the chain. */
  readonly size: number;
  /** The first failure; the audit stops there (and finds it again after a restart). */
  readonly failure: Error | undefined;
}

const AUDITED_KEY = Buffer.from('audited');
/** Blocks checked between two saves of the audit watermark. */
const AUDIT_SAVE_BLOCKS = 64;
/** What the stored blocks themselves are wrong about: an audit that finds one stops there. */
const AUDIT_FAILURES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ERR_LOCK_SIGNATURE', 'ERR_LOCK_UNKNOWN', 'ERR_ENTRY_INVALID', 'ERR_BLOCK_INVALID', 'ERR_BLOCK_LINK', 'ERR_CHECKPOINT_MISMATCH', 'ERR_CHECKPOINT_SIGNATURE', 'ERR_ROSTER']);

export class ChainReplica implements ChainReader {
  /** The store under it: readers go through the ChainReader methods. */
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
  /** Audit: the next block to check, the entries checked, the running verifier and run, the failure. */
  #auditBlock: number;
  #auditSize: number;
  #auditor: ChainVerifier | undefined;
  #auditRun: Promise<AuditState> | undefined;
  #auditFailure: Error | undefined;
  /** Whether the watermark is in the store (else it goes in with the first blocks stored). */
  #auditSaved: boolean;
  #auditStop = false;

  private constructor(cs: ChainStore, opts: VerifyOptions, roster: Roster, checkpoint: SignedCheckpoint | undefined, mode: 'before-storing' | 'audit', audit: { block: number; size: number; saved: boolean }) {
    this.#cs = cs;
    this.#opts = opts;
    this.#roster = roster;
    this.#checkpoint = checkpoint;
    this.#auditing = mode === 'audit';
    this.#auditBlock = audit.block;
    this.#auditSize = audit.size;
    this.#auditSaved = audit.saved;
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
    const audit = { block, size: block === 0 ? 0 : await sizeAfter(cs, block - 1), saved: saved !== undefined };
    const vopts: VerifyOptions = { trust: opts.trust, ...(opts.pool !== undefined ? { pool: opts.pool } : {}) };
    const mode = opts.lockSignatures ?? 'before-storing';
    return new ChainReplica(cs, mode === 'audit' ? { ...vopts, lockSignatures: false } : vopts, roster, checkpoint, mode, audit);
  }

  get origin(): string {
    return this.#cs.origin;
  }

  get head(): ChainHead {
    return this.#cs.head;
  }

  get size(): number {
    return this.#cs.head.size;
  }

  get role(): ChainRole {
    return this.#cs.role;
  }

  // ChainReader: the stored entries and blocks (docs in ledger/reader.ts).
  entry(index: number): Promise<Uint8Array> {
    return this.#cs.entry(index);
  }

  entries(from: number, to: number): AsyncGenerator<{ index: number; bytes: Uint8Array }> {
    return this.#cs.entries(from, to);
  }

  entryRange(from: number, to: number): Promise<Uint8Array[]> {
    return this.#cs.entryRange(from, to);
  }

  block(n: number): Promise<StoredBlock> {
    return this.#cs.block(n);
  }

  blocks(n: number, to?: number): AsyncGenerator<StoredBlock> {
    return this.#cs.blocks(n, to);
  }

  blockOf(index: number): Promise<StoredBlock> {
    return this.#cs.blockOf(index);
  }

  node(level: number, index: number): Promise<Uint8Array> {
    return this.#cs.node(level, index);
  }

  nodeRange(level: number, first: number, count: number): Promise<Uint8Array[]> {
    return this.#cs.nodeRange(level, first, count);
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
    const range = CompactRange.fromPeaks(head.size, [...head.peaks]);
    const ops: BatchOp[] = [];
    const all: Uint8Array[] = [];
    const rosterChanged = new Set<string>();
    for (const b of blocks) {
      // The verifier's leaf hashes and decodings serve the store operations too.
      const checked = await v.addBlock(b.headerBytes, b.checkpoint, b.entries);
      for (let k = 0; k < b.entries.length; k++) {
        const bytes = b.entries[k]!;
        const index = range.size;
        const leaf = checked.leaves[k]!;
        range.append(leaf, (level, i, hash) => {
          const op = cs.nodeOp(level, i, hash);
          if (op !== undefined) ops.push(op);
        });
        const body = checked.entries[k]!.body;
        if (body.kind === 'lock-event') {
          await this.#checkStoredCounter(body.event.lock, body.event.ctr, index);
          ops.push(cs.lockIdOp(body.event.lock, body.event.ctr, index));
        } else {
          ops.push(cs.hashIdOp(leaf, index));
          if (body.kind === 'roster') rosterChanged.add(`${body.signed.statement.role}/${body.signed.statement.id}`);
        }
        all.push(bytes);
      }
    }
    await v.finish();
    const tail = cs.entryOps(head.size, all, ops);
    for (const k of rosterChanged) {
      const [role, id] = k.split('/') as ['gateway' | 'lock', string];
      ops.push(cs.rosterOp(v.roster.get(role, id)!));
    }
    const last = blocks[blocks.length - 1]!;
    const lastN = head.n + blocks.length;
    for (let i = 0; i < blocks.length; i++) ops.push(cs.blockOp(head.n + 1 + i, blocks[i]!.headerBytes, blocks[i]!.checkpoint));
    const newHead: ChainHead = { n: lastN, size: range.size, peaks: [...range.peaks] };
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
      this.#auditor = undefined;
    }
    cs.commit(newHead, tail);
    this.#checkpoint = last.checkpoint;
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
    const opts: VerifyOptions = { ...this.#opts, lockSignatures: true };
    while (this.#auditBlock <= this.head.n && this.#auditFailure === undefined && !this.#auditStop) {
      try {
        this.#auditor ??= await verifierAt(this.#cs, opts, this.#auditBlock);
        const to = Math.min(this.head.n, this.#auditBlock + AUDIT_SAVE_BLOCKS - 1);
        let last = this.#auditBlock - 1;
        for await (const block of this.#cs.blocks(this.#auditBlock, to)) {
          if (this.#auditStop) break;
          const entries = await this.entryRange(block.header.first, block.header.first + block.header.count);
          await this.#auditor.addBlock(block.headerBytes, block.checkpoint, entries, false);
          last = block.header.n;
        }
        await this.#auditor.finish();
        if (last < this.#auditBlock) {
          if (this.#auditStop) break;
          throw new OtiError('ERR_STORE_CORRUPT', `block ${this.#auditBlock} of ${this.origin} is missing below its head`);
        }
        const size = await sizeAfter(this.#cs, last);
        if (this.#auditor.size !== size) throw new OtiError('ERR_STORE_CORRUPT', `blocks ${this.#auditBlock}..${last} of ${this.origin} do not hold ${size} entries`);
        await this.#cs.store.write([{ type: 'put', sublevel: this.#cs.meta, key: AUDITED_KEY, value: u64(last + 1) }]);
        this.#auditBlock = last + 1;
        this.#auditSize = size;
      } catch (e) {
        this.#auditor = undefined;
        // Only a verification failure stops the audit for good; anything else (the store
        // closing, a signature worker dying) is for the caller, and the next run starts again
        // from the watermark.
        if (!isOtiError(e) || !AUDIT_FAILURES.has(e.code)) throw e;
        this.#auditFailure = e as Error;
      }
    }
    return this.audited;
  }

  /** A lock's first event in this session must be above the counter stored before it. */
  async #checkStoredCounter(lock: string, ctr: number, index: number): Promise<void> {
    if (this.#checkedLocks.has(lock)) return;
    this.#checkedLocks.add(lock);
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
