/**
 * The serial lock driver (UART or RS-485): one port, any number of locks behind it, the lock
 * protocol framed with COBS + CRC-32 (drivers/framing.ts). Follows the LockDriver contract in
 * drivers/driver.ts.
 *
 * - A port that is absent or cannot be opened is retried with exponential backoff and jitter;
 *   so is one that disappears mid-stream (an unplugged USB adapter, a pty whose peer exited).
 *   Some devices only report the loss on the next write, so an idle open port is probed with a
 *   single 0x00 byte, which the framing defines as an empty frame that receivers ignore.
 * - The time the port was not open is a blind interval (a 'blind' notice) once it opens again.
 * - Frames are bounded (maxFrameBytes); no byte sequence throws: every bad frame is a
 *   'rejected' notice and the decoder resynchronises at the next delimiter.
 * - While the event stream is full the port is paused, so the kernel and the lock hold the
 *   backlog instead of this process.
 * - A line is point-to-point (docs/PROTOCOL.md §Serial line): one lock. A second lock id heard
 *   on the line is an ERR_LINK_SHARED notice. The link speaks the version of the lock's info;
 *   an info of a version this gateway does not speak is answered with `refuse`
 *   ERR_PROTOCOL_VERSION. More distinct events unanswered than the window are nacked ERR_WINDOW.
 */
import { readdir } from 'node:fs/promises';
import { OtiError } from '../ledger/base/errors.js';
import { EventQueue, NoticeQueue } from './queue.js';
import { FrameDecoder, encodeFrame } from './framing.js';
import { decodeLockMessage, encodeMessage, MESSAGE_MAX_BYTES, PROTOCOL_VERSION, PROTOCOL_VERSIONS, readUnacceptableEvent, type LockInfo } from './protocol.js';
import { Outstanding } from './window.js';
import { ackMessage, nackFor, receivedEvent, unacceptableEvent, type DriverNotice, type DriverState, type DriverStatus, type LinkRef, type LinkStatus, type LockDriver, type ReceivedEvent } from './driver.js';
import { Backoff } from './backoff.js';
import { pollingBinding } from './serial-binding.js';
import type { SerialPort as SerialPortClass } from 'serialport';

/** The part of a serialport SerialPort stream this driver uses; tests may hand in another. */
export interface PortLike {
  readonly isOpen: boolean;
  open(cb: (err: Error | null) => void): void;
  close(cb?: (err: Error | null) => void): void;
  write(data: Uint8Array, cb?: (err: Error | null | undefined) => void): boolean;
  pause(): unknown;
  resume(): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'close' | 'error', listener: (err?: Error | null) => void): unknown;
  removeAllListeners(): unknown;
}

export type OpenPort = (path: string, baudRate: number) => Promise<PortLike>;

export interface SerialDriverOptions {
  readonly path: string;
  readonly baudRate?: number;
  readonly maxFrameBytes?: number;
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /** This gateway's id, sent in hello. */
  readonly gatewayId: string;
  /** Unacknowledged events a lock may have in flight (hello.window). */
  readonly window?: number;
  /** Received events buffered before the port is paused. */
  readonly queueSize?: number;
  /** An idle open port is probed this often (default 1000 ms). */
  readonly probeMs?: number;
  /** Creates the port object (not opened). Defaults to serialport's SerialPort. */
  readonly openPort?: OpenPort;
  readonly now?: () => number;
}

/** serialport's binding with reads that wait for the fd to be readable first (drivers/serial-binding.ts). */
let binding: typeof SerialPortClass.binding | undefined;

/**
 * A serialport port for `path` (not opened), 8N1 without flow control, on the polling binding:
 * the gateway's side of a lock's line, and a simulated lock's side of it (drivers/simlink.ts).
 */
export const openSerialPort: OpenPort = async (path, baudRate) => {
  const { SerialPort } = await import('serialport');
  binding ??= pollingBinding(SerialPort.binding);
  // 8N1 and no flow control (docs/PROTOCOL.md §Serial line), stated rather than left to defaults.
  // `binding` is an option of serialport's stream that SerialPort's type leaves out (it passes it on).
  return new SerialPort({ path, baudRate, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: false, xoff: false, autoOpen: false, binding } as ConstructorParameters<typeof SerialPort>[0]);
};

export class SerialDriver implements LockDriver {
  readonly id: string;
  private readonly opts: Required<Omit<SerialDriverOptions, 'openPort' | 'now'>>;
  private readonly openPort: OpenPort;
  private readonly now: () => number;
  private readonly eventQueue: EventQueue<ReceivedEvent>;
  private readonly noticeQueue = new NoticeQueue<DriverNotice>(256);
  private readonly backoff: Backoff;
  private readonly decoder: FrameDecoder;
  /** Which link session each handed-out event came from, to drop answers for a dead session. */
  private readonly sessions = new WeakMap<ReceivedEvent, number>();
  private readonly infos = new Map<string, LockInfo>();
  private state: DriverState = 'stopped';
  private since: number;
  private link: LinkStatus;
  private port: PortLike | undefined;
  private session = 0;
  private started = false;
  private stopping = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastIo = 0;
  /** Whether a lock has sent info since our last hello, and when that was (docs/PROTOCOL.md, link up). */
  private infoSinceHello = false;
  private helloAt = 0;
  /** The lock heard on this line in this session, and the protocol version of the last hello. */
  private lineLock: string | undefined;
  private helloVersion = PROTOCOL_VERSION;
  /** Distinct events handed out in this session and not yet answered (hello.window). */
  private readonly outstanding = new Outstanding();
  private closedAt: number | undefined;
  private closeReason = 'not opened yet';
  /** Chunks received while the consumer is behind; at most one is buffered before pausing. */
  private readonly inbox: Buffer[] = [];
  private draining = false;
  private readonly counters = { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 };

  constructor(opts: SerialDriverOptions) {
    this.opts = {
      path: opts.path,
      baudRate: opts.baudRate ?? 115200,
      maxFrameBytes: opts.maxFrameBytes ?? MESSAGE_MAX_BYTES,
      reconnectMinMs: opts.reconnectMinMs ?? 250,
      reconnectMaxMs: opts.reconnectMaxMs ?? 10_000,
      gatewayId: opts.gatewayId,
      window: opts.window ?? 8,
      queueSize: opts.queueSize ?? 64,
      probeMs: opts.probeMs ?? 1000,
    };
    this.id = `serial:${opts.path}`;
    this.openPort = opts.openPort ?? openSerialPort;
    this.now = opts.now ?? Date.now;
    this.since = this.now();
    this.eventQueue = new EventQueue(this.opts.queueSize);
    this.backoff = new Backoff(this.opts.reconnectMinMs, this.opts.reconnectMaxMs);
    this.decoder = new FrameDecoder(this.opts.maxFrameBytes);
    this.link = { link: opts.path, state: 'closed', reason: this.closeReason };
  }

  start(): Promise<void> {
    if (this.started) return Promise.reject(new OtiError('ERR_ARGUMENT', `${this.id} was already started`));
    this.started = true;
    this.setState('starting');
    void this.connect();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.probeTimer);
    this.eventQueue.close();
    this.noticeQueue.close();
    const port = this.port;
    this.port = undefined;
    this.session++;
    if (port !== undefined) {
      port.removeAllListeners();
      port.on('error', () => undefined);
      if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    }
    this.link = { link: this.opts.path, state: 'closed', reason: 'driver stopped' };
    this.setState('stopped');
  }

  events(): AsyncIterable<ReceivedEvent> {
    return this.eventQueue;
  }

  notices(): AsyncIterable<DriverNotice> {
    return this.noticeQueue;
  }

  ack(ev: ReceivedEvent, entry: Uint8Array): Promise<void> {
    if (this.sessions.get(ev) === this.session) this.outstanding.answered(ev);
    if (this.send(ev, ackMessage(ev, entry))) this.counters.acksOut++;
    return Promise.resolve();
  }

  nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void> {
    if (this.sessions.get(ev) === this.session) this.outstanding.answered(ev);
    if (this.send(ev, encodeMessage(nackFor(ev, code, retry)))) this.counters.nacksOut++;
    return Promise.resolve();
  }

  refuseLink(from: LinkRef, code: string, retry: boolean): Promise<void> {
    const port = this.port;
    if (port !== undefined && port.isOpen && from.driver === this.id) {
      this.write(port, encodeFrame(encodeMessage({ t: 'refuse', code, retry, versions: PROTOCOL_VERSIONS })));
      this.counters.nacksOut++;
    }
    return Promise.resolve();
  }

  status(): DriverStatus {
    return { driver: this.id, state: this.state, ...(this.state === 'degraded' ? { reason: this.closeReason } : {}), since: this.since, links: [this.link], counters: { ...this.counters } };
  }

  private from(): LinkRef {
    return { driver: this.id, link: this.opts.path };
  }

  private setState(s: DriverState): void {
    if (s !== this.state) {
      this.state = s;
      this.since = this.now();
    }
  }

  private notice(n: DriverNotice): void {
    this.noticeQueue.push(n);
  }

  private send(ev: ReceivedEvent, message: Uint8Array): boolean {
    const port = this.port;
    if (port === undefined || this.sessions.get(ev) !== this.session || !port.isOpen) return false;
    this.write(port, encodeFrame(message));
    return true;
  }

  private write(port: PortLike, bytes: Uint8Array): void {
    this.lastIo = this.now();
    port.write(bytes, (err) => {
      if (err && port === this.port) this.lost(port, `write failed: ${err.message}`);
    });
  }

  private async connect(): Promise<void> {
    if (this.stopping) return;
    this.link = { link: this.opts.path, state: 'connecting' };
    let port: PortLike;
    try {
      port = await this.openPort(this.opts.path, this.opts.baudRate);
      await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    } catch (e) {
      this.scheduleReconnect(`cannot open: ${(e as Error).message}`);
      return;
    }
    if (this.stopping) {
      port.close();
      return;
    }
    const session = ++this.session;
    this.port = port;
    this.lineLock = undefined;
    this.outstanding.clear();
    this.decoder.reset();
    this.inbox.length = 0;
    this.backoff.reset();
    port.on('data', (chunk) => {
      if (this.session === session) this.onData(chunk);
    });
    port.on('error', (err) => {
      if (this.session === session) this.lost(port, err?.message ?? 'port error');
    });
    port.on('close', (err) => {
      if (this.session === session) this.lost(port, err?.message ?? 'port closed');
    });
    const t = this.now();
    if (this.closedAt !== undefined) {
      this.notice({ kind: 'blind', driver: this.id, start: this.closedAt, end: t, reason: `${this.opts.path}: ${this.closeReason}`, time: t });
      this.closedAt = undefined;
    }
    this.link = { link: this.opts.path, state: 'open' };
    this.setState('running');
    this.notice({ kind: 'link', from: this.from(), state: 'open', detail: `opened at ${this.opts.baudRate} baud`, time: t });
    this.sendHello(port, PROTOCOL_VERSION);
    clearInterval(this.probeTimer);
    this.probeTimer = setInterval(() => {
      if (this.port === port && port.isOpen && this.now() - this.lastIo >= this.opts.probeMs) this.write(port, PROBE);
    }, this.opts.probeMs);
    this.probeTimer.unref();
  }

  /** `v`: the version the lock announced (1 before it has). */
  private sendHello(port: PortLike, v: number): void {
    this.infoSinceHello = false;
    this.helloAt = this.now();
    this.helloVersion = v;
    // A leading delimiter flushes whatever partial frame the lock's receiver holds.
    this.write(port, encodeFrame(encodeMessage({ t: 'hello', v, gw: this.opts.gatewayId, window: this.opts.window }), true));
  }

  private lost(port: PortLike, reason: string): void {
    if (port !== this.port) return;
    this.port = undefined;
    this.session++;
    clearInterval(this.probeTimer);
    port.removeAllListeners();
    port.on('error', () => undefined);
    if (port.isOpen) port.close();
    if (this.stopping) return;
    this.closedAt = this.now();
    this.notice({ kind: 'link', from: this.from(), state: 'closed', detail: reason, time: this.closedAt });
    this.scheduleReconnect(reason);
  }

  private scheduleReconnect(reason: string): void {
    if (this.stopping) return;
    this.closeReason = reason;
    this.closedAt ??= this.now();
    const delay = this.backoff.next();
    this.counters.reconnects++;
    this.link = { link: this.opts.path, state: 'backoff', reason, retryAt: this.now() + delay };
    this.setState('degraded');
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private onData(chunk: Buffer): void {
    this.lastIo = this.now();
    this.inbox.push(chunk);
    if (this.inbox.length >= INBOX_PAUSE) this.port?.pause();
    if (!this.draining) void this.drain();
  }

  /** Decodes buffered chunks in order; pauses the port while the event stream is full. */
  private async drain(): Promise<void> {
    this.draining = true;
    const session = this.session;
    try {
      while (this.inbox.length > 0 && this.session === session) {
        const chunk = this.inbox.shift() as Buffer;
        for (const r of this.decoder.push(chunk)) {
          if (!r.ok) {
            this.counters.framesRejected++;
            this.notice({ kind: 'rejected', from: this.from(), code: r.code, detail: r.detail, time: this.now() });
            continue;
          }
          this.counters.framesIn++;
          await this.onFrame(r.body, session);
          if (this.session !== session) return;
        }
      }
    } finally {
      this.draining = false;
      if (this.session === session && this.inbox.length === 0) this.port?.resume();
    }
  }

  private async onFrame(body: Uint8Array, session: number): Promise<void> {
    let m;
    try {
      m = decodeLockMessage(body);
    } catch (e) {
      const unacceptable = readUnacceptableEvent(body, e);
      if (unacceptable !== undefined) {
        // Never acceptable, but it names its lock and counter: the pipeline refuses it for good.
        return this.handOut(unacceptableEvent(unacceptable, this.from(), this.infos.get(unacceptable.lock), this.now()), session);
      }
      this.counters.framesRejected++;
      const code = e instanceof OtiError ? e.code : 'ERR_MESSAGE';
      this.notice({ kind: 'rejected', from: this.from(), code, detail: (e as Error).message, time: this.now() });
      if (code === 'ERR_PROTOCOL_VERSION' && this.port !== undefined) await this.refuseLink(this.from(), code, false);
      return;
    }
    if (m.t === 'info') return this.onInfo(m.info);
    await this.handOut(receivedEvent(m, this.from(), this.infos.get(m.lock), this.now()), session);
  }

  private onInfo(info: LockInfo): void {
    const v = info.v ?? PROTOCOL_VERSION;
    // Greet the lock again when this is the first info since our hello (our hello may have been
    // lost: the lock's port opened after it), comes more than REHELLO_MS after it (the lock
    // restarted; it repeats its info until greeted), or announces another version than our
    // hello spoke. The answer to that greeting arrives within REHELLO_MS, is not the first and
    // has the version just greeted, so the exchange ends there.
    if ((!this.infoSinceHello || this.now() - this.helloAt > REHELLO_MS || v !== this.helloVersion) && this.port !== undefined) this.sendHello(this.port, v);
    this.infoSinceHello = true;
    if (this.lineLock !== undefined && this.lineLock !== info.lock) {
      this.notice({ kind: 'rejected', from: this.from(), code: 'ERR_LINK_SHARED', detail: `lock ${info.lock} spoke on the line of lock ${this.lineLock}; a serial line carries one lock`, time: this.now() });
    }
    this.lineLock = info.lock;
    this.infos.set(info.lock, info);
    this.link = { ...this.link, lock: info.lock };
    this.notice({ kind: 'lock-seen', from: this.from(), info, time: this.now() });
  }

  /** An event to the pipeline, unless it is beyond the window (then nacked ERR_WINDOW here). */
  private async handOut(ev: ReceivedEvent, session: number): Promise<void> {
    this.counters.eventsIn++;
    this.sessions.set(ev, session);
    if (!this.outstanding.admit(ev, this.opts.window)) {
      this.notice({ kind: 'rejected', from: this.from(), code: 'ERR_WINDOW', detail: `event ${ev.lock}:${ev.ctr} with ${this.opts.window} events unanswered`, time: this.now() });
      await this.nack(ev, 'ERR_WINDOW', true);
      return;
    }
    const port = this.port;
    const full = this.eventQueue.length >= this.opts.queueSize;
    if (full) port?.pause();
    await this.eventQueue.put(ev);
    if (full && this.port === port) port?.resume();
  }
}

const PROBE = Uint8Array.of(0);
/** An info this long after our hello is a lock announcing itself, not its answer. */
const REHELLO_MS = 1000;
/** Chunks waiting to be decoded before the port is paused. */
const INBOX_PAUSE = 16;

/** Serial ports on this machine. Works without udev (then from /dev names alone). */
export async function listPorts(): Promise<{ path: string; manufacturer?: string; serialNumber?: string; source: 'udev' | 'dev' }[]> {
  try {
    const { SerialPort } = await import('serialport');
    const ports = await SerialPort.list();
    return ports.map((p) => ({ path: p.path, ...(p.manufacturer ? { manufacturer: p.manufacturer } : {}), ...(p.serialNumber ? { serialNumber: p.serialNumber } : {}), source: 'udev' as const }));
  } catch {
    // udevadm missing (containers, minimal images): fall back to the device names.
    const names = await readdir('/dev').catch(() => [] as string[]);
    return names
      .filter((n) => /^tty(S|USB|ACM|AMA|XRUSB|O)\d+$/.test(n) || /^rfcomm\d+$/.test(n))
      .sort()
      .map((n) => ({ path: `/dev/${n}`, source: 'dev' as const }));
  }
}
