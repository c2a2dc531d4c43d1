/**
 * Health entries about locks (refused events: invalid, badly signed, replayed, carrying a clear
 * credential; an announced key that is not the enrolled one), at most one a minute per lock
 * (docs/PROTOCOL.md §Flow, "the gateway's checks"), so that a lock that repeats itself cannot
 * fill the chain.
 *
 * The first of a minute is written at once. Those that follow within the minute are held back,
 * counted per status, and written together when the minute is over, by one timer per lock that
 * has something held (nothing runs for a lock with nothing held): one entry with the status and
 * detail of the last one held and the counts of all of them ("… (held back since the last record:
 * 3 replay, 1 bad-signature)"). That entry starts the next minute. So everything is in the chain
 * within a minute of happening, whether or not the lock says anything more, and a lock costs at
 * most one entry a minute. What is held when the pipeline closes is written then.
 */
import type { EntryInput } from '../ledger/entry.js';

export const LOCK_HEALTH_INTERVAL_MS = 60_000;

type HealthInput = Extract<EntryInput, { kind: 'health' }>;

/** One lock's record: when its last entry was written, and what is held back since. */
interface LockRecord {
  last: number;
  /** Held back per status, in the order first held; empty when nothing is. */
  readonly held: Map<string, number>;
  /** The last one held: its status and detail head the entry that writes them. */
  latest: { status: string; detail: string } | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class LockHealthRecords {
  readonly #locks = new Map<string, LockRecord>();
  readonly #write: (input: HealthInput) => void;
  readonly #now: () => number;
  readonly #intervalMs: number;

  /** `write` appends the entry (and reports its outcome); it must not throw. */
  constructor(write: (input: HealthInput) => void, now: () => number, intervalMs = LOCK_HEALTH_INTERVAL_MS) {
    this.#write = write;
    this.#now = now;
    this.#intervalMs = intervalMs;
  }

  /** A health entry about `lock`: written now, or held back and written when its minute is over. */
  record(lock: string, status: string, detail: string): void {
    const t = this.#now();
    const r = this.#locks.get(lock);
    if (r !== undefined && t - r.last < this.#intervalMs) {
      r.held.set(status, (r.held.get(status) ?? 0) + 1);
      r.latest = { status, detail };
      r.timer ??= this.#arm(lock, r.last + this.#intervalMs - t);
      return;
    }
    // A minute or more since the last entry: the timer has written what was held, unless it has
    // not run yet (a busy loop); then it goes into this entry.
    this.#entry(lock, { status, detail }, r?.held, t);
  }

  /** Writes what is held for every lock now (the pipeline is closing) and stops the timers. */
  close(): void {
    for (const [lock, r] of this.#locks) if (r.latest !== undefined) this.#flush(lock);
  }

  /** Locks with something held back (each with its timer). */
  get holding(): number {
    let n = 0;
    for (const r of this.#locks.values()) if (r.latest !== undefined) n++;
    return n;
  }

  #arm(lock: string, inMs: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.#flush(lock), Math.max(0, inMs));
    timer.unref();
    return timer;
  }

  #flush(lock: string): void {
    const r = this.#locks.get(lock);
    if (r?.latest === undefined) return;
    this.#entry(lock, r.latest, r.held, this.#now());
  }

  /** Writes one entry, with the counts of what was held back if anything was, and starts the lock's next minute. */
  #entry(lock: string, head: { status: string; detail: string }, held: ReadonlyMap<string, number> | undefined, t: number): void {
    const counts = held === undefined || held.size === 0 ? '' : ` (held back since the last record: ${[...held].map(([s, n]) => `${n} ${s}`).join(', ')})`;
    const r = this.#locks.get(lock);
    if (r?.timer !== undefined) clearTimeout(r.timer);
    this.#locks.set(lock, { last: t, held: new Map(), latest: undefined, timer: undefined });
    // The detail is at most 2048 characters (docs/PROTOCOL.md §Entries); the counts are kept whole.
    const detail = `${head.detail.slice(0, 2048 - counts.length)}${counts}`;
    this.#write({ kind: 'health', source: `lock:${lock}`, status: head.status, detail });
  }
}
