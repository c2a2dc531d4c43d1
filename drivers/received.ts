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
 */
import { ScannedLockPayload, type LockEventScan } from '../ledger/entry.js';
import type { LinkRef, ReceivedEvent } from './driver.js';
import type { LockInfo } from './protocol.js';

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
