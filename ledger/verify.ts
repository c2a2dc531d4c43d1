/**
 * Verification of a chain, a range of blocks, or one block at a time as they arrive from a peer.
 *
 * ChainVerifier holds the state a verifier needs between blocks (the compact Merkle range, the
 * hash of the last block, the roster, the last counter per lock) and checks each block fully:
 * every entry decodes strictly and fits the chain's rules, the entries hash to the block's root,
 * the block links to the previous one, and the block's checkpoint describes it and carries the
 * gateway's signature. Lock signatures are collected and checked in batches, on worker threads
 * when a SignaturePool is given; results are awaited with a bounded number of batches in flight,
 * so memory stays bounded however long the chain is.
 */
import { OtiError, isOtiError } from './base/errors.js';
import { verify as nodeVerify, type Ed25519Verify } from './crypto.js';
import { decodeEntry, latin1, lockEventScan, scanLockEventEntryAt, type Entry } from './entry.js';
import { leafHash, CompactRange } from './merkle.js';
import { blockHash, decodeBlockHeader, ZERO_HASH } from './block.js';
import { verifyCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { checkSigned, Roster, type Member, type SiteTrust } from './roster.js';
import { SigPacker, type SignaturePool } from './sigpool.js';
import { verifyPacked } from './sigbatch.js';
import type { ChainReader, EntrySpans, StoredBlock } from './reader.js';
import { bytesEqual } from './base/bytes.js';
import { rebuildRange } from './chain.js';
import { RosterTree, type RosterDigest } from './roster-commitment.js';

const SIG_BATCH = 512;
/** Where the parts of the lock event being checked lie (scanLockEventEntry; filled and read without an await between). */
const SCAN = lockEventScan();

export interface VerifyOptions {
  readonly trust: SiteTrust;
  /** Checks lock signatures on worker threads; without it they are checked on this thread. */
  readonly pool?: SignaturePool;
  /** Ed25519 implementation for checks done on this thread (default ledger/ed25519.ts: libsodium or node:crypto). */
  readonly ed25519?: Ed25519Verify;
  /** Called after each block with the running totals. */
  readonly onProgress?: (p: VerifyProgress) => void;
  /**
   * Whether lock signatures are checked (default true). False holds lock events to every other
   * rule (decoding, enrolment, counters, unsigned only where allowed) and leaves their Ed25519
   * signatures to a later pass. 'collect' does the same and packs each signature (the lock's key
   * as of the entry, the Sig_structure, the signature) for the caller to take with
   * takeSignatures(): ChainReplica's audit (ledger/peer.ts).
   */
  readonly lockSignatures?: boolean | 'collect';
  /**
   * Lock signatures per batch sent to the pool (default 512). Smaller batches spread one block's
   * signatures over every worker, for a caller that waits on each block (the archive).
   */
  readonly signatureBatch?: number;
}

export interface VerifyProgress {
  readonly blocks: number;
  readonly entries: number;
  readonly size: number;
  readonly lockSignatures: number;
}

/** What addBlock() worked out for each entry of the block: its leaf hash and its decoding. */
export interface CheckedBlock {
  readonly leaves: readonly Uint8Array[];
  readonly entries: readonly Entry[];
}

const NOTHING_COLLECTED: CheckedBlock = Object.freeze({ leaves: Object.freeze([]), entries: Object.freeze([]) });

/** Called with each interior Merkle node completed (level >= 1), lowest first (CompactRange.append). */
export type OnNode = (level: number, index: number, hash: Uint8Array) => void;

/**
 * What a caller that stores the entries (ChainReplica) is told of each entry addBlock() checked,
 * in order, instead of collecting decodings: a lock event is checked where it lies, without
 * building its decoding or keeping its leaf hash.
 */
export interface EntrySink {
  /**
   * Lock event `index` of lock `lock`, counter `ctr`; `idBytes`, when given, are the lock id's
   * bytes as the entry holds them (the UTF-8 of `lock`: ids are ASCII). Valid during the call.
   */
  lockEvent(index: number, lock: string, idBytes: Uint8Array | undefined, ctr: number): void;
  /** Any other entry, decoded, with its leaf hash. */
  entry(index: number, entry: Entry, leaf: Uint8Array): void;
}

/** What ChainVerifier keeps per lock: its last counter, and its roster member as of the roster's version. */
interface LockState {
  readonly name: string;
  /** The id's bytes as lock events hold it, once looked up by them (#lockAt). */
  bytes: Uint8Array | undefined;
  last: number;
  member: Member | undefined;
  rosterVersion: number;
}

export interface VerifyReport extends VerifyProgress {
  readonly origin: string;
  readonly root: Uint8Array;
  readonly unsignedEvents: number;
  readonly checkpoint: SignedCheckpoint | undefined;
}

/** Parses "oti/<site>/<gateway>". */
export function parseOrigin(origin: string): { siteId: string; gatewayId: string } {
  const m = /^oti\/([a-z0-9][a-z0-9._-]{0,63})\/([a-z0-9][a-z0-9._-]{0,63})$/.exec(origin);
  if (m === null) throw new OtiError('ERR_CHECKPOINT_FORMAT', `origin ${origin} is not oti/<site>/<gateway>`);
  return { siteId: m[1]!, gatewayId: m[2]! };
}

export class ChainVerifier {
  readonly origin: string;
  readonly gatewayId: string;
  readonly #opts: VerifyOptions;
  readonly #ed25519: Ed25519Verify;
  #range: CompactRange;
  #prevHash: Uint8Array;
  #nextBlock: number;
  #roster: Roster;
  /** Per lock id: the last counter seen, and its roster member as of the roster's version. */
  readonly #locks = new Map<string, LockState>();
  /**
   * The same states by a hash of the lock id's bytes, for lock events checked where they lie
   * (#addEntry): found by comparing bytes, without a string made per entry. One state per hash;
   * a lock whose hash is taken goes by its name.
   */
  readonly #locksByBytes = new Map<number, LockState>();
  /** Lock signatures not yet sent (or taken, lockSignatures 'collect'): packed as they come, with the entry index of each. */
  readonly #packer = new SigPacker();
  #indexes: number[] = [];
  /** Batches sent to the pool, oldest first, and whether each went to a worker (else the pool checked it here, at once). */
  readonly #inFlight: { done: Promise<void>; onWorker: boolean; settled: boolean }[] = [];
  /** How many of #inFlight went to a worker. */
  #onWorkers = 0;
  #blocks = 0;
  #entries = 0;
  #lockSignatures = 0;
  #unsigned = 0;
  #checkpoint: SignedCheckpoint | undefined;
  /** Whether an earlier checkpoint of this chain carried the roster commitment (later ones must too). */
  #rosterCommitted: boolean;
  /** The commitment of #roster, worked out when a checkpoint needs it; cleared when the roster changes. */
  #rosterDigest: RosterDigest | undefined;

  constructor(origin: string, opts: VerifyOptions, start?: { range: CompactRange; prevHash: Uint8Array; nextBlock: number; roster: Roster; rosterCommitted?: boolean }) {
    const { siteId, gatewayId } = parseOrigin(origin);
    if (siteId !== opts.trust.siteId) throw new OtiError('ERR_ROSTER', `chain ${origin} is not of site ${opts.trust.siteId}`);
    this.origin = origin;
    this.gatewayId = gatewayId;
    this.#opts = opts;
    this.#ed25519 = opts.ed25519 ?? nodeVerify;
    this.#range = start?.range.clone() ?? CompactRange.empty();
    this.#prevHash = start?.prevHash ?? ZERO_HASH;
    this.#nextBlock = start?.nextBlock ?? 0;
    this.#roster = start?.roster.clone() ?? new Roster();
    this.#rosterCommitted = start?.rosterCommitted ?? false;
  }

  get size(): number {
    return this.#range.size;
  }

  get roster(): Roster {
    return this.#roster;
  }

  /** Copies of the Merkle peaks of the entries checked so far (CompactRange.peaks). */
  get peaks(): readonly Uint8Array[] {
    return this.#range.peaks;
  }

  get progress(): VerifyProgress {
    return { blocks: this.#blocks, entries: this.#entries, size: this.#range.size, lockSignatures: this.#lockSignatures };
  }

  /**
   * Checks one block. Structural checks throw at once; lock signature failures surface from
   * this call or a later one, at the latest from finish(). Returns each entry's leaf hash and
   * decoding when `collect` is true; when it is false, nothing, and a block's decoded entries die
   * young instead of being kept to its end (whole-chain verification: a V8 heap about 4 MB
   * smaller); when it is an EntrySink, nothing, and the sink is told of each entry as it passes.
   * `onNode` is handed every interior Merkle node the block's entries complete (CompactRange.append),
   * for a caller that stores them: it need not hash them again. The entries come as an array or
   * as spans of the buffers read (ChainReader.entrySpans: no view per entry kept for the block).
   */
  async addBlock(headerBytes: Uint8Array, checkpoint: SignedCheckpoint, entries: readonly Uint8Array[] | EntrySpans, collect: boolean | EntrySink = true, onNode?: OnNode): Promise<CheckedBlock> {
    const spans = 'pos' in entries ? entries : undefined;
    const count = spans !== undefined ? spans.count : (entries as readonly Uint8Array[]).length;
    const h = decodeBlockHeader(headerBytes);
    const where = { origin: this.origin, block: h.n };
    if (h.chain !== this.origin) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} belongs to ${h.chain}, not ${this.origin}`, where);
    if (h.n !== this.#nextBlock) throw new OtiError('ERR_BLOCK_LINK', `expected block ${this.#nextBlock}, got ${h.n}`, where);
    if (!bytesEqual(h.prev, this.#prevHash)) throw new OtiError('ERR_BLOCK_LINK', `block ${h.n} does not link to the hash of block ${h.n - 1}`, where);
    if (h.first !== this.#range.size || h.count !== count) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} claims entries [${h.first}, +${h.count}) but ${count} entries follow position ${this.#range.size}`, where);
    // The checkpoint is signed by the gateway key in force when the block starts.
    const gw = this.#roster.get('gateway', this.gatewayId);
    const startKey = gw?.key;
    const checked: { leaves: Uint8Array[]; entries: Entry[] } | undefined = collect === true ? { leaves: [], entries: [] } : undefined;
    const sink = typeof collect === 'object' ? collect : undefined;
    if (spans !== undefined) {
      const { bufs, pos } = spans;
      for (let i = 0; i < count; i++) this.#addEntry(h.first + i, bufs[pos[3 * i]!]!, pos[3 * i + 1]!, pos[3 * i + 2]!, checked, onNode, sink);
    } else {
      const list = entries as readonly Uint8Array[];
      for (let i = 0; i < count; i++) this.#addEntry(h.first + i, list[i]!, 0, list[i]!.length, checked, onNode, sink);
    }
    const root = this.#range.root();
    if (!bytesEqual(root, h.root)) throw new OtiError('ERR_BLOCK_INVALID', `the entries of block ${h.n} do not hash to its root`, where);
    const hash = blockHash(headerBytes);
    if (checkpoint.origin !== this.origin || checkpoint.size !== this.#range.size || !bytesEqual(checkpoint.root, root) || checkpoint.block !== h.n || !bytesEqual(checkpoint.blockHash, hash)) {
      throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the checkpoint of block ${h.n} does not describe it`, where);
    }
    const key = startKey ?? this.#roster.get('gateway', this.gatewayId)?.key;
    if (key === undefined || (gw !== undefined && gw.revoked)) throw new OtiError('ERR_ROSTER', `gateway ${this.gatewayId} is not enrolled at block ${h.n}`, where);
    verifyCheckpoint(checkpoint, this.origin, key, this.#ed25519);
    await this.#checkRosterCommitment(checkpoint, where);
    this.#prevHash = hash;
    this.#nextBlock = h.n + 1;
    this.#blocks++;
    this.#checkpoint = checkpoint;
    await this.#drain(false);
    this.#opts.onProgress?.(this.progress);
    return checked ?? NOTHING_COLLECTED;
  }

  /**
   * A checkpoint's `oti-roster` line must name the roster after its block; once a chain's
   * checkpoints carry it, every later one must (docs/PROTOCOL.md §Roster commitment).
   */
  async #checkRosterCommitment(cp: SignedCheckpoint, where: { origin: string; block: number }): Promise<void> {
    if (cp.roster === undefined) {
      if (this.#rosterCommitted) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the checkpoint of block ${cp.block} drops the roster commitment earlier checkpoints of ${this.origin} carry`, where);
      return;
    }
    this.#rosterDigest ??= await new RosterTree(this.#roster).digest();
    if (cp.roster.size !== this.#rosterDigest.size || !bytesEqual(cp.roster.root, this.#rosterDigest.root)) {
      throw new OtiError('ERR_ROSTER_COMMITMENT', `the checkpoint of block ${cp.block} commits to another roster than the chain holds after it`, where);
    }
    this.#rosterCommitted = true;
  }

  /** lockSignatures 'collect': the lock signatures packed so far (SigPacker layout), not taken yet. */
  get collected(): number {
    return this.#opts.lockSignatures === 'collect' ? this.#indexes.length : 0;
  }

  /**
   * lockSignatures 'collect': the lock signatures packed since the last call, in chain order
   * (SigPacker layout), with the entry index of each; the verifier forgets them.
   */
  takeSignatures(): { packed: Uint8Array; indexes: number[] } {
    const indexes = this.#indexes;
    this.#indexes = [];
    return { packed: this.#packer.take(), indexes };
  }

  /** Waits for every outstanding signature check; throws the first failure. */
  async finish(): Promise<VerifyReport> {
    await this.#drain(true);
    return { origin: this.origin, ...this.progress, root: this.#range.root(), unsignedEvents: this.#unsigned, checkpoint: this.#checkpoint };
  }

  /** Checks entry `index`, the bytes b[s, e). */
  #addEntry(index: number, b: Uint8Array, s: number, e: number, out: { leaves: Uint8Array[]; entries: Entry[] } | undefined, onNode: OnNode | undefined, sink: EntrySink | undefined): void {
    // Whole-chain verification and a replica's (no decoding collected): a lock event in its one
    // deterministic encoding is checked from where its parts lie, without building its decoding.
    // Anything else, and every entry whose decoding is collected, goes through decodeEntry, which
    // accepts exactly the same lock events (ledger/entry.ts) and gives the coded error for the rest.
    if (out === undefined && index > 0 && scanLockEventEntryAt(b, s, e, SCAN)) {
      const state = this.#lockAt(b, SCAN.lockStart, SCAN.lockEnd);
      const member = this.#lockEvent(index, state, SCAN.ctr, SCAN.sigStart < 0);
      if (member !== undefined) {
        this.#packer.addCoseAt(member.key, b, SCAN.eventStart, SCAN.eventEnd, SCAN.sigStart);
        this.#packed(index);
      }
      this.#range.appendEntryAt(b, s, e, onNode);
      this.#entries++;
      sink?.lockEvent(index, state.name, state.bytes, SCAN.ctr);
      return;
    }
    const bytes = s === 0 && e === b.length ? b : b.subarray(s, e);
    let entry: Entry;
    try {
      entry = decodeEntry(bytes);
    } catch (e) {
      if (isOtiError(e)) throw new OtiError(e.code, `entry ${index} of ${this.origin}: ${e.message}`, { ...e.details, index }, { cause: e });
      throw e;
    }
    const body = entry.body;
    if (index === 0) {
      const s = body.kind === 'roster' ? body.signed.statement : undefined;
      if (s?.op !== 'enroll' || s.role !== 'gateway' || s.id !== this.gatewayId) throw this.#invalid(index, `the first entry must enrol gateway ${this.gatewayId}`);
    }
    switch (body.kind) {
      case 'roster':
        try {
          checkSigned(body.signed, this.#opts.trust, this.#ed25519);
          this.#roster.apply(body.signed);
          this.#rosterDigest = undefined;
        } catch (e) {
          if (isOtiError(e)) throw new OtiError(e.code, `entry ${index} of ${this.origin}: ${e.message}`, { ...e.details, index }, { cause: e });
          throw e;
        }
        break;
      case 'lock-event': {
        const member = this.#lockEvent(index, this.#lock(body.event.lock), body.event.ctr, body.prov === 'unsigned');
        if (member !== undefined && body.prov === 'lock-signed') {
          this.#packer.addCose(member.key, body.parsed.payload, body.parsed.signature);
          this.#packed(index);
        }
        break;
      }
      default:
        break;
    }
    const leaf = leafHash(bytes);
    this.#range.append(leaf, onNode);
    out?.leaves.push(leaf);
    out?.entries.push(entry);
    this.#entries++;
    if (sink !== undefined) {
      if (body.kind === 'lock-event') sink.lockEvent(index, body.event.lock, undefined, body.event.ctr);
      else sink.entry(index, entry, leaf);
    }
  }

  #invalid(index: number, why: string, code: 'ERR_ENTRY_INVALID' | 'ERR_LOCK_UNKNOWN' | 'ERR_LOCK_SIGNATURE' = 'ERR_ENTRY_INVALID'): OtiError {
    return new OtiError(code, `entry ${index} of ${this.origin}: ${why}`, { origin: this.origin, index });
  }

  /**
   * The chain's rules for lock event `index`: its lock is enrolled, its counter increases, it is
   * unsigned only where its enrolment allows. Returns the lock's member when its signature is to
   * be checked (the caller packs it; counted here), else undefined.
   */
  #lockEvent(index: number, state: LockState, ctr: number, unsigned: boolean): Member | undefined {
    const lock = state.name;
    if (state.rosterVersion !== this.#roster.version) {
      state.member = this.#roster.get('lock', lock);
      state.rosterVersion = this.#roster.version;
    }
    const member = state.member;
    if (member === undefined || member.revoked) throw this.#invalid(index, `lock ${lock} is not enrolled here`, 'ERR_LOCK_UNKNOWN');
    if (ctr <= state.last) throw this.#invalid(index, `counter ${ctr} of lock ${lock} does not increase (last ${state.last})`);
    state.last = ctr;
    if (unsigned) {
      if (!member.unsigned) throw this.#invalid(index, `lock ${lock} may not send unsigned events`, 'ERR_LOCK_SIGNATURE');
      this.#unsigned++;
      return undefined;
    }
    return this.#opts.lockSignatures === false ? undefined : member;
  }

  /** The state of lock `name` (made when first seen). */
  #lock(name: string): LockState {
    let state = this.#locks.get(name);
    if (state === undefined) {
      state = { name, bytes: undefined, last: -1, member: undefined, rosterVersion: -1 };
      this.#locks.set(name, state);
    }
    return state;
  }

  /** The state of the lock whose id is the text b[s, e) (as latin1() reads it), found by its bytes. */
  #lockAt(b: Uint8Array, s: number, e: number): LockState {
    let h = 0x811c9dc5;
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    const known = this.#locksByBytes.get(h);
    if (known?.bytes !== undefined && known.bytes.length === e - s) {
      let same = true;
      for (let i = 0; i < known.bytes.length && same; i++) same = known.bytes[i] === b[s + i];
      if (same) return known;
    }
    const state = this.#lock(latin1(b, s, e));
    // The bytes the name was read from: latin1() of them is the name, whatever they hold.
    if (known === undefined && state.bytes === undefined) {
      state.bytes = b.slice(s, e);
      this.#locksByBytes.set(h, state);
    }
    return state;
  }

  /** The caller packed the lock signature of entry `index`: sends the batch once it is full. */
  #packed(index: number): void {
    this.#indexes.push(index);
    this.#lockSignatures++;
    if (this.#indexes.length >= (this.#opts.signatureBatch ?? SIG_BATCH)) this.#sendBatch();
  }

  #sendBatch(): void {
    const indexes = this.#indexes;
    // Collected: the caller takes them (takeSignatures()).
    if (indexes.length === 0 || this.#opts.lockSignatures === 'collect') return;
    this.#indexes = [];
    const packed = this.#packer.take(this.#opts.pool?.sharesWithCaller === true);
    const check = (results: Uint8Array): void => {
      const bad = results.findIndex((r) => r !== 1);
      if (bad >= 0) throw new OtiError('ERR_LOCK_SIGNATURE', `entry ${indexes[bad]} of ${this.origin}: the lock signature does not verify`, { origin: this.origin, index: indexes[bad] });
    };
    if (this.#opts.pool === undefined) {
      check(verifyPacked(packed, this.#ed25519));
      return;
    }
    const pool = this.#opts.pool;
    const inline = pool.callerBatches;
    const done = pool.verifyPackedBatch(packed).then((results) => {
      // Checked: a batch in shared memory can be packed into again (SigPacker.take(true)).
      this.#packer.release(packed);
      check(results);
    });
    done.catch(() => undefined); // observed by #drain
    // A pool checks a batch on this thread (its caller's share, or inline) before the call
    // returns: that batch is settled already and is not waited for below.
    const onWorker = pool.callerBatches === inline;
    if (onWorker) this.#onWorkers++;
    const batch = { done, onWorker, settled: !onWorker };
    if (onWorker) done.then(() => (batch.settled = true), () => (batch.settled = true));
    this.#inFlight.push(batch);
  }

  async #drain(all: boolean): Promise<void> {
    if (all) this.#sendBatch();
    // Up to four batches per worker (six with a pool that shares with this thread, which keeps
    // about three per worker waiting: `oti verify`'s callerAfter), at most a few hundred kB each,
    // counting only those sent to workers: this thread goes on reading, hashing and taking its
    // share of the checks while the workers are busy. Counting the batches checked here too
    // (settled, but kept in order behind a worker's) made this thread wait for the oldest
    // worker batch while it could have worked: about 2 % of a verification's time with one
    // worker (docs/DECISIONS.md §Issue 22, verify and sync audit). Results are observed oldest
    // first, so the failure reported is the first in chain order among those sent.
    const pool = this.#opts.pool;
    const limit = all ? 0 : (pool?.sharesWithCaller === true ? 6 : 4) * (pool?.size ?? 0);
    while (this.#onWorkers > limit || (all && this.#inFlight.length > 0)) {
      const b = this.#inFlight.shift()!;
      if (b.onWorker) this.#onWorkers--;
      // Rather than wait for a worker, check here a batch a worker holds and has not started
      // (a pool that shares with this thread; SignaturePool.takeBack), letting the event loop
      // turn after each so that results that came meanwhile are seen: at the end of a chain the
      // worker's queue no longer outlasts this thread's work.
      while (!b.settled && pool?.sharesWithCaller === true && pool.takeBack()) await new Promise<void>((r) => setImmediate(r));
      await b.done;
    }
    // Batches checked here that are at the head are settled: observed now, without waiting.
    while (this.#inFlight.length > 0 && !this.#inFlight[0]!.onWorker) await this.#inFlight.shift()!.done;
  }
}

export interface ChainRangeOptions extends VerifyOptions {
  /** First block to check (default 0); the state before it is rebuilt from the store. */
  readonly fromBlock?: number;
  /** Last block to check (default the head). */
  readonly toBlock?: number;
}

/**
 * Verifies a stored chain, whole or a range of blocks, streaming block by block. For a range the
 * state before it comes from the store: the subtree hashes (checked against the previous block's
 * signed root), the previous block's hash, and the roster entries before the range; counters
 * are checked for increase within the range.
 */
export async function verifyChain(cs: ChainReader, opts: ChainRangeOptions): Promise<VerifyReport> {
  const from = opts.fromBlock ?? 0;
  const to = opts.toBlock ?? cs.head.n;
  const verifier = await verifierAt(cs, opts, from);
  // The next block's record and entries are read (on LevelDB's threads) while this one is checked.
  const blocks = cs.blocks(from, to);
  // As spans of the chunks read where the reader has them: a block's entries as views, kept
  // alive while it is checked and the next is read, were most of what young-generation
  // collections copied (docs/DECISIONS.md §Issue 22, whole-chain verify: the baseline, and a
  // block's entries without views).
  const read = async (): Promise<{ block: StoredBlock; entries: readonly Uint8Array[] | EntrySpans } | undefined> => {
    const next = await blocks.next();
    if (next.done === true) return undefined;
    const h = next.value.header;
    const entries = cs.entrySpans !== undefined ? await cs.entrySpans(h.first, h.first + h.count) : await cs.entryRange(h.first, h.first + h.count);
    return { block: next.value, entries };
  };
  try {
    let ahead = read();
    for (;;) {
      const cur = await ahead;
      if (cur === undefined) break;
      ahead = read();
      // Observed when it is awaited; until then a failure of the read ahead must not go unhandled.
      ahead.catch(() => undefined);
      await verifier.addBlock(cur.block.headerBytes, cur.block.checkpoint, cur.entries, false);
    }
  } finally {
    await blocks.return(undefined);
  }
  if (verifier.progress.blocks !== to - from + 1) throw new OtiError('ERR_STORE_CORRUPT', `blocks ${from}..${to} of ${cs.origin} are not all stored`);
  return verifier.finish();
}

/**
 * A verifier ready to check a stored chain from block `from` on: for block 0 a fresh one; else
 * its state before that block comes from the store: the subtree hashes (checked against the
 * previous block's signed root), the previous block's hash, and the roster entries before it.
 */
export async function verifierAt(cs: ChainReader, opts: VerifyOptions, from: number): Promise<ChainVerifier> {
  if (from === 0) return new ChainVerifier(cs.origin, opts);
  const prev = await cs.block(from - 1);
  const range = await rebuildRange(cs, prev.header.first + prev.header.count);
  if (!bytesEqual(range.root(), prev.header.root)) throw new OtiError('ERR_BLOCK_INVALID', `stored subtree hashes do not give the root of block ${from - 1}`);
  const roster = new Roster();
  for await (const { bytes } of cs.entries(0, range.size)) {
    // Only roster entries matter here; they are rare, the rest is skipped without decoding.
    if (!isRosterEntry(bytes)) continue;
    const e = decodeEntry(bytes);
    if (e.body.kind === 'roster') {
      checkSigned(e.body.signed, opts.trust, opts.ed25519);
      roster.apply(e.body.signed);
    }
  }
  return new ChainVerifier(cs.origin, opts, { range, prevHash: blockHash(prev.headerBytes), nextBlock: from, roster, rosterCommitted: prev.checkpoint.roster !== undefined });
}

const ROSTER_MARKER = Buffer.from('kindfroster', 'latin1');
/** Cheap pre-filter: a roster entry's bytes contain the text key "kind" followed by "roster". */
export function isRosterEntry(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.length).includes(ROSTER_MARKER);
}
