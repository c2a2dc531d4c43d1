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
import { ackFor, nackFor, receivedEvent, type DriverNotice, type DriverState, type DriverStatus, type LockDriver, type ReceivedEvent } from './driver.js';
import type { SimLock } from './simlock.js';

/**
 * Messages one lock may have waiting while the event queue is full (a port's receive buffer).
 * Beyond it a message is dropped, as a full buffer loses bytes: the lock keeps what is not
 * acknowledged and sends it again.
 */
export const INPROCESS_BACKLOG_MAX = 1024;

interface Link {
  readonly lock: SimLock;
  info: LockInfo | undefined;
  /** Messages the lock sent while the event queue was full: the link is paused, as a port would be. */
  readonly backlog: Uint8Array[];
  draining: boolean;
  session: number;
}

export class InProcessDriver implements LockDriver {
  readonly id: string;
  private readonly events_: EventQueue<ReceivedEvent>;
  private readonly notices_ = new NoticeQueue<DriverNotice>(256);
  private readonly links = new Map<string, Link>();
  private readonly sessions = new WeakMap<ReceivedEvent, number>();
  /** The last link session handed out: one count for the whole driver, so that a lock that reconnects never gets its old session's number again. */
  private session = 0;
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
    const link: Link = { lock, info: undefined, backlog: [], draining: false, session: ++this.session };
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
    if (this.toLock(ev, () => encodeMessage(ackFor(ev, entry)))) this.counters.acksOut++;
    return Promise.resolve();
  }

  nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void> {
    if (this.toLock(ev, () => encodeMessage(nackFor(ev, code, retry)))) this.counters.nacksOut++;
    return Promise.resolve();
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

  private toLock(ev: ReceivedEvent, message: () => Uint8Array): boolean {
    const link = this.links.get(ev.from.link);
    if (link === undefined || this.sessions.get(ev) !== link.session) return false;
    // Answers arrive asynchronously, as over a wire.
    const m = message();
    queueMicrotask(() => this.links.get(ev.from.link) === link && link.lock.receive(m));
    return true;
  }

  private fromLock(link: Link, message: Uint8Array): void {
    if (link.backlog.length >= INPROCESS_BACKLOG_MAX) {
      this.counters.framesRejected++;
      return;
    }
    link.backlog.push(message);
    if (!link.draining) void this.drain(link);
  }

  private async drain(link: Link): Promise<void> {
    link.draining = true;
    try {
      while (link.backlog.length > 0 && this.links.get(link.lock.id) === link) {
        const bytes = link.backlog.shift() as Uint8Array;
        this.counters.framesIn++;
        let m;
        try {
          m = decodeLockMessage(bytes);
        } catch (e) {
          this.counters.framesRejected++;
          this.notices_.push({ kind: 'rejected', from: { driver: this.id, link: link.lock.id }, code: e instanceof OtiError ? e.code : 'ERR_MESSAGE', detail: (e as Error).message, time: Date.now() });
          continue;
        }
        if (m.t === 'info') {
          link.info = m.info;
          this.notices_.push({ kind: 'lock-seen', from: { driver: this.id, link: link.lock.id }, info: m.info, time: Date.now() });
          continue;
        }
        this.counters.eventsIn++;
        const ev = receivedEvent(m, { driver: this.id, link: link.lock.id }, link.info, Date.now());
        this.sessions.set(ev, link.session);
        await this.events_.put(ev);
      }
    } finally {
      link.draining = false;
    }
  }
}
