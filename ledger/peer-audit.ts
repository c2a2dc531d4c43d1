/**
 * The audit of a replica's lock signatures (ChainReplica.audit, ledger/peer.ts) checks only those
 * signatures: the blocks were verified whole before they were stored (entries against the block
 * root and the gateway's signed checkpoint, links, roster, counters), so the audit neither decodes
 * them again nor verifies their checkpoints again.
 *
 * While a replica stores blocks, its verifier packs the lock signatures of the entries it checks
 * (the lock's key as of that entry, the COSE Sig_structure, the signature; ChainVerifier with
 * lockSignatures 'collect'), which the replica takes into audit chunks of whole blocks, queued
 * in memory up to AUDIT_QUEUE_BYTES. Past that bound, and for blocks stored
 * before this process (after a restart, or in the other mode), a chunk names only its blocks and
 * the roster before them, and the audit reads those entries back from the store to pack them.
 */
import { OtiError } from './base/errors.js';
import { decodeEntry, type Entry } from './entry.js';
import { Roster } from './roster.js';
import { SigPacker } from './sigpool.js';
import { isRosterEntry } from './verify.js';
import type { ChainReader } from './reader.js';

/** Signatures per audit chunk, at least (chunks end at a block boundary). */
export const AUDIT_CHUNK_SIGNATURES = 512;
/** Blocks per audit chunk at most (also when they hold few signatures). */
export const AUDIT_CHUNK_BLOCKS = 64;
/** Packed signatures kept in memory for the audit, at most; beyond, the audit reads the entries back. */
export const AUDIT_QUEUE_BYTES = 8 * 1024 * 1024;

/** Blocks `from`..`to` of a replica, for the audit. */
export interface AuditChunk {
  readonly from: number;
  /** Last block (inclusive). */
  readonly to: number;
  /** Entries in the chain up to the end of block `to`. */
  readonly sizeAfter: number;
  /** The packed lock signatures and the entry index of each, or undefined: read from the store. */
  readonly packed: Uint8Array | undefined;
  readonly indexes: readonly number[];
  /** For a chunk read from the store: the roster before block `from` (not to be changed). */
  readonly rosterBefore: Roster | undefined;
}

/** The roster before entry `size` of a stored chain (its roster entries read back, already checked when stored). */
export async function storedRosterBefore(cs: ChainReader, size: number): Promise<Roster> {
  const roster = new Roster();
  for await (const { bytes } of cs.entries(0, size)) {
    if (!isRosterEntry(bytes)) continue;
    const e = decodeEntry(bytes);
    if (e.body.kind === 'roster') roster.apply(e.body.signed);
  }
  return roster;
}

/**
 * Reads blocks `from`..`to` (at most) from the store and packs their lock signatures, up to
 * AUDIT_CHUNK_SIGNATURES or AUDIT_CHUNK_BLOCKS; `roster` (the roster before block `from`) is
 * moved along. Returns the chunk, or undefined when block `from` is not stored.
 */
export async function readAuditChunk(cs: ChainReader, from: number, to: number, roster: Roster): Promise<AuditChunk | undefined> {
  const packer = new SigPacker();
  const indexes: number[] = [];
  let last = -1;
  let sizeAfter = 0;
  for await (const block of cs.blocks(from, to)) {
    const h = block.header;
    if (h.n !== (last < 0 ? from : last + 1)) break;
    const entries = await cs.entryRange(h.first, h.first + h.count);
    for (let k = 0; k < entries.length; k++) {
      const index = h.first + k;
      let entry: Entry;
      try {
        entry = decodeEntry(entries[k]!);
      } catch (e) {
        throw new OtiError('ERR_ENTRY_INVALID', `entry ${index} of ${cs.origin}: ${(e as Error).message}`, { origin: cs.origin, index }, { cause: e });
      }
      const body = entry.body;
      if (body.kind === 'lock-event') {
        if (body.prov !== 'lock-signed') continue;
        const key = roster.get('lock', body.event.lock)?.key;
        if (key === undefined) throw new OtiError('ERR_LOCK_UNKNOWN', `entry ${index} of ${cs.origin}: lock ${body.event.lock} is not enrolled here`, { origin: cs.origin, index });
        packer.addCose(key, body.parsed.payload, body.parsed.signature);
        indexes.push(index);
      } else if (body.kind === 'roster') {
        roster.apply(body.signed);
      }
    }
    last = h.n;
    sizeAfter = h.first + h.count;
    if (indexes.length >= AUDIT_CHUNK_SIGNATURES || last - from + 1 >= AUDIT_CHUNK_BLOCKS) break;
  }
  if (last < 0) return undefined;
  return { from, to: last, sizeAfter, packed: packer.take(), indexes, rosterBefore: undefined };
}
