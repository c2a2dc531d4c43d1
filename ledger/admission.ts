/**
 * The chain's admission queue: appends are admitted in call order, whatever order their
 * asynchronous checks (a lock's last counter loaded, its signature verified) finish in, so that a
 * lock's events keep the order in which they were handed over.
 *
 * An array with a head index rather than shift(): thousands of appends can wait here under load,
 * and shift() on a long array moves every element each time. The array is cut down once its head
 * is far in and at least half of it has been admitted.
 */

/** What the queue needs of an item: whether its checks are still running. */
export interface Admissible {
  state: 'checking' | 'ready' | 'failed';
  /** Why its checks failed (state 'failed'). */
  error: Error | undefined;
}

export class AdmissionQueue<T extends Admissible> {
  /** Items in call order; #head is the first not yet admitted. */
  #items: T[] = [];
  #head = 0;
  /** Called for each item once it and every item before it are done checking. */
  readonly #admit: (item: T) => void;

  constructor(admit: (item: T) => void) {
    this.#admit = admit;
  }

  /** True when nothing waits: an item whose checks are done may then be admitted at once. */
  get empty(): boolean {
    return this.#head === this.#items.length;
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
    while (this.#head < this.#items.length && this.#items[this.#head]!.state !== 'checking') {
      const item = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined as unknown as T;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      } else if (this.#head >= 4096 && this.#head * 2 >= this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      this.#admit(item);
    }
  }
}
