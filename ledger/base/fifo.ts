/**
 * A first-in first-out queue for the hot paths where thousands of items can wait (the chain's
 * admission queue, the answer deadlines of admitted events): an array with a head index, because
 * `shift()` on a long array moves every element each time. The spent front is cut off once the
 * head is `compactAt` or more in and at least half of the array is spent, and the array is
 * dropped whole whenever the queue empties.
 */
export class Fifo<T> {
  /** The items; those before #head have left (their slots cleared for the collector). */
  #items: (T | undefined)[] = [];
  #head = 0;
  readonly #compactAt: number;

  constructor(compactAt = 1024) {
    this.#compactAt = compactAt;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The front item, or undefined when empty. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Takes the front item off (undefined when empty). */
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= this.#compactAt && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Drops every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }

  /** Calls `fn` for every item, front to back; `fn` must not push or shift. */
  forEach(fn: (item: T) => void): void {
    const items = this.#items;
    for (let i = this.#head; i < items.length; i++) fn(items[i] as T);
  }
}
