/**
 * A gateway's own chain: validated appends, group commit, one signed checkpoint per block.
 *
 * append() checks an entry against the chain (roster membership, lock signature, strictly
 * increasing counters per lock), queues it, and resolves only once the block that holds it is
 * durable: written with the rest of its block in one LevelDB batch with sync. Concurrent appends
 * share a block: the block is sealed `sealDelayMs` after its first entry arrived, at once when it
 * reaches `maxBlockEntries`, and never while the previous block is still being written (entries
 * arriving meanwhile wait for the next one, which is sealed when that write ends if its first
 * entry has waited `sealDelayMs` by then). One Ed25519 signature and one fsync per block.
 *
 * A block that cannot be written fails the chain (every later append is refused), except for a
 * full disk: the store then holds the write until there is space (ledger/store.ts), so appends
 * simply take longer and nothing is acknowledged before it is durable.
 */
import { OtiError, isOtiError } from './base/errors.js';
import { Signer, toHex, verify, type KeyPair } from './crypto.js';
import { decodeEntry, encodeEntry, encodeSignedLockEvent, latin1, lockEventScan, type Entry, type EntryInput } from './entry.js';
import { leafHash, CompactRange } from './merkle.js';
import { encodeBlockHeader, blockHash, ZERO_HASH, type BlockHeader } from './block.js';
import { signCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { sigStructure } from './cose.js';
import { checkSigned, Roster, type Member, type SignedStatement, type SiteTrust } from './roster.js';
import type { LedgerStore, ChainStore } from './store.js';
import { hashIdKey, lockIdKey, PackedPuts, type BatchOp } from './store.js';
import type { ChainHead } from './reader.js';
import { StoredChain } from './stored-chain.js';
import type { SignaturePool } from './sigpool.js';
import { RosterTree } from './roster-commitment.js';
import { bytesEqual } from './base/bytes.js';
import { AdmissionQueue } from './admission.js';
import { settlePromise } from './base/settle.js';
import { verifyTail } from './chain-tail.js';

export { rebuildRange } from './chain-tail.js';

export const DEFAULT_SEAL_DELAY_MS = 5;
export const DEFAULT_MAX_BLOCK_ENTRIES = 1024;

export function chainOrigin(siteId: string, gatewayId: string): string {
  return `oti/${siteId}/${gatewayId}`;
}

export interface ChainOptions {
  readonly store: LedgerStore;
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  /** The site-signed enrolment of this gateway's key; required when the chain is new. */
  readonly genesis?: SignedStatement;
  /** Verifies lock signatures off the main thread; without it they are checked inline. */
  readonly pool?: SignaturePool;
  readonly sealDelayMs?: number;
  readonly maxBlockEntries?: number;
  readonly now?: () => number;
}

export interface AppendOptions {
  /** The caller has already verified the lock signature against the enrolled key. */
  readonly preverified?: boolean;
}

export interface AppendResult {
  readonly index: number;
  /** The entry's id: "<lock>:<counter>" for lock events, hex leaf hash otherwise. */
  readonly id: string;
  readonly leafHash: Uint8Array;
  readonly block: number;
  readonly entry: Entry;
}

export interface BlockEvent {
  readonly header: BlockHeader;
  readonly checkpoint: SignedCheckpoint;
  readonly results: readonly AppendResult[];
}

/**
 * One append from the call to its block being durable: waiting for its checks (AdmissionQueue),
 * then admitted and waiting for its block (pending). One small object all the way: with
 * thousands of appends in flight, each survives a few young-generation collections, which copy
 * what it holds. A lock-signed event taken on the fast path holds its bytes, lock and counter,
 * not its decoding (made when a result's `entry` is first read, or when its signature is checked
 * here).
 */
interface Slot {
  readonly bytes: Uint8Array;
  /** Its decoding, when one was made. */
  entry: Entry | undefined;
  /** Lock events: the lock, its counter, and whether the event is lock-signed (else unsigned). */
  readonly lock: string | undefined;
  readonly ctr: number;
  readonly signed: boolean;
  state: 'checking' | 'ready' | 'failed';
  error: Error | undefined;
  /** The lock key its signature was checked against, if it was checked here. */
  checkedKey: Uint8Array | undefined;
  /** Whom to tell when it is durable (or refused): `done(ctx, result)`. */
  ctx: unknown;
  done: (ctx: unknown, result: AppendResult | Error) => void;
}

const SETTLED = (): void => undefined;

/**
 * Tells a slot's caller its result. A callback that throws is reported as an uncaught exception
 * (as a throwing promise reaction would be), not taken for the chain's failure.
 */
function settle(slot: Slot, result: AppendResult | Error): void {
  // Once only (a 'block' listener that throws fails the chain after its entries were settled).
  const done = slot.done;
  slot.done = SETTLED;
  try {
    done(slot.ctx, result);
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

function setCheckedKey(slot: Slot, key: Uint8Array | undefined): void {
  slot.checkedKey = key;
}

/** Where the parts of the lock event being appended lie (encodeSignedLockEvent; read at once). */
const SCAN = lockEventScan();

/**
 * What append() resolves to. The id and the decoding are made when first read: the callers of a
 * busy chain that never read them do not pay for them, and an append in flight holds less.
 */
class Appended implements AppendResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
  readonly block: number;
  readonly #bytes: Uint8Array;
  readonly #lock: string | undefined;
  readonly #ctr: number;
  #entry: Entry | undefined;
  #id: string | undefined;

  constructor(index: number, leaf: Uint8Array, block: number, slot: Slot) {
    this.index = index;
    this.leafHash = leaf;
    this.block = block;
    this.#bytes = slot.bytes;
    this.#lock = slot.lock;
    this.#ctr = slot.ctr;
    this.#entry = slot.entry;
  }

  get id(): string {
    return (this.#id ??= this.#lock !== undefined ? `${this.#lock}:${this.#ctr}` : toHex(this.leafHash));
  }

  get entry(): Entry {
    return (this.#entry ??= decodeEntry(this.#bytes));
  }
}

export interface ChainEvents {
  block: [BlockEvent];
  error: [Error];
}

export class Chain extends StoredChain<ChainEvents> {
  /** The store under it, for writes (reads go through StoredChain). */
  readonly #cs: ChainStore;
  readonly #opts: ChainOptions;
  readonly #signer: Signer;
  readonly #now: () => number;
  readonly #sealDelayMs: number;
  readonly #maxBlock: number;
  /** Roster including entries admitted but not yet durable. */
  #roster: Roster;
  /** Last counter per lock including admitted entries. */
  readonly #lockCtr = new Map<string, number>();
  readonly #lockCtrLoading = new Map<string, Promise<void>>();
  /** Enrolled locks' members by lock id, as of #roster's version #membersVersion (#lockMember). */
  readonly #members = new Map<string, Member>();
  #membersVersion = -1;
  #admittedSize: number;
  #pending: Slot[] = [];
  /** Appends waiting for their checks, admitted in call order (ledger/admission.ts). */
  readonly #admission = new AdmissionQueue<Slot>((slot) => this.#admitSlot(slot));
  #timer: NodeJS.Timeout | undefined;
  /** When the oldest entry of #pending was admitted (#now()): the seal delay counts from it. */
  #pendingSince = 0;
  #writing: Promise<void> | undefined;
  #closed = false;
  #failed: Error | undefined;
  #lastBlockHash: Uint8Array;
  #checkpoint: SignedCheckpoint | undefined;
  /** The roster as of the last durable block (#roster runs ahead with admitted entries). */
  readonly #sealedRoster: Roster;
  /** Snapshot of #sealedRoster's commitment tree, the one #checkpoint names. */
  #rosterTree: RosterTree;

  private constructor(opts: ChainOptions, cs: ChainStore, roster: Roster, lastBlockHash: Uint8Array, checkpoint: SignedCheckpoint | undefined) {
    super(cs);
    this.#opts = opts;
    this.#cs = cs;
    this.#signer = new Signer(opts.key.seed);
    this.#now = opts.now ?? Date.now;
    this.#sealDelayMs = opts.sealDelayMs ?? DEFAULT_SEAL_DELAY_MS;
    this.#maxBlock = opts.maxBlockEntries ?? DEFAULT_MAX_BLOCK_ENTRIES;
    this.#roster = roster;
    this.#admittedSize = cs.head.size;
    this.#lastBlockHash = lastBlockHash;
    this.#checkpoint = checkpoint;
    this.#sealedRoster = roster.clone();
    this.#rosterTree = new RosterTree(this.#sealedRoster);
  }

  /**
   * Opens (or creates, with `genesis`) this gateway's chain. The last block is verified before
   * anything is served: its entries against its root, its link, its checkpoint signature.
   */
  static async open(opts: ChainOptions): Promise<Chain> {
    const origin = chainOrigin(opts.trust.siteId, opts.gatewayId);
    const cs = await opts.store.chain(origin, 'self');
    const roster = new Roster();
    for (const m of await cs.rosterMembers()) roster.restore(m);
    let lastHash: Uint8Array = ZERO_HASH;
    let checkpoint: SignedCheckpoint | undefined;
    if (cs.head.n >= 0) {
      ({ hash: lastHash, checkpoint } = await verifyTail(cs, roster, opts.gatewayId));
      const me = roster.get('gateway', opts.gatewayId);
      if (me === undefined || !bytesEqual(me.key, opts.key.publicKey)) {
        throw new OtiError('ERR_CHAIN_READ_ONLY', `chain ${origin} is signed by another key than the one given for gateway ${opts.gatewayId}`);
      }
    }
    const chain = new Chain(opts, cs, roster, lastHash, checkpoint);
    if (cs.head.size === 0) {
      if (opts.genesis === undefined) throw new OtiError('ERR_ARGUMENT', `chain ${origin} is new: the gateway's signed enrolment (genesis) is required`);
      await chain.append({ kind: 'roster', signed: opts.genesis });
    }
    return chain;
  }

  /** The checkpoint signed after the last durable block. */
  get checkpoint(): SignedCheckpoint | undefined {
    return this.#checkpoint;
  }

  /**
   * The last checkpoint and the roster commitment tree of the same block, taken together, so
   * proofs made from the tree match the checkpoint's `oti-roster` line.
   */
  get sealed(): { readonly checkpoint: SignedCheckpoint | undefined; readonly rosterTree: RosterTree } {
    return { checkpoint: this.#checkpoint, rosterTree: this.#rosterTree };
  }

  get roster(): Roster {
    return this.#roster;
  }

  get publicKey(): Uint8Array {
    return this.#signer.publicKey;
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  append(input: EntryInput, opts: AppendOptions = {}): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => this.appendTo(input, opts, { resolve, reject }, settlePromise));
  }

  /**
   * append() without a promise: `done(ctx, result)` is called once the entry is durable, or with
   * the error append() would reject with (possibly before appendTo returns, when the entry is
   * refused at once). For callers with thousands of appends in flight (the ingest pipeline): a
   * promise and its reactions per entry, alive until the block is written, were measurable
   * garbage.
   */
  appendTo<C>(input: EntryInput, opts: AppendOptions, ctx: C, done: (ctx: C, result: AppendResult | Error) => void): void {
    let slot: Slot;
    const cb = done as (ctx: unknown, result: AppendResult | Error) => void;
    try {
      this.#assertWritable();
      const now = this.#now();
      const fast = encodeSignedLockEvent(input, now, SCAN);
      if (fast !== undefined) {
        slot = { bytes: fast, entry: undefined, lock: latin1(fast, SCAN.lockStart, SCAN.lockEnd), ctr: SCAN.ctr, signed: true, state: 'checking', error: undefined, checkedKey: undefined, ctx, done: cb };
      } else {
        const { bytes, entry } = encodeEntry(input, now);
        const body = entry.body;
        const ev = body.kind === 'lock-event' ? body.event : undefined;
        slot = { bytes, entry, lock: ev?.lock, ctr: ev?.ctr ?? 0, signed: body.kind === 'lock-event' && body.prov === 'lock-signed', state: 'checking', error: undefined, checkedKey: undefined, ctx, done: cb };
      }
    } catch (e) {
      done(ctx, e as Error);
      return;
    }
    const checking = this.#precheck(slot, opts);
    if (checking === undefined && this.#admission.empty) {
      // Nothing to wait for and nobody before it (the common case: a known lock's pre-verified
      // event): admitted at once.
      this.#admitSlot(slot);
      return;
    }
    this.#admission.push(slot, checking, setCheckedKey);
  }

  /**
   * The asynchronous checks: loading the lock's last counter, checking the lock signature.
   * Undefined when there is nothing to wait for; else the key the signature was checked against.
   */
  #precheck(slot: Slot, opts: AppendOptions): Promise<Uint8Array | undefined> | undefined {
    const lock = slot.lock;
    if (lock === undefined) return undefined;
    const mustVerify = slot.signed && opts.preverified !== true;
    if (!mustVerify && this.#lockCtr.has(lock)) return undefined;
    return this.#precheckAsync(slot, lock, mustVerify);
  }

  async #precheckAsync(slot: Slot, lock: string, mustVerify: boolean): Promise<Uint8Array | undefined> {
    await this.lastCounter(lock);
    if (!mustVerify) return undefined;
    const body = (slot.entry ??= decodeEntry(slot.bytes)).body;
    if (body.kind !== 'lock-event' || body.prov !== 'lock-signed') return undefined;
    const member = this.#lockMember(lock);
    const task = { key: member.key, msg: sigStructure(body.parsed.payload), sig: body.parsed.signature };
    const ok = this.#opts.pool !== undefined ? await this.#opts.pool.verify(task) : verify(task.key, task.msg, task.sig);
    if (!ok) throw new OtiError('ERR_LOCK_SIGNATURE', `event ${lock}:${body.event.ctr} is not signed by the enrolled key of lock ${lock}`, { lock, ctr: body.event.ctr });
    return member.key;
  }

  /** Admits a slot whose checks are done (or failed): into the pending block, or refused. */
  #admitSlot(slot: Slot): void {
    try {
      if (slot.state === 'failed') throw slot.error!;
      this.#assertWritable();
      const checkedKey = slot.checkedKey;
      // The roster may have changed while the signature was being checked.
      if (checkedKey !== undefined && slot.lock !== undefined && !bytesEqual(this.#lockMember(slot.lock).key, checkedKey)) {
        throw new OtiError('ERR_LOCK_SIGNATURE', `lock ${slot.lock} changed key while its event was checked`, { lock: slot.lock });
      }
      this.#admit(slot);
      if (this.#pending.length === 0) this.#pendingSince = this.#now();
      this.#pending.push(slot);
      this.#admittedSize++;
      this.#schedule();
    } catch (e) {
      settle(slot, e as Error);
    }
  }

  /** The index of an entry by id (see AppendResult.id), if it is durable. */
  async indexOf(id: string): Promise<number | undefined> {
    const m = /^([a-z0-9][a-z0-9._-]{0,63}):(0|[1-9][0-9]{0,15})$/.exec(id);
    if (m !== null) {
      // Above the lock's last admitted counter nothing is stored: answered without a read (the
      // notifications ask this of every event as it arrives).
      const ctr = Number(m[2]);
      const last = this.#lockCtr.get(m[1]!);
      if (last !== undefined && ctr > last) return undefined;
      return this.#cs.indexOfId(lockIdKey(m[1]!, ctr));
    }
    if (/^[0-9a-f]{64}$/.test(id)) return this.#cs.indexOfId(hashIdKey(Buffer.from(id, 'hex')));
    throw new OtiError('ERR_ARGUMENT', 'an entry id is "<lock>:<counter>" or 64 hex digits');
  }

  /** Last counter admitted for a lock (durable or about to be), -1 if none. */
  async lastCounter(lock: string): Promise<number> {
    const known = this.#lockCtr.get(lock);
    if (known !== undefined) return known;
    // One store lookup per lock, shared by every append that arrives while it runs.
    let loading = this.#lockCtrLoading.get(lock);
    if (loading === undefined) {
      loading = this.#cs.lastLockCounter(lock).then((last) => {
        this.#lockCtrLoading.delete(lock);
        if (!this.#lockCtr.has(lock)) this.#lockCtr.set(lock, last?.ctr ?? -1);
      });
      this.#lockCtrLoading.set(lock, loading);
    }
    await loading;
    return this.#lockCtr.get(lock)!;
  }

  /** Seals what is pending and waits until every admitted entry is durable. */
  async flush(): Promise<void> {
    while (this.#pending.length > 0 || this.#writing !== undefined) {
      if (this.#writing !== undefined) await this.#writing;
      else this.#seal();
    }
    if (this.#failed !== undefined) throw this.#failed;
  }

  /** Stops taking appends, makes every admitted entry durable, then releases the chain. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      if (this.#timer !== undefined) clearTimeout(this.#timer);
    }
  }

  #assertWritable(): void {
    if (this.#closed) throw new OtiError('ERR_APPEND_ABORTED', `chain ${this.origin} is closed`);
    if (this.#failed !== undefined) throw new OtiError('ERR_APPEND_ABORTED', `chain ${this.origin} failed earlier: ${this.#failed.message}`, undefined, { cause: this.#failed });
  }

  #lockMember(lock: string): NonNullable<ReturnType<Roster['get']>> {
    // Looked up for every event: from a map by lock id while the roster stays the same.
    if (this.#membersVersion !== this.#roster.version) {
      this.#members.clear();
      this.#membersVersion = this.#roster.version;
    }
    let member = this.#members.get(lock);
    if (member === undefined) {
      member = this.#roster.get('lock', lock);
      if (member !== undefined) this.#members.set(lock, member);
    }
    if (member === undefined || member.revoked) throw new OtiError('ERR_LOCK_UNKNOWN', `lock ${lock} is not enrolled in site ${this.#opts.trust.siteId}`, { lock });
    return member;
  }

  /** Synchronous checks against the admitted state; updates it. Throws without side effects. */
  #admit(slot: Slot): void {
    const body = slot.entry?.body;
    if (this.#admittedSize === 0) {
      const s = body?.kind === 'roster' ? body.signed.statement : undefined;
      if (s?.op !== 'enroll' || s.role !== 'gateway' || s.id !== this.#opts.gatewayId || !bytesEqual(s.key, this.#signer.publicKey)) {
        throw new OtiError('ERR_ENTRY_INVALID', 'the first entry of a chain must enrol this gateway and its key');
      }
    }
    const lock = slot.lock;
    if (lock !== undefined) {
      const ctr = slot.ctr;
      const member = this.#lockMember(lock);
      if (!slot.signed && !member.unsigned) throw new OtiError('ERR_LOCK_SIGNATURE', `lock ${lock} must sign its events`, { lock });
      const last = this.#lockCtr.get(lock) ?? -1;
      if (ctr <= last) throw new OtiError('ERR_ENTRY_INVALID', `counter ${ctr} of lock ${lock} is not above the last stored ${last}`, { lock, ctr, last });
      this.#lockCtr.set(lock, ctr);
      return;
    }
    switch (body?.kind) {
      case 'roster': {
        checkSigned(body.signed, this.#opts.trust);
        const s = body.signed.statement;
        if (s.role === 'gateway' && s.id === this.#opts.gatewayId && s.op !== 'enroll') {
          throw new OtiError('ERR_ROSTER', 'a rotation or revocation of this gateway’s own key must go through its own key hand-over');
        }
        // A lock this roster never held has no event in this chain (an event needs its lock
        // enrolled, and a revoked lock stays in the roster): its first event needs no look-up
        // of a last counter in the store.
        const fresh = s.role === 'lock' && this.#roster.get('lock', s.id) === undefined;
        this.#roster.apply(body.signed);
        if (fresh && !this.#lockCtr.has(s.id)) this.#lockCtr.set(s.id, -1);
        return;
      }
      default:
        return;
    }
  }

  /**
   * Seals the pending block at once when it is full, else when its oldest entry has waited
   * sealDelayMs: entries that arrived while the block before was written have waited for that
   * write already, and are sealed as soon as it ends if that was long enough.
   */
  #schedule(): void {
    if (this.#writing !== undefined) return;
    if (this.#pending.length >= this.#maxBlock) {
      this.#seal();
    } else if (this.#timer === undefined) {
      const waited = this.#now() - this.#pendingSince;
      if (this.#sealDelayMs > 0 && waited >= this.#sealDelayMs) {
        this.#seal();
        return;
      }
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#writing === undefined) this.#seal();
      }, Math.min(this.#sealDelayMs, Math.max(0, this.#sealDelayMs - waited)));
    }
  }

  #seal(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pending.length === 0) return;
    const batch = this.#pending.splice(0, this.#maxBlock);
    // What is left of a full block waits from now on (it is sealed at once if it is full again).
    if (this.#pending.length > 0) this.#pendingSince = this.#now();
    this.#writing = this.#write(batch).finally(() => {
      this.#writing = undefined;
      if (this.#pending.length > 0 && this.#failed === undefined) this.#schedule();
    });
  }

  async #write(batch: Slot[]): Promise<void> {
    const cs = this.#cs;
    const head = cs.head;
    const first = head.size;
    const n = head.n + 1;
    const ops: BatchOp[] = [];
    const range = CompactRange.fromPeaks(head.size, [...head.peaks]);
    const leaves: Uint8Array[] = [];
    const rosterChanged = new Set<string>();
    const onNode = (level: number, index: number, hash: Uint8Array): void => {
      const op = cs.nodeOp(level, index, hash);
      if (op !== undefined) ops.push(op);
    };
    try {
      for (const p of batch) {
        const leaf = leafHash(p.bytes);
        leaves.push(leaf);
        range.append(leaf, onNode);
        const body = p.entry?.body;
        if (body?.kind === 'roster') {
          rosterChanged.add(`${body.signed.statement.role}/${body.signed.statement.id}`);
          this.#sealedRoster.apply(body.signed);
        }
      }
      const tail = cs.entryOps(first, batch.map((p) => p.bytes), ops);
      // The entry-id records of lock events in one buffer (PackedPuts, as a replica's): no
      // operation, key and value per entry kept alive until the block is durable.
      const puts = new PackedPuts();
      ops.push({ type: 'puts', puts });
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!;
        if (p.lock !== undefined) cs.lockIdPut(puts, p.lock, p.ctr, first + i);
        else ops.push(cs.hashIdOp(leaves[i]!, first + i));
      }
      for (const k of rosterChanged) {
        const [role, id] = k.split('/') as ['gateway' | 'lock', string];
        ops.push(cs.rosterOp(this.#sealedRoster.get(role, id)!));
      }
      const root = range.root();
      const header: BlockHeader = { chain: this.origin, n, prev: this.#lastBlockHash, first, count: batch.length, root, time: this.#now() };
      const headerBytes = encodeBlockHeader(header);
      const hash = blockHash(headerBytes);
      const rosterTree = rosterChanged.size > 0 ? new RosterTree(this.#sealedRoster) : this.#rosterTree;
      const roster = await rosterTree.digest();
      const checkpoint = signCheckpoint({ origin: this.origin, size: range.size, root, block: n, blockHash: hash, roster }, this.#signer, this.origin);
      ops.push(cs.blockOp(n, headerBytes, checkpoint));
      const newHead: ChainHead = { n, size: range.size, peaks: [...range.peaks] };
      ops.push(cs.headOp(newHead));
      await this.#opts.store.write(ops);
      cs.commit(newHead, tail);
      this.#lastBlockHash = hash;
      this.#checkpoint = checkpoint;
      this.#rosterTree = rosterTree;
      const results = batch.map((p, i) => {
        const r = new Appended(first + i, leaves[i]!, n, p);
        settle(p, r);
        return r;
      });
      this.emit('block', { header, checkpoint, results });
    } catch (e) {
      // The admitted state ran ahead of the store; the chain cannot go on from here safely. (A
      // full disk does not come here: the store waits for space and writes the block then,
      // unless told to stop waiting, which ends the chain like close().) Whatever the cause,
      // the entries were not made durable: ERR_APPEND_ABORTED, which asks the lock to keep its
      // event and send it again, with the cause's code in the message.
      const why = isOtiError(e) ? `${e.message} [${e.code}]` : (e as Error).message;
      const err = new OtiError('ERR_APPEND_ABORTED', `writing block ${n} failed: ${why}`, { block: n, ...(isOtiError(e) ? { cause: e.code } : {}) }, { cause: e });
      const gaveUp = isOtiError(e, 'ERR_DISK_FULL');
      if (gaveUp) this.#closed = true;
      else this.#failed = err;
      for (const p of batch) settle(p, err);
      for (const p of this.#pending.splice(0)) settle(p, err);
      if (!gaveUp) this.emit('error', err);
    }
  }
}
