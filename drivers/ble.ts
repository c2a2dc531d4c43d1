/**
 * The BLE lock driver (issue 3): scans for locks that advertise the OTI service with the
 * pending-events flag, connects a bounded pool of them through @abandonware/noble, and turns
 * their GATT indications into lock events (docs/PROTOCOL.md §Lock protocol, BLE).
 *
 * Per link: connect (bounded) → discover the service's info, events and ack characteristics →
 * read info → subscribe to the events characteristic → write hello. Messages travel as fragments
 * of at most ATT MTU − 3 bytes (drivers/framing.ts); answers are written, fragmented, to the ack
 * characteristic with write requests, one message at a time per link.
 *
 * Failure handling, because this is where gateways in the field lose events:
 * - noble is imported lazily in start(); a machine without Bluetooth makes start() reject with
 *   ERR_DRIVER_UNAVAILABLE and status() say why, and nothing else happens.
 * - Adapter poweredOff (or unauthorized/unsupported) closes every link and opens a blind
 *   interval; poweredOn closes it with a 'blind' notice and resumes scanning.
 * - A scan watchdog restarts a scan that delivered nothing for `scanWatchdogMs` (noble on a
 *   Raspberry Pi can stop delivering silently) or that stopped without being asked to, and
 *   reports the silent time as a blind interval.
 * - Every GATT call is bounded (noble drops pending callbacks on disconnect); a failed or lost
 *   link backs off per peripheral (exponential, jittered) and reconnects when the lock advertises
 *   pending events again. Links idle with nothing outstanding are released for other locks.
 * - Back-pressure: while the event queue is full a link's fragments wait in a small bounded
 *   buffer; beyond it the link is dropped and the lock resends later.
 * - Repeated garbage from a link (more than `garbagePerMinute` rejections) drops it with backoff.
 */
import { backoffDelay } from './backoff.js';
import { ackFor, nackFor, receivedEvent, unacceptableEvent, type DriverNotice, type DriverState, type DriverStatus, type LinkRef, type LinkStatus, type LockDriver, type ReceivedEvent } from './driver.js';
import { EventQueue, NoticeQueue } from './queue.js';
import {
  ACK_CHAR_UUID,
  EVENTS_CHAR_UUID,
  INFO_CHAR_UUID,
  INFO_MAX_BYTES,
  MESSAGE_MAX_BYTES,
  SERVICE_UUID,
  WINDOW_MAX,
  decodeLockMessage,
  encodeMessage,
  parseAdvertisement,
} from './protocol.js';
import { PROTOCOL_VERSION, PROTOCOL_VERSIONS, readUnacceptableEvent, type LockInfo } from './protocol.js';
import { Outstanding } from './window.js';
import { Reassembler, fragment } from './framing.js';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import type { NobleCharacteristic, NobleLike, NoblePeripheral } from './noble-types.js';
import { bounded, describeLoadFailure, importNoble, type ClosedSignal } from './noble-load.js';

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
}

export interface BleDriverStatus extends DriverStatus {
  readonly scan: {
    /** Scans restarted by the watchdog or after a scanStop nobody asked for. */
    readonly restarts: number;
    readonly adapter: string;
    readonly candidates: number;
  };
}

/** Remembered peripherals waiting for a slot, and peripherals in backoff: bounded. */
const MAX_TRACKED = 256;
/** Fragments held per link while the event queue is full; beyond either bound the link is dropped. */
const MAX_PAUSED_FRAGMENTS = 256;
const MAX_PAUSED_BYTES = 2 * MESSAGE_MAX_BYTES;
/** ATT: the default and smallest MTU is 23 and the largest 517; a notification carries MTU − 3. */
const ATT_MTU_MIN = 23;
const ATT_MTU_MAX = 517;
const ATT_HEADER = 3;
/** How long stop() waits for noble to confirm a scan stop or a disconnect. */
const STOP_WAIT_MS = 1000;
const ADAPTER_LINK = 'adapter';


function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One connection to one peripheral, from connect to close. A reconnect is a new Link. */
class Link {
  readonly ref: LinkRef;
  state: 'connecting' | 'open' = 'connecting';
  connected = false;
  closed = false;
  info: LockInfo | undefined;
  maxFragment = ATT_MTU_MIN - ATT_HEADER;
  events: NobleCharacteristic | undefined;
  ack: NobleCharacteristic | undefined;
  readonly reassembler = new Reassembler(MESSAGE_MAX_BYTES);
  /** Fragments not yet processed (only grows while the event queue is full). */
  readonly inbox: Uint8Array[] = [];
  inboxBytes = 0;
  pumping = false;
  /** Events handed out on this link and not yet answered. */
  outstanding = 0;
  /** The distinct events among them, held to hello.window (docs/PROTOCOL.md §Flow, the window). */
  readonly inWindow = new Outstanding();
  /** Serialises writes so that the fragments of two messages never interleave. */
  writes: Promise<void> = Promise.resolve();
  /** Times of recent rejections, for the garbage limit. */
  readonly rejections: number[] = [];
  lastData: number;
  readonly closedSignal: ClosedSignal;
  private rejectClosed!: (e: Error) => void;
  readonly onDisconnect: (reason?: unknown) => void;
  readonly onData: (data: Uint8Array) => void;

  constructor(
    readonly peripheral: NoblePeripheral,
    now: number,
    handlers: { disconnect: (l: Link, reason?: unknown) => void; data: (l: Link, data: Uint8Array) => void },
  ) {
    const address = peripheral.address;
    this.ref = { driver: 'ble', link: address !== '' && address !== 'unknown' ? address : peripheral.id };
    this.lastData = now;
    this.closedSignal = new Promise<never>((_, reject) => {
      this.rejectClosed = reject;
    });
    this.closedSignal.catch(() => undefined);
    this.onDisconnect = (reason) => handlers.disconnect(this, reason);
    this.onData = (data) => handlers.data(this, data);
  }

  close(reason: string): void {
    this.closed = true;
    this.rejectClosed(new OtiError('ERR_DRIVER_STOPPED', reason));
    this.peripheral.removeListener('disconnect', this.onDisconnect);
    this.events?.removeListener('data', this.onData);
    this.reassembler.reset();
    this.inbox.length = 0;
    this.inboxBytes = 0;
  }
}

interface Retry {
  readonly link: string;
  readonly attempts: number;
  readonly retryAt: number;
  readonly reason: string;
}

export class BleDriver implements LockDriver {
  readonly id = 'ble';
  private readonly opts: BleDriverOptions;
  private readonly now: () => number;
  private readonly maxConnections: number;
  private readonly scanWatchdogMs: number;
  private readonly backoff: { readonly minMs: number; readonly maxMs: number };
  private readonly connectTimeoutMs: number;
  private readonly gattTimeoutMs: number;
  private readonly idleMs: number;
  private readonly garbagePerMinute: number;
  private readonly eventQ: EventQueue<ReceivedEvent>;
  private readonly noticeQ: NoticeQueue<DriverNotice>;
  private noble: NobleLike | undefined;
  private state: DriverState = 'stopped';
  private reason: string | undefined;
  private since: number;
  private started = false;
  private stopping: Promise<void> | undefined;
  private adapter = 'unknown';
  private scanWanted = false;
  private stoppingScan = false;
  private restarting = false;
  private lastScanActivity = 0;
  /** Start of the current blind interval while the adapter is not poweredOn. */
  private blindSince: number | undefined;
  /** A watchdog restart whose silence becomes a blind interval if advertisements come back. */
  private stallSince: { since: number; reason: string } | undefined;
  private tick: NodeJS.Timeout | undefined;
  private readonly links = new Map<string, Link>();
  private readonly candidates = new Map<string, NoblePeripheral>();
  private readonly retries = new Map<string, Retry>();
  /** Which link each handed-out, unanswered event came from. */
  private readonly origins = new WeakMap<ReceivedEvent, Link>();
  private readonly counters = { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 };
  private scanRestarts = 0;

  constructor(opts: BleDriverOptions) {
    if (!Number.isInteger(opts.window) || opts.window < 1 || opts.window > WINDOW_MAX) {
      throw new OtiError('ERR_ARGUMENT', `window must be an integer in 1..${WINDOW_MAX}`);
    }
    const backoff = opts.backoff ?? { minMs: 1000, maxMs: 60000 };
    if (!(backoff.minMs > 0 && backoff.maxMs >= backoff.minMs)) throw new OtiError('ERR_ARGUMENT', 'backoff needs 0 < minMs <= maxMs');
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.since = this.now();
    this.maxConnections = opts.maxConnections ?? 4;
    if (!Number.isInteger(this.maxConnections) || this.maxConnections < 1) throw new OtiError('ERR_ARGUMENT', 'maxConnections must be at least 1');
    this.scanWatchdogMs = opts.scanWatchdogMs ?? 30000;
    this.backoff = backoff;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.gattTimeoutMs = opts.gattTimeoutMs ?? 5000;
    this.idleMs = opts.idleMs ?? 5000;
    this.garbagePerMinute = opts.garbagePerMinute ?? 20;
    this.eventQ = new EventQueue(opts.eventQueue ?? 64);
    this.noticeQ = new NoticeQueue(opts.noticeQueue ?? 256);
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
    this.noble = noble;
    // The 'stateChange' listener goes first: on the real library it schedules the bindings'
    // initialisation, whose failure arrives as a 'warning'.
    noble.on('stateChange', this.onStateChange);
    noble.on('scanStart', this.onScanStart);
    noble.on('scanStop', this.onScanStop);
    noble.on('discover', this.onDiscover);
    noble.on('warning', this.onWarning);
    let state: string;
    try {
      state = noble.state;
    } catch (e) {
      this.detach();
      return this.unavailable(describeLoadFailure(e), e);
    }
    const period = Math.max(5, Math.min(1000, Math.floor(Math.min(this.scanWatchdogMs, this.idleMs, this.backoff.minMs) / 4)));
    this.tick = setInterval(() => this.housekeeping(), period);
    this.tick.unref();
    if (state !== 'unknown') this.onStateChange(state);
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  async ack(ev: ReceivedEvent, entry: Uint8Array): Promise<void> {
    if (!(entry instanceof Uint8Array) || entry.length !== 32) throw new OtiError('ERR_ARGUMENT', 'entry must be a 32-byte hash');
    const link = this.answer(ev);
    if (link === undefined) return;
    if (await this.send(link, encodeMessage(ackFor(ev, entry)), 'ack')) this.counters.acksOut++;
  }

  /** A `refuse` on the link a lock's info came in on (docs/PROTOCOL.md §Flow, refusals at info). */
  async refuseLink(from: LinkRef, code: string, retry: boolean): Promise<void> {
    const link = [...this.links.values()].find((l) => l.ref.link === from.link && !l.closed);
    if (link !== undefined) await this.send(link, encodeMessage({ t: 'refuse', code, retry, versions: PROTOCOL_VERSIONS }), 'refuse');
  }

  async nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void> {
    const link = this.answer(ev);
    if (link === undefined) return;
    if (await this.send(link, encodeMessage(nackFor(ev, code, retry)), 'nack')) this.counters.nacksOut++;
  }

  status(): BleDriverStatus {
    const t = this.now();
    const links: LinkStatus[] = [];
    for (const l of this.links.values()) links.push({ link: l.ref.link, state: l.state, lock: l.info?.lock });
    for (const [id, r] of this.retries) {
      if (!this.links.has(id) && r.retryAt > t) links.push({ link: r.link, state: 'backoff', reason: r.reason, retryAt: r.retryAt });
    }
    return {
      driver: this.id,
      state: this.state,
      reason: this.reason,
      since: this.since,
      links,
      counters: { ...this.counters },
      scan: { restarts: this.scanRestarts, adapter: this.adapter, candidates: this.candidates.size },
    };
  }

  // Driver state and notices

  private setState(state: DriverState, reason: string | undefined): void {
    if (state !== this.state) this.since = this.now();
    this.state = state;
    this.reason = reason;
  }

  private unavailable(reason: string, cause: unknown): never {
    this.setState('unavailable', reason);
    throw new OtiError('ERR_DRIVER_UNAVAILABLE', reason, { driver: this.id }, { cause });
  }

  private notice(n: DriverNotice): void {
    this.noticeQ.push(n);
  }

  private adapterNotice(state: LinkStatus['state'], detail: string): void {
    this.notice({ kind: 'link', from: { driver: this.id, link: ADAPTER_LINK }, state, detail, time: this.now() });
  }

  private blind(start: number, reason: string): void {
    const end = this.now();
    this.notice({ kind: 'blind', driver: this.id, start, end, reason, time: end });
  }

  // Adapter and scan

  private readonly onStateChange = (state: string): void => {
    if (this.stopping !== undefined || state === this.adapter) return;
    const wasOn = this.adapter === 'poweredOn';
    this.adapter = state;
    if (state === 'poweredOn') {
      this.setState('running', undefined);
      this.adapterNotice('open', 'adapter poweredOn');
      if (this.blindSince !== undefined) this.blind(this.blindSince, 'Bluetooth adapter was not powered on');
      this.blindSince = undefined;
      void this.startScan();
      return;
    }
    // Every other state means no radio: unsupported/unauthorized will not fix themselves.
    const reason =
      state === 'unsupported'
        ? 'the Bluetooth adapter does not support Bluetooth Low Energy'
        : state === 'unauthorized'
          ? 'not permitted to use the Bluetooth adapter (grant CAP_NET_RAW or run as root)'
          : `Bluetooth adapter ${state}`;
    this.setState(state === 'unsupported' || state === 'unauthorized' ? 'unavailable' : 'degraded', reason);
    this.adapterNotice('closed', reason);
    if (wasOn) this.blindSince = this.now();
    this.scanWanted = false;
    this.candidates.clear();
    for (const link of [...this.links.values()]) void this.closeLink(link, reason, false);
  };

  private readonly onScanStart = (): void => {
    this.lastScanActivity = this.now();
  };

  private readonly onScanStop = (): void => {
    if (this.stoppingScan || this.restarting || !this.scanWanted || this.adapter !== 'poweredOn') return;
    // A stop nobody asked for; restart after the minimum backoff so a failing scan cannot spin.
    const since = this.now();
    this.restarting = true;
    setTimeout(() => {
      this.restarting = false;
      void this.restartScan(since, 'scan stopped without being asked to');
    }, this.backoff.minMs).unref();
  };

  private readonly onWarning = (message: string): void => {
    if (message.startsWith('Initialization')) {
      // noble's only report that its bindings could not open the adapter.
      this.setState('unavailable', `Bluetooth adapter initialisation failed: ${message}`);
    }
    this.adapterNotice(this.adapter === 'poweredOn' ? 'open' : 'closed', `noble: ${message}`);
  };

  private async startScan(): Promise<void> {
    const noble = this.noble;
    if (noble === undefined) return;
    this.scanWanted = true;
    this.lastScanActivity = this.now();
    try {
      await bounded(noble.startScanningAsync([SERVICE_UUID], true), this.gattTimeoutMs, 'scan start');
    } catch (e) {
      // The watchdog retries.
      this.adapterNotice('closed', `scan start failed: ${messageOf(e)}`);
    }
  }

  /**
   * Stops and starts the scan. A scan that stopped is blind from `silentSince` at once. A scan
   * that merely went quiet may have had nothing to hear (no lock in range): its silence counts as
   * blind only when advertisements come back after the restart, which shows the scan had stalled.
   */
  private async restartScan(silentSince: number, reason: string, certain = true): Promise<void> {
    const noble = this.noble;
    if (noble === undefined || this.restarting || !this.scanWanted || this.stopping !== undefined) return;
    this.restarting = true;
    this.scanRestarts++;
    this.adapterNotice('open', `restarting scan: ${reason}`);
    if (certain) this.blind(silentSince, reason);
    else this.stallSince ??= { since: silentSince, reason };
    this.stoppingScan = true;
    try {
      await bounded(noble.stopScanningAsync(), STOP_WAIT_MS, 'scan stop');
    } catch {
      // A stalled scan may not confirm its stop; start anyway.
    } finally {
      this.stoppingScan = false;
      this.restarting = false;
    }
    if (this.scanWanted && this.stopping === undefined) await this.startScan();
  }

  private housekeeping(): void {
    const t = this.now();
    if (this.scanWanted && !this.restarting && t - this.lastScanActivity >= this.scanWatchdogMs) {
      void this.restartScan(this.lastScanActivity, `scan stalled: no advertisement for ${t - this.lastScanActivity} ms`, false);
    }
    for (const link of [...this.links.values()]) {
      if (link.state === 'open' && !link.pumping && link.outstanding === 0 && t - link.lastData >= this.idleMs) {
        void this.closeLink(link, 'idle', false);
      }
    }
    this.drain();
  }

  private readonly onDiscover = (p: NoblePeripheral): void => {
    this.lastScanActivity = this.now();
    if (this.stallSince !== undefined) {
      this.blind(this.stallSince.since, this.stallSince.reason);
      this.stallSince = undefined;
    }
    let adv: { readonly pending: boolean } | undefined;
    try {
      adv = parseAdvertisement(p.advertisement.manufacturerData);
    } catch {
      adv = undefined;
    }
    if (adv === undefined) return; // not an OTI lock
    if (!adv.pending) {
      this.candidates.delete(p.id);
      return;
    }
    if (this.links.has(p.id) || this.candidates.has(p.id)) {
      this.drain();
      return;
    }
    this.candidates.set(p.id, p);
    if (this.candidates.size > MAX_TRACKED) this.candidates.delete(this.candidates.keys().next().value as string);
    this.drain();
  };

  /** Connects remembered candidates, oldest first, while there are free slots. */
  private drain(): void {
    if (this.adapter !== 'poweredOn' || this.stopping !== undefined) return;
    const t = this.now();
    for (const [id, p] of this.candidates) {
      if (this.links.size >= this.maxConnections) return;
      const r = this.retries.get(id);
      if (r !== undefined && r.retryAt > t) continue;
      this.candidates.delete(id);
      if (this.links.has(id) || p.state === 'connected' || p.state === 'connecting') continue;
      this.open(p);
    }
  }

  // Links

  private open(p: NoblePeripheral): void {
    const link = new Link(p, this.now(), { disconnect: this.onLinkDisconnect, data: this.onLinkData });
    this.links.set(p.id, link);
    if (this.retries.has(p.id)) this.counters.reconnects++;
    this.notice({ kind: 'link', from: link.ref, state: 'connecting', detail: 'lock advertises pending events', time: this.now() });
    void this.setUp(link).catch((e: unknown) => this.closeLink(link, messageOf(e), true));
  }

  private async setUp(link: Link): Promise<void> {
    const p = link.peripheral;
    p.on('disconnect', link.onDisconnect);
    try {
      await bounded(p.connectAsync(), this.connectTimeoutMs, 'connect', link.closedSignal);
    } catch (e) {
      try {
        p.cancelConnect();
      } catch {
        // Nothing more can be done about a connect that will not cancel.
      }
      throw e;
    }
    link.connected = true;
    const { characteristics } = await this.gatt(link, p.discoverSomeServicesAndCharacteristicsAsync([SERVICE_UUID], [INFO_CHAR_UUID, EVENTS_CHAR_UUID, ACK_CHAR_UUID]), 'discovery');
    const find = (uuid: string): NobleCharacteristic => {
      const c = characteristics.find((x) => x.uuid === uuid);
      if (c === undefined) throw new OtiError('ERR_MESSAGE', `the lock lacks characteristic ${uuid}`);
      return c;
    };
    const info = find(INFO_CHAR_UUID);
    link.events = find(EVENTS_CHAR_UUID);
    link.ack = find(ACK_CHAR_UUID);
    // noble learns the MTU from the exchange it starts on connect, answered before discovery.
    const mtu = Math.min(ATT_MTU_MAX, Math.max(ATT_MTU_MIN, p.mtu ?? ATT_MTU_MIN));
    link.maxFragment = mtu - ATT_HEADER;

    const raw = await this.gatt(link, info.readAsync(), 'info read');
    const lockInfo = this.readInfo(link, raw);
    if (lockInfo === 'version') {
      // Tell the lock which versions this gateway speaks before leaving it (docs/PROTOCOL.md §Versions).
      await this.send(link, encodeMessage({ t: 'refuse', code: 'ERR_PROTOCOL_VERSION', retry: false, versions: PROTOCOL_VERSIONS }), 'refuse');
    }
    if (lockInfo === undefined || lockInfo === 'version') throw new OtiError('ERR_MESSAGE', 'the info characteristic holds no valid info message');
    link.info = lockInfo;
    this.notice({ kind: 'lock-seen', from: link.ref, info: lockInfo, time: this.now() });

    link.events.on('data', link.onData);
    await this.gatt(link, link.events.subscribeAsync(), 'subscribe');
    await this.write(link, encodeMessage({ t: 'hello', v: link.info?.v ?? PROTOCOL_VERSION, gw: this.opts.gatewayId, window: this.opts.window }));
    link.state = 'open';
    link.lastData = this.now();
    this.retries.delete(p.id);
    this.notice({ kind: 'link', from: link.ref, state: 'open', detail: `lock ${lockInfo.lock}, ATT MTU ${mtu}`, time: this.now() });
  }

  /** The info, or 'version' when it announces a version this gateway does not speak (rejected either way). */
  private readInfo(link: Link, raw: Uint8Array): LockInfo | 'version' | undefined {
    this.counters.framesIn++;
    if (raw.length > INFO_MAX_BYTES) {
      this.reject(link, 'ERR_FRAME_TOO_LARGE', `info value of ${raw.length} bytes`);
      return undefined;
    }
    try {
      const m = decodeLockMessage(raw);
      if (m.t === 'info') return m.info;
      this.reject(link, 'ERR_MESSAGE', `info characteristic holds a ${m.t} message`);
    } catch (e) {
      this.reject(link, isOtiError(e) ? e.code : 'ERR_MESSAGE', messageOf(e));
      if (isOtiError(e, 'ERR_PROTOCOL_VERSION')) return 'version';
    }
    return undefined;
  }

  private gatt<T>(link: Link, p: Promise<T>, what: string): Promise<T> {
    return bounded(p, this.gattTimeoutMs, what, link.closedSignal);
  }

  /** Writes one message, fragmented, with write requests; messages never interleave. */
  private write(link: Link, message: Uint8Array): Promise<void> {
    const ack = link.ack;
    if (ack === undefined) return Promise.reject(new OtiError('ERR_DRIVER_STOPPED', 'link not set up'));
    const parts = fragment(message, link.maxFragment);
    const run = async (): Promise<void> => {
      for (const part of parts) {
        if (link.closed) throw new OtiError('ERR_DRIVER_STOPPED', 'link closed');
        await this.gatt(link, ack.writeAsync(Buffer.from(part.buffer, part.byteOffset, part.byteLength), false), 'write');
      }
    };
    const done = link.writes.then(run);
    link.writes = done.catch(() => undefined);
    return done;
  }

  /** Takes an event's answer off its link's books; undefined if there is nobody to answer. */
  private answer(ev: ReceivedEvent): Link | undefined {
    const link = this.origins.get(ev);
    if (link === undefined) return undefined;
    this.origins.delete(ev);
    link.outstanding--;
    link.inWindow.answered(ev);
    link.lastData = this.now();
    return link.closed ? undefined : link;
  }

  /** Sends an answer; a dead or failing link drops it (the lock resends). True if written. */
  private async send(link: Link, message: Uint8Array, what: string): Promise<boolean> {
    try {
      await this.write(link, message);
      return true;
    } catch (e) {
      await this.closeLink(link, `${what} write failed: ${messageOf(e)}`, true);
      return false;
    }
  }

  private readonly onLinkDisconnect = (link: Link, reason?: unknown): void => {
    void this.closeLink(link, `disconnected${reason === undefined ? '' : ` (reason ${String(reason)})`}`, true, false);
  };

  private readonly onLinkData = (link: Link, data: Uint8Array): void => {
    if (link.closed) return;
    this.counters.framesIn++;
    link.lastData = this.now();
    if (link.inbox.length >= MAX_PAUSED_FRAGMENTS || link.inboxBytes + data.length > MAX_PAUSED_BYTES) {
      void this.closeLink(link, 'gateway busy: too many fragments waiting; the lock will resend', true);
      return;
    }
    link.inbox.push(data);
    link.inboxBytes += data.length;
    if (!link.pumping) void this.pump(link);
  };

  /** Processes a link's fragments in order, waiting for room in the event queue. */
  private async pump(link: Link): Promise<void> {
    link.pumping = true;
    try {
      for (let frag = link.inbox.shift(); frag !== undefined && !link.closed; frag = link.inbox.shift()) {
        link.inboxBytes -= frag.length;
        const ev = this.take(link, frag);
        if (ev === undefined) continue;
        link.outstanding++;
        this.origins.set(ev, link);
        this.counters.eventsIn++;
        if (!link.inWindow.admit(ev, this.opts.window)) {
          this.notice({ kind: 'rejected', from: link.ref, code: 'ERR_WINDOW', detail: `event ${ev.lock}:${ev.ctr} with ${this.opts.window} events unanswered`, time: this.now() });
          await this.nack(ev, 'ERR_WINDOW', true);
          continue;
        }
        if (!(await this.eventQ.put(ev))) return;
      }
    } finally {
      link.pumping = false;
    }
  }

  /** One fragment in; an event out when it completed an event message. Never throws. */
  private take(link: Link, frag: Uint8Array): ReceivedEvent | undefined {
    let message: Uint8Array | undefined;
    try {
      const r = link.reassembler.push(frag);
      if (r === undefined) return undefined;
      if (!r.ok) {
        this.reject(link, r.code, r.detail);
        return undefined;
      }
      message = r.message;
      const m = decodeLockMessage(r.message);
      if (m.t === 'info') {
        link.info = m.info;
        this.notice({ kind: 'lock-seen', from: link.ref, info: m.info, time: this.now() });
        return undefined;
      }
      if (link.info !== undefined && m.lock !== link.info.lock) {
        this.reject(link, 'ERR_MESSAGE', `event of lock ${m.lock} on the link of lock ${link.info.lock}`);
        return undefined;
      }
      return receivedEvent(m, link.ref, link.info, this.now());
    } catch (e) {
      // An event the gateway can never accept, naming its lock and counter: refused for good by the pipeline.
      const u = message !== undefined ? readUnacceptableEvent(message, e) : undefined;
      if (u !== undefined && (link.info === undefined || u.lock === link.info.lock)) return unacceptableEvent(u, link.ref, link.info, this.now());
      this.reject(link, isOtiError(e) ? e.code : 'ERR_MESSAGE', messageOf(e));
      return undefined;
    }
  }

  private reject(link: Link, code: string, detail: string): void {
    const t = this.now();
    this.counters.framesRejected++;
    this.notice({ kind: 'rejected', from: link.ref, code, detail, time: t });
    link.rejections.push(t);
    while ((link.rejections[0] ?? t) <= t - 60000) link.rejections.shift();
    if (link.rejections.length > this.garbagePerMinute) void this.closeLink(link, 'too many rejected messages', true);
  }

  /**
   * Closes a link once: forgets its partial message, releases its slot, disconnects the
   * peripheral (unless it is already down) and, after a failure, backs the peripheral off.
   * Resolves when the peripheral confirmed the disconnect or after a bounded wait.
   */
  private closeLink(link: Link, reason: string, backoff: boolean, disconnect = true): Promise<void> {
    if (link.closed) return Promise.resolve();
    link.close(reason);
    const p = link.peripheral;
    if (this.links.get(p.id) === link) this.links.delete(p.id);
    let down = Promise.resolve();
    if (disconnect && link.connected && p.state !== 'disconnected') down = this.disconnect(p);
    if (backoff) this.scheduleRetry(p.id, link.ref.link, reason);
    this.notice({ kind: 'link', from: link.ref, state: backoff ? 'backoff' : 'closed', detail: reason, time: this.now() });
    this.drain();
    return down;
  }

  private disconnect(p: NoblePeripheral): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        p.removeListener('disconnect', done);
        resolve();
      };
      const timer = setTimeout(done, STOP_WAIT_MS);
      p.on('disconnect', done);
      try {
        p.disconnect();
      } catch {
        done();
      }
    });
  }

  /** Per-peripheral exponential backoff with jitter (drivers/backoff.ts). */
  private scheduleRetry(id: string, link: string, reason: string): void {
    const attempts = (this.retries.get(id)?.attempts ?? 0) + 1;
    const delay = backoffDelay(attempts - 1, this.backoff.minMs, this.backoff.maxMs);
    this.retries.delete(id);
    this.retries.set(id, { link, attempts, retryAt: this.now() + delay, reason });
    if (this.retries.size > MAX_TRACKED) this.retries.delete(this.retries.keys().next().value as string);
  }

  private detach(): void {
    const noble = this.noble;
    if (noble === undefined) return;
    noble.removeListener('stateChange', this.onStateChange);
    noble.removeListener('scanStart', this.onScanStart);
    noble.removeListener('scanStop', this.onScanStop);
    noble.removeListener('discover', this.onDiscover);
    noble.removeListener('warning', this.onWarning);
  }

  private async shutdown(): Promise<void> {
    const scanning = this.scanWanted;
    this.scanWanted = false;
    clearInterval(this.tick);
    this.detach();
    this.candidates.clear();
    const waits = [...this.links.values()].map((l) => this.closeLink(l, 'driver stopped', false));
    const noble = this.noble;
    if (noble !== undefined && scanning) {
      this.stoppingScan = true;
      waits.push(bounded(noble.stopScanningAsync(), STOP_WAIT_MS, 'scan stop').catch(() => undefined));
    }
    await Promise.all(waits);
    this.eventQ.close();
    this.noticeQ.close();
    if (this.state !== 'unavailable') this.setState('stopped', undefined);
  }
}
