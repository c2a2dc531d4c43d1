/**
 * The local API's read-only C2SP tlog-tiles routes (docs/API.md §Tiles, docs/PROTOCOL.md §Tiles):
 * every chain stored here, the gateway's own and its peers', under `/tlog/<origin>/`, the origin
 * written as it is (`oti/<site>/<gateway>`: its characters need no escaping, and static servers
 * decode %2F, so an escaped origin would not survive `oti export` served by one).
 *
 *   /tlog/<origin>/checkpoint                 the signed checkpoint of the last stored block
 *   /tlog/<origin>/tile/<L>/<N>[.p/<W>]       hash tiles
 *   /tlog/<origin>/tile/entries/<N>[.p/<W>]   entry bundles
 *   /tlog/<origin>/oti/blocks/<N>[.p/<W>]     block bundles (headers and per-block checkpoints)
 *
 * Full tiles never change, so they are served as immutable; partial tiles and the checkpoint
 * are replaced as the chain grows and may be cached for a few seconds only.
 */
import { OtiError } from '../../ledger/base/errors.js';
import type { ChainReader } from '../../ledger/reader.js';
import { parseTilePath, TILE_WIDTH } from '../../ledger/tiles.js';
import { chainCheckpoint, readTile } from '../../ledger/tile-source.js';

export const TLOG_PREFIX = '/tlog/';
export const IMMUTABLE_CACHE = 'public, max-age=31536000, immutable';
export const SHORT_CACHE = 'public, max-age=5';

export interface TlogReply {
  readonly status: number;
  readonly type: string;
  readonly body: string | Uint8Array;
  readonly headers: Record<string, string>;
}

/** The chain whose origin the path names (the longest match), and the path below it. */
function resolve(path: string, chains: readonly ChainReader[]): { chain: ChainReader; rest: string } | undefined {
  let best: { chain: ChainReader; rest: string } | undefined;
  for (const chain of chains) {
    const base = `${TLOG_PREFIX}${chain.origin}/`;
    if (path.startsWith(base) && (best === undefined || chain.origin.length > best.chain.origin.length)) best = { chain, rest: path.slice(base.length) };
  }
  return best;
}

/** Answers a GET of `path` (which starts with /tlog/); ERR_NOT_FOUND for anything it does not hold. */
export async function tlogRoute(path: string, chains: readonly ChainReader[]): Promise<TlogReply> {
  const hit = resolve(path, chains);
  if (hit === undefined) throw new OtiError('ERR_NOT_FOUND', 'no chain with this origin is stored here', { param: 'origin' });
  if (hit.rest === 'checkpoint') {
    return { status: 200, type: 'text/plain; charset=utf-8', body: await chainCheckpoint(hit.chain), headers: { 'cache-control': SHORT_CACHE } };
  }
  const r = parseTilePath(hit.rest);
  if (r === undefined) throw new OtiError('ERR_NOT_FOUND', 'not a tile path: tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>], oti/blocks/<N>[.p/<W>] or checkpoint', { param: 'path' });
  const body = await readTile(hit.chain, r);
  return { status: 200, type: 'application/octet-stream', body, headers: { 'cache-control': r.width === TILE_WIDTH ? IMMUTABLE_CACHE : SHORT_CACHE } };
}
