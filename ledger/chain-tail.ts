/**
 * A stored chain's last block, checked before the chain is used again (Chain.open), and the
 * compact Merkle range rebuilt from the perfect subtrees a store keeps (also used by whole-chain
 * verification and the archive).
 */
import { OtiError } from './base/errors.js';
import { bytesEqual } from './base/bytes.js';
import { leafHash, CompactRange } from './merkle.js';
import { blockHash, ZERO_HASH } from './block.js';
import { verifyCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import type { Roster } from './roster.js';
import { CHUNK_SIZE, type ChainStore } from './store.js';

/**
 * Checks the last block of a stored chain before the chain is used: the head agrees with the
 * block, the block's entries hash to its root (starting from the stored subtree hashes before
 * it), it links to the block before it, and its checkpoint is signed by the gateway's key.
 */
export async function verifyTail(cs: ChainStore, roster: Roster, gatewayId: string): Promise<{ hash: Uint8Array; checkpoint: SignedCheckpoint }> {
  const head = cs.head;
  const corrupt = (why: string): OtiError => new OtiError('ERR_STORE_CORRUPT', `the last block of ${cs.origin} does not verify: ${why}`, { origin: cs.origin, block: head.n });
  let block;
  try {
    block = await cs.block(head.n);
  } catch (e) {
    throw corrupt((e as Error).message);
  }
  const h = block.header;
  if (h.first + h.count !== head.size || h.n !== head.n || h.chain !== cs.origin) throw corrupt('its header does not match the head');
  const rebuilt = await rebuildRange(cs, h.first);
  for (const bytes of await cs.entryRange(h.first, head.size)) rebuilt.append(leafHash(bytes));
  if (rebuilt.size !== head.size) throw corrupt('entries are missing');
  if (!bytesEqual(rebuilt.root(), h.root)) throw corrupt('its entries do not hash to its root');
  if (!bytesEqual(CompactRange.fromPeaks(head.size, [...head.peaks]).root(), h.root)) throw corrupt('the stored head disagrees with the block root');
  if (h.n > 0) {
    const prev = await cs.block(h.n - 1);
    if (!bytesEqual(blockHash(prev.headerBytes), h.prev)) throw corrupt('it does not link to the block before it');
  } else if (!bytesEqual(h.prev, ZERO_HASH)) throw corrupt('block 0 must link to the zero hash');
  const hash = blockHash(block.headerBytes);
  const cp = block.checkpoint;
  if (cp.origin !== cs.origin || cp.size !== head.size || !bytesEqual(cp.root, h.root) || cp.block !== h.n || !bytesEqual(cp.blockHash, hash)) throw corrupt('its checkpoint does not describe it');
  const me = roster.get('gateway', gatewayId);
  if (me === undefined) throw corrupt('the gateway is not in the stored roster');
  try {
    verifyCheckpoint(cp, cs.origin, me.key);
  } catch {
    throw corrupt('its checkpoint signature does not verify');
  }
  if (cs.tailChunk.length !== head.size % CHUNK_SIZE) throw corrupt('the last chunk does not match the head');
  return { hash, checkpoint: cp };
}

/** The compact range of [0, size) rebuilt from the perfect subtrees the store can produce. */
export async function rebuildRange(reader: { node(level: number, index: number): Promise<Uint8Array> }, size: number): Promise<CompactRange> {
  const peaks: Uint8Array[] = [];
  let pos = 0;
  for (let level = 52; level >= 0; level--) {
    const span = 2 ** level;
    if (pos + span <= size) {
      peaks.push(await reader.node(level, pos / span));
      pos += span;
    }
  }
  return CompactRange.fromPeaks(size, peaks);
}
