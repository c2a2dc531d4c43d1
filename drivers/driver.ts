/**
 * The seam between lock transports and the gateway: one small, promise-based interface that the
 * serial driver, the BLE driver and the test fakes all implement, and whose contract is stated
 * here so that each implementation (and each test suite run against them) can be held to it.
 *
 * Contract
 * - `start()` resolves once the driver is running (its links may still be connecting: a serial
 *   device that is absent is retried with backoff, not an error). It rejects with
 *   ERR_DRIVER_UNAVAILABLE when the driver cannot run on this machine at all (no Bluetooth
 *   support, for example); the reason is in the error and in `status()`. Calling it twice is an
 *   error (ERR_ARGUMENT).
 * - `events()` is the stream of received lock events, for one consumer. The driver buffers at most
 *   a bounded number of events; while that buffer is full it stops reading from its links (locks
 *   keep their events and resend them), so memory never grows with the lock's backlog. The stream
 *   ends when the driver is stopped.
 * - Every event must be answered exactly once with `ack()` (the event is durable in the ledger,
 *   or was already) or `nack()` (refused, with a code; `retry` tells the lock whether to keep
 *   it). The answer goes back over the link the event came in on. If that link has gone away
 *   meanwhile the answer is dropped: the lock still holds the event and resends it, and the
 *   gateway then recognises the duplicate. Neither call throws for a dead link.
 * - `notices()`: what a technician or the ledger should know that is not an event (a frame that
 *   failed its CRC, a lock that is not enrolled, a blind interval while an adapter was down). A
 *   bounded stream: when nobody reads it, the oldest notices are dropped, never the events.
 * - `stop()` stops reading, closes every link and ends both streams. Events handed out but not
 *   yet answered stay with their locks. It resolves once every link is closed; it is idempotent.
 * - No byte sequence from a link, and no failure of a device, may throw out of a driver or crash
 *   the process: every such failure is a notice and a status change.
 */
import { BOUND_ANSWERS_VERSION, encodeAck, eventHash, type EventMessage, type LockInfo, type MessageInput, type UnacceptableEvent } from './protocol.js';
import { ScannedEvent, type LinkRef, type ReceivedEvent } from './received.js';

export type { LinkRef, ReceivedEvent } from './received.js';

/** The ReceivedEvent for a decoded event message, as every driver hands it to the pipeline. */
export function receivedEvent(m: EventMessage, from: LinkRef, info: LockInfo | undefined, receivedAt: number): ReceivedEvent {
  // The fast decoder's payload is the event itself (drivers/received.ts), unless it was told already.
  const d = m.decoded;
  if (d instanceof ScannedEvent && d.bytes === ('cose' in m ? m.cose : m.event) && d.received(from, info, receivedAt, m.oldest)) return d;
  return { from, lock: m.lock, ctr: m.ctr, oldest: m.oldest, payload: 'cose' in m ? { cose: m.cose } : { event: m.event }, decoded: m.decoded, info, receivedAt };
}

/** The ReceivedEvent for an event message the gateway can never accept (see ReceivedEvent.invalid). */
export function unacceptableEvent(u: UnacceptableEvent, from: LinkRef, info: LockInfo | undefined, receivedAt: number): ReceivedEvent {
  return { from, lock: u.lock, ctr: u.ctr, oldest: u.oldest, payload: u.payload, info, receivedAt, invalid: { code: u.code, detail: u.detail } };
}

/** The payload bytes of an event as the lock sent them (what `ev` of an answer hashes). */
export function payloadBytes(ev: ReceivedEvent): Uint8Array {
  return 'cose' in ev.payload ? ev.payload.cose : ev.payload.event;
}

/** `ev` for an answer to this event: present when the lock announced version 2 (docs/PROTOCOL.md §Messages). */
function answerEv(ev: ReceivedEvent): Uint8Array | undefined {
  return (ev.info?.v ?? 1) >= BOUND_ANSWERS_VERSION ? eventHash(payloadBytes(ev)) : undefined;
}

/** answerEv() as the field of a message input: `{ ev }`, or nothing. */
function bound(ev: ReceivedEvent): { ev?: Uint8Array } {
  const h = answerEv(ev);
  return h === undefined ? {} : { ev: h };
}

/** The ack a driver sends for this event, in the version its lock speaks. */
export function ackFor(ev: ReceivedEvent, entry: Uint8Array): MessageInput {
  return { t: 'ack', ...bound(ev), lock: ev.lock, ctr: ev.ctr, entry };
}

/**
 * The bytes of the ack for this event: encodeMessage(ackFor(ev, entry)), the one message a driver
 * sends per event, without the message object and its spread.
 */
export function ackMessage(ev: ReceivedEvent, entry: Uint8Array): Uint8Array {
  return encodeAck(ev.lock, ev.ctr, entry, answerEv(ev));
}

/** The nack a driver sends for this event, in the version its lock speaks. */
export function nackFor(ev: ReceivedEvent, code: string, retry: boolean): MessageInput {
  return { t: 'nack', ...bound(ev), lock: ev.lock, ctr: ev.ctr, code, retry };
}

export type DriverState = 'stopped' | 'starting' | 'running' | 'degraded' | 'unavailable';

export interface LinkStatus {
  readonly link: string;
  readonly state: 'connecting' | 'open' | 'closed' | 'backoff';
  /** The lock on the far side, once it has identified itself. */
  readonly lock?: string;
  /** Why the link is not open, when it is not. */
  readonly reason?: string;
  /** When the next reconnect attempt is due (ms since 1970), in backoff. */
  readonly retryAt?: number;
}

export interface DriverStatus {
  readonly driver: string;
  readonly state: DriverState;
  /** Why the driver is unavailable or degraded. */
  readonly reason?: string;
  readonly since: number;
  readonly links: readonly LinkStatus[];
  readonly counters: {
    readonly framesIn: number;
    readonly framesRejected: number;
    readonly eventsIn: number;
    readonly acksOut: number;
    readonly nacksOut: number;
    readonly reconnects: number;
  };
}

export type DriverNotice =
  /** A frame, fragment or message was refused; `code` is a stable error code. */
  | { readonly kind: 'rejected'; readonly from: LinkRef; readonly code: string; readonly detail: string; readonly time: number }
  /** A lock identified itself (info). The pipeline reports it when the lock is not enrolled. */
  | { readonly kind: 'lock-seen'; readonly from: LinkRef; readonly info: LockInfo; readonly time: number }
  /** A link opened or closed, an adapter changed state, a reconnect is scheduled. */
  | { readonly kind: 'link'; readonly from: LinkRef; readonly state: LinkStatus['state']; readonly detail: string; readonly time: number }
  /**
   * The driver could not have received events between `start` and `end` (adapter powered off,
   * a stalled scan, a device unplugged). The pipeline records it in the chain as a gap entry.
   */
  | { readonly kind: 'blind'; readonly driver: string; readonly start: number; readonly end: number; readonly reason: string; readonly time: number };

export interface LockDriver {
  /** A stable id, e.g. "serial:/dev/ttyUSB0" or "ble". */
  readonly id: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  events(): AsyncIterable<ReceivedEvent>;
  notices(): AsyncIterable<DriverNotice>;
  /** The event is durable in the ledger as the entry with this leaf hash. */
  ack(ev: ReceivedEvent, entry: Uint8Array): Promise<void>;
  /** The event is refused. `retry`: the lock keeps it and resends later (true) or drops it. */
  nack(ev: ReceivedEvent, code: string, retry: boolean): Promise<void>;
  /**
   * Refuses what a lock said in its info (a `refuse` message on that link): an unknown, revoked
   * or re-keyed lock. Optional: a driver without it leaves the lock to learn from its nacks.
   */
  refuseLink?(from: LinkRef, code: string, retry: boolean): Promise<void>;
  status(): DriverStatus;
}
