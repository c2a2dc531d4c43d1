/**
 * The answer deadline of events in the pipeline (gateway/ingest.ts): an event not yet answered
 * when its deadline passes (still checked, waiting for its turn, not yet durable, or a resend
 * waiting for the entry of the event it repeats) is nacked ERR_BUSY (retry=true) meanwhile, and
 * gets its answer (the ack once durable) later.
 *
 * One timer for all of them instead of one per event. Events are held in the order the pipeline
 * took them (about arrival order, but not necessarily deadline order), and leave from the front as
 * soon as every one before them has settled.
 * The timer is armed for the earliest deadline among those held: an event whose deadline comes
 * before the one armed for re-arms it. When it fires, the whole queue is scanned (at most the
 * pipeline's queue limit, once per deadline), every unsettled event whose deadline has passed is
 * due (once), and the timer is armed again for the earliest deadline left. No event is told later
 * than its own deadline's timer would have fired; a timer armed for an event that has since
 * settled fires early and finds nothing due. Under load a timer and its closure per event, alive
 * until the event's block was written, were 2 % of the closed loop's main thread and 3 % of its
 * allocation.
 */

import { Fifo } from '../ledger/base/fifo.js';

export interface Deadlined {
  /** When it is due, on the clock the queue was given. */
  readonly deadline: number;
  /** Set by the queue once it was found due. */
  overdue: boolean;
}

export class AnswerDeadlines<T extends Deadlined> {
  /** In admission order, from the first still held. */
  readonly #items = new Fifo<T>();
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
    return this.#items.length;
  }

  add(item: T): void {
    this.#items.push(item);
    if (item.deadline < this.#armedFor) this.#arm(item.deadline);
  }

  /** Call when an item settled: drops the settled items at the front. */
  settled(): void {
    for (let item = this.#items.peek(); item !== undefined && this.#settled(item); item = this.#items.peek()) this.#items.shift();
    if (this.#items.length === 0) this.#disarm();
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
    this.settled();
    let next = Infinity;
    this.#items.forEach((item) => {
      if (item.overdue || this.#settled(item)) return;
      if (item.deadline <= dueBy) {
        item.overdue = true;
        this.#due(item);
      } else if (item.deadline < next) next = item.deadline;
    });
    if (next < this.#armedFor) this.#arm(next);
  }

  /** Stops the timer (the items are left to their answers). */
  close(): void {
    this.#disarm();
  }
}
