/**
 * One object per received event on the drivers' common path: the payload as the protocol's fast
 * decoder found it (a ScannedLockPayload) is also the ReceivedEvent handed to the pipeline, its
 * own `decoded`. Thousands of events are in flight under load, and each object an event holds is
 * copied by the young-generation collections it lives through and then marked again; a
 * ReceivedEvent of its own beside the scanned payload was one more per event.
 *
 * Made by the fast decoder (drivers/protocol.ts) before the driver knows where the event came from;
 * receivedEvent() (drivers/driver.ts) fills that in once, and makes a plain ReceivedEvent when it
 * was filled already or the message came through the strict decoder.
 *
 * The types of a received event (ReceivedEvent, LinkRef, LockInfo) are declared here, below the
 * driver interface (drivers/driver.ts) and the protocol (drivers/protocol.ts), which both use
 * ScannedEvent and re-export them, so that neither import goes round in a circle.
 */
import { ScannedLockPayload, type LockEventScan, type LockPayload } from '../ledger/entry.js';

/** Where an event came from: a driver id and the link within it (a port path, a BLE address). */
export interface LinkRef {
  readonly driver: string;
  readonly link: string;
}

/** A lock event as received, before any check against the roster or the ledger. */
export interface ReceivedEvent {
  readonly from: LinkRef;
  /** The lock id and counter claimed by the event (not yet verified). */
  readonly lock: string;
  readonly ctr: number;
  /**
   * The lowest counter the lock still holds (it has not yet been acknowledged). Counters below it
   * that the gateway has never stored are gone from the lock: a gap.
   */
  readonly oldest: number;
  /** The lock's COSE_Sign1 bytes (signed event) or bare event bytes (unsigned lock). */
  readonly payload: { readonly cose: Uint8Array } | { readonly event: Uint8Array };
  /** The payload as the driver decoded it (the protocol decoder's `decoded`), so the pipeline need not decode it again. */
  readonly decoded?: LockPayload | undefined;
  /** What the lock said about itself on this link, if it said anything yet. */
  readonly info: LockInfo | undefined;
  /** Gateway clock (ms since 1970) when the last byte of the event arrived. */
  readonly receivedAt: number;
  /**
   * Set when the payload is not a valid lock event (the strict decoder's code and message): the
   * gateway can never accept it and refuses it with ERR_EVENT_INVALID. `decoded` is then absent.
   */
  readonly invalid?: { readonly code: string; readonly detail: string };
}

/** What a lock says about itself in its info message (docs/PROTOCOL.md). */
export interface LockInfo {
  /** The lock protocol version the lock announced (absent: 1). */
  readonly v?: number;
  readonly lock: string;
  readonly fw: string;
  /** The lock's Ed25519 public key; absent for a lock that cannot sign. */
  readonly key?: Uint8Array;
}

/** No link yet (ScannedEvent before receivedEvent()). */
const NOWHERE: LinkRef = Object.freeze({ driver: '', link: '' });

export class ScannedEvent extends ScannedLockPayload implements ReceivedEvent {
  #from: LinkRef = NOWHERE;
  #oldest = 0;
  #info: LockInfo | undefined = undefined;
  #receivedAt = 0;
  readonly payload: { readonly cose: Uint8Array } | { readonly event: Uint8Array };

  constructor(bytes: Uint8Array, source: Uint8Array, o: LockEventScan, signed: boolean) {
    super(bytes, source, o, signed);
    this.payload = signed ? { cose: bytes } : { event: bytes };
  }

  get from(): LinkRef {
    return this.#from;
  }

  get oldest(): number {
    return this.#oldest;
  }

  get info(): LockInfo | undefined {
    return this.#info;
  }

  get receivedAt(): number {
    return this.#receivedAt;
  }

  /** Its own decoding: the pipeline uses it instead of decoding the payload again. */
  get decoded(): ScannedLockPayload {
    return this;
  }

  /** Says where and when it was received, once; false if it was told already (then it is some other event's payload). */
  received(from: LinkRef, info: LockInfo | undefined, receivedAt: number, oldest: number): boolean {
    if (this.#from !== NOWHERE) return false;
    this.#from = from;
    this.#info = info;
    this.#receivedAt = receivedAt;
    this.#oldest = oldest;
    return true;
  }
}
