/**
 * The BLE lock driver (issue 3): scans for locks that advertise the OTI service with the
 * pending-events flag, connects a bounded pool of them through @abandonware/noble, and turns
 * their GATT indications into lock events (docs/PROTOCOL.md §Lock protocol, BLE). Follows the
 * LockDriver contract in drivers/driver.ts.
 *
 * This file composes the parts, one job each:
 * - adapter.ts: the adapter's state and the scan watchdog, and the blind intervals they report;
 * - pool.ts: which locks get one of `maxConnections` links, backoff, idle release;
 * - gatt.ts: a link's GATT set-up (every call bounded) and its fragmented writes;
 * - inbound.ts: fragments to events, back-pressure, the window and the garbage limit;
 * - link.ts: the state of one connection.
 * noble is imported lazily in start() (drivers/noble-load.ts); a machine without Bluetooth makes
 * start() reject with ERR_DRIVER_UNAVAILABLE and status() say why, and nothing else happens.
 */
import { ackMessage, nackFor, type DriverNotice, type DriverState, type DriverStatus, type LinkRef, type LockDriver, type ReceivedEvent } from '../driver.js';
import { EventQueue, NoticeQueue } from '../queue.js';
import { PROTOCOL_VERSIONS, WINDOW_MAX, encodeMessage } from '../protocol.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { NobleLike } from '../noble-types.js';
import { describeLoadFailure, importNoble, kernelAdapterAbsence } from '../noble-load.js';
import { Adapter } from './adapter.js';
import { Gatt } from './gatt.js';
import { Inbound } from './inbound.js';
import { LinkPool } from './pool.js';
import type { Link } from './link.js';

export interface BleDriverOptions {
  /** Sent in hello. */
  readonly gatewayId: string;
  /** Events a lock may send before it waits for answers (hello.window, 1..64). */
  readonly window: number;
  readonly maxConnections?: number;
  /** A scan that delivered no advertisement for this long is restarted (default 30000). */
  readonly scanWatchdogMs?: number;
  /** Per-peripheral reconnect backoff (default 1000..60000 ms). */
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  /** The radio. Without it, start() imports @abandonware/noble (through loadNoble). */
  readonly noble?: NobleLike;
  readonly loadNoble?: () => Promise<NobleLike>;
  readonly now?: () => number;
  /** Capacity of the event stream (default 64). */
  readonly eventQueue?: number;
  /** Capacity of the notice stream (default 256). */
  readonly noticeQueue?: number;
  /** Bound on a connect attempt (default 10000; real stacks can hang forever). */
  readonly connectTimeoutMs?: number;
  /** Bound on each GATT operation (default 5000). */
  readonly gattTimeoutMs?: number;
  /** An open link with nothing outstanding and no data for this long is released (default 5000). */
  readonly idleMs?: number;
  /** Rejections per minute on one link beyond which it is dropped with backoff (default 20). */
  readonly garbagePerMinute?: number;
  /**
   * Why this machine has no Bluetooth adapter at all, or undefined when it has one: the reason
   * status() gives while noble reports the adapter off. Default: the kernel's list
   * (kernelAdapterAbsence, drivers/noble-load.ts) when noble is imported here; none for a radio
   * handed in as `noble`.
   */
  readonly adapterAbsence?: () => string | undefined;
}

export interface BleDriverStatus extends DriverStatus {
  readonly scan: {
    /** Scans restarted by the watchdog or after a scanStop nobody asked for. */
    readonly restarts: number;
    readonly adapter: string;
    readonly candidates: number;
  };
}

export class BleDriver implements LockDriver {
  readonly id = 'ble';
  private readonly opts: BleDriverOptions;
  private readonly now: () => number;
  /** The scan settings the adapter gets once noble is loaded. */
  private readonly scan: { readonly watchdogMs: number; readonly restartDelayMs: number; readonly startTimeoutMs: number };
  private readonly idleMs: number;
  /** Period of the housekeeping tick (the watchdog, idle links, waiting candidates). */
  private readonly tickMs: number;
  private readonly eventQ: EventQueue<ReceivedEvent>;
  private readonly noticeQ: NoticeQueue<DriverNotice>;
  private readonly counters = { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 };
  private readonly gatt: Gatt;
  private readonly inbound: Inbound;
  private readonly pool: LinkPool;
  /** Set in start(), once noble is loaded. */
  private adapter: Adapter | undefined;
  private state: DriverState = 'stopped';
  private reason: string | undefined;
  private since: number;
  private started = false;
  private stopping: Promise<void> | undefined;
  private tick: NodeJS.Timeout | undefined;

  constructor(opts: BleDriverOptions) {
    if (!Number.isInteger(opts.window) || opts.window < 1 || opts.window > WINDOW_MAX) {
      throw new OtiError('ERR_ARGUMENT', `window must be an integer in 1..${WINDOW_MAX}`);
    }
    const backoff = opts.backoff ?? { minMs: 1000, maxMs: 60000 };
    if (!(backoff.minMs > 0 && backoff.maxMs >= backoff.minMs)) throw new OtiError('ERR_ARGUMENT', 'backoff needs 0 < minMs <= maxMs');
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.since = this.now();
    const maxConnections = opts.maxConnections ?? 4;
    if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new OtiError('ERR_ARGUMENT', 'maxConnections must be at least 1');
    const gattTimeoutMs = opts.gattTimeoutMs ?? 5000;
    this.scan = { watchdogMs: opts.scanWatchdogMs ?? 30000, restartDelayMs: backoff.minMs, startTimeoutMs: gattTimeoutMs };
    this.idleMs = opts.idleMs ?? 5000;
    this.tickMs = Math.max(5, Math.min(1000, Math.floor(Math.min(this.scan.watchdogMs, this.idleMs, backoff.minMs) / 4)));
    this.eventQ = new EventQueue(opts.eventQueue ?? 64);
    this.noticeQ = new NoticeQueue(opts.noticeQueue ?? 256);
    const notice = (n: DriverNotice): void => this.noticeQ.push(n);
    const close = (link: Link, reason: string): Promise<void> => this.pool.close(link, reason, true);
    this.gatt = new Gatt({
      gatewayId: opts.gatewayId,
      window: opts.window,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10000,
      gattTimeoutMs,
      now: this.now,
      notice,
      reject: (link, code, detail) => this.inbound.reject(link, code, detail),
      frameIn: () => {
        this.counters.framesIn++;
      },
      close,
    });
    this.inbound = new Inbound({
      window: opts.window,
      garbagePerMinute: opts.garbagePerMinute ?? 20,
      events: this.eventQ,
      counters: this.counters,
      now: this.now,
      notice,
      close,
      nack: (ev, code, retry) => this.nack(ev, code, retry),
    });
    this.pool = new LinkPool({
      maxConnections,
      backoff,
      gatt: this.gatt,
      now: this.now,
      notice,
      counters: this.counters,
      mayConnect: () => this.adapter?.poweredOn === true && this.stopping === undefined,
      data: this.inbound.data,
    });
  }

  events(): AsyncIterable<ReceivedEvent> {
    return this.eventQ;
  }

  notices(): AsyncIterable<DriverNotice> {
    return this.noticeQ;
  }

  async start(): Promise<void> {
    if (this.started) throw new OtiError('ERR_ARGUMENT', 'the BLE driver was already started');
    this.started = true;
    this.setState('starting', undefined);
    let noble: NobleLike;
    try {
      noble = this.opts.noble ?? (await (this.opts.loadNoble ?? importNoble)());
    } catch (e) {
      return this.unavailable(describeLoadFailure(e), e);
    }
    if (this.stopping !== undefined) return;
    const adapter = new Adapter({
      driver: this.id,
      noble,
      ...this.scan,
      now: this.now,
      notice: (n) => this.noticeQ.push(n),
      setState: (state, reason) => this.setState(state, reason),
      absence: this.opts.adapterAbsence ?? (this.opts.noble === undefined ? () => kernelAdapterAbsence() : undefined),
      stopping: () => this.stopping !== undefined,
      lost: (reason) => void this.pool.closeAll(reason),
      advertised: (p) => this.pool.advertised(p),
    });
    this.adapter = adapter;
    let state: string;
    try {
      state = adapter.attach();
    } catch (e) {
      adapter.detach();
      return this.unavailable(describeLoadFailure(e), e);
    }
    this.tick = setInterval(() => this.housekeeping(), this.tickMs);
    this.tick.unref();
    adapter.begin(state);
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  async ack(ev: ReceivedEvent, entry: Uint8Array): Promise<void> {
    if (!(entry instanceof Uint8Array) || entry.length !== 32) throw new OtiError('ERR_ARGUMENT', 'entry must be a 32-byte hash');
    const link = this.inbound.answer(ev);
    if (link === undefined) return;
    if (await this.gatt.send(link, ackMessage(ev, entry), 'ack')) this.counters.acksOut++;
  }

  /** A `refuse` on the link a lock's info came in on (docs/PROTOCOL.md §Flow, refusals at info). */
  async refuseLink(from: LinkRef, code: string, retry: boolean): Promise<void> {
    const link = this.pool.find(from.link);
    if (link !== undefined) await this.gatt.send(link, encodeMessage({ t: 'refuse', code, retry, versions: PROTOCOL_VERSIONS }), 'refuse');
  }

  async nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void> {
    const link = this.inbound.answer(ev);
    if (link === undefined) return;
    if (await this.gatt.send(link, encodeMessage(nackFor(ev, code, retry)), 'nack')) this.counters.nacksOut++;
  }

  status(): BleDriverStatus {
    return {
      driver: this.id,
      state: this.state,
      reason: this.reason,
      since: this.since,
      links: this.pool.status(this.now()),
      counters: { ...this.counters },
      scan: { restarts: this.adapter?.restarts ?? 0, adapter: this.adapter?.state ?? 'unknown', candidates: this.pool.candidateCount },
    };
  }

  private setState(state: DriverState, reason: string | undefined): void {
    if (state !== this.state) this.since = this.now();
    this.state = state;
    this.reason = reason;
  }

  private unavailable(reason: string, cause: unknown): never {
    this.setState('unavailable', reason);
    throw new OtiError('ERR_DRIVER_UNAVAILABLE', reason, { driver: this.id }, { cause });
  }

  private housekeeping(): void {
    const t = this.now();
    this.adapter?.watch(t);
    this.pool.housekeeping(t, this.idleMs);
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.tick);
    this.adapter?.detach();
    const waits: Promise<unknown>[] = [this.pool.closeAll('driver stopped')];
    if (this.adapter !== undefined) waits.push(this.adapter.halt());
    await Promise.all(waits);
    this.eventQ.close();
    this.noticeQ.close();
    if (this.state !== 'unavailable') this.setState('stopped', undefined);
  }
}
