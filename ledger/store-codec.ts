/**
 * The ledger store's keys and values, and how they are read back: big-endian integer keys (so
 * that LevelDB's order is numeric order), entry-id keys, the chunk of up to 16 entries, the stored
 * block record, and the errors that name what a failed read was reading. Layout of a chain's
 * sublevels: ledger/chain-store.ts.
 */
import { decodeTrusted, fastEncode, readHead, type CborValue } from './base/cbor.js';
import { OtiError, isOtiError } from './base/errors.js';
import { decodeBlockHeader, type BlockHeader } from './block.js';
import { parseCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { asMap, bytes, type CborMap } from './schema.js';
import type { StoredBlock } from './reader.js';

export const CHUNK_BITS = 4;
export const CHUNK_SIZE = 1 << CHUNK_BITS;
/** Interior nodes at this level and above are stored; below it they are recomputed from a chunk. */
export const STORED_NODE_LEVEL = CHUNK_BITS;

type Bytes = Uint8Array;

/** 8-byte big-endian key for a non-negative safe integer. */
export function u64(n: number): Bytes {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, n);
  return b;
}

/** Writes u64(n) into `b` at `o`. */
export function writeU64(b: Uint8Array, o: number, n: number): void {
  const hi = Math.floor(n / 0x100000000);
  const lo = n >>> 0;
  b[o] = hi >>> 24;
  b[o + 1] = (hi >>> 16) & 0xff;
  b[o + 2] = (hi >>> 8) & 0xff;
  b[o + 3] = hi & 0xff;
  b[o + 4] = lo >>> 24;
  b[o + 5] = (lo >>> 16) & 0xff;
  b[o + 6] = (lo >>> 8) & 0xff;
  b[o + 7] = lo & 0xff;
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

/** A chunk's value: the CBOR array of its entries' byte strings. */
export function encodeChunk(entries: readonly Bytes[]): Bytes {
  return fastEncode.bytesArray(entries);
}

/**
 * A stored chunk's entries, as views into `v` (nothing copied: a caller that keeps a few entries
 * for long should copy them, or they keep the whole chunk). `what` names the chunk in the error
 * when it is not a CBOR array of up to CHUNK_SIZE byte strings, each head in its shortest form,
 * with nothing after it.
 */
export function decodeChunk(v: Bytes, what: string): Bytes[] {
  const count = chunkSpans(v, what, CHUNK_SPANS);
  const out: Bytes[] = [];
  for (let i = 0; i < count; i++) out.push(new Uint8Array(v.buffer, v.byteOffset + CHUNK_SPANS[2 * i]!, CHUNK_SPANS[2 * i + 1]! - CHUNK_SPANS[2 * i]!));
  return out;
}

const CHUNK_SPANS = new Int32Array(2 * CHUNK_SIZE);

/**
 * decodeChunk() without the views: writes where each entry of chunk `v` lies, [start, end) in
 * `v`, as pairs into `out` (entry i at 2i and 2i + 1), and returns how many entries the chunk
 * holds. The same checks and errors as decodeChunk (which is built on it).
 */
export function chunkSpans(v: Bytes, what: string, out: Int32Array): number {
  const malformed = (): OtiError => new OtiError('ERR_STORE_CORRUPT', `${what} is malformed: not an array of up to ${CHUNK_SIZE} entries`, { what });
  if (v.length === 0 || v[0]! >> 5 !== 4) throw malformed();
  const count = readHead(v, 0, HEAD);
  if (count < 0 || count > CHUNK_SIZE) throw malformed();
  let p = HEAD.end;
  for (let i = 0; i < count; i++) {
    if (p >= v.length || v[p]! >> 5 !== 2) throw malformed();
    const n = readHead(v, p, HEAD);
    if (n < 0 || HEAD.end + n > v.length) throw malformed();
    out[2 * i] = HEAD.end;
    out[2 * i + 1] = HEAD.end + n;
    p = HEAD.end + n;
  }
  if (p !== v.length) throw malformed();
  return count;
}

const HEAD = { end: 0 };

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
export async function named<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    throw readFailed(what, e);
  }
}

/**
 * A read of stored data failed: the same error named by what was read (coded errors keep their
 * code; LevelDB's corruption and I/O errors become ERR_STORE_CORRUPT). Errors about the database
 * itself (closed, closing) are returned unchanged. The new error carries no `cause`: its message
 * already holds the cause's, which the log would otherwise print twice (pino's err serializer
 * appends the message of every cause).
 */
export function readFailed(what: string, e: unknown): unknown {
  if (isOtiError(e)) return new OtiError(e.code, `${what}: ${e.message}`, { ...e.details, what });
  const code = (e as { code?: unknown }).code;
  if (code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR') {
    return new OtiError('ERR_STORE_CORRUPT', `${what} cannot be read: LevelDB reports "${(e as Error).message}"`, { what });
  }
  return e;
}
