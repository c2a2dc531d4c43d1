/**
 * The answer deadline of admitted events (gateway/ingest.ts): an event not yet durable when its
 * deadline passes is nacked ERR_BUSY (retry=true) meanwhile, and acked once durable.
 *
 * One timer for all of them instead of one per event: the events are kept in deadline order
 * (they are admitted almost in arrival order, so an insertion walks back a step or two from the
 * tail at most), the timer is armed for the first one's deadline, and events that settle leave
 * from the front as soon as every one before them has settled. A timer armed for an event that
 * has since settled fires early, finds the next deadline not yet due and is armed again for it:
 * no event is nacked later than its own deadline's timer would have fired. Under load a timer and
 * its closure per event, alive until the event's block was written, were 2 % of the closed loop's
 * main thread and 3 % of its allocation.
 */

export interface Deadlined {
  /** When it is due, on the clock the queue was given. */
  readonly deadline: number;
}

export class AnswerDeadlines<T extends Deadlined> {
  /** In deadline order; #head is the first still held. */
  #items: T[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is armed for (Infinity: not armed). */
  #armedFor = Infinity;
  readonly #now: () => number;
  readonly #settled: (item: T) => boolean;
  readonly #due: (item: T) => void;

  /** `settled(item)`: its answer is known (no nack needed any more); `due(item)`: its deadline passed first. */
  constructor(now: () => number, settled: (item: T) => boolean, due: (item: T) => void) {
    this.#now = now;
    this.#settled = settled;
    this.#due = due;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  add(item: T): void {
    const items = this.#items;
    let i = items.length;
    while (i > this.#head && items[i - 1]!.deadline > item.deadline) i--;
    if (i === items.length) items.push(item);
    else items.splice(i, 0, item);
    if (item.deadline < this.#armedFor) this.#arm(item.deadline);
  }

  /** Call when an item settled: drops the settled items at the front. */
  settled(): void {
    while (this.#head < this.#items.length && this.#settled(this.#items[this.#head]!)) this.#pop();
    if (this.#head === this.#items.length) this.#disarm();
  }

  #pop(): T {
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as unknown as T;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  #arm(deadline: number): void {
    this.#disarm();
    this.#armedFor = deadline;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, deadline - this.#now()));
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #fire(): void {
    // Due: what the timer was armed for, and anything the clock says is (a clock that does not
    // move, as in tests, still sees each deadline's timer fire once).
    const dueBy = Math.max(this.#armedFor, this.#now());
    this.#timer = undefined;
    this.#armedFor = Infinity;
    while (this.#head < this.#items.length) {
      const item = this.#items[this.#head]!;
      if (this.#settled(item)) this.#pop();
      else if (item.deadline <= dueBy) this.#due(this.#pop());
      else break;
    }
    if (this.#head < this.#items.length) this.#arm(this.#items[this.#head]!.deadline);
  }

  /** Stops the timer (the items are left to their answers). */
  close(): void {
    this.#disarm();
  }
}
