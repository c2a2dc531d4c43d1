/**
 * C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile math, resource paths and bundle encoding,
 * pure (no I/O). docs/PROTOCOL.md §Tiles.
 *
 * A hash tile at level L, index N, width W holds the hashes of the tree nodes at height 8·L with
 * indices [256·N, 256·N + W), concatenated (32 bytes each). A full tile has W = 256; the last tile
 * of a level is partial (W < 256) until the tree grows past it. An entry bundle N holds entries
 * [256·N, 256·N + W), each as a big-endian uint16 length followed by the entry bytes; the leaf
 * hash of an entry is SHA-256(0x00 || entry) (RFC 9162, ledger/merkle.ts leafHash).
 *
 * Paths: `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`, and ours beside them for the chain
 * rules: `oti/blocks/<N>[.p/<W>]` (block bundles, same grouping by 256 block numbers). <N> is
 * written as 3-digit zero-padded groups, all but the last prefixed with "x" (1234067 is
 * x001/x234/067), with no leading all-zero group.
 */
import { OtiError } from './base/errors.js';
import { HASH_BYTES } from './crypto.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
/** Entries and bundle records are uint16 length-prefixed. */
export const BUNDLE_RECORD_MAX_BYTES = 0xffff;

export type TileResource =
  | { readonly kind: 'hash'; readonly level: number; readonly n: number; readonly width: number }
  | { readonly kind: 'entries'; readonly n: number; readonly width: number }
  | { readonly kind: 'blocks'; readonly n: number; readonly width: number };

/** `<N>` of a tile path: 3-digit groups, all but the last prefixed with "x". */
export function tileIndexPath(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new OtiError('ERR_ARGUMENT', 'a tile index must be a non-negative integer', { argument: 'n' });
  const groups: string[] = [];
  let rest = n;
  do {
    groups.unshift(String(rest % 1000).padStart(3, '0'));
    rest = Math.floor(rest / 1000);
  } while (rest > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

function widthSuffix(width: number): string {
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) throw new OtiError('ERR_ARGUMENT', `a tile width must be 1..${TILE_WIDTH}`, { argument: 'width' });
  return width === TILE_WIDTH ? '' : `.p/${width}`;
}

/** The path of a resource, relative to the log's prefix. */
export function tilePath(r: TileResource): string {
  const tail = `${tileIndexPath(r.n)}${widthSuffix(r.width)}`;
  if (r.kind === 'entries') return `tile/entries/${tail}`;
  if (r.kind === 'blocks') return `oti/blocks/${tail}`;
  return `tile/${r.level}/${tail}`;
}

/**
 * Parses a path relative to the prefix (as tilePath writes it); undefined when it is not one.
 * Only the canonical form is accepted, so every resource has exactly one path.
 */
export function parseTilePath(path: string): TileResource | undefined {
  const m = /^(tile\/(entries|[0-9]{1,2})|oti\/blocks)\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([0-9]{1,3}))?$/.exec(path);
  if (m === null) return undefined;
  const n = Number(m[3]!.replace(/x|\//g, ''));
  const width = m[4] === undefined ? TILE_WIDTH : Number(m[4]);
  if (!Number.isSafeInteger(n) || width < 1 || width >= TILE_WIDTH + (m[4] === undefined ? 1 : 0)) return undefined;
  const r: TileResource = m[1] === 'oti/blocks' ? { kind: 'blocks', n, width } : m[2] === 'entries' ? { kind: 'entries', n, width } : { kind: 'hash', level: Number(m[2]), n, width };
  if (r.kind === 'hash' && r.level > 63) return undefined;
  return tilePath(r) === path ? r : undefined;
}

/** Complete nodes at height 8·level in a tree of `size` leaves. */
export function nodesAtLevel(size: number, level: number): number {
  return Math.floor(size / TILE_WIDTH ** level);
}

/**
 * How many items (node hashes, entries or blocks) tile `n` can hold when `count` items exist:
 * 256 for a full tile, 1..255 for the partial last one, 0 when the tile is beyond them.
 */
export function availableWidth(count: number, n: number): number {
  return Math.max(0, Math.min(TILE_WIDTH, count - n * TILE_WIDTH));
}

/** Every hash tile and entry bundle of a tree of `size` leaves (full ones and each level's partial one). */
export function* treeResources(size: number): Generator<TileResource> {
  for (let level = 0; nodesAtLevel(size, level) > 0; level++) {
    const count = nodesAtLevel(size, level);
    for (let n = 0; n * TILE_WIDTH < count; n++) {
      const width = availableWidth(count, n);
      yield { kind: 'hash', level, n, width };
      if (level === 0) yield { kind: 'entries', n, width };
    }
  }
}

/** Every block bundle for `blocks` blocks. */
export function* blockResources(blocks: number): Generator<TileResource> {
  for (let n = 0; n * TILE_WIDTH < blocks; n++) yield { kind: 'blocks', n, width: availableWidth(blocks, n) };
}

/** Records, each as a big-endian uint16 length then its bytes (an entry bundle's encoding). */
export function encodeBundle(records: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const r of records) {
    if (r.length > BUNDLE_RECORD_MAX_BYTES) throw new OtiError('ERR_ENCODING_TOO_LARGE', `a bundle record is ${r.length} bytes, limit is ${BUNDLE_RECORD_MAX_BYTES}`);
    total += 2 + r.length;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const r of records) {
    out.writeUInt16BE(r.length, at);
    out.set(r, at + 2);
    at += 2 + r.length;
  }
  return out;
}

/** Splits a bundle into its records; throws ERR_ENCODING_MALFORMED when a length runs past the end. */
export function decodeBundle(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < b.length) {
    if (at + 2 > b.length) throw new OtiError('ERR_ENCODING_MALFORMED', 'bundle ends inside a record length');
    const len = (b[at]! << 8) | b[at + 1]!;
    if (at + 2 + len > b.length) throw new OtiError('ERR_ENCODING_MALFORMED', 'bundle ends inside a record');
    out.push(b.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  return out;
}

/** A hash tile's bytes: the hashes concatenated. */
export function encodeHashTile(hashes: readonly Uint8Array[]): Uint8Array {
  const out = Buffer.allocUnsafe(hashes.length * HASH_BYTES);
  hashes.forEach((h, i) => out.set(h, i * HASH_BYTES));
  return out;
}
