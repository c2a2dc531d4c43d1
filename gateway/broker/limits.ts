/**
 * Per-connection limits for the embedded broker: a byte bound on each MQTT control packet,
 * enforced on the wire before the packet is buffered, and a token bucket for publishes.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { OtiError } from '../../ledger/base/errors.js';

/** MQTT 3.1.1 §2.2.3: the largest Remaining Length the four-byte encoding can carry. */
export const MQTT_MAX_REMAINING_LENGTH = 268_435_455;

/**
 * A Duplex in front of a socket that reads the fixed header of every MQTT control packet
 * (MQTT 3.1.1 §2.2: one type byte, then the Remaining Length as a variable byte integer of at
 * most four bytes) and destroys the connection with ERR_FRAME_TOO_LARGE as soon as a header
 * announces more than `maxRemaining` bytes, or with ERR_FRAME_MALFORMED when the length runs
 * past four bytes. The packet body is never buffered here; bytes pass through unchanged, so
 * the broker's parser (mqtt-packet, which has no size limit of its own) never sees an oversized
 * packet. Backpressure is passed on: the socket is paused while the reader is full.
 */
export class FrameLimit extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly #socket: Socket;
  readonly #max: number;
  /** 0: at a type byte; 1..4: inside the length; -1: inside a body. */
  #state = 0;
  #length = 0;
  #multiplier = 1;
  #bodyLeft = 0;

  constructor(socket: Socket, maxRemaining: number) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.#max = maxRemaining;
    this.remoteAddress = socket.remoteAddress;
    socket.on('data', (chunk: Buffer) => {
      const err = this.#scan(chunk);
      if (err !== undefined) {
        this.destroy(err);
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy());
  }

  /** Walks the headers in `chunk`; returns the error to close with, if any. */
  #scan(chunk: Buffer): OtiError | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === -1) {
        const n = Math.min(this.#bodyLeft, chunk.length - i);
        this.#bodyLeft -= n;
        i += n;
        if (this.#bodyLeft === 0) this.#state = 0;
        continue;
      }
      const b = chunk[i++] as number;
      if (this.#state === 0) {
        this.#state = 1;
        this.#length = 0;
        this.#multiplier = 1;
        continue;
      }
      this.#length += (b & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      if (this.#length > this.#max) {
        return new OtiError('ERR_FRAME_TOO_LARGE', `an MQTT packet announces more than ${this.#max} bytes`, { limit: this.#max });
      }
      if ((b & 0x80) !== 0) {
        if (++this.#state > 4) return new OtiError('ERR_FRAME_MALFORMED', 'an MQTT remaining length is longer than four bytes');
        continue;
      }
      this.#bodyLeft = this.#length;
      this.#state = this.#length > 0 ? -1 : 0;
    }
    return undefined;
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#socket.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket.destroy();
    callback(error);
  }
}

/**
 * A token bucket: `burst` tokens, refilled at `perSecond`. `take()` spends one token and says
 * whether there was one; `tokens()` says how many there are. Time comes from `now` (ms,
 * monotonic) so tests can drive it.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#last = now();
  }

  take(): boolean {
    if (this.tokens() < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** The tokens there are now (refilled up to `burst`), whole or not. */
  tokens(): number {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) * this.perSecond) / 1000);
    this.#last = t;
    return this.#tokens;
  }
}

/** Bounds on persistent sessions (clean session off); see docs/MQTT.md §Limits. */
export interface SessionCaps {
  /** Persistent sessions one principal may hold; its longest-offline one is discarded for a new one. */
  readonly maxPerPrincipal: number;
  /** Seconds an offline persistent session is kept. */
  readonly expiryS: number;
  /** Messages queued for one session; the oldest are dropped beyond. */
  readonly maxQueuedMessages: number;
  /** Bytes (payload and topic) queued for one session; the oldest are dropped beyond. */
  readonly maxQueuedBytes: number;
}

/** Defaults of `broker.sessions.*` (gateway/config/schema.ts uses them too). */
export const DEFAULT_SESSION_CAPS: SessionCaps = { maxPerPrincipal: 8, expiryS: 86_400, maxQueuedMessages: 1000, maxQueuedBytes: 1_048_576 };

/** Caps on retained messages per principal (`broker.retained.*`); see docs/MQTT.md §Limits. */
export interface RetainedCapsConfig {
  readonly maxPerPrincipal: number;
  readonly maxBytesPerPrincipal: number;
}

export const DEFAULT_RETAINED_CAPS: RetainedCapsConfig = { maxPerPrincipal: 64, maxBytesPerPrincipal: 1_048_576 };

/** broker.maxConnections and broker.maxConnectionsPerAddress when not given (docs/MQTT.md §Limits). */
export const DEFAULT_MQTT_CONNECTION_CAPS = { total: 256, perAddress: 32 } as const;

/** Bounds on login attempts (`broker.login.*`); see docs/MQTT.md §Limits. */
export interface LoginLimits {
  /** Credential checks (scrypt on the libuv threadpool, users file read) running at once. */
  readonly maxConcurrentChecks: number;
  /** Logins waiting for a check; one more is refused with CONNACK 3 (ERR_MQTT_BUSY). */
  readonly maxPendingChecks: number;
  /** Failed logins per minute from one source address (also the burst). */
  readonly failuresPerMinutePerAddress: number;
  /** Failed logins per minute from all addresses together (also the burst). */
  readonly failuresPerMinute: number;
  /** Source addresses whose failures are remembered; the least recently seen is forgotten first. */
  readonly trackedAddresses: number;
  /**
   * How long a refused login waits for its CONNACK, ms. A client that tries again as soon as it
   * is refused then tries at most once per delay on each connection.
   */
  readonly refusalDelayMs: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = { maxConcurrentChecks: 1, maxPendingChecks: 32, failuresPerMinutePerAddress: 10, failuresPerMinute: 30, trackedAddresses: 4096, refusalDelayMs: 1000 };
