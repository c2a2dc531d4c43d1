/**
 * An in-process lock transport: simulated locks connected to the gateway without a wire. Every
 * message still goes through the protocol codec (encoded by the lock, strictly decoded here), so
 * the pipeline sees exactly what a serial or BLE driver would hand it; only framing and the
 * kernel are left out. For benchmarks and tests that need many locks (thousands of ptys would
 * measure socat, not the gateway). Follows the LockDriver contract in drivers/driver.ts.
 */
import { OtiError } from '../ledger/base/errors.js';
import { EventQueue, NoticeQueue } from './queue.js';
import { decodeLockMessage, encodeMessage, type LockInfo } from './protocol.js';
import { ackMessage, nackFor, receivedEvent, type DriverNotice, type DriverState, type DriverStatus, type LinkRef, type LockDriver, type ReceivedEvent } from './driver.js';
import type { SimLock } from './simlock.js';

/**
 * Messages one lock may have waiting while the event queue is full (a port's receive buffer).
 * Beyond it a message is dropped, as a full buffer loses bytes: the lock keeps what is not
 * acknowledged and sends it again.
 */
export const INPROCESS_BACKLOG_MAX = 1024;

/** What ack() and nack() return: the answer is on its way at once (one shared resolved promise, not one per event). */
const ANSWERED: Promise<void> = Promise.resolve();

interface Link {
  readonly lock: SimLock;
  /**
   * Where this link's events come from: one object for the whole session of the link (a new one
   * when the lock connects again), shared by its events. An answer goes back only to the link
   * whose `from` its event carries, so answers to an earlier session's events are dropped.
   */
  readonly from: LinkRef;
  info: LockInfo | undefined;
  /** Messages the lock sent while the event queue was full: the link is paused, as a port would be. */
  readonly backlog: Uint8Array[];
  draining: boolean;
  /** Resumes draining, on a microtask of its own, once the event queue has room (EventQueue.whenRoom). */
  wake: () => void;
}

export class InProcessDriver implements LockDriver {
  readonly id: string;
  private readonly events_: EventQueue<ReceivedEvent>;
  private readonly notices_ = new NoticeQueue<DriverNotice>(256);
  private readonly links = new Map<string, Link>();
  /** Answers laid out and not yet delivered: they arrive asynchronously, as over a wire, all in one microtask. */
  private outbox: Array<Link | Uint8Array> = [];
  private state: DriverState = 'stopped';
  private since = Date.now();
  private started = false;
  private readonly counters = { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 };

  constructor(
    /** `eventQueue`: capacity of the event stream (default 256). */
    private readonly opts: { gatewayId: string; window: number; id?: string; eventQueue?: number },
  ) {
    this.id = opts.id ?? 'inprocess';
    this.events_ = new EventQueue<ReceivedEvent>(opts.eventQueue ?? 256);
  }

  start(): Promise<void> {
    if (this.started) return Promise.reject(new OtiError('ERR_ARGUMENT', `${this.id} was already started`));
    this.started = true;
    this.state = 'running';
    this.since = Date.now();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.since = Date.now();
    for (const l of this.links.values()) l.lock.disconnect();
    this.links.clear();
    this.events_.close();
    this.notices_.close();
    await Promise.resolve();
  }

  /** Connects a simulated lock: the link comes up and the gateway greets it. */
  connect(lock: SimLock): void {
    const link: Link = { lock, from: { driver: this.id, link: lock.id }, info: undefined, backlog: [], draining: false, wake: () => undefined };
    const resume = (): void => this.drain(link);
    link.wake = () => queueMicrotask(resume);
    this.links.set(lock.id, link);
    lock.connect((m) => this.fromLock(link, m), { announceInfo: true });
    // In the version the lock announces (its info is already on its way to fromLock).
    lock.receive(encodeMessage({ t: 'hello', v: lock.info().v ?? 1, gw: this.opts.gatewayId, window: this.opts.window }));
  }

  disconnect(lock: SimLock): void {
    const link = this.links.get(lock.id);
    if (link === undefined) return;
    this.links.delete(lock.id);
    lock.disconnect();
  }

  events(): AsyncIterable<ReceivedEvent> {
    return this.events_;
  }

  notices(): AsyncIterable<DriverNotice> {
    return this.notices_;
  }

  ack(ev: ReceivedEvent, entry: Uint8Array): Promise<void> {
    const link = this.linkOf(ev);
    if (link !== undefined) {
      this.toLock(link, ackMessage(ev, entry));
      this.counters.acksOut++;
    }
    return ANSWERED;
  }

  nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void> {
    const link = this.linkOf(ev);
    if (link !== undefined) {
      this.toLock(link, encodeMessage(nackFor(ev, code, retry)));
      this.counters.nacksOut++;
    }
    return ANSWERED;
  }

  status(): DriverStatus {
    return {
      driver: this.id,
      state: this.state,
      since: this.since,
      links: [...this.links.values()].map((l) => ({ link: l.lock.id, state: 'open' as const, lock: l.lock.id })),
      counters: { ...this.counters },
    };
  }

  /** The link an event came in on, if it is still the same session of that link. */
  private linkOf(ev: ReceivedEvent): Link | undefined {
    const link = this.links.get(ev.from.link);
    return link !== undefined && link.from === ev.from ? link : undefined;
  }

  private toLock(link: Link, m: Uint8Array): void {
    // Answers arrive asynchronously, as over a wire: the ones laid out in this turn are
    // delivered together in one microtask (one closure per turn, not one per answer), in order.
    if (this.outbox.length === 0) queueMicrotask(this.deliver);
    this.outbox.push(link, m);
  }

  private readonly deliver = (): void => {
    const out = this.outbox;
    this.outbox = [];
    for (let i = 0; i < out.length; i += 2) {
      const link = out[i] as Link;
      // Dropped when the link went away meanwhile, as on a wire.
      if (this.links.get(link.lock.id) === link) link.lock.receive(out[i + 1] as Uint8Array);
    }
  };

  private fromLock(link: Link, message: Uint8Array): void {
    if (link.backlog.length >= INPROCESS_BACKLOG_MAX) {
      this.counters.framesRejected++;
      return;
    }
    link.backlog.push(message);
    if (!link.draining) this.drain(link);
  }

  /**
   * Hands the link's messages to the event stream in order while it has room; when it is full,
   * the link waits (draining stays set) until the stream wakes it: no promise per message.
   */
  private drain(link: Link): void {
    link.draining = true;
    while (link.backlog.length > 0 && this.links.get(link.lock.id) === link) {
      if (!this.events_.hasRoom && !this.events_.isClosed) {
        this.events_.whenRoom(link.wake);
        return;
      }
      const bytes = link.backlog.shift() as Uint8Array;
      this.counters.framesIn++;
      let m;
      try {
        m = decodeLockMessage(bytes);
      } catch (e) {
        this.counters.framesRejected++;
        this.notices_.push({ kind: 'rejected', from: link.from, code: e instanceof OtiError ? e.code : 'ERR_MESSAGE', detail: (e as Error).message, time: Date.now() });
        continue;
      }
      if (m.t === 'info') {
        link.info = m.info;
        this.notices_.push({ kind: 'lock-seen', from: link.from, info: m.info, time: Date.now() });
        continue;
      }
      this.counters.eventsIn++;
      // Dropped once the stream is closed (the driver is stopping), as put() would.
      this.events_.offer(receivedEvent(m, link.from, link.info, Date.now()));
    }
    link.draining = false;
  }
}
