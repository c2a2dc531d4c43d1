/**
 * One BLE connection to one lock, from connect to close (a reconnect is a new Link): its GATT
 * characteristics and fragment size, the fragments waiting while the event queue is full, the
 * events handed out on it and not yet answered, and the signal that aborts every bounded call
 * on it when it closes. Plain state: the pool (pool.ts), the GATT set-up (gatt.ts) and the
 * receiving side (inbound.ts) act on it.
 */
import { Reassembler } from '../framing.js';
import { MESSAGE_MAX_BYTES, type LockInfo } from '../protocol.js';
import { Outstanding } from '../window.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { LinkRef } from '../driver.js';
import type { NobleCharacteristic, NoblePeripheral } from '../noble-types.js';
import type { ClosedSignal } from '../noble-load.js';

/** ATT: the default and smallest MTU is 23 and the largest 517; a notification carries MTU − 3. */
export const ATT_MTU_MIN = 23;
export const ATT_MTU_MAX = 517;
export const ATT_HEADER = 3;
/** How long stop() waits for noble to confirm a scan stop or a disconnect. */
export const STOP_WAIT_MS = 1000;

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class Link {
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
