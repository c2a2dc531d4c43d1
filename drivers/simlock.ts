/**
 * A simulated lock that speaks the lock protocol (docs/PROTOCOL.md §Lock protocol) as lock
 * firmware would: its own key and counter, a bounded resend buffer of unacknowledged events,
 * in-order sending within the gateway's window, resends after a timeout, and faults on demand.
 *
 * The core is transport-free: `connect(send)` hands it a function that delivers one whole encoded
 * message to the gateway, and `receive()` takes one whole message from the gateway. The serial
 * link (SerialSimLink, framing over a pty) and the fake BLE peripheral wrap it. The demo, the
 * tests and the benchmarks use it.
 *
 * It speaks lock protocol version 2 unless told otherwise: it acts on an ack or nack only when
 * its `ev` is the hash of the event it holds, so an answer about other bytes (a forged frame
 * under its id and counter) never makes it drop an event.
 */
import { EventEmitter } from 'node:events';
import { Signer } from '../ledger/crypto.js';
import { coseSign1 } from '../ledger/cose.js';
import { encodeLockEvent, type EventType } from '../ledger/lockevent.js';
import { OtiError } from '../ledger/base/errors.js';
import { encode, matchAt } from '../ledger/base/cbor.js';
import { BOUND_ANSWERS_VERSION, decodeGatewayMessage, encodeMessage, eventHash, layoutEventMessage, PROTOCOL_VERSIONS, type LockInfo } from './protocol.js';
import { sealCredential, type PrivacyPublicKey } from '../ledger/privacy.js';

/** A lock that has not been greeted repeats its info this often. */
const ANNOUNCE_MS = 1000;

export interface SimLockOptions {
  readonly id: string;
  /** 32-byte Ed25519 seed. Without one the lock cannot sign and sends bare events. */
  readonly seed?: Uint8Array;
  readonly fw?: string;
  /** Unacknowledged events kept; on overflow the oldest is dropped (default 4096). */
  readonly bufferSize?: number;
  /** An event sent and not answered within this time is sent again (default 2000 ms). */
  readonly resendMs?: number;
  /** The counter of the next event (default 1). */
  readonly firstCounter?: number;
  readonly now?: () => number;
  /**
   * Keep every ack in `acked` (default true, for tests). A benchmark's lock that records
   * hundreds of thousands of events sets it false and counts them instead (ackCount).
   */
  readonly rememberAcks?: boolean;
  /**
   * The site privacy public key (docs/PRIVACY.md). When given, the raw credential id passed to
   * record() is sealed to it, with a fresh ephemeral key per event, before the event is signed;
   * the raw id never leaves the lock.
   */
  readonly privacyKey?: PrivacyPublicKey;
  /** The lock protocol version it speaks and announces (default the newest, 2). */
  readonly protocol?: number;
  /**
   * Acknowledged events kept for replay() and its kind (default 64). A benchmark's thousand
   * locks set 0: 64,000 events held for nothing are work for every full garbage collection.
   */
  readonly history?: number;
}

/**
 * Payloads signed ahead by one prepare(): laid out one after the other in one buffer, the n-th
 * ending at `ends[n]`; each view is made when its event is recorded.
 */
interface PreparedRun {
  readonly arena: Uint8Array;
  readonly ends: number[];
  readonly signed: boolean;
  /** Version 2: the SHA-256 of each payload (`ev` of the answers about it), 32 bytes each, made ahead like the signatures. */
  readonly hashes: Uint8Array | undefined;
  /** The next one to record. */
  next: number;
}

type Payload = { readonly cose: Uint8Array } | { readonly event: Uint8Array };

/**
 * An event the lock holds until it is acknowledged. Its payload is [start, end) of `src` (a COSE_Sign1
 * when `signed`, else the bare event), a view made only to send or hash it: with a thousand locks
 * (bench:ingest) every event is held for the time it is in flight, and each object it holds is
 * copied by the young-generation collections it lives through, in the gateway's process.
 */
interface Held {
  readonly ctr: number;
  readonly src: Uint8Array;
  readonly start: number;
  readonly end: number;
  readonly signed: boolean;
  /** When it was last sent in this link session; 0 = not sent. */
  sentAt: number;
  /** Not to be sent before this time (after a nack with retry). */
  notBefore: number;
  /**
   * `ev` of the answers about it (version 2): SHA-256 of the payload bytes, the 32 bytes at
   * `hashAt` of `hash` (made ahead with the event by prepare(), else when first needed).
   */
  hash: Uint8Array | undefined;
  hashAt: number;
}

function held(ctr: number, p: Payload): Held {
  const src = 'cose' in p ? p.cose : p.event;
  return { ctr, src, start: 0, end: src.length, signed: 'cose' in p, sentAt: 0, notBefore: 0, hash: undefined, hashAt: 0 };
}

/** Whether `ev` is the SHA-256 of a held event's payload (compared where the hash lies). */
function hashIs(h: Held, ev: Uint8Array): boolean {
  if (h.hash === undefined) {
    h.hash = eventHash(bytesOf(h));
    h.hashAt = 0;
  }
  return ev.length === 32 && matchAt(h.hash, h.hashAt, ev);
}

/** The payload bytes of a held event. */
function bytesOf(h: Held): Uint8Array {
  return h.start === 0 && h.end === h.src.length ? h.src : h.src.subarray(h.start, h.end);
}

export interface SimLockEvents {
  ack: [ctr: number, entry: Uint8Array];
  nack: [ctr: number, code: string, retry: boolean];
  /** An event was dropped from a full resend buffer. */
  overflow: [ctr: number];
  /** The gateway refused what the lock said in its info. */
  refused: [code: string, retry: boolean, versions: readonly number[]];
  /** An ack or nack whose `ev` names other bytes than the event held under its counter: ignored. */
  foreign: [ctr: number, code: string | undefined];
}

export class SimLock extends EventEmitter<SimLockEvents> {
  readonly id: string;
  readonly publicKey: Uint8Array | undefined;
  /** Acknowledged counters and the entry hash the gateway named for each (see rememberAcks). */
  readonly acked = new Map<number, Uint8Array>();
  /** Events acknowledged so far. */
  ackCount = 0;
  private readonly rememberAcks: boolean;
  /** Events sent so far, resends included. */
  sent = 0;
  private readonly signer: Signer | undefined;
  private readonly fw: string;
  private readonly bufferSize: number;
  private readonly resendMs: number;
  private readonly now: () => number;
  private readonly privacyKey: PrivacyPublicKey | undefined;
  private readonly buffer: Held[] = [];
  /** Payloads signed ahead by prepare(), for the next counters in order (preparedCount in all). */
  private readonly prepared: PreparedRun[] = [];
  private preparedCount = 0;
  /** Payloads of acknowledged events, kept briefly so that a replay can be staged. */
  private readonly history: Held[] = [];
  private readonly historySize: number;
  private nextCtr: number;
  private send: ((message: Uint8Array) => void) | undefined;
  private announceInfo = true;
  private window = 0;
  private timer: NodeJS.Timeout | undefined;
  private announcer: NodeJS.Timeout | undefined;
  private auto: NodeJS.Timeout | undefined;
  readonly protocol: number;
  private refusedForGood = false;

  constructor(opts: SimLockOptions) {
    super();
    this.id = opts.id;
    this.signer = opts.seed === undefined ? undefined : new Signer(opts.seed);
    this.publicKey = this.signer?.publicKey;
    this.fw = opts.fw ?? 'sim-1.0';
    this.bufferSize = opts.bufferSize ?? 4096;
    this.resendMs = opts.resendMs ?? 2000;
    this.nextCtr = opts.firstCounter ?? 1;
    this.now = opts.now ?? Date.now;
    this.rememberAcks = opts.rememberAcks ?? true;
    this.privacyKey = opts.privacyKey;
    this.protocol = opts.protocol ?? PROTOCOL_VERSIONS.at(-1)!;
    this.historySize = opts.history ?? 64;
    if (this.bufferSize < 1 || this.nextCtr < 1) throw new OtiError('ERR_ARGUMENT', 'bufferSize and firstCounter must be at least 1');
  }

  info(): LockInfo {
    const base = this.protocol === 1 ? { lock: this.id, fw: this.fw } : { v: this.protocol, lock: this.id, fw: this.fw };
    return this.publicKey === undefined ? base : { ...base, key: this.publicKey };
  }

  /** Unacknowledged events held. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Events signed ahead by prepare() and not recorded yet. */
  get preparedLeft(): number {
    return this.preparedCount;
  }

  /** The counter the next recorded event will get. */
  get counter(): number {
    return this.nextCtr;
  }

  get connected(): boolean {
    return this.send !== undefined;
  }

  /** Whether the gateway greeted it (a hello in its version) on this link: events may flow. */
  get greeted(): boolean {
    return this.window > 0;
  }

  /**
   * Signs the next `n` events ahead of time, so that a benchmark measures the gateway and not the
   * simulated locks' signing; record() uses them first (their lock time is when they were made).
   */
  prepare(n: number, types: readonly EventType[] = ['unlocked', 'locked']): void {
    if (n < 1) return;
    const made: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const ctr = this.nextCtr + this.preparedCount + i;
      const p = this.payload(ctr, types[i % types.length] as EventType, undefined);
      made.push('cose' in p ? p.cose : p.event);
    }
    // Kept in one buffer, with no object per event until it is recorded: hundreds of thousands
    // of small buffers, or of views and payload objects, held for a whole benchmark phase made
    // the process's heap and its garbage collections the benchmark's own cost rather than the
    // gateway's (every full collection marks them all again).
    const arena = new Uint8Array(made.reduce((sum, b) => sum + b.length, 0));
    const ends: number[] = [];
    let at = 0;
    for (const b of made) {
      arena.set(b, at);
      at += b.length;
      ends.push(at);
    }
    // The hash each answer's `ev` is checked against, made ahead too: the lock's work, not the gateway's.
    let hashes: Uint8Array | undefined;
    if (this.protocol >= BOUND_ANSWERS_VERSION) {
      hashes = new Uint8Array(32 * n);
      for (let i = 0; i < n; i++) hashes.set(eventHash(made[i]!), 32 * i);
    }
    this.prepared.push({ arena, ends, signed: this.signer !== undefined, hashes, next: 0 });
    this.preparedCount += n;
  }

  /** The next event signed ahead, held under `ctr`, if any. */
  private takePrepared(ctr: number): Held | undefined {
    const run = this.prepared[0];
    if (run === undefined) return undefined;
    const i = run.next++;
    if (run.next === run.ends.length) this.prepared.shift();
    this.preparedCount--;
    return { ctr, src: run.arena, start: i === 0 ? 0 : run.ends[i - 1]!, end: run.ends[i]!, signed: run.signed, sentAt: 0, notBefore: 0, hash: run.hashes, hashAt: 32 * i };
  }

  private dropPrepared(): void {
    this.prepared.length = 0;
    this.preparedCount = 0;
  }

  /**
   * Records a new event (as the lock's hardware would) and sends it when the window allows.
   * `cred` is the raw credential id; with a privacy key it is sealed (at most 31 bytes then).
   */
  record(type: EventType = 'unlocked', cred?: Uint8Array): number {
    const ctr = this.nextCtr++;
    this.buffer.push(this.takePrepared(ctr) ?? held(ctr, this.payload(ctr, type, cred)));
    while (this.buffer.length > this.bufferSize) {
      const dropped = this.buffer.shift() as Held;
      this.emit('overflow', dropped.ctr);
    }
    this.pump();
    return ctr;
  }

  /** Records `rate` events per second until stopAuto(). */
  startAuto(rate: number, types: readonly EventType[] = ['unlocked', 'locked']): void {
    this.stopAuto();
    let i = 0;
    const period = 1000 / rate;
    let due = this.now();
    const tick = (): void => {
      const t = this.now();
      while (due <= t) {
        this.record(types[i++ % types.length]);
        due += period;
      }
      this.auto = setTimeout(tick, Math.max(1, due - this.now()));
    };
    this.auto = setTimeout(tick, Math.max(1, period));
  }

  stopAuto(): void {
    clearTimeout(this.auto);
    this.auto = undefined;
  }

  /**
   * A link came up. With `announceInfo` (serial) the lock says who it is at once, so that a
   * gateway that came up first learns of it and sends hello; events wait for that hello.
   */
  connect(send: (message: Uint8Array) => void, opts: { announceInfo?: boolean } = {}): void {
    this.disconnect();
    this.send = send;
    this.announceInfo = opts.announceInfo ?? true;
    if (this.announceInfo) {
      // Announce until greeted: a hello may be lost while the other end is not listening yet.
      send(encodeMessage({ t: 'info', info: this.info() }));
      this.announcer = setInterval(() => this.window === 0 && this.send?.(encodeMessage({ t: 'info', info: this.info() })), ANNOUNCE_MS);
      this.announcer.unref();
    }
    this.timer = setInterval(() => this.pump(), Math.max(5, this.resendMs / 4));
    this.timer.unref();
  }

  /** The link went away: everything unacknowledged will be sent again on the next link. */
  disconnect(): void {
    clearInterval(this.timer);
    clearInterval(this.announcer);
    this.announcer = undefined;
    this.timer = undefined;
    this.send = undefined;
    this.window = 0;
    this.refusedForGood = false;
    for (const h of this.buffer) h.sentAt = 0;
  }

  /** Stops everything (auto events and the link). */
  close(): void {
    this.stopAuto();
    this.disconnect();
  }

  /** One whole message from the gateway. Bad messages are ignored, as firmware would. */
  receive(message: Uint8Array): void {
    let m;
    try {
      m = decodeGatewayMessage(message);
    } catch {
      return;
    }
    switch (m.t) {
      case 'hello':
        // A greeting in another version is an answer to an earlier info: ours gets its own hello.
        if ((m.v ?? 1) !== this.protocol) {
          if (this.announceInfo) this.send?.(encodeMessage({ t: 'info', info: this.info() }));
          return;
        }
        // Refused for good on this link: a later hello changes nothing until the link comes up again.
        if (this.refusedForGood) return;
        this.window = m.window;
        clearInterval(this.announcer);
        this.announcer = undefined;
        for (const h of this.buffer) h.sentAt = 0;
        if (this.announceInfo) this.send?.(encodeMessage({ t: 'info', info: this.info() }));
        break;
      case 'ack': {
        if (m.lock !== this.id) return;
        if (!this.about(m.ctr, m.ev, undefined)) return;
        const i = this.indexOf(m.ctr);
        if (i >= 0) {
          const [h] = this.buffer.splice(i, 1);
          this.remember(h as Held);
        }
        // A copy when remembered: the ack message's buffer is not kept alive by what the lock remembers.
        const entry = this.rememberAcks ? Uint8Array.from(m.entry) : m.entry;
        // An ack for an event no longer held (or already acked) is a repeat: reported once.
        if (this.rememberAcks ? !this.acked.has(m.ctr) : i >= 0) {
          if (this.rememberAcks) this.acked.set(m.ctr, entry);
          this.ackCount++;
          this.emit('ack', m.ctr, entry);
        }
        break;
      }
      case 'nack': {
        if (m.lock !== this.id) return;
        if (!this.about(m.ctr, m.ev, m.code)) return;
        const i = this.indexOf(m.ctr);
        const h = this.buffer[i];
        if (h !== undefined && m.retry) {
          h.sentAt = 0;
          h.notBefore = this.now() + this.resendMs;
        } else if (h !== undefined) {
          this.buffer.splice(i, 1);
        }
        this.emit('nack', m.ctr, m.code, m.retry);
        break;
      }
      case 'refuse':
        // Version 1 firmware does not know this message: it drops it as an unknown type.
        if (this.protocol < BOUND_ANSWERS_VERSION) return;
        // Refused for good: nothing more is sent on this link (the events are kept).
        if (!m.retry) {
          this.refusedForGood = true;
          this.window = 0;
          clearInterval(this.announcer);
          this.announcer = undefined;
        }
        this.emit('refused', m.code, m.retry, m.versions);
        return;
    }
    this.pump();
  }

  /**
   * Version 2: whether an answer concerns the bytes this lock sent under that counter (its `ev`
   * is their hash). An answer for a counter no longer held concerns nothing held and is let
   * through (a repeated ack); one about other bytes is reported and ignored.
   */
  private about(ctr: number, ev: Uint8Array | undefined, code: string | undefined): boolean {
    if (this.protocol < BOUND_ANSWERS_VERSION) return true;
    const h = this.buffer[this.indexOf(ctr)] ?? this.history.find((x) => x.ctr === ctr);
    if (ev !== undefined && (h === undefined || hashIs(h, ev))) return true;
    this.emit('foreign', ctr, code);
    return false;
  }

  // Faults on demand.

  /** Skips `n` counters, as a lock whose log overflowed before it could send them. */
  skip(n: number): void {
    this.dropPrepared();
    this.nextCtr += n;
  }

  /** Sends an already acknowledged event again (a replay, as an attacker or a buggy lock would). */
  replay(ctr?: number): boolean {
    const h = ctr === undefined ? this.history.at(-1) : this.history.find((x) => x.ctr === ctr);
    if (h === undefined || this.send === undefined) return false;
    this.send(this.eventMessage(h, h.ctr));
    return true;
  }

  /**
   * Sends an acknowledged event again with one bit of its signature flipped (anyone on the line
   * can do this without the lock's key). False for an unsigned lock.
   */
  replayFlipped(ctr: number): boolean {
    const h = this.history.find((x) => x.ctr === ctr);
    if (h === undefined || this.send === undefined || !h.signed) return false;
    const cose = Uint8Array.from(bytesOf(h));
    // COSE_Sign1 ends with its 64-byte signature.
    cose[cose.length - 1]! ^= 0x01;
    this.send(this.eventMessage(held(ctr, { cose }), ctr));
    return true;
  }

  /**
   * Records an event the gateway can never accept (an `ext` of `extBytes` bytes, over the 1,024
   * allowed), signed like any other, at the next counter; it is held and sent like any other.
   */
  recordInvalid(extBytes = 1100): number {
    return this.recordPayload((ctr) => {
      const bytes = encode({ v: 1, ctr, ext: { pad: new Uint8Array(extBytes) }, lock: this.id, time: this.now(), type: 'unlocked' });
      return this.signer === undefined ? { event: bytes } : { cose: coseSign1(this.signer, bytes) };
    });
  }

  /**
   * Records, at the next counter, the payload `make` returns for it, as it is (other firmware's
   * encodings, say); it is held and sent like any other.
   */
  recordPayload(make: (ctr: number) => Payload): number {
    const ctr = this.nextCtr++;
    this.dropPrepared();
    this.buffer.push(held(ctr, make(ctr)));
    this.pump();
    return ctr;
  }

  /** Sends one event message with these payload bytes as they are (a forged or altered frame on its line). */
  inject(payload: { readonly cose: Uint8Array } | { readonly event: Uint8Array }, oldest: number): boolean {
    if (this.send === undefined) return false;
    this.send('cose' in payload ? layoutEventMessage(payload.cose, true, oldest) : layoutEventMessage(payload.event, false, oldest));
    return true;
  }

  /** Sends these bytes as one whole message, as they are (garbage from broken firmware). */
  sendRaw(message: Uint8Array): boolean {
    if (this.send === undefined) return false;
    this.send(message);
    return true;
  }

  /** Sends an info announcing protocol version `v` as it is (a lock of another version). */
  announce(v: number): boolean {
    if (this.send === undefined) return false;
    this.send(encode({ t: 'info', v, fw: this.fw, lock: this.id }));
    return true;
  }

  /** The payload bytes held or acknowledged under a counter (for tests that alter them). */
  payloadOf(ctr: number): Payload | undefined {
    const h = this.buffer[this.indexOf(ctr)] ?? this.history.find((x) => x.ctr === ctr);
    if (h === undefined) return undefined;
    return h.signed ? { cose: bytesOf(h) } : { event: bytesOf(h) };
  }

  /** Sends an event with the counter of an acknowledged one but different content. */
  forgeReplay(ctr: number): boolean {
    if (this.send === undefined) return false;
    const bytes = encodeLockEvent({ lock: this.id, ctr, time: this.now(), type: 'tamper' });
    const payload = this.signer === undefined ? { event: bytes } : { cose: coseSign1(this.signer, bytes) };
    this.send(this.eventMessage(held(ctr, payload), ctr));
    return true;
  }

  private payload(ctr: number, type: EventType, cred: Uint8Array | undefined): Payload {
    const sealed = cred === undefined || this.privacyKey === undefined ? cred : sealCredential(this.privacyKey, this.id, cred);
    const bytes = encodeLockEvent({ lock: this.id, ctr, time: this.now(), type, ...(sealed === undefined ? {} : { cred: sealed }) });
    return this.signer === undefined ? { event: bytes } : { cose: coseSign1(this.signer, bytes) };
  }

  private indexOf(ctr: number): number {
    // Answers nearly always concern the first few held events.
    for (let i = 0; i < this.buffer.length; i++) if ((this.buffer[i] as Held).ctr === ctr) return i;
    return -1;
  }

  private remember(h: Held): void {
    if (this.historySize === 0) return;
    this.history.push(h);
    if (this.history.length > this.historySize) this.history.shift();
  }

  private eventMessage(h: Held, oldest: number): Uint8Array {
    // The payload was made (and checked) by encodeLockEvent and coseSign1 in this lock.
    return layoutEventMessage(bytesOf(h), h.signed, oldest);
  }

  /** Sends what the window allows, strictly in counter order. */
  private pump(): void {
    const send = this.send;
    if (send === undefined || this.window === 0 || this.buffer.length === 0) return;
    const t = this.now();
    const oldest = (this.buffer[0] as Held).ctr;
    let inFlight = 0;
    for (const h of this.buffer) {
      if (inFlight >= this.window) break;
      if (h.sentAt !== 0 && t - h.sentAt < this.resendMs) {
        inFlight++;
        continue;
      }
      if (h.notBefore > t) break;
      h.sentAt = t;
      inFlight++;
      this.sent++;
      send(this.eventMessage(h, oldest));
      if (this.send !== send) return; // the link went away while sending
    }
  }
}
