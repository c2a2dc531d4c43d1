/**
 * The stored parts of one chain, in the ledger store (ledger/store.ts), sublevel "c" + origin,
 * every key binary and big-endian so that LevelDB's order is numeric order (keys and values:
 * ledger/store-codec.ts):
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
 */
import type { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { encode, decodeTrusted, type CborValue } from './base/cbor.js';
import { OtiError } from './base/errors.js';
import { leafHash, nodeHash, CompactRange } from './merkle.js';
import type { SignedCheckpoint } from './checkpoint.js';
import { asMap, bytes, uint, text, type CborMap } from './schema.js';
import type { Member } from './roster.js';
import type { ChainHead, StoredBlock, ChainRole, ChainReader, EntrySpans } from './reader.js';
import { CHUNK_SIZE, STORED_NODE_LEVEL, chunkSpans, decodeChunk, encodeChunk, named, parseStoredBlock, readFailed, readU64, u64, writeU64 } from './store-codec.js';

type Bytes = Uint8Array;
/** A sublevel of the store; they are created with 'view' encodings. */
export type BinSub = AbstractSublevel<Level<Bytes, Bytes>, Uint8Array | Buffer | string, Bytes, Bytes>;

/**
 * One operation of a write: a key of `sublevel`, or, with sublevel undefined, a whole key of the
 * root database (the sublevel's prefix included: ChainStore's operations come that way, made
 * in one allocation).
 */
export type BatchOp =
  | { type: 'put'; sublevel: BinSub | undefined; key: Bytes; value: Bytes }
  | { type: 'del'; sublevel: BinSub | undefined; key: Bytes }
  | { type: 'puts'; puts: PackedPuts };

/**
 * Many puts of whole keys of the root database laid out in one buffer (per put: key length u16,
 * key, value length u8, value), for the operations made per entry: one object for all of them,
 * instead of an operation, a key and a value per entry kept alive until the durable write ends
 * (and so promoted and marked by the garbage collector).
 */
export class PackedPuts {
  #buf = Buffer.allocUnsafeSlow(16 * 1024);
  #len = 0;

  /** Room for a put of a `klen`-byte key and a `vlen`-byte value; returns where the key goes (the value follows it). */
  reserve(klen: number, vlen: number): { buf: Buffer; key: number; value: number } {
    const need = 3 + klen + vlen;
    if (this.#len + need > this.#buf.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(2 * this.#buf.length, this.#len + need));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    const o = this.#len;
    this.#buf.writeUInt16BE(klen, o);
    this.#buf[o + 2 + klen] = vlen;
    this.#len += need;
    return { buf: this.#buf, key: o + 2, value: o + 3 + klen };
  }

  /** Calls `put` with each key and value, in order (views into the buffer, for that call). */
  forEach(put: (key: Buffer, value: Buffer) => void): void {
    const b = this.#buf;
    for (let o = 0; o < this.#len; ) {
      const klen = b.readUInt16BE(o);
      const vlen = b[o + 2 + klen]!;
      put(b.subarray(o + 2, o + 2 + klen), b.subarray(o + 3 + klen, o + 3 + klen + vlen));
      o += 3 + klen + vlen;
    }
  }
}

/** What a ChainStore needs of the store that holds it (LedgerStore). */
export interface StoreHost {
  /** The sublevel named `name` (the same object for the same name). */
  sub(name: string[]): BinSub;
  /** Writes the operations atomically and durably; resolves once they are. */
  write(ops: readonly BatchOp[]): Promise<void>;
}

/** Where a chunk's entries lie (chunkSpans), filled and read without an await between. */
const SPANS = new Int32Array(2 * CHUNK_SIZE);

/**
 * Reads and writes the stored parts of one chain. It knows nothing of signatures; Chain (our own
 * chain) and the peer-sync code decide what is valid before they hand it operations to write.
 */
export class ChainStore implements ChainReader {
  readonly origin: string;
  readonly role: ChainRole;
  readonly store: StoreHost;
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
  /** The root database's key prefixes of the sublevels written with every block. */
  readonly #prefix: { readonly chunks: Buffer; readonly nodes: Buffer; readonly blocks: Buffer; readonly ids: Buffer; readonly meta: Buffer };

  constructor(store: StoreHost, origin: string, role: ChainRole) {
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
    const prefix = (s: BinSub): Buffer => s.prefixKey(Buffer.alloc(0), 'buffer') as Buffer;
    this.#prefix = { chunks: prefix(this.chunks), nodes: prefix(this.nodes), blocks: prefix(this.blockRecords), ids: prefix(this.ids), meta: prefix(this.meta) };
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
    return { type: 'put', sublevel: undefined, key: withPrefix(this.#prefix.meta, HEAD_KEY), value: encode({ n: head.n, size: head.size, peaks: [...head.peaks] }) };
  }

  /**
   * Operations that store `entries` at positions [head.size, ...): rewritten tail chunk plus
   * new chunks, and the interior nodes the range reports. Returns the new tail chunk, which
   * the caller hands to commit() once the batch is durable: views into the value written for
   * it, not the entries given (which may be views into a whole sync message, kept alive by them).
   */
  entryOps(first: number, entries: readonly Bytes[], ops: BatchOp[]): Bytes[] {
    if (first !== this.#head.size) throw new OtiError('ERR_ARGUMENT', `entries must start at ${this.#head.size}, not ${first}`);
    let chunkNo = Math.floor(first / CHUNK_SIZE);
    let chunk = [...this.#tailChunk];
    for (const e of entries) {
      chunk.push(e);
      if (chunk.length === CHUNK_SIZE) {
        ops.push({ type: 'put', sublevel: undefined, key: u64Key(this.#prefix.chunks, chunkNo), value: encodeChunk(chunk) });
        chunk = [];
        chunkNo++;
      }
    }
    if (chunk.length === 0) return chunk;
    const value = encodeChunk(chunk);
    ops.push({ type: 'put', sublevel: undefined, key: u64Key(this.#prefix.chunks, chunkNo), value });
    return decodeChunk(value, this.#chunkName(chunkNo, first, first + entries.length));
  }

  nodeOp(level: number, index: number, hash: Bytes): BatchOp | undefined {
    if (level < STORED_NODE_LEVEL) return undefined;
    const p = this.#prefix.nodes;
    const key = Buffer.allocUnsafe(p.length + 9);
    key.set(p, 0);
    key[p.length] = level;
    writeU64(key, p.length + 1, index);
    return { type: 'put', sublevel: undefined, key, value: hash };
  }

  blockOp(n: number, headerBytes: Bytes, checkpoint: SignedCheckpoint): BatchOp {
    return { type: 'put', sublevel: undefined, key: u64Key(this.#prefix.blocks, n), value: encode({ header: headerBytes, checkpoint: checkpoint.note }) };
  }

  /** The entry-id index's record of `key` (lockIdKey() or hashIdKey()) at `index`. */
  idOp(key: Bytes, index: number): BatchOp {
    return { type: 'put', sublevel: undefined, key: withPrefix(this.#prefix.ids, key), value: u64(index) };
  }

  /**
   * idOp(lockIdKey(lock, ctr), index), laid out in `puts` instead of an operation of its own;
   * `idBytes`, when the caller has them, are the UTF-8 bytes of `lock` (copied, not encoded again).
   */
  lockIdPut(puts: PackedPuts, lock: string, ctr: number, index: number, idBytes?: Uint8Array): void {
    const p = this.#prefix.ids;
    const n = idBytes !== undefined ? idBytes.length : Buffer.byteLength(lock, 'utf8');
    const at = puts.reserve(p.length + n + 9, 8);
    const b = at.buf;
    b.set(p, at.key);
    if (idBytes !== undefined) b.set(idBytes, at.key + p.length);
    else b.write(lock, at.key + p.length, 'utf8');
    b[at.key + p.length + n] = 0;
    writeU64(b, at.key + p.length + n + 1, ctr);
    writeU64(b, at.value, index);
  }

  /** idOp(hashIdKey(leaf), index), with the key made in one piece. */
  hashIdOp(leaf: Bytes, index: number): BatchOp {
    const p = this.#prefix.ids;
    const key = Buffer.allocUnsafe(p.length + 1 + leaf.length);
    key.set(p, 0);
    key[p.length] = 1;
    key.set(leaf, p.length + 1);
    return { type: 'put', sublevel: undefined, key, value: u64(index) };
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
    // A copy: the chunk's entries are views into the value read, which one entry kept for long
    // (a receipt, a status) would keep whole.
    return e.slice();
  }

  /** Entries [from, to) in order, reading chunk by chunk (bounded memory); views into the chunks read. */
  async *entries(from: number, to: number): AsyncGenerator<{ index: number; bytes: Bytes }> {
    if (from >= to) return;
    const firstChunk = Math.floor(from / CHUNK_SIZE);
    const lastChunk = Math.floor((to - 1) / CHUNK_SIZE);
    let expect = firstChunk;
    const rows = readRows(this.chunks.iterator({ gte: u64(firstChunk), lte: u64(lastChunk) }), () => this.#chunkName(expect, from, to));
    for await (const [k, v] of rows) {
      const c = readU64(k);
      if (c !== expect) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
      expect++;
      const arr = decodeChunk(v, this.#chunkName(c, from, to));
      for (let j = 0; j < arr.length; j++) {
        const index = c * CHUNK_SIZE + j;
        if (index >= from && index < to) yield { index, bytes: arr[j]! };
      }
    }
    if (expect !== lastChunk + 1) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
  }

  /**
   * Entries [from, to) as one array (for a block at a time: memory is the caller's bound). Reads
   * the chunks with one iterator, many at a time, and checks that none is missing. The entries
   * are views into the chunks read, copied by nobody.
   */
  async entryRange(from: number, to: number): Promise<Bytes[]> {
    const out: Bytes[] = [];
    await this.#chunksOf(from, to, (c, v) => {
      const arr = decodeChunk(v, this.#chunkName(c, from, to));
      const base = c * CHUNK_SIZE;
      const e = Math.min(arr.length, to - base);
      for (let j = Math.max(0, from - base); j < e; j++) out.push(arr[j]!);
    });
    return out;
  }

  /**
   * entryRange() as spans of the chunks read (ChainReader.entrySpans): the same reads and checks,
   * no view per entry.
   */
  async entrySpans(from: number, to: number): Promise<EntrySpans> {
    const bufs: Bytes[] = [];
    const pos = new Int32Array(3 * Math.max(0, to - from));
    let count = 0;
    await this.#chunksOf(from, to, (c, v) => {
      const n = chunkSpans(v, this.#chunkName(c, from, to), SPANS);
      const base = c * CHUNK_SIZE;
      const e = Math.min(n, to - base);
      const b = bufs.length;
      bufs.push(v);
      for (let j = Math.max(0, from - base); j < e; j++) {
        pos[3 * count] = b;
        pos[3 * count + 1] = SPANS[2 * j]!;
        pos[3 * count + 2] = SPANS[2 * j + 1]!;
        count++;
      }
    });
    return { count, bufs, pos };
  }

  /** Calls `each` with every chunk holding entries of [from, to), in order; ERR_STORE_CORRUPT if one is missing. */
  async #chunksOf(from: number, to: number, each: (c: number, v: Bytes) => void): Promise<void> {
    if (from >= to) return;
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
          each(c, v);
        }
      }
    } finally {
      await it.close();
    }
    if (expect !== lastChunk + 1) throw new OtiError('ERR_STORE_CORRUPT', `chunk ${expect} of ${this.origin} is missing`);
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
    // LevelDB reads a table block of many keys at once: the one a failed read wanted is the next one.
    for await (const [k, v] of readRows(this.blockRecords.iterator({ gte: u64(n), lte: u64(to) }), () => `stored block ${next} of ${this.origin}`)) {
      next = readU64(k) + 1;
      yield parseStoredBlock(v, `stored block ${next - 1} of ${this.origin}`);
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

const HEAD_KEY = Buffer.from('head');

/** `prefix` followed by `key`, in one buffer of Node's pool. */
function withPrefix(prefix: Buffer, key: Bytes): Buffer {
  const b = Buffer.allocUnsafe(prefix.length + key.length);
  b.set(prefix, 0);
  b.set(key, prefix.length);
  return b;
}

/** `prefix` followed by u64(n). */
function u64Key(prefix: Buffer, n: number): Buffer {
  const b = Buffer.allocUnsafe(prefix.length + 8);
  b.set(prefix, 0);
  writeU64(b, prefix.length, n);
  return b;
}

/**
 * The rows of a store iterator one at a time, closing it when the caller stops (at the end, on an
 * error, or on an early return); a read that fails throws readFailed naming `what()` as it stands.
 */
async function* readRows(it: { next(): Promise<[Bytes, Bytes] | undefined>; close(): Promise<void> }, what: () => string): AsyncGenerator<[Bytes, Bytes]> {
  try {
    for (;;) {
      let row: [Bytes, Bytes] | undefined;
      try {
        row = await it.next();
      } catch (e) {
        throw readFailed(what(), e);
      }
      if (row === undefined) return;
      yield row;
    }
  } finally {
    await it.close();
  }
}
