/**
 * The ledger store: one LevelDB database (level) holding every chain this gateway keeps, with one
 * sublevel per chain and per index (ledger/chain-store.ts), and the evidence records.
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
import { encode, decode } from './base/cbor.js';
import { OtiError } from './base/errors.js';
import { sha256 } from './crypto.js';
import { asMap } from './schema.js';
import { isDiskFull, probeSpace, spaceRetryDelay } from './diskspace.js';
import type { ChainHead, StoredBlock, ChainRole, ChainReader } from './reader.js';
import { ChainStore, type BatchOp, type BinSub, type StoreHost } from './chain-store.js';
import { named } from './store-codec.js';

export { ChainStore, PackedPuts, type BatchOp, type BinSub, type StoreHost } from './chain-store.js';
export { CHUNK_BITS, CHUNK_SIZE, STORED_NODE_LEVEL, u64, readU64, lockIdKey, hashIdKey, parseStoredBlock, readFailed } from './store-codec.js';
export type { ChainHead, StoredBlock, ChainRole, ChainReader };

type Bytes = Uint8Array;

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;
/** prefixKey() of an empty key is the sublevel's prefix itself, not a copy. */
const NO_KEY = Buffer.alloc(0);

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
/**
 * LevelDB's memtable: writes are held in memory up to this size, then written out as a table while
 * a new one fills, so up to twice this is held. LevelDB's default is 4 MiB; at 1,000 events/s a
 * gateway writes about 0.5 MB/s into it. 2 MiB lowered the gateway's peak RSS there (median of 4
 * runs 95.8 against 97.7 MB) with no change beyond the noise in durable append or sync catch-up
 * rates; 1 MiB lowered it more (94.5 against 99.4 MB) but slowed the catch-up by about a sixth.
 * docs/DECISIONS.md §Memory.
 */
export const STORE_WRITE_BUFFER_BYTES = 2 * 1024 * 1024;
/** The LevelDB options above, for anything that opens a store's folder with level directly. */
export const STORE_TABLE_OPTIONS = { maxOpenFiles: STORE_TABLE_CACHE_FILES, maxFileSize: STORE_TABLE_BYTES, writeBufferSize: STORE_WRITE_BUFFER_BYTES } as const;

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
export class LedgerStore extends EventEmitter<StoreEvents> implements StoreHost {
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
    let db: Level<Bytes, Bytes> | undefined;
    let attempt = 0;
    for (;;) {
      try {
        // classic-level would create it (and its parents, as here) 0755; the ledger is as private
        // as the data folder around it. Made before the database object: abstract-level starts
        // opening (and classic-level creating the folder) as soon as one is constructed.
        await mkdir(path, { recursive: true, mode: 0o700 });
        db ??= new Level<Bytes, Bytes>(path, { ...VIEW, ...STORE_TABLE_OPTIONS });
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
    // Keys are prefixed with the sublevel's own prefixKey() (or came prefixed: ChainStore's)
    // and written to the root database: the same bytes as a put through the sublevel, at about
    // a quarter of the cost per operation (abstract-level's sublevel option re-validates and
    // re-encodes each one). Buffers, not small Uint8Arrays: those live on V8's heap, and the
    // native batch would have each moved off it.
    const batch = this.db.batch();
    for (const op of ops) {
      if (op.type === 'puts') {
        op.puts.forEach((k, v) => batch.put(k, v));
        continue;
      }
      const key = op.sublevel === undefined ? op.key : Buffer.concat([op.sublevel.prefixKey(NO_KEY, 'buffer'), op.key]);
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
