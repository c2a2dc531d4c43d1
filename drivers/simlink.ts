/**
 * A simulated lock's serial side: a SimLock speaking the framed protocol over a serial port (in
 * tests and the demo, one end of a socat pty pair). Reopens the port when it disappears, as a
 * lock's UART does when the cable comes back, and injects transport faults on demand: corrupt
 * frames, slow acks, dropped links.
 */
import { FrameDecoder, encodeFrame } from './framing.js';
import { MESSAGE_MAX_BYTES } from './protocol.js';
import type { SimLock } from './simlock.js';
import { openSerialPort, type OpenPort, type PortLike } from './serial.js';

export interface SerialSimLinkOptions {
  readonly path: string;
  readonly baudRate?: number;
  /** How long to wait before reopening a port that is gone (default 100 ms). */
  readonly reopenMs?: number;
  readonly openPort?: OpenPort;
}

export class SerialSimLink {
  /** Frames sent with a byte flipped on purpose. */
  corrupted = 0;
  private readonly decoder = new FrameDecoder(MESSAGE_MAX_BYTES);
  private readonly openPort: OpenPort;
  private port: PortLike | undefined;
  private closed = false;
  private corruptLeft = 0;
  private corruptRate = 0;
  private ackDelayMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private probe: NodeJS.Timeout | undefined;

  constructor(
    readonly lock: SimLock,
    private readonly opts: SerialSimLinkOptions,
  ) {
    this.openPort = opts.openPort ?? openSerialPort;
  }

  get isOpen(): boolean {
    return this.port?.isOpen === true;
  }

  /** Opens the port (retrying until it exists) and connects the lock to it. */
  start(): void {
    this.closed = false;
    void this.open();
  }

  /** Corrupts the next `n` frames the lock sends. */
  corruptNext(n: number): void {
    this.corruptLeft += n;
  }

  /** Corrupts each frame with this probability from now on. */
  setCorruptRate(p: number): void {
    this.corruptRate = p;
  }

  /** Delays every message from the gateway by this much (a slow lock MCU). */
  setAckDelay(ms: number): void {
    this.ackDelayMs = ms;
  }

  /**
   * Restarts the lock's firmware while the line stays open (a watchdog reset): the lock forgets
   * the session, announces itself again and waits for the gateway's hello.
   */
  restartLock(): void {
    const port = this.port;
    if (port === undefined) return;
    this.lock.disconnect();
    this.lock.connect((message) => this.send(port, message));
  }

  /** Drops the link as an unplugged cable would, and reopens it after `ms`. */
  drop(ms = 200): void {
    this.lost();
    if (!this.closed) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.open(), ms);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const port = this.port;
    this.lost();
    if (port?.isOpen === true) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private async open(): Promise<void> {
    if (this.closed || this.port !== undefined) return;
    let port: PortLike;
    try {
      port = await this.openPort(this.opts.path, this.opts.baudRate ?? 115200);
      await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    } catch {
      this.retry();
      return;
    }
    if (this.closed || this.port !== undefined) {
      port.close();
      return;
    }
    this.port = port;
    this.decoder.reset();
    port.on('data', (chunk) => {
      if (this.port !== port) return;
      for (const r of this.decoder.push(chunk)) {
        if (!r.ok) continue;
        if (this.ackDelayMs > 0) setTimeout(() => this.port === port && this.lock.receive(r.body), this.ackDelayMs);
        else this.lock.receive(r.body);
      }
    });
    const gone = (): void => {
      if (this.port === port) {
        this.lost();
        this.retry();
      }
    };
    port.on('close', gone);
    port.on('error', gone);
    this.lock.connect((message) => this.send(port, message));
    // A pty whose other end went away only says so on a write: probe with an empty frame.
    this.probe = setInterval(() => this.port === port && port.write(Uint8Array.of(0), (err) => err && gone()), 250);
    this.probe.unref();
  }

  private send(port: PortLike, message: Uint8Array): void {
    const frame = encodeFrame(message);
    if (this.corruptLeft > 0 || (this.corruptRate > 0 && Math.random() < this.corruptRate)) {
      if (this.corruptLeft > 0) this.corruptLeft--;
      this.corrupted++;
      const i = Math.floor(Math.random() * (frame.length - 1));
      frame[i] = (frame[i] as number) ^ (1 + Math.floor(Math.random() * 255));
    }
    port.write(frame);
  }

  private lost(): void {
    const port = this.port;
    this.port = undefined;
    clearInterval(this.probe);
    this.lock.disconnect();
    if (port !== undefined) {
      port.removeAllListeners();
      port.on('error', () => undefined);
      if (port.isOpen) port.close();
    }
  }

  private retry(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.open(), this.opts.reopenMs ?? 100);
  }
}
