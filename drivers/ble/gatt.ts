/**
 * The GATT side of a BLE link (docs/PROTOCOL.md §Lock protocol, BLE): connect (bounded) →
 * discover the service's info, events and ack characteristics → read info → subscribe to the
 * events characteristic → write hello; and the answers written back, fragmented to ATT MTU − 3
 * bytes (drivers/framing.ts) with write requests, one message at a time per link.
 *
 * Every call is bounded, by its own timeout and by the link's closing: noble drops the pending
 * callbacks of a link that went down, so an unbounded call could wait forever.
 */
import { fragment } from '../framing.js';
import { ACK_CHAR_UUID, EVENTS_CHAR_UUID, INFO_CHAR_UUID, INFO_MAX_BYTES, PROTOCOL_VERSION, PROTOCOL_VERSIONS, SERVICE_UUID, decodeLockMessage, encodeMessage, type LockInfo } from '../protocol.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import type { DriverNotice } from '../driver.js';
import type { NobleCharacteristic } from '../noble-types.js';
import { bounded } from '../noble-load.js';
import { ATT_HEADER, ATT_MTU_MAX, ATT_MTU_MIN, messageOf, type Link } from './link.js';

export interface GattOptions {
  /** Sent in hello. */
  readonly gatewayId: string;
  /** hello.window. */
  readonly window: number;
  readonly connectTimeoutMs: number;
  readonly gattTimeoutMs: number;
  readonly now: () => number;
  readonly notice: (n: DriverNotice) => void;
  /** A message read from a link was refused (counted against the link's garbage limit). */
  readonly reject: (link: Link, code: string, detail: string) => void;
  /** A message (the info value) was read. */
  readonly frameIn: () => void;
  /** Closes a link after a failed write, with backoff. */
  readonly close: (link: Link, reason: string) => Promise<void>;
}

export class Gatt {
  constructor(private readonly o: GattOptions) {}

  /** Sets a link up as far as its hello; throws (the link is still to be closed) on any failure. */
  async setUp(link: Link): Promise<{ readonly mtu: number; readonly info: LockInfo }> {
    const p = link.peripheral;
    p.on('disconnect', link.onDisconnect);
    try {
      await bounded(p.connectAsync(), this.o.connectTimeoutMs, 'connect', link.closedSignal);
    } catch (e) {
      try {
        p.cancelConnect();
      } catch {
        // Nothing more can be done about a connect that will not cancel.
      }
      throw e;
    }
    link.connected = true;
    const { characteristics } = await this.call(link, p.discoverSomeServicesAndCharacteristicsAsync([SERVICE_UUID], [INFO_CHAR_UUID, EVENTS_CHAR_UUID, ACK_CHAR_UUID]), 'discovery');
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

    const raw = await this.call(link, info.readAsync(), 'info read');
    const lockInfo = this.readInfo(link, raw);
    if (lockInfo === 'version') {
      // Tell the lock which versions this gateway speaks before leaving it (docs/PROTOCOL.md §Versions).
      await this.send(link, encodeMessage({ t: 'refuse', code: 'ERR_PROTOCOL_VERSION', retry: false, versions: PROTOCOL_VERSIONS }), 'refuse');
    }
    if (lockInfo === undefined || lockInfo === 'version') throw new OtiError('ERR_MESSAGE', 'the info characteristic holds no valid info message');
    link.info = lockInfo;
    this.o.notice({ kind: 'lock-seen', from: link.ref, info: lockInfo, time: this.o.now() });

    link.events.on('data', link.onData);
    await this.call(link, link.events.subscribeAsync(), 'subscribe');
    await this.write(link, encodeMessage({ t: 'hello', v: link.info?.v ?? PROTOCOL_VERSION, gw: this.o.gatewayId, window: this.o.window }));
    return { mtu, info: lockInfo };
  }

  /** Writes one message, fragmented, with write requests; messages never interleave. */
  write(link: Link, message: Uint8Array): Promise<void> {
    const ack = link.ack;
    if (ack === undefined) return Promise.reject(new OtiError('ERR_DRIVER_STOPPED', 'link not set up'));
    const parts = fragment(message, link.maxFragment);
    const run = async (): Promise<void> => {
      for (const part of parts) {
        if (link.closed) throw new OtiError('ERR_DRIVER_STOPPED', 'link closed');
        await this.call(link, ack.writeAsync(Buffer.from(part.buffer, part.byteOffset, part.byteLength), false), 'write');
      }
    };
    const done = link.writes.then(run);
    link.writes = done.catch(() => undefined);
    return done;
  }

  /** Sends an answer; a dead or failing link drops it (the lock resends). True if written. */
  async send(link: Link, message: Uint8Array, what: string): Promise<boolean> {
    try {
      await this.write(link, message);
      return true;
    } catch (e) {
      await this.o.close(link, `${what} write failed: ${messageOf(e)}`);
      return false;
    }
  }

  /** The info, or 'version' when it announces a version this gateway does not speak (rejected either way). */
  private readInfo(link: Link, raw: Uint8Array): LockInfo | 'version' | undefined {
    this.o.frameIn();
    if (raw.length > INFO_MAX_BYTES) {
      this.o.reject(link, 'ERR_FRAME_TOO_LARGE', `info value of ${raw.length} bytes`);
      return undefined;
    }
    try {
      const m = decodeLockMessage(raw);
      if (m.t === 'info') return m.info;
      this.o.reject(link, 'ERR_MESSAGE', `info characteristic holds a ${m.t} message`);
    } catch (e) {
      this.o.reject(link, isOtiError(e) ? e.code : 'ERR_MESSAGE', messageOf(e));
      if (isOtiError(e, 'ERR_PROTOCOL_VERSION')) return 'version';
    }
    return undefined;
  }

  private call<T>(link: Link, p: Promise<T>, what: string): Promise<T> {
    return bounded(p, this.o.gattTimeoutMs, what, link.closedSignal);
  }
}
