/**
 * The C2SP tlog-tiles resources of a stored chain (ledger/tiles.ts says what they hold), read
 * from its LevelDB store. Used by the local API (gateway/api/tlog-routes.ts) and `oti export`.
 * docs/PROTOCOL.md §Tiles.
 *
 * Level-0 hash tiles are the leaf hashes of the entries (one chunk read per 16 entries); tiles
 * at level L >= 1 hold nodes of height 8·L, which the store keeps (store.ts keeps every node of
 * height >= 4), read with one iterator.
 */
import { OtiError } from './base/errors.js';
import { leafHash } from './merkle.js';
import { u64, readU64, type ChainStore } from './store.js';
import { availableWidth, encodeBundle, encodeHashTile, nodesAtLevel, TILE_HEIGHT, TILE_WIDTH, type TileResource } from './tiles.js';

/** The signed checkpoint of the chain's last stored block (what its tiles are consistent with). */
export async function chainCheckpoint(cs: ChainStore): Promise<string> {
  if (cs.head.n < 0) throw new OtiError('ERR_NOT_FOUND', `chain ${cs.origin} has no block yet`);
  return (await cs.getBlock(cs.head.n)).checkpoint.note;
}

/** How many items the tile's kind has in the chain as stored now. */
function itemCount(cs: ChainStore, r: TileResource): number {
  if (r.kind === 'blocks') return cs.head.n + 1;
  return nodesAtLevel(cs.head.size, r.kind === 'hash' ? r.level : 0);
}

/**
 * The bytes of one resource. A partial tile may be asked for any width the chain covers (a
 * client holding an older checkpoint asks for a narrower one); beyond it is ERR_NOT_FOUND.
 */
export async function readTile(cs: ChainStore, r: TileResource): Promise<Uint8Array> {
  const have = availableWidth(itemCount(cs, r), r.n);
  if (r.width > have) throw new OtiError('ERR_NOT_FOUND', `${r.kind} tile ${r.n} of ${cs.origin} has ${have} of the ${r.width} items asked for`, { origin: cs.origin });
  const first = r.n * TILE_WIDTH;
  if (r.kind === 'entries') return encodeBundle(await cs.entryRange(first, first + r.width));
  if (r.kind === 'blocks') return blockBundle(cs, first, r.width);
  if (r.level === 0) return encodeHashTile((await cs.entryRange(first, first + r.width)).map((e) => leafHash(e)));
  return encodeHashTile(await storedNodes(cs, r.level * TILE_HEIGHT, first, r.width));
}

/** Each block as two records: its header's CBOR bytes, then its signed checkpoint note (UTF-8). */
async function blockBundle(cs: ChainStore, first: number, width: number): Promise<Uint8Array> {
  const records: Uint8Array[] = [];
  for await (const b of cs.blocksFrom(first, first + width - 1)) records.push(b.headerBytes, Buffer.from(b.checkpoint.note, 'utf8'));
  if (records.length !== 2 * width) throw new OtiError('ERR_STORE_CORRUPT', `blocks ${first}..${first + width - 1} of ${cs.origin} are not all stored`);
  return encodeBundle(records);
}

/** Stored nodes of one height, indices [first, first + count), in order. */
async function storedNodes(cs: ChainStore, height: number, first: number, count: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const key = (i: number): Buffer => Buffer.concat([Buffer.of(height), u64(i)]);
  for await (const [k, v] of cs.nodes.iterator({ gte: key(first), lt: key(first + count) })) {
    if (readU64(k.subarray(1)) !== first + out.length || v.length !== 32) break;
    out.push(v);
  }
  if (out.length !== count) throw new OtiError('ERR_STORE_CORRUPT', `node ${height}/${first + out.length} of ${cs.origin} is missing`);
  return out;
}
