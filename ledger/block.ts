/**
 * Blocks: the unit of group commit. Each block covers a run of consecutive entries, links the
 * previous block by hash, and records the Merkle root of the whole chain after its entries.
 * docs/PROTOCOL.md §Blocks.
 *
 *   header = { "v": 1, "chain": text (origin), "n": uint (block number, from 0),
 *              "prev": bstr(32) (hash of block n-1; 32 zero bytes for block 0),
 *              "first": uint (index of its first entry), "count": uint (>= 1),
 *              "root": bstr(32) (RFC 9162 root of entries [0, first+count)), "time": uint }
 *   block hash = SHA-256("OTI-v1 block" || 0x00 || header)
 *
 * The checkpoint signed after the block names the block number and hash in its extension line,
 * so one signature per block covers the entries (through the root) and the block links.
 */
import { decode, encode } from './base/cbor.js';
import { sha256, HASH_BYTES } from './crypto.js';
import { asMap, bytes, text, uint, version, schemaError } from './schema.js';

export const BLOCK_HEADER_MAX_BYTES = 512;
export const ZERO_HASH = new Uint8Array(HASH_BYTES);
const BLOCK_DOMAIN = Buffer.from('OTI-v1 block\0', 'ascii');

export interface BlockHeader {
  readonly chain: string;
  readonly n: number;
  readonly prev: Uint8Array;
  readonly first: number;
  readonly count: number;
  readonly root: Uint8Array;
  readonly time: number;
}

export function encodeBlockHeader(h: BlockHeader): Uint8Array {
  return encode({ v: 1, chain: h.chain, n: h.n, prev: h.prev, first: h.first, count: h.count, root: h.root, time: h.time });
}

export function decodeBlockHeader(b: Uint8Array): BlockHeader {
  const m = asMap(decode(b, BLOCK_HEADER_MAX_BYTES), 'block', ['v', 'chain', 'n', 'prev', 'first', 'count', 'root', 'time']);
  version(m, 'block', 1);
  const h: BlockHeader = {
    chain: text(m, 'chain', 'block', 255),
    n: uint(m, 'n', 'block'),
    prev: bytes(m, 'prev', 'block', HASH_BYTES),
    first: uint(m, 'first', 'block'),
    count: uint(m, 'count', 'block'),
    root: bytes(m, 'root', 'block', HASH_BYTES),
    time: uint(m, 'time', 'block'),
  };
  if (h.count < 1) throw schemaError('block.count', 'must be at least 1');
  if (!Number.isSafeInteger(h.first + h.count)) throw schemaError('block.count', 'overflows the tree size');
  return h;
}

export function blockHash(headerBytes: Uint8Array): Uint8Array {
  return sha256(BLOCK_DOMAIN, headerBytes);
}
