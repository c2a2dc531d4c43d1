/**
 * A replica of a chain received from other gateways: blocks are verified with ChainVerifier (the
 * same rules as any verifier: links, roots, roster, lock signatures, checkpoint signatures) and
 * only then written, a run of blocks in one durable batch, in the same layout as a gateway's own
 * chain (ledger/store.ts). Used for peer chains (role "peer") and, when a gateway recovers its
 * own chain from peers after a restore, for its own chain (role "self") before Chain.open.
 *
 * Between sessions the verifier is rebuilt from the store (compact range from the stored peaks,
 * hash of the last block, roster as of the head) and, for each lock first seen in a session, the
 * last stored counter is checked too, so counters increase across resumptions as within one.
 */
import { OtiError } from './errors.js';
import { decodeEntry } from './entry.js';
import { leafHash, CompactRange } from './merkle.js';
import { blockHash, ZERO_HASH } from './block.js';
import type { SignedCheckpoint } from './checkpoint.js';
import { Roster, type SiteTrust } from './roster.js';
import { ChainVerifier, type VerifyOptions } from './verify.js';
import { hashIdKey, lockIdKey, type BatchOp, type ChainHead, type ChainRole, type ChainStore, type LedgerStore } from './store.js';
import type { SignaturePool } from './sigpool.js';

export interface ReplicaBlock {
  readonly headerBytes: Uint8Array;
  readonly checkpoint: SignedCheckpoint;
  readonly entries: readonly Uint8Array[];
}

export interface ReplicaOptions {
  readonly trust: SiteTrust;
  readonly pool?: SignaturePool;
}

export class ChainReplica {
  readonly cs: ChainStore;
  readonly #opts: VerifyOptions;
  #verifier: ChainVerifier | undefined;
  #checkpoint: SignedCheckpoint | undefined;
  #roster: Roster;
  /** Locks whose stored last counter was already compared in this session. */
  readonly #checkedLocks = new Set<string>();
  #busy: Promise<void> = Promise.resolve();

  private constructor(cs: ChainStore, opts: VerifyOptions, roster: Roster, checkpoint: SignedCheckpoint | undefined) {
    this.cs = cs;
    this.#opts = opts;
    this.#roster = roster;
    this.#checkpoint = checkpoint;
  }

  static async open(store: LedgerStore, origin: string, role: ChainRole, opts: ReplicaOptions): Promise<ChainReplica> {
    const cs = await store.chain(origin, role);
    const roster = new Roster();
    for (const m of await cs.rosterMembers()) roster.restore(m);
    const checkpoint = cs.head.n >= 0 ? (await cs.getBlock(cs.head.n)).checkpoint : undefined;
    return new ChainReplica(cs, { trust: opts.trust, ...(opts.pool !== undefined ? { pool: opts.pool } : {}) }, roster, checkpoint);
  }

  get origin(): string {
    return this.cs.origin;
  }

  get head(): ChainHead {
    return this.cs.head;
  }

  get size(): number {
    return this.cs.head.size;
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
    const cs = this.cs;
    const head = cs.head;
    const range = CompactRange.fromPeaks(head.size, [...head.peaks]);
    const ops: BatchOp[] = [];
    const all: Uint8Array[] = [];
    const rosterChanged = new Set<string>();
    for (const b of blocks) {
      await v.addBlock(b.headerBytes, b.checkpoint, b.entries);
      for (const bytes of b.entries) {
        const index = range.size;
        const leaf = leafHash(bytes);
        range.append(leaf, (level, i, hash) => {
          const op = cs.nodeOp(level, i, hash);
          if (op !== undefined) ops.push(op);
        });
        // Entries decoded cleanly in addBlock, so this cannot throw.
        const body = decodeEntry(bytes).body;
        if (body.kind === 'lock-event') {
          await this.#checkStoredCounter(body.event.lock, body.event.ctr, index);
          ops.push(cs.idOp(lockIdKey(body.event.lock, body.event.ctr), index));
        } else {
          ops.push(cs.idOp(hashIdKey(leaf), index));
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
    await cs.store.write(ops);
    cs.commit(newHead, tail);
    this.#checkpoint = last.checkpoint;
    this.#roster = v.roster.clone();
    this.#verifier = v;
  }

  /** A lock's first event in this session must be above the counter stored before it. */
  async #checkStoredCounter(lock: string, ctr: number, index: number): Promise<void> {
    if (this.#checkedLocks.has(lock)) return;
    this.#checkedLocks.add(lock);
    const last = await this.cs.lastLockCounter(lock);
    if (last !== undefined && ctr <= last.ctr) {
      throw new OtiError('ERR_ENTRY_INVALID', `entry ${index} of ${this.origin}: counter ${ctr} of lock ${lock} does not increase (stored ${last.ctr})`, { origin: this.origin, index });
    }
  }

  /** A verifier that continues from the stored head. */
  async #resume(): Promise<ChainVerifier> {
    this.#checkedLocks.clear();
    const head = this.cs.head;
    if (head.n < 0) return new ChainVerifier(this.origin, this.#opts);
    const last = await this.cs.getBlock(head.n);
    const range = CompactRange.fromPeaks(head.size, [...head.peaks]);
    return new ChainVerifier(this.origin, this.#opts, { range, prevHash: head.n >= 0 ? blockHash(last.headerBytes) : ZERO_HASH, nextBlock: head.n + 1, roster: this.#roster });
  }
}
