/**
 * The read side of a stored chain, the one interface through which everything above ledger/
 * reads a chain: a gateway's own `Chain`, a peer's `ChainReplica` and the `ChainStore` under both
 * satisfy it, so the local API, the notifier, webhooks, privacy and the tlog tiles read any chain
 * the same way and none of them reaches into the store that holds it. Writing stays with Chain
 * (own chain) and ChainReplica (peers), which decide what is valid before it is stored.
 *
 * Reads are of durable state only: `head` is the last block written, and every index or block
 * number past it is ERR_NOT_FOUND.
 */
import type { BlockHeader } from './block.js';
import type { SignedCheckpoint } from './checkpoint.js';
import type { NodeReader } from './merkle.js';

export interface ChainHead {
  /** Number of the last block; -1 for an empty chain. */
  readonly n: number;
  readonly size: number;
  readonly peaks: readonly Uint8Array[];
}

export interface StoredBlock {
  readonly headerBytes: Uint8Array;
  readonly header: BlockHeader;
  readonly checkpoint: SignedCheckpoint;
}

/** 'self' for a gateway's own chain, 'peer' for a replica of another gateway's. */
export type ChainRole = 'self' | 'peer';

/**
 * Entries in order as spans of larger buffers: entry i is bytes [pos[3i + 1], pos[3i + 2]) of
 * bufs[pos[3i]]. Never written to, like entryRange()'s views.
 */
export interface EntrySpans {
  readonly count: number;
  readonly bufs: readonly Uint8Array[];
  readonly pos: Int32Array;
}

export interface ChainReader extends NodeReader {
  /** `oti/<site>/<gateway>`. */
  readonly origin: string;
  readonly role: ChainRole;
  /** The last durable block: its number, the chain size after it, the Merkle peaks. */
  readonly head: ChainHead;
  /** Entry `index` as stored (deterministic CBOR); ERR_NOT_FOUND at or past the head's size. */
  entry(index: number): Promise<Uint8Array>;
  /**
   * Entries [from, to) in order, one at a time (bounded memory for whole-chain scans). Range reads
   * may hand out views into larger buffers read from the store: never write to an entry, and copy
   * one that is kept for long on its own.
   */
  entries(from: number, to: number): AsyncGenerator<{ index: number; bytes: Uint8Array }>;
  /** Entries [from, to) as one array (a block or a page at a time: memory is the caller's bound). */
  entryRange(from: number, to: number): Promise<Uint8Array[]>;
  /**
   * entryRange() as where the entries lie in the buffers read (EntrySpans), without a view per
   * entry: for whole-chain verification, which would otherwise keep a block's views alive across
   * young-generation collections. Optional: verifyChain uses entryRange() without it.
   */
  entrySpans?(from: number, to: number): Promise<EntrySpans>;
  /** Block `n`; ERR_NOT_FOUND past the head. */
  block(n: number): Promise<StoredBlock>;
  /** Blocks n..to (inclusive) in order. */
  blocks(n: number, to?: number): AsyncGenerator<StoredBlock>;
  /** The block that holds entry `index`. */
  blockOf(index: number): Promise<StoredBlock>;
  /** Perfect-subtree hashes of one level, indices [first, first + count) (node() for many at once). */
  nodeRange(level: number, first: number, count: number): Promise<Uint8Array[]>;
}
