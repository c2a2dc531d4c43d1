/**
 * Bounded single-consumer queues behind a driver's two streams.
 *
 * EventQueue: `put()` resolves once there is room, so a producer that awaits it stops reading
 * from its link while the consumer is behind (back-pressure instead of memory growth).
 * NoticeQueue: `push()` never blocks; when full it drops the oldest item and counts the loss.
 * Both end when `close()` is called: a waiting consumer gets `done`, waiting producers are
 * released with `false`.
 *
 * Items and waiting producers are Fifos (an array with a head index): in bench:ingest's closed
 * loop the pipeline takes an event from a full queue of 256 while the 1,000 links wait for room,
 * and `shift()` on those arrays moved every element at each event.
 */
import { Fifo } from '../ledger/base/fifo.js';

abstract class SingleConsumerQueue<T> implements AsyncIterable<T> {
  protected readonly items = new Fifo<T>();
  protected consumer: ((r: IteratorResult<T>) => void) | undefined;
  protected closed = false;
  private iterated = false;

  constructor(protected readonly capacity: number) {}

  get length(): number {
    return this.items.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Hands `item` to a waiting consumer; false when none is waiting. */
  protected handOver(item: T): boolean {
    const c = this.consumer;
    if (c === undefined) return false;
    this.consumer = undefined;
    c({ value: item, done: false });
    return true;
  }

  /** An item was taken or the consumer is waiting: room may have been made. */
  protected abstract taken(): void;

  /**
   * The next item if one is waiting, taken as next() would take it; undefined when there is
   * none (then the consumer awaits next()). For the consumer of a busy stream: next() costs a
   * promise, an iterator result and a turn of the microtask queue per item.
   */
  poll(): T | undefined {
    if (this.items.length === 0) return undefined;
    const value = this.items.shift()!;
    this.taken();
    return value;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const c = this.consumer;
    this.consumer = undefined;
    c?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error('a driver stream has one consumer');
    this.iterated = true;
    return {
      next: () => {
        if (this.items.length > 0) {
          const value = this.items.shift()!;
          this.taken();
          return Promise.resolve({ value, done: false });
        }
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.consumer = resolve;
          this.taken();
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** What put() returns when the item went in at once. */
const PUT_DONE: Promise<boolean> = Promise.resolve(true);

export class EventQueue<T> extends SingleConsumerQueue<T> {
  private readonly producers = new Fifo<() => void>();

  /**
   * Adds an item once there is room. Resolves false (and drops the item) if the queue closed.
   * With room (the common case, once per event), the item is added at once and one shared
   * resolved promise is returned: no async function and no promise of its own per item.
   */
  put(item: T): Promise<boolean> {
    return this.offer(item) ? PUT_DONE : this.putWhenRoom(item);
  }

  /** Whether offer() would take an item now. */
  get hasRoom(): boolean {
    return !this.closed && (this.consumer !== undefined || this.items.length < this.capacity);
  }

  /**
   * Adds an item at once if there is room (or the consumer is waiting) and returns true; false,
   * adding nothing, when the queue is full or closed. With whenRoom(), for a producer that waits
   * without a promise per item.
   */
  offer(item: T): boolean {
    if (!this.hasRoom) return false;
    if (!this.handOver(item)) this.items.push(item);
    return true;
  }

  /** Calls `f` once: when an item is next taken (room may have been made), or when the queue closes. */
  whenRoom(f: () => void): void {
    if (this.closed) f();
    else this.producers.push(f);
  }

  private async putWhenRoom(item: T): Promise<boolean> {
    while (!this.closed && this.consumer === undefined && this.items.length >= this.capacity) {
      await new Promise<void>((resolve) => this.producers.push(resolve));
    }
    if (this.closed) return false;
    if (!this.handOver(item)) this.items.push(item);
    return true;
  }

  protected taken(): void {
    this.producers.shift()?.();
  }

  override close(): void {
    if (this.closed) return;
    this.items.clear();
    super.close();
    for (let p = this.producers.shift(); p !== undefined; p = this.producers.shift()) p();
  }
}

export class NoticeQueue<T> extends SingleConsumerQueue<T> {
  /** Items dropped because nobody read them in time. */
  dropped = 0;

  push(item: T): void {
    if (this.closed || this.handOver(item)) return;
    if (this.items.length >= this.capacity) {
      this.items.shift();
      this.dropped++;
    }
    this.items.push(item);
  }

  protected taken(): void {
    // Nothing waits for room: push() drops the oldest instead.
  }
}
