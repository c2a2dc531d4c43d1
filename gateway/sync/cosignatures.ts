/**
 * The cosignature lines this gateway has verified on its own chain's checkpoints (the site's
 * gateways over MQTT, gateway/sync/node.ts; external C2SP witnesses, gateway/sync/witness-push.ts),
 * kept so that a receipt against one of those checkpoints carries them: a C2SP tlog-proof "with
 * the cosignatures the checkpoint has" (docs/API.md §GET /receipts/{id}, docs/PROTOCOL.md
 * §Receipts as C2SP tlog-proof).
 *
 * Only lines already verified are added; each is kept with the checkpoint text it signs and is
 * attached only to a note with that same text, in the byte order of the witnesses' key names
 * (compareNames), as the archive adds the lines it holds (gateway/archive/queries.ts), so the
 * same lines give the same bytes wherever the receipt comes from. In memory, for the newest
 * MAX_SIZES cosigned sizes (a restart forgets them; the witnesses' next cosignatures, and those
 * retained on the site's brokers, bring lines again).
 *
 * The book also keeps each site witness's newest cosigned note of the own chain (`cosigned`), for
 * the uplink (gateway/sync/uplink.ts): it takes them from the book when it starts and each new
 * one as it comes, so a cosignature verified before the uplink started reaches the central broker
 * too (docs/ARCHIVE.md §Uplink).
 */
import { parseCheckpoint, withSignature, CHECKPOINT_MAX_BYTES, type NoteSignature, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { verifyCosignature } from './witness.js';

/** Checkpoint sizes whose cosignature lines are kept (the oldest are dropped first). */
export const MAX_SIZES = 1024;
/** A note carries at most 16 signature lines (docs/PROTOCOL.md §Checkpoints): the gateway's and 15 more. */
const MAX_LINES = 15;
/** Site witnesses whose newest cosigned note is kept for the uplink. */
export const MAX_WITNESSES = 64;

/** The order of cosignature lines in a note: by key name, byte for byte (the names are ASCII). */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A site witness's newest verified cosignature of the own chain: its size and the cosigned note. */
export interface NewestCosignature {
  readonly size: number;
  readonly note: string;
}

export type CosignedListener = (witness: string, c: NewestCosignature) => void;

interface Cosigned {
  readonly text: string;
  /** Witness key name -> its newest verified line for this checkpoint. */
  readonly lines: Map<string, NoteSignature>;
}

export class CosignatureBook {
  readonly #bySize = new Map<number, Cosigned>();
  readonly #newest = new Map<string, NewestCosignature>();
  readonly #listeners = new Set<CosignedListener>();

  /**
   * A cosignature of the own chain by site gateway `witness`, verified by sync (its `cosigned`
   * event): its line is kept for receipts (add), and the note is kept as the witness's newest
   * when its size is larger than the one kept, and then handed to the listeners.
   */
  cosigned(c: { readonly witness: string; readonly size: number; readonly name: string; readonly key: Uint8Array; readonly checkpoint: SignedCheckpoint }): void {
    this.add(c.checkpoint, c.name, c.key);
    const had = this.#newest.get(c.witness);
    if (had !== undefined && had.size >= c.size) return;
    if (had === undefined && this.#newest.size >= MAX_WITNESSES) return;
    const kept = { size: c.size, note: c.checkpoint.note };
    this.#newest.set(c.witness, kept);
    for (const l of this.#listeners) l(c.witness, kept);
  }

  /** Each site witness's newest cosignature kept (witness gateway id, size and note). */
  newest(): [string, NewestCosignature][] {
    return [...this.#newest];
  }

  /** Calls `l` with each newer cosignature kept from now on; returns what stops it. */
  listen(l: CosignedListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /**
   * Keeps the cosignature line of `cp` (a checkpoint of this gateway's own chain, already checked
   * against it) by witness (`witnessName`, `publicKey`): the first line of that name that verifies
   * as a C2SP cosignature/v1 (its timestamp was checked by the caller). Nothing when none does.
   */
  add(cp: SignedCheckpoint, witnessName: string, publicKey: Uint8Array): void {
    const line = cp.signatures.find((s) => s.name === witnessName && verifyCosignature({ ...cp, signatures: [s] }, witnessName, publicKey, Number.MAX_SAFE_INTEGER) !== undefined);
    if (line === undefined) return;
    let c = this.#bySize.get(cp.size);
    if (c === undefined || c.text !== cp.text) {
      c = { text: cp.text, lines: new Map() };
      this.#bySize.delete(cp.size);
      this.#bySize.set(cp.size, c);
      for (const size of this.#bySize.keys()) {
        if (this.#bySize.size <= MAX_SIZES) break;
        this.#bySize.delete(size);
      }
    }
    if (c.lines.size >= MAX_LINES && !c.lines.has(witnessName)) return;
    c.lines.set(witnessName, line);
  }

  /** The names of the witnesses whose lines are kept for checkpoint size `size`. */
  witnesses(size: number): string[] {
    return [...(this.#bySize.get(size)?.lines.keys() ?? [])];
  }

  /**
   * The note with the kept cosignature lines of its checkpoint appended (those it does not carry
   * yet) in the order of their names, as long as it stays within 16 lines and
   * CHECKPOINT_MAX_BYTES; the note itself otherwise.
   */
  attach(note: string): string {
    let cp = parseCheckpoint(note);
    const c = this.#bySize.get(cp.size);
    if (c === undefined || c.text !== cp.text) return note;
    for (const [name, line] of [...c.lines].sort(([a], [b]) => compareNames(a, b))) {
      if (cp.signatures.some((s) => s.name === name) || cp.signatures.length >= MAX_LINES + 1) continue;
      const next = withSignature(cp, line);
      if (Buffer.byteLength(next.note, 'utf8') > CHECKPOINT_MAX_BYTES) break;
      cp = next;
    }
    return cp.note;
  }
}
