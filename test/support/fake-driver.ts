/**
 * A LockDriver at the hardware edge for pipeline tests: the test pushes events; acks and nacks
 * are recorded in `answers` and can be held back until `release()`.
 */
import type { DriverNotice, DriverStatus, LockDriver, ReceivedEvent } from '../../drivers/driver.js';
import type { TestLock } from './site.js';

/** A driver whose events are pushed by the test; acks can be held back until `release()`. */
export class FakeDriver implements LockDriver {
  readonly id = 'fake';
  readonly answers: { ctr: number; lock: string; ok: boolean; code?: string }[] = [];
  readonly #queue: ReceivedEvent[] = [];
  #wakeEvents: (() => void) | undefined;
  #wakeNotices: (() => void) | undefined;
  #stopped = false;
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;

  push(lock: TestLock | string, cose: Uint8Array, ctr: number): void {
    const id = typeof lock === 'string' ? lock : lock.id;
    this.#queue.push({ from: { driver: this.id, link: 'l1' }, lock: id, ctr, oldest: ctr, payload: { cose }, info: undefined, receivedAt: Date.now() });
    this.#wakeEvents?.();
  }

  /** Events pushed and not yet taken by the pipeline. */
  get queued(): number {
    return this.#queue.length;
  }

  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  release(): void {
    this.#open();
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.#wakeEvents?.();
    this.#wakeNotices?.();
    return Promise.resolve();
  }

  async *events(): AsyncIterable<ReceivedEvent> {
    while (!this.#stopped) {
      const ev = this.#queue.shift();
      if (ev !== undefined) yield ev;
      else await new Promise<void>((resolve) => (this.#wakeEvents = resolve));
    }
  }

  async *notices(): AsyncIterable<DriverNotice> {
    // No notices from this driver; the stream ends with stop().
    while (!this.#stopped) await new Promise<void>((resolve) => (this.#wakeNotices = resolve));
  }

  async ack(ev: ReceivedEvent): Promise<void> {
    await this.#gate;
    this.answers.push({ lock: ev.lock, ctr: ev.ctr, ok: true });
  }

  async nack(ev: ReceivedEvent, code: string): Promise<void> {
    await this.#gate;
    this.answers.push({ lock: ev.lock, ctr: ev.ctr, ok: false, code });
  }

  status(): DriverStatus {
    return { driver: this.id, state: 'running', since: 0, links: [], counters: { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 } };
  }
}
