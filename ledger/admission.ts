/**
 * The chain's admission queue: appends are admitted in call order, whatever order their
 * asynchronous checks (a lock's last counter loaded, its signature verified) finish in, so that a
 * lock's events keep the order in which they were handed over.
 *
 * Thousands of appends can wait here under load: a Fifo (ledger/base/fifo.ts), not an array's
 * shift().
 */
import { Fifo } from './base/fifo.js';

/** What the queue needs of an item: whether its checks are still running. */
export interface Admissible {
  state: 'checking' | 'ready' | 'failed';
  /** Why its checks failed (state 'failed'). */
  error: Error | undefined;
}

export class AdmissionQueue<T extends Admissible> {
  /** Items in call order, not yet admitted. */
  readonly #items = new Fifo<T>(4096);
  /** Called for each item once it and every item before it are done checking. */
  readonly #admit: (item: T) => void;

  constructor(admit: (item: T) => void) {
    this.#admit = admit;
  }

  /** True when nothing waits: an item whose checks are done may then be admitted at once. */
  get empty(): boolean {
    return this.#items.length === 0;
  }

  /**
   * Queues an item behind those already waiting. Without `checking` it is ready now; else it is
   * ready when `checking` resolves (with what `onChecked` is given) and failed when it rejects.
   */
  push<R>(item: T, checking?: Promise<R>, onChecked?: (item: T, value: R) => void): void {
    this.#items.push(item);
    if (checking === undefined) {
      item.state = 'ready';
      this.drain();
      return;
    }
    checking.then(
      (value) => {
        onChecked?.(item, value);
        item.state = 'ready';
        this.drain();
      },
      (e: unknown) => {
        item.state = 'failed';
        item.error = e as Error;
        this.drain();
      },
    );
  }

  /** Admits the items at the head whose checks are done, up to the first still checking. */
  drain(): void {
    for (let item = this.#items.peek(); item !== undefined && item.state !== 'checking'; item = this.#items.peek()) {
      this.#items.shift();
      this.#admit(item);
    }
  }
}
