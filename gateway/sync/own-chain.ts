/**
 * Checks of checkpoints signed with this gateway's own key (its echoes, a retained one, one a
 * witness cosigned): each must be one this gateway made. One that does not match its chain proves
 * that the key signs elsewhere too (a copy of this gateway's data folder runs somewhere), which is
 * evidence against its own chain (docs/SYNC.md §Equivocation). One larger than the chain is
 * compared once the chain gets there.
 */
import { bytesEqual } from '../../ledger/base/bytes.js';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { compareWithChain } from '../../ledger/evidence.js';
import type { SyncContext } from './context.js';

/** Own checkpoints remembered for recognising their echoes (older ones are checked against the chain). */
const MADE_KEPT = 64;

export class OwnChainGuard {
  /** A checkpoint signed with this gateway's key, larger than its chain: compared once the chain gets there. */
  #ahead: SignedCheckpoint | undefined;
  /** The largest checkpoint of the own chain seen retained or echoed on a broker. */
  #retained: SignedCheckpoint | undefined;
  /** The latest checkpoints this gateway made (size → root), so that their echoes are recognised without hashing. */
  readonly #made = new Map<number, Uint8Array>();

  constructor(private readonly c: SyncContext) {}

  get retained(): SignedCheckpoint | undefined {
    return this.#retained;
  }

  /** Remembers a checkpoint this gateway made. */
  made(cp: SignedCheckpoint | undefined): void {
    if (cp === undefined) return;
    this.#made.set(cp.size, cp.root);
    if (this.#made.size > MADE_KEPT) this.#made.delete(this.#made.keys().next().value!);
  }

  /** After the own chain grew: compares a waiting larger checkpoint once the chain got there. */
  grew(size: number): void {
    const ahead = this.#ahead;
    if (ahead !== undefined && ahead.size <= size) void this.c.guard(this.c.o.gatewayId, () => this.check(ahead));
  }

  /** Once the own chain is attached: checks the retained checkpoint seen before. */
  attached(): void {
    const retained = this.#retained;
    if (retained !== undefined) void this.c.guard(this.c.o.gatewayId, () => this.check(retained));
  }

  /** A checkpoint of the own chain published on a broker (its echo, or a retained one). */
  async received(payload: Buffer): Promise<void> {
    const cp = parseCheckpoint(payload);
    verifyCheckpoint(cp, this.c.origin, this.c.o.key.publicKey);
    if (this.#retained === undefined || cp.size > this.#retained.size) this.#retained = cp;
    await this.check(cp);
  }

  async check(cp: SignedCheckpoint): Promise<void> {
    const c = this.c;
    const chain = c.chain();
    const ours = chain?.checkpoint;
    if (ours === undefined || c.blocked(c.origin)) return;
    if (cp.size > ours.size) {
      if (this.#ahead === undefined || cp.size < this.#ahead.size || this.#ahead.size <= ours.size) this.#ahead = cp;
      return;
    }
    if (this.#ahead !== undefined && this.#ahead.size <= ours.size && this.#ahead !== cp) {
      const pending = this.#ahead;
      this.#ahead = undefined;
      await this.check(pending);
    }
    const made = this.#made.get(cp.size);
    if (made !== undefined && bytesEqual(cp.root, made)) return;
    if (cp.size === ours.size && bytesEqual(cp.root, ours.root)) return;
    const ev = await compareWithChain(chain!, ours, cp, c.o.key.publicKey);
    if (ev !== undefined) await c.equivocation(ev, c.o.key.publicKey);
  }
}
