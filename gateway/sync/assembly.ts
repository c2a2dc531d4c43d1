/**
 * The two steps of a pull between decoding a range message and storing (gateway/sync/pull.ts):
 * assembling whole blocks from a window's messages (entries may arrive before their block's
 * header, in an earlier message), and the progress reported while a long chain is caught up.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import type { ReplicaBlock } from '../../ledger/peer.js';
import type { SyncProgress } from './context.js';
import type { RangeMessage } from './wire.js';

/** Entries of an incomplete block a fetch buffers at most (a block is at most this long). */
const MAX_PENDING_ENTRIES = 65_536;

/** One window's messages, in order, turned into whole blocks; not verified here (ChainReplica.append does that). */
export class BlockAssembler {
  #position: number;
  #pending: Uint8Array[] = [];

  constructor(
    private readonly origin: string,
    from: number,
  ) {
    this.#position = from;
  }

  /** Refuses a message that is not the next of the window (another chain, a gap, an overlap). */
  expect(msg: RangeMessage): void {
    const origin = this.origin;
    if (msg.chain !== origin || msg.first !== this.#position) throw new OtiError('ERR_BLOCK_INVALID', `range for ${origin} starts at ${msg.first}, expected ${this.#position}`, { origin });
  }

  /** Takes the next message of the window; returns the blocks it completes. */
  take(msg: RangeMessage): ReplicaBlock[] {
    const origin = this.origin;
    this.expect(msg);
    const pending = this.#pending.length === 0 ? [...msg.entries] : this.#pending.concat(msg.entries);
    this.#position += msg.entries.length;
    const blocks: ReplicaBlock[] = [];
    let used = 0;
    for (const b of msg.blocks) {
      const h = decodeBlockHeader(b.h);
      if (h.count > pending.length - used) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} of ${origin} claims more entries than were sent`, { origin });
      blocks.push({ headerBytes: b.h, checkpoint: parseCheckpoint(b.cp), entries: pending.slice(used, used + h.count) });
      used += h.count;
    }
    this.#pending = pending.slice(used);
    if (this.#pending.length > MAX_PENDING_ENTRIES) throw new OtiError('ERR_BLOCK_INVALID', `more than ${MAX_PENDING_ENTRIES} entries of ${origin} arrived without their block`, { origin });
    return blocks;
  }
}

/** Progress of one pull (over all its windows): what is stored, what is left, how fast. */
export class PullProgress {
  readonly #started: number;

  constructor(
    private readonly origin: string,
    private readonly startSize: number,
    private readonly now: () => number,
  ) {
    this.#started = now();
  }

  at(size: number, headSize: number): SyncProgress {
    const secs = Math.max(0.001, (this.now() - this.#started) / 1000);
    return { origin: this.origin, size, remaining: Math.max(0, headSize - size), entriesPerSecond: Math.round((size - this.startSize) / secs) };
  }
}
