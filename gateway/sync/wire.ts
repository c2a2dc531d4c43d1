/**
 * The two binary sync messages, in deterministic CBOR, strictly decoded within a byte bound.
 * docs/PROTOCOL.md §Sync.
 *
 *   request (topic oti/<site>/chain/<responder>/req/<requester>) =
 *     { "v": 1, "id": uint (< 2^32), "chain": text (origin), "from": uint, "to": uint }
 *       entries [from, to) wanted; to > from, to − from ≤ MAX_REQUEST_ENTRIES; `from` is the
 *       requester's stored size (a block boundary)
 *
 *   range (topic oti/<site>/chain/<responder>/range/<requester>) =
 *     { "v": 1, "id": uint, "chain": text, "first": uint (index of entries[0]),
 *       "entries": [* bstr], "blocks": [* { "h": bstr (block header), "cp": text (its checkpoint) }],
 *       "end": bool,
 *       ? "head": text    (the responder's latest checkpoint of the chain; first message)
 *       ? "root": bstr(32), ? "proof": [* bstr(32)] }   (first message when from > 0: the root of
 *                          the responder's tree at `from` and a consistency proof to `head`)
 */
import { decode, decodeViews, encode, headLength, writeHead } from '../../ledger/base/cbor.js';
import { OtiError } from '../../ledger/base/errors.js';
import { BLOCK_HEADER_MAX_BYTES } from '../../ledger/block.js';
import { CHECKPOINT_MAX_BYTES } from '../../ledger/checkpoint.js';
import { ENTRY_MAX_BYTES } from '../../ledger/entry.js';
import { MAX_PROOF_HASHES } from '../../ledger/merkle.js';
import { asMap, bytes, text, uint, version, schemaError } from '../../ledger/schema.js';

export const MAX_REQUEST_ENTRIES = 65_536;
export const REQUEST_MAX_BYTES = 512;
/** Bytes a range message adds around its entries and blocks (keys, counts, head, proof). */
export const RANGE_OVERHEAD_BYTES = CHECKPOINT_MAX_BYTES + 40 * MAX_PROOF_HASHES + 512;
/** Per-entry and per-block framing inside a range message, for size budgeting. */
export const ENTRY_FRAMING_BYTES = 5;
export const BLOCK_FRAMING_BYTES = 16;

export interface SyncRequest {
  readonly id: number;
  readonly chain: string;
  readonly from: number;
  readonly to: number;
}

export interface RangeBlock {
  readonly h: Uint8Array;
  readonly cp: string;
}

export interface RangeMessage {
  readonly id: number;
  readonly chain: string;
  readonly first: number;
  readonly entries: readonly Uint8Array[];
  readonly blocks: readonly RangeBlock[];
  readonly end: boolean;
  readonly head?: string;
  readonly root?: Uint8Array;
  readonly proof?: readonly Uint8Array[];
}

export function encodeRequest(r: SyncRequest): Uint8Array {
  return encode({ v: 1, id: r.id, chain: r.chain, from: r.from, to: r.to });
}

export function decodeRequest(b: Uint8Array): SyncRequest {
  const m = asMap(decode(b, REQUEST_MAX_BYTES), 'sync request', ['v', 'id', 'chain', 'from', 'to']);
  version(m, 'sync request', 1);
  const r = { id: uint(m, 'id', 'sync request', 0xffffffff), chain: text(m, 'chain', 'sync request', 255), from: uint(m, 'from', 'sync request'), to: uint(m, 'to', 'sync request') };
  if (r.to <= r.from || r.to - r.from > MAX_REQUEST_ENTRIES) throw schemaError('sync request.to', `must be above from by 1 to ${MAX_REQUEST_ENTRIES}`);
  return r;
}

/**
 * Writes deterministic CBOR item by item: first counting (`out` undefined), then into a buffer of
 * the size counted. For the range message, whose generic encoding (cborg) made a token and a copy
 * per entry on the serving gateway's main thread.
 */
class ItemWriter {
  o = 0;
  constructor(readonly out: Uint8Array | undefined) {}

  head(major: number, n: number): void {
    this.o = this.out === undefined ? this.o + headLength(n) : writeHead(this.out, this.o, major, n);
  }

  /** Bytes as they are (an encoded key). */
  raw(b: Uint8Array): void {
    this.out?.set(b, this.o);
    this.o += b.length;
  }

  bytes(b: Uint8Array): void {
    this.head(2, b.length);
    this.raw(b);
  }

  /** A text string, given as its UTF-8 bytes. */
  text(b: Uint8Array): void {
    this.head(3, b.length);
    this.raw(b);
  }
}

/** A map key, encoded (a text string). */
const key = (k: string): Uint8Array => encode(k);
const K = { v: key('v'), id: key('id'), end: key('end'), head: key('head'), root: key('root'), chain: key('chain'), first: key('first'), proof: key('proof'), blocks: key('blocks'), entries: key('entries'), h: key('h'), cp: key('cp') };

/**
 * The range message in deterministic CBOR: what encode() makes of the map { v: 1, id, chain,
 * first, entries, blocks: [{ h, cp }], end, head?, root?, proof? }, written directly (test/unit/
 * sync-pipe.test.ts compares the two). Keys in the order RFC 8949 §4.2.1 gives: shorter encoded
 * keys first, then bytewise.
 */
export function encodeRange(r: RangeMessage): Uint8Array {
  const chain = Buffer.from(r.chain, 'utf8');
  const head = r.head === undefined ? undefined : Buffer.from(r.head, 'utf8');
  const cps = r.blocks.map((b) => Buffer.from(b.cp, 'utf8'));
  const emit = (w: ItemWriter): void => {
    w.head(5, 7 + (head !== undefined ? 1 : 0) + (r.root !== undefined ? 1 : 0) + (r.proof !== undefined ? 1 : 0));
    w.raw(K.v);
    w.head(0, 1);
    w.raw(K.id);
    w.head(0, r.id);
    w.raw(K.end);
    w.head(7, r.end ? 21 : 20);
    if (head !== undefined) {
      w.raw(K.head);
      w.text(head);
    }
    if (r.root !== undefined) {
      w.raw(K.root);
      w.bytes(r.root);
    }
    w.raw(K.chain);
    w.text(chain);
    w.raw(K.first);
    w.head(0, r.first);
    if (r.proof !== undefined) {
      w.raw(K.proof);
      w.head(4, r.proof.length);
      for (const p of r.proof) w.bytes(p);
    }
    w.raw(K.blocks);
    w.head(4, r.blocks.length);
    for (let i = 0; i < r.blocks.length; i++) {
      w.head(5, 2);
      w.raw(K.h);
      w.bytes(r.blocks[i]!.h);
      w.raw(K.cp);
      w.text(cps[i]!);
    }
    w.raw(K.entries);
    w.head(4, r.entries.length);
    for (const e of r.entries) w.bytes(e);
  };
  const count = new ItemWriter(undefined);
  emit(count);
  const w = new ItemWriter(Buffer.allocUnsafe(count.o));
  emit(w);
  return w.out!;
}

/** Decodes a range message of at most `maxBytes` bytes. */
export function decodeRange(b: Uint8Array, maxBytes: number): RangeMessage {
  const w = 'sync range';
  // The entries as views into the message (decodeViews), not a copy each: they are stored (copied
  // into chunks) and dropped.
  const m = asMap(decodeViews(b, maxBytes), w, ['v', 'id', 'chain', 'first', 'entries', 'blocks', 'end', 'head', 'root', 'proof']);
  version(m, w, 1);
  const entries = m['entries'];
  if (!Array.isArray(entries) || !entries.every((e) => e instanceof Uint8Array && e.length > 0 && e.length <= ENTRY_MAX_BYTES)) throw schemaError(`${w}.entries`, 'must be a list of entries');
  const blocksRaw = m['blocks'];
  if (!Array.isArray(blocksRaw)) throw schemaError(`${w}.blocks`, 'must be a list');
  const blocks = blocksRaw.map((x) => {
    const bm = asMap(x, `${w}.blocks[]`, ['h', 'cp']);
    return { h: bytes(bm, 'h', `${w}.blocks[]`, undefined, BLOCK_HEADER_MAX_BYTES), cp: text(bm, 'cp', `${w}.blocks[]`, CHECKPOINT_MAX_BYTES) };
  });
  const end = m['end'];
  if (typeof end !== 'boolean') throw schemaError(`${w}.end`, 'must be a boolean');
  const out: { -readonly [K in keyof RangeMessage]: RangeMessage[K] } = {
    id: uint(m, 'id', w, 0xffffffff),
    chain: text(m, 'chain', w, 255),
    first: uint(m, 'first', w),
    entries: entries as Uint8Array[],
    blocks,
    end,
  };
  if (m['head'] !== undefined) out.head = text(m, 'head', w, CHECKPOINT_MAX_BYTES);
  if (m['root'] !== undefined) out.root = bytes(m, 'root', w, 32);
  const proof = m['proof'];
  if (proof !== undefined) {
    if (!Array.isArray(proof) || proof.length > MAX_PROOF_HASHES || !proof.every((p) => p instanceof Uint8Array && p.length === 32)) throw schemaError(`${w}.proof`, 'must be a list of 32-byte hashes');
    out.proof = proof as Uint8Array[];
  }
  if ((out.root === undefined) !== (out.proof === undefined)) throw new OtiError('ERR_ENCODING_SCHEMA', `${w}: root and proof come together`);
  return out;
}
