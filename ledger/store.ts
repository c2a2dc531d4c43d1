/**
 * LevelDB storage for chains (level, with one sublevel per chain and per index).
 *
 * Layout of one chain (sublevel "c" + origin), every key binary and big-endian so that LevelDB's
 * order is numeric order:
 *   k  chunk number (u64)            -> CBOR array of up to 16 entry byte strings: entries
 *                                       [16c, 16c+16). Packing 16 entries per value keeps the
 *                                       write path at about one LevelDB operation per entry.
 *   n  level (u8) || index (u64)     -> 32-byte hash of a perfect subtree, for levels >= 4; lower
 *                                       levels are recomputed from one chunk when a proof needs them
 *   b  block number (u64)           -> CBOR { "header": bstr, "checkpoint": text }
 *   i  entry id key                  -> entry index (u64): lock events by (lock id, 0x00, ctr u64),
 *                                       other entries by 0x01 || leaf hash
 *   r  role "/" id                   -> CBOR roster member as of the head
 *   m  "head"                        -> CBOR { "n", "size", "peaks": [bstr] } as of the last block
 * Everything a block changes is written in one LevelDB batch with sync, so a block is durable as
 * a whole or not at all.
 *
 * A full disk (or quota) is not a failure of the store: a write that fails for lack of space
 * waits for space and is then made again (write() resolves only once it is durable), and so does
 * every write issued meanwhile. The store reports the wait as events ('disk-full' once, then
 * 'disk-space'), probes the folder with a bounded backoff (ledger/diskspace.ts), and once there
 * is room closes and reopens the database before writing again: after a failed write LevelDB
 * either refuses every later write (a failed sync is recorded as a background error, db_impl.cc
 * DBImpl::Write) or has part of a record in its log, which only a reopen (a new log file, the
 * old one replayed up to its last whole record) puts behind it. The same wait applies to
 * opening a store on a full disk when open() is asked to wait.
 */
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { encode, decode, decodeTrusted, fastEncode, type CborValue } from './base/cbor.js';
import { OtiError, isOtiError } from './base/errors.js';
import { sha256 } from './crypto.js';
import { leafHash, nodeHash, CompactRange } from './merkle.js';
import { decodeBlockHeader, type BlockHeader } from './block.js';
import { parseCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { asMap, bytes, uint, text, type CborMap } from './schema.js';
import type { Member } from './roster.js';
import { isDiskFull, probeSpace, spaceRetryDelay } from './diskspace.js';
import type { ChainHead, StoredBlock, ChainRole, ChainReader } from './reader.js';

export const CHUNK_BITS = 4;
export const CHUNK_SIZE = 1 << CHUNK_BITS;
/** Interior nodes at this level and above are stored; below it they are recomputed from a chunk. */
export const STORED_NODE_LEVEL = CHUNK_BITS;

type Bytes = Uint8Array;
// The sublevels are created with 'view' encodings; this alias is what the code uses.
type BinSub = AbstractSublevel<Level<Bytes, Bytes>, Uint8Array | Buffer | string, Bytes, Bytes>;

export type BatchOp =
  | { type: 'put'; sublevel: BinSub; key: Bytes; value: Bytes }
  | { type: 'del'; sublevel: BinSub; key: Bytes };

export type { ChainHead, StoredBlock, ChainRole, ChainReader };

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/**
 * LevelDB keeps every table file in its table cache memory-mapped, and counts them towards the
 * process's RSS once read. With LevelDB's defaults (1,000 open files of 2 MB) a store that is
 * read through (sync serving a peer, a whole-chain verify) ends up mapped whole: a 1 GB store is
 * 1 GB of RSS. LevelDB's smallest table cache (74 files, 64 of them tables) and smallest tables
 * (1 MiB) bound that to about 64 MB, at no measurable cost to append or verify rates
 * (bench:ledger: 147 -> 105-108 MB of mapped files while verifying a 1,000,000-entry chain).
 * docs/DECISIONS.md §Memory.
 */
export const STORE_TABLE_CACHE_FILES = 74;
export const STORE_TABLE_BYTES = 1024 * 1024;
/** The LevelDB options above, for anything that opens a store's folder with level directly. */
export const STORE_TABLE_OPTIONS = { maxOpenFiles: STORE_TABLE_CACHE_FILES, maxFileSize: STORE_TABLE_BYTES } as const;

/** 8-byte big-endian key for a non-negative safe integer. */
export function u64(n: number): Bytes {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(n / 0x100000000), 0);
  b.writeUInt32BE(n >>> 0, 4);
  return b;
}

export function readU64(b: Bytes): number {
  const v = Buffer.from(b.buffer, b.byteOffset, b.length).readBigUInt64BE(0);
  return Number(v);
}

export function lockIdKey(lock: string, ctr: number): Bytes {
  const n = Buffer.byteLength(lock, 'utf8');
  const b = Buffer.allocUnsafe(n + 9);
  b.write(lock, 0, 'utf8');
  b[n] = 0;
  b.writeUInt32BE(Math.floor(ctr / 0x100000000), n + 1);
  b.writeUInt32BE(ctr >>> 0, n + 5);
  return b;
}

export function hashIdKey(leaf: Bytes): Bytes {
  const b = Buffer.allocUnsafe(leaf.length + 1);
  b[0] = 1;
  b.set(leaf, 1);
  return b;
}

export interface StoreOpenOptions {
  /**
   * Wait for space when the disk is full at opening, instead of failing with ERR_DISK_FULL;
   * called once, with that error, when the wait begins.
   */
  readonly waitForSpace?: (e: OtiError) => void;
}

export interface StoreEvents {
  /** A write failed for lack of space: writes wait from now on (emitted once per episode). */
  'disk-full': [error: OtiError];
  /**
   * There is space again and the database was reopened: the waiting writes are made. (Had it
   * failed to reopen, every write fails from now on with ERR_STORE_CORRUPT.)
   */
  'disk-space': [];
}

/** Opens the database and hands out one ChainStore per chain origin. */
export class LedgerStore extends EventEmitter<StoreEvents> {
  readonly db: Level<Bytes, Bytes>;
  readonly path: string;
  readonly #chains: BinSub;
  readonly #evidence: BinSub;
  readonly #open = new Map<string, ChainStore>();
  /** Every sublevel handed out, by name: reopened with the database. */
  readonly #subs = new Map<string, BinSub>();
  /** Set while writes wait for disk space; resolves true once they may be made again. */
  #waiting: Promise<boolean> | undefined;
  #giveUp: OtiError | undefined;
  readonly #stop = new AbortController();
  /** Counts reopenings, so that a long reader can tell its iterators were closed under it. */
  #generation = 0;

  private constructor(db: Level<Bytes, Bytes>, path: string) {
    super();
    this.db = db;
    this.path = path;
    this.#chains = this.sub(['chains']);
    this.#evidence = this.sub(['evidence']);
  }

  /**
   * Opens (creating it, mode 0700, if needed) the database at `path`. A full disk fails with
   * ERR_DISK_FULL, or waits for space with `opts.waitForSpace`; any other failure is
   * ERR_STORE_CORRUPT.
   */
  static async open(path: string, opts: StoreOpenOptions = {}): Promise<LedgerStore> {
    const db = new Level<Bytes, Bytes>(path, { ...VIEW, ...STORE_TABLE_OPTIONS });
    let attempt = 0;
    for (;;) {
      try {
        // classic-level would create it (and its parents, as here) 0755; the ledger is as private
        // as the data folder around it.
        await mkdir(path, { recursive: true, mode: 0o700 });
        await db.open();
        return new LedgerStore(db, path);
      } catch (e) {
        const cause = (e as { cause?: { message?: string } }).cause;
        const why = cause?.message ?? (e as Error).message;
        if (!(await isDiskFull(e, dirname(path)))) throw new OtiError('ERR_STORE_CORRUPT', `cannot open the ledger database at ${path}: ${why}`, { path }, { cause: e });
        const full = diskFullError(path, why, e);
        if (opts.waitForSpace === undefined) throw full;
        if (attempt === 0) opts.waitForSpace(full);
        while (!(await waitForSpace(dirname(path), attempt))) attempt++;
        attempt++;
      }
    }
  }

  /** True while writes wait for disk space. */
  get waitingForSpace(): boolean {
    return this.#waiting !== undefined;
  }

  /** How many times the database was reopened (after a full disk); iterators opened before are closed. */
  get generation(): number {
    return this.#generation;
  }

  /** The chain store for `origin`; registers the chain (role self or peer) on first use. */
  async chain(origin: string, role: ChainRole): Promise<ChainStore> {
    let cs = this.#open.get(origin);
    if (cs === undefined) {
      const key = Buffer.from(origin, 'utf8');
      const existing = await named(`the registration of chain ${origin}`, () => this.#chains.get(key));
      if (existing === undefined) {
        await this.write([{ type: 'put', sublevel: this.#chains, key, value: encode({ role }) }]);
      } else {
        const had = asMap(decode(existing, 64), 'chains', ['role'])['role'];
        if (had !== role) throw new OtiError('ERR_CHAIN_READ_ONLY', `chain ${origin} is stored as a ${String(had)} chain, not ${role}`);
      }
      cs = new ChainStore(this, origin, role);
      await cs.load();
      this.#open.set(origin, cs);
    }
    return cs;
  }

  listChains(): Promise<{ origin: string; role: ChainRole }[]> {
    return named(`the list of chains in ${this.path}`, async () => {
      const out: { origin: string; role: ChainRole }[] = [];
      for await (const [k, v] of this.#chains.iterator()) {
        out.push({ origin: Buffer.from(k).toString('utf8'), role: asMap(decode(v, 64), 'chains', ['role'])['role'] as ChainRole });
      }
      return out;
    });
  }

  sub(name: string[]): BinSub {
    const key = JSON.stringify(name);
    let s = this.#subs.get(key);
    if (s === undefined) {
      s = this.db.sublevel(name, VIEW) as unknown as BinSub;
      this.#subs.set(key, s);
    }
    return s;
  }

  /**
   * Writes the operations atomically and durably (one LevelDB write batch, sync). A chained
   * batch is used because classic-level fills its native write batch op by op, which is several
   * times cheaper than the array form for the ~1,000 operations of a full block.
   */
  async write(ops: readonly BatchOp[]): Promise<void> {
    for (;;) {
      if (this.#waiting !== undefined) await this.#waiting;
      if (this.#giveUp !== undefined) throw this.#giveUp;
      if (this.db.status !== 'open') throw new OtiError('ERR_STORE_CLOSED', 'the ledger database is not open');
      try {
        await this.#writeBatch(ops);
        return;
      } catch (e) {
        if (this.#waiting !== undefined) {
          // Another write found the disk full meanwhile: wait with it, then try again.
          await this.#waiting;
          continue;
        }
        // Set at once, before the classification awaits anything, so that no other write goes
        // to a log that may now hold part of this record.
        this.#waiting = this.#afterFailedWrite(e);
        if (!(await this.#waiting)) throw this.#giveUp ?? e;
      }
    }
  }

  /**
   * After a failed write: false when the disk is not full (the write fails as it did); else
   * waits until there is space and the database has been reopened, and resolves true (or
   * false once stopWaiting() gave up). Never rejects.
   */
  async #afterFailedWrite(e: unknown): Promise<boolean> {
    const dir = dirname(this.path);
    try {
      if (!(await isDiskFull(e, dir))) return false;
      this.emit('disk-full', diskFullError(this.path, (e as Error).message, e));
      for (let attempt = 0; ; attempt++) {
        const space = await waitForSpace(dir, attempt, this.#stop.signal);
        if (this.#giveUp !== undefined) return false;
        if (space && (await this.#reopen())) break;
        if (this.#giveUp !== undefined) return false;
      }
      this.emit('disk-space');
      return true;
    } catch (err) {
      this.#fail(err);
      return false;
    } finally {
      this.#waiting = undefined;
    }
  }

  /** Closes and reopens the database and its sublevels; false when the disk is still too full to open it. */
  async #reopen(): Promise<boolean> {
    if (this.db.status === 'open') await this.db.close();
    try {
      const opening = this.db.open();
      // Opened along with the database, so that their reads wait for it instead of failing.
      const subs = [...this.#subs.values()].map((s) => s.open());
      await opening;
      await Promise.all(subs);
      this.#generation++;
      return true;
    } catch (e) {
      if (await isDiskFull(e, dirname(this.path))) return false;
      this.#fail(e);
      return false;
    }
  }

  /** The database could not be brought back after a full disk: every write fails from now on. */
  #fail(e: unknown): void {
    const err = new OtiError('ERR_STORE_CORRUPT', `cannot reopen the ledger database at ${this.path} after the disk was full: ${(e as Error).message}`, { path: this.path }, { cause: e });
    this.#giveUp ??= err;
  }

  /**
   * Stops waiting for disk space (the gateway is stopping): writes that wait, and every later
   * one, fail with ERR_DISK_FULL; nothing they held was made durable.
   */
  stopWaiting(): void {
    if (this.#waiting === undefined) return;
    this.#giveUp ??= new OtiError('ERR_DISK_FULL', `the disk holding ${this.path} is still full; gave up waiting for space`, { path: this.path });
    this.#stop.abort();
  }

  async #writeBatch(ops: readonly BatchOp[]): Promise<void> {
    // Keys are prefixed here with the sublevel's own prefixKey() and written to the root
    // database: the same bytes as a put through the sublevel, at about a quarter of the cost
    // per operation (abstract-level's sublevel option re-validates and re-encodes each one).
    const batch = this.db.batch();
    for (const op of ops) {
      const key = op.sublevel.prefixKey(op.key, 'view');
      if (op.type === 'put') batch.put(key, op.value);
      else batch.del(key);
    }
    await batch.write({ sync: true });
  }

  /** Stores an evidence record (equivocation); idempotent. Returns its id (hex SHA-256). */
  async recordEvidence(kind: string, record: Bytes): Promise<string> {
    const id = Buffer.from(sha256(record)).toString('hex');
    await this.write([{ type: 'put', sublevel: this.#evidence, key: Buffer.from(`${kind}/${id}`, 'utf8'), value: record }]);
    return id;
  }

  async listEvidence(): Promise<{ key: string; record: Bytes }[]> {
    const out: { key: string; record: Bytes }[] = [];
    for await (const [k, v] of this.#evidence.iterator()) out.push({ key: Buffer.from(k).toString('utf8'), record: v });
    return out;
  }

  async close(): Promise<void> {
    this.stopWaiting();
    this.#open.clear();
    await this.db.close();
  }
}

function diskFullError(path: string, why: string, cause: unknown): OtiError {
  return new OtiError('ERR_DISK_FULL', `the disk holding the ledger ${path} is full (or over quota): ${why}; writes wait until there is space again`, { path }, { cause });
}

/**
 * Sleeps the backoff for `attempt`, then probes the folder: true when it takes writes again,
 * false when it does not yet or `signal` ended the wait.
 */
async function waitForSpace(dir: string, attempt: number, signal?: AbortSignal): Promise<boolean> {
  try {
    await sleep(spaceRetryDelay(attempt), undefined, signal !== undefined ? { signal } : {});
  } catch {
    return false;
  }
  return probeSpace(dir).catch(() => false);
}

/**
 * Reads and writes the stored parts of one chain. It knows nothing of signatures; Chain (our own
 * chain) and the peer-sync code decide what is valid before they hand it operations to write.
 */
export class ChainStore implements ChainReader {
  readonly origin: string;
  readonly role: ChainRole;
  readonly store: LedgerStore;
  readonly chunks: BinSub;
  readonly nodes: BinSub;
  /** Sublevel 'b' (blocks() is the read of it). */
  readonly blockRecords: BinSub;
  readonly ids: BinSub;
  readonly roster: BinSub;
  readonly meta: BinSub;
  #head: ChainHead = { n: -1, size: 0, peaks: [] };
  /** Entries of the last, not yet full chunk, as stored; rewritten with the next block. */
  #tailChunk: Bytes[] = [];
  readonly #chunkCache = new Map<number, Bytes[]>();
  /** Perfect-subtree hashes by "level/index", least recently used first (NODE_CACHE_SIZE). */
  readonly #nodeCache = new Map<string, Uint8Array>();

  constructor(store: LedgerStore, origin: string, role: ChainRole) {
    this.store = store;
    this.origin = origin;
    this.role = role;
    const base = ['c', origin];
    this.chunks = store.sub([...base, 'k']);
    this.nodes = store.sub([...base, 'n']);
    this.blockRecords = store.sub([...base, 'b']);
    this.ids = store.sub([...base, 'i']);
    this.roster = store.sub([...base, 'r']);
    this.meta = store.sub([...base, 'm']);
  }

  get head(): ChainHead {
    return this.#head;
  }

  get tailChunk(): readonly Bytes[] {
    return this.#tailChunk;
  }

  async load(): Promise<void> {
    const h = await named(`the head of ${this.origin}`, () => this.meta.get(Buffer.from('head')));
    if (h === undefined) {
      this.#head = { n: -1, size: 0, peaks: [] };
      this.#tailChunk = [];
      return;
    }
    const m = asMap(decodeTrusted(h) as CborValue, 'head', ['n', 'size', 'peaks']);
    const peaks = m['peaks'];
    if (!Array.isArray(peaks) || !peaks.every((p) => p instanceof Uint8Array && p.length === 32)) throw new OtiError('ERR_STORE_CORRUPT', `head of ${this.origin} is malformed`);
    this.#head = { n: uint(m, 'n', 'head'), size: uint(m, 'size', 'head'), peaks: peaks as Uint8Array[] };
    CompactRange.fromPeaks(this.#head.size, this.#head.peaks as Uint8Array[]);
    const c = Math.floor(this.#head.size / CHUNK_SIZE);
    this.#tailChunk = [];
    this.#tailChunk = this.#head.size % CHUNK_SIZE === 0 ? [] : await this.readChunk(c);
    if (this.#tailChunk.length !== this.#head.size % CHUNK_SIZE) throw new OtiError('ERR_STORE_CORRUPT', `the last chunk of ${this.origin} holds ${this.#tailChunk.length} entries, the head says ${this.#head.size % CHUNK_SIZE}`);
  }

  headOp(head: ChainHead): BatchOp {
    return { type: 'put', sublevel: this.meta, key: Buffer.from('head'), value: encode({ n: head.n, size: head.size, peaks: [...head.peaks] }) };
  }

  /**
   * Operations that store `entries` at positions [head.size, ...): rewritten tail chunk plus
   * new chunks, and the interior nodes the range reports. Returns the new tail chunk, which
   * the caller hands to commit() once the batch is durable.
   */
  entryOps(first: number, entries: readonly Bytes[], ops: BatchOp[]): Bytes[] {
    if (first !== this.#head.size) throw new OtiError('ERR_ARGUMENT', `entries must start at ${this.#head.size}, not ${first}`);
    let chunkNo = Math.floor(first / CHUNK_SIZE);
    let chunk = [...this.#tailChunk];
    for (const e of entries) {
      chunk.push(e);
      if (chunk.length === CHUNK_SIZE) {
        ops.push({ type: 'put', sublevel: this.chunks, key: u64(chunkNo), value: fastEncode.bytesArray(chunk) });
        chunk = [];
        chunkNo++;
      }
    }
    if (chunk.length > 0) ops.push({ type: 'put', sublevel: this.chunks, key: u64(chunkNo), value: fastEncode.bytesArray(chunk) });
    return chunk;
  }

  nodeOp(level: number, index: number, hash: Bytes): BatchOp | undefined {
    if (level < STORED_NODE_LEVEL) return undefined;
    return { type: 'put', sublevel: this.nodes, key: Buffer.concat([Buffer.of(level), u64(index)]), value: hash };
  }

  blockOp(n: number, headerBytes: Bytes, checkpoint: SignedCheckpoint): BatchOp {
    return { type: 'put', sublevel: this.blockRecords, key: u64(n), value: encode({ header: headerBytes, checkpoint: checkpoint.note }) };
  }

  idOp(key: Bytes, index: number): BatchOp {
    return { type: 'put', sublevel: this.ids, key, value: u64(index) };
  }

  rosterOp(m: Member): BatchOp {
    const v: CborMap = { role: m.role, id: m.id, key: m.key, revoked: m.revoked, unsigned: m.unsigned, history: m.history };
    if (m.expires !== undefined) v['expires'] = m.expires;
    return { type: 'put', sublevel: this.roster, key: Buffer.from(`${m.role}/${m.id}`, 'utf8'), value: encode(v) };
  }

  /** Called after the batch that held these changes is durable. */
  commit(head: ChainHead, tailChunk: Bytes[]): void {
    this.#head = head;
    this.#tailChunk = tailChunk;
    if (tailChunk.length > 0) this.#chunkCache.delete(Math.floor(head.size / CHUNK_SIZE));
  }

  async readChunk(c: number): Promise<Bytes[]> {
    const cached = this.#chunkCache.get(c);
    if (cached !== undefined) return cached;
    // The last, partly filled chunk is held as stored (durable: commit() sets it after the write).
    if (c === Math.floor(this.#head.size / CHUNK_SIZE) && this.#tailChunk.length > 0) return this.#tailChunk;
    const what = this.#chunkName(c, 0, Number.MAX_SAFE_INTEGER);
    let v: Bytes | undefined;
    try {
      v = await this.chunks.get(u64(c));
    } catch (e) {
      throw readFailed(what, e);
    }
    if (v === undefined) return [];
    const arr = decodeChunk(v, what);
    if (arr.length === CHUNK_SIZE) {
      if (this.#chunkCache.size >= 64) this.#chunkCache.delete(this.#chunkCache.keys().next().value!);
      this.#chunkCache.set(c, arr as Bytes[]);
    }
    return arr as Bytes[];
  }

  async entry(index: number): Promise<Bytes> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#head.size) throw new OtiError('ERR_NOT_FOUND', `entry ${index} is not in chain ${this.origin} of size ${this.#head.size}`);
    const e = (await this.readChunk(Math.floor(index / CHUNK_SIZE)))[index % CHUNK_SIZE];
    if (e === undefined) throw new OtiError('ERR_STORE_CORRUPT', `entry ${index} of ${this.origin} is missing`);
    return e;
  }

  /** Entries [from, to) in order, reading chunk by chunk (bounded memory). */
  async *entries(from: number, to: number): AsyncGenerator<{ index: number; bytes: Bytes }> {
    if (from >= to) return;
    const firstChunk = Math.floor(from / CHUNK_SIZE);
    const lastChunk = Math.floor((to - 1) / CHUNK_SIZE);
    let expect = firstChunk;
    const it = this.chunks.iterator({ gte: u64(firstChunk), lte: u64(lastChunk) });
    try {
      for (;;) {
        let row: [Bytes, Bytes] | undefined;
        try {
          row = await it.next();
        } catch (e) {
          throw readFailed(this.#chunkName(expect, from, to), e);
        }
        if (row === undefined) break;
        const c = readU64(row[0]);
        if (c !== expect) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
        expect++;
        const arr = decodeChunk(row[1], this.#chunkName(c, from, to));
        for (let j = 0; j < arr.length; j++) {
          const index = c * CHUNK_SIZE + j;
          if (index >= from && index < to) yield { index, bytes: arr[j]! };
        }
      }
    } finally {
      await it.close();
    }
    if (expect !== lastChunk + 1) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
  }

  /**
   * Entries [from, to) as one array (for a block at a time: memory is the caller's bound). Reads
   * the chunks with one iterator, many at a time, and checks that none is missing.
   */
  async entryRange(from: number, to: number): Promise<Bytes[]> {
    const out: Bytes[] = [];
    if (from >= to) return out;
    const firstChunk = Math.floor(from / CHUNK_SIZE);
    const lastChunk = Math.floor((to - 1) / CHUNK_SIZE);
    let expect = firstChunk;
    const it = this.chunks.iterator({ gte: u64(firstChunk), lte: u64(lastChunk) });
    try {
      for (;;) {
        let rows: [Bytes, Bytes][];
        try {
          rows = await it.nextv(256);
        } catch (e) {
          throw readFailed(this.#chunkName(expect, from, to), e);
        }
        if (rows.length === 0) break;
        for (const [k, v] of rows) {
          const c = readU64(k);
          if (c !== expect) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
          expect++;
          const arr = decodeChunk(v, this.#chunkName(c, from, to));
          const base = c * CHUNK_SIZE;
          const s = Math.max(0, from - base);
          const e = Math.min(arr.length, to - base);
          for (let j = s; j < e; j++) out.push(arr[j]!);
        }
      }
    } finally {
      await it.close();
    }
    if (expect !== lastChunk + 1) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
    return out;
  }

  /** Names chunk c by the entries it holds (within [from, to)), for errors. */
  #chunkName(c: number, from: number, to: number): string {
    const first = Math.max(from, c * CHUNK_SIZE);
    const last = Math.min(to, (c + 1) * CHUNK_SIZE) - 1;
    return `entries ${first}..${last} of ${this.origin} (chunk ${c})`;
  }

  async block(n: number): Promise<StoredBlock> {
    let v: Bytes | undefined;
    try {
      v = await this.blockRecords.get(u64(n));
    } catch (e) {
      throw readFailed(`stored block ${n} of ${this.origin}`, e);
    }
    if (v === undefined) throw new OtiError('ERR_NOT_FOUND', `block ${n} is not in chain ${this.origin}`);
    return parseStoredBlock(v, `stored block ${n} of ${this.origin}`);
  }

  /** Blocks n..to in order; a block that cannot be read or parsed fails with an error that names it. */
  async *blocks(n: number, to = Number.MAX_SAFE_INTEGER): AsyncGenerator<StoredBlock> {
    let next = n;
    const it = this.blockRecords.iterator({ gte: u64(n), lte: u64(to) });
    try {
      for (;;) {
        let row: [Bytes, Bytes] | undefined;
        try {
          row = await it.next();
        } catch (e) {
          // LevelDB reads a table block of many keys at once: the one wanted is the next one.
          throw readFailed(`stored block ${next} of ${this.origin}`, e);
        }
        if (row === undefined) return;
        next = readU64(row[0]) + 1;
        yield parseStoredBlock(row[1], `stored block ${next - 1} of ${this.origin}`);
      }
    } finally {
      await it.close();
    }
  }

  /** The block that contains entry `index` (binary search over block numbers). */
  async blockOf(index: number): Promise<StoredBlock> {
    let lo = 0;
    let hi = this.#head.n;
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const b = await this.block(mid);
      if (index < b.header.first) hi = mid - 1;
      else if (index >= b.header.first + b.header.count) lo = mid + 1;
      else return b;
    }
    throw new OtiError('ERR_NOT_FOUND', `entry ${index} is in no block of ${this.origin}`);
  }

  async indexOfId(key: Bytes): Promise<number | undefined> {
    const v = await named(`the entry index of ${this.origin}`, () => this.ids.get(key));
    return v === undefined ? undefined : readU64(v);
  }

  /** The highest counter stored for a lock, with its entry index. */
  lastLockCounter(lock: string): Promise<{ ctr: number; index: number } | undefined> {
    const prefix = Buffer.concat([Buffer.from(lock, 'utf8'), Buffer.of(0)]);
    return named(`the entry index of ${this.origin} (lock ${lock})`, async () => {
      for await (const [k, v] of this.ids.iterator({ gte: prefix, lt: Buffer.concat([prefix, Buffer.alloc(8, 0xff), Buffer.of(0)]), reverse: true, limit: 1 })) {
        return { ctr: readU64(Buffer.from(k).subarray(prefix.length)), index: readU64(v) };
      }
      return undefined;
    });
  }

  rosterMembers(): Promise<Member[]> {
    return named(`the stored roster of ${this.origin}`, () => this.#rosterMembers());
  }

  async #rosterMembers(): Promise<Member[]> {
    const out: Member[] = [];
    for await (const v of this.roster.values()) {
      const m = asMap(decodeTrusted(v) as CborValue, 'member', ['role', 'id', 'key', 'revoked', 'unsigned', 'expires', 'history']);
      const history = m['history'];
      if (!Array.isArray(history) || !history.every((h) => h instanceof Uint8Array)) throw new OtiError('ERR_STORE_CORRUPT', 'roster member has no history');
      const member: Member = {
        role: text(m, 'role', 'member') as Member['role'],
        id: text(m, 'id', 'member'),
        key: bytes(m, 'key', 'member', 32),
        revoked: m['revoked'] === true,
        unsigned: m['unsigned'] === true,
        history: history as Uint8Array[],
      };
      if (m['expires'] !== undefined) member.expires = uint(m, 'expires', 'member');
      out.push(member);
    }
    return out;
  }

  /** Nodes of one level, [first, first + count): one iterator where they are stored (tiles read 256 at a time). */
  async nodeRange(level: number, first: number, count: number): Promise<Uint8Array[]> {
    if ((first + count) * 2 ** level > this.#head.size) throw new OtiError('ERR_PROOF_RANGE', `nodes ${level}/${first}..${first + count - 1} are beyond size ${this.#head.size}`);
    if (level < STORED_NODE_LEVEL) return Promise.all(Array.from({ length: count }, (_, i) => this.node(level, first + i)));
    const out: Uint8Array[] = [];
    const key = (i: number): Buffer => Buffer.concat([Buffer.of(level), u64(i)]);
    await named(`nodes ${level}/${first}..${first + count - 1} of ${this.origin}`, async () => {
      for await (const [k, v] of this.nodes.iterator({ gte: key(first), lt: key(first + count) })) {
        if (readU64(k.subarray(1)) !== first + out.length || v.length !== 32) break;
        out.push(v);
      }
    });
    if (out.length !== count) throw new OtiError('ERR_STORE_CORRUPT', `node ${level}/${first + out.length} of ${this.origin} is missing`);
    return out;
  }

  // NodeReader: perfect-subtree hashes for proofs.
  async node(level: number, index: number): Promise<Uint8Array> {
    const span = 2 ** level;
    if ((index + 1) * span > this.#head.size) throw new OtiError('ERR_PROOF_RANGE', `node ${level}/${index} is beyond size ${this.#head.size}`);
    const cached = this.#cachedNode(level, index);
    if (cached !== undefined) return cached;
    if (level >= STORED_NODE_LEVEL) {
      const v = await named(`node ${level}/${index} of ${this.origin}`, () => this.nodes.get(Buffer.concat([Buffer.of(level), u64(index)])));
      if (v === undefined) throw new OtiError('ERR_STORE_CORRUPT', `node ${level}/${index} of ${this.origin} is missing`);
      this.#rememberNode(level, index, v);
      return v;
    }
    const chunk = await this.readChunk(Math.floor((index * span) / CHUNK_SIZE));
    return this.#chunkNode(chunk, level, index);
  }

  /** Node `level`/`index` below STORED_NODE_LEVEL, from its chunk's entries; every node computed on the way is remembered. */
  #chunkNode(chunk: readonly Bytes[], level: number, index: number): Uint8Array {
    const cached = this.#cachedNode(level, index);
    if (cached !== undefined) return cached;
    let hash: Uint8Array;
    if (level === 0) {
      const e = chunk[index % CHUNK_SIZE];
      if (e === undefined) throw new OtiError('ERR_STORE_CORRUPT', `chunk for node 0/${index} of ${this.origin} is short`);
      hash = leafHash(e);
    } else {
      hash = nodeHash(this.#chunkNode(chunk, level - 1, 2 * index), this.#chunkNode(chunk, level - 1, 2 * index + 1));
    }
    this.#rememberNode(level, index, hash);
    return hash;
  }

  #cachedNode(level: number, index: number): Uint8Array | undefined {
    const key = `${level}/${index}`;
    const hash = this.#nodeCache.get(key);
    if (hash !== undefined) {
      // Most recently used last, so that the oldest is the first key.
      this.#nodeCache.delete(key);
      this.#nodeCache.set(key, hash);
    }
    return hash;
  }

  #rememberNode(level: number, index: number, hash: Uint8Array): void {
    if (this.#nodeCache.size >= NODE_CACHE_SIZE) this.#nodeCache.delete(this.#nodeCache.keys().next().value!);
    this.#nodeCache.set(`${level}/${index}`, hash);
  }
}

/**
 * Perfect-subtree hashes kept per chain, most recently used: a perfect subtree never changes once
 * its entries are stored, and the receipts of recent entries (one per committed event, for the
 * MQTT notifications) need the same few dozen nodes again and again. 1,024 hashes: about 200 KB.
 */
const NODE_CACHE_SIZE = 1024;

/** A stored chunk's entries; `what` names it in the error when it is not an array of byte strings. */
function decodeChunk(v: Bytes, what: string): Bytes[] {
  let arr: unknown;
  try {
    arr = decodeTrusted(v);
  } catch (e) {
    throw readFailed(`${what} is malformed`, e);
  }
  if (!Array.isArray(arr) || arr.length > CHUNK_SIZE || !arr.every((x) => x instanceof Uint8Array)) throw new OtiError('ERR_STORE_CORRUPT', `${what} is malformed: not an array of up to ${CHUNK_SIZE} entries`);
  return arr as Bytes[];
}

/** Parses a stored block; `what` names it ("stored block 14 of oti/site/gw") in any error. */
export function parseStoredBlock(v: Bytes, what = 'stored block'): StoredBlock {
  let m: CborMap;
  let headerBytes: Bytes;
  try {
    m = asMap(decodeTrusted(v) as CborValue, 'stored block', ['header', 'checkpoint']);
    headerBytes = bytes(m, 'header', 'stored block');
  } catch (e) {
    throw readFailed(`${what} is malformed`, e);
  }
  const cp = m['checkpoint'];
  if (typeof cp !== 'string') throw new OtiError('ERR_STORE_CORRUPT', `${what} has no checkpoint`);
  let header: BlockHeader;
  try {
    header = decodeBlockHeader(headerBytes);
  } catch (e) {
    throw readFailed(`${what}: its header`, e);
  }
  let checkpoint: SignedCheckpoint;
  try {
    checkpoint = parseCheckpoint(cp);
  } catch (e) {
    throw readFailed(`${what}: its checkpoint`, e);
  }
  return { headerBytes, header, checkpoint };
}

/** Runs a read; an error it throws is named by `what` (readFailed). */
async function named<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    throw readFailed(what, e);
  }
}

/**
 * A read of stored data failed: the same error named by what was read (coded errors keep their
 * code; LevelDB's corruption and I/O errors become ERR_STORE_CORRUPT). Errors about the database
 * itself (closed, closing) are returned unchanged.
 */
export function readFailed(what: string, e: unknown): unknown {
  if (isOtiError(e)) return new OtiError(e.code, `${what}: ${e.message}`, { ...e.details, what }, { cause: e });
  const code = (e as { code?: unknown }).code;
  if (code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR') {
    return new OtiError('ERR_STORE_CORRUPT', `${what} cannot be read: LevelDB reports "${(e as Error).message}"`, { what }, { cause: e });
  }
  return e;
}
