/**
 * Older checkpoints of a chain and consistency proofs between any two of its sizes
 * (docs/PROTOCOL.md §Proofs, §Receipts "against an older checkpoint"). Every block's checkpoint is
 * stored with the block, so a signed checkpoint exists exactly for the sizes at which a block ends.
 */
import { OtiError } from './base/errors.js';
import { consistencyProof, verifyConsistency } from './merkle.js';
import { verifyCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import type { Ed25519Verify } from './crypto.js';
import type { ChainReader } from './reader.js';
import { decodeEntry } from './entry.js';
import { Roster } from './roster.js';
import { RosterTree } from './roster-commitment.js';
import { isRosterEntry } from './verify.js';
import { bytesEqual } from './base/bytes.js';

/** The stored checkpoint of tree size `size`, or undefined when no block ends at that size. */
export async function checkpointOfSize(cs: ChainReader, size: number): Promise<SignedCheckpoint | undefined> {
  if (!Number.isSafeInteger(size) || size < 1 || size > cs.head.size) return undefined;
  const block = await cs.blockOf(size - 1);
  return block.checkpoint.size === size ? block.checkpoint : undefined;
}

/**
 * The roster commitment tree of the chain as of checkpoint `cp` (the roster of entries
 * [0, cp.size)), so a receipt against an older checkpoint carries the statements and member
 * proofs its `oti-roster` line commits to. When `current` (the tree of a later checkpoint) has the
 * digest `cp` names, nothing changed in between and it is that tree; otherwise the roster entries
 * before cp.size are replayed (roster entries are rare; the rest is skipped without decoding).
 * A checkpoint without the line (protocol 1.0) is replayed too: its statements must not include
 * later ones. ERR_STORE_CORRUPT when the replayed roster does not give the checkpoint's digest.
 */
export async function rosterTreeAt(cs: ChainReader, cp: SignedCheckpoint, current: RosterTree): Promise<RosterTree> {
  if (cp.roster !== undefined) {
    const d = await current.digest();
    if (d.size === cp.roster.size && bytesEqual(d.root, cp.roster.root)) return current;
  }
  const roster = new Roster();
  for await (const { bytes } of cs.entries(0, cp.size)) {
    if (!isRosterEntry(bytes)) continue;
    const e = decodeEntry(bytes);
    if (e.body.kind === 'roster') roster.apply(e.body.signed);
  }
  const tree = new RosterTree(roster);
  if (cp.roster !== undefined) {
    const d = await tree.digest();
    if (d.size !== cp.roster.size || !bytesEqual(d.root, cp.roster.root)) {
      throw new OtiError('ERR_STORE_CORRUPT', `the roster of the first ${cp.size} entries of ${cs.origin} is not the one its checkpoint commits to`, { size: cp.size });
    }
  }
  return tree;
}

/**
 * RFC 9162 consistency proof from `from` to `to` entries of the chain's durable part, including
 * the edge cases §Proofs defines: empty for `from = 0` and for `from = to`.
 */
export async function consistencyBetween(cs: ChainReader, from: number, to: number): Promise<Uint8Array[]> {
  const size = cs.head.size;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to || to > size) {
    throw new OtiError('ERR_PROOF_RANGE', `no consistency proof from size ${from} to size ${to}: sizes must satisfy 0 <= from <= to <= ${size}`, { from, to, size });
  }
  if (from === 0 || from === to) return [];
  return consistencyProof(cs, from, to);
}

/**
 * Checks that `newer` (a parsed checkpoint note of the same chain) is signed by one of
 * `gatewayKeys` and that `older` is a prefix of it by `proof`. Throws ERR_CHECKPOINT_SIGNATURE,
 * ERR_PROOF_INVALID or ERR_CHECKPOINT_MISMATCH.
 */
export function checkExtends(older: SignedCheckpoint, newer: SignedCheckpoint, proof: readonly Uint8Array[], gatewayKeys: readonly Uint8Array[], ed: Ed25519Verify): void {
  if (newer.origin !== older.origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the newer checkpoint is of ${newer.origin}, not ${older.origin}`);
  if (!gatewayKeys.some((k) => signedBy(newer, k, ed))) throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `the newer checkpoint (size ${newer.size}) is not signed by a key of the receipt's gateway`);
  if (newer.size < older.size) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the newer checkpoint has size ${newer.size}, smaller than the receipt's ${older.size}`);
  if (!verifyConsistency(older.size, newer.size, older.root, newer.root, proof)) {
    throw new OtiError('ERR_PROOF_INVALID', `the checkpoint of size ${older.size} is not a prefix of the one of size ${newer.size} by this proof`);
  }
}

function signedBy(cp: SignedCheckpoint, key: Uint8Array, ed: Ed25519Verify): boolean {
  try {
    verifyCheckpoint(cp, cp.origin, key, ed);
    return true;
  } catch {
    return false;
  }
}
