/**
 * The C2SP tlog-tiles resources of a stored chain (ledger/tiles.ts says what they hold), read
 * from its LevelDB store. Used by the local API (gateway/api/tlog-routes.ts) and `oti export`.
 * docs/PROTOCOL.md §Tiles.
 *
 * Level-0 hash tiles are the leaf hashes of the entries (one chunk read per 16 entries); tiles
 * at level L >= 1 hold nodes of height 8·L, which the store keeps (store.ts keeps every node of
 * height >= 4), read with one iterator (ChainReader.nodeRange). Any ChainReader serves: the own
 * chain, a peer's replica, or a store opened read-only (`oti export`).
 */
import { OtiError } from './base/errors.js';
import { leafHash } from './merkle.js';
import type { ChainReader } from './reader.js';
import { availableWidth, encodeBundle, encodeHashTile, nodesAtLevel, TILE_HEIGHT, TILE_WIDTH, type TileResource } from './tiles.js';

/** The signed checkpoint of the chain's last stored block (what its tiles are consistent with). */
export async function chainCheckpoint(cs: ChainReader): Promise<string> {
  if (cs.head.n < 0) throw new OtiError('ERR_NOT_FOUND', `chain ${cs.origin} has no block yet`);
  return (await cs.block(cs.head.n)).checkpoint.note;
}

/** How many items the tile's kind has in the chain as stored now. */
function itemCount(cs: ChainReader, r: TileResource): number {
  if (r.kind === 'blocks') return cs.head.n + 1;
  return nodesAtLevel(cs.head.size, r.kind === 'hash' ? r.level : 0);
}

/**
 * The bytes of one resource. A partial tile may be asked for any width the chain covers (a
 * client holding an older checkpoint asks for a narrower one); beyond it is ERR_NOT_FOUND.
 */
export async function readTile(cs: ChainReader, r: TileResource): Promise<Uint8Array> {
  const have = availableWidth(itemCount(cs, r), r.n);
  if (r.width > have) throw new OtiError('ERR_NOT_FOUND', `${r.kind} tile ${r.n} of ${cs.origin} has ${have} of the ${r.width} items asked for`, { origin: cs.origin });
  const first = r.n * TILE_WIDTH;
  if (r.kind === 'entries') return encodeBundle(await cs.entryRange(first, first + r.width));
  if (r.kind === 'blocks') return blockBundle(cs, first, r.width);
  if (r.level === 0) return encodeHashTile((await cs.entryRange(first, first + r.width)).map((e) => leafHash(e)));
  return encodeHashTile(await cs.nodeRange(r.level * TILE_HEIGHT, first, r.width));
}

/** Each block as two records: its header's CBOR bytes, then its signed checkpoint note (UTF-8). */
async function blockBundle(cs: ChainReader, first: number, width: number): Promise<Uint8Array> {
  const records: Uint8Array[] = [];
  for await (const b of cs.blocks(first, first + width - 1)) records.push(b.headerBytes, Buffer.from(b.checkpoint.note, 'utf8'));
  if (records.length !== 2 * width) throw new OtiError('ERR_STORE_CORRUPT', `blocks ${first}..${first + width - 1} of ${cs.origin} are not all stored`);
  return encodeBundle(records);
}
