/**
 * Bounded single-consumer queues behind a driver's two streams.
 *
 * EventQueue: `put()` resolves once there is room, so a producer that awaits it stops reading
 * from its link while the consumer is behind (back-pressure instead of memory growth).
 * NoticeQueue: `push()` never blocks; when full it drops the oldest item and counts the loss.
 * Both end when `close()` is called: a waiting consumer gets `done`, waiting producers are
 * released with `false`.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private readonly producers: Array<() => void> = [];
  private consumer: ((r: IteratorResult<T>) => void) | undefined;
  private closed = false;
  private iterated = false;

  constructor(private readonly capacity: number) {}

  get length(): number {
    return this.items.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Adds an item once there is room. Resolves false (and drops the item) if the queue closed. */
  async put(item: T): Promise<boolean> {
    while (!this.closed && this.consumer === undefined && this.items.length >= this.capacity) {
      await new Promise<void>((resolve) => this.producers.push(resolve));
    }
    if (this.closed) return false;
    const c = this.consumer;
    if (c !== undefined) {
      this.consumer = undefined;
      c({ value: item, done: false });
    } else {
      this.items.push(item);
    }
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.items.length = 0;
    for (const p of this.producers.splice(0)) p();
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
          const value = this.items.shift() as T;
          this.producers.shift()?.();
          return Promise.resolve({ value, done: false });
        }
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.consumer = resolve;
          // A producer may be waiting for room although the queue is empty only at capacity 0.
          this.producers.shift()?.();
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export class NoticeQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private consumer: ((r: IteratorResult<T>) => void) | undefined;
  private closed = false;
  private iterated = false;
  /** Items dropped because nobody read them in time. */
  dropped = 0;

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.closed) return;
    const c = this.consumer;
    if (c !== undefined) {
      this.consumer = undefined;
      c({ value: item, done: false });
      return;
    }
    if (this.items.length >= this.capacity) {
      this.items.shift();
      this.dropped++;
    }
    this.items.push(item);
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
        if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as T, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.consumer = resolve;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
