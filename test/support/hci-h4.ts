/**
 * The HCI UART transport (H4, Bluetooth Core Spec Vol 4 Part A): each packet is one indicator
 * byte followed by the packet itself. Only the three kinds a host and an LE controller exchange
 * here are known:
 *
 *   0x01 command   opcode(2, LE) || length(1)  || parameters
 *   0x02 ACL data  handle+flags(2, LE) || length(2, LE) || data
 *   0x04 event     code(1) || length(1) || parameters
 *
 * `H4Reader` cuts a byte stream into packets; an unknown indicator byte means the stream lost
 * its framing, which a UART cannot recover from without a reset, so it throws. Packets are
 * bounded by their length fields (at most 3 + 255 bytes for commands and events) and by
 * `maxAcl` for ACL data. The encoders build the events the virtual controller sends.
 */

export const H4_COMMAND = 0x01;
export const H4_ACL = 0x02;
export const H4_EVENT = 0x04;

export const EVT_DISCONNECTION_COMPLETE = 0x05;
export const EVT_COMMAND_COMPLETE = 0x0e;
export const EVT_COMMAND_STATUS = 0x0f;
export const EVT_NUMBER_OF_COMPLETED_PACKETS = 0x13;
export const EVT_LE_META = 0x3e;
export const LE_CONNECTION_COMPLETE = 0x01;
export const LE_ADVERTISING_REPORT = 0x02;

export type H4Packet =
  | { readonly kind: 'command'; readonly opcode: number; readonly params: Buffer }
  | { readonly kind: 'acl'; readonly handle: number; readonly flags: number; readonly data: Buffer };

const HEADER = new Map<number, { readonly size: number; readonly length: (b: Buffer) => number }>([
  [H4_COMMAND, { size: 3, length: (b) => b.readUInt8(2) }],
  [H4_ACL, { size: 4, length: (b) => b.readUInt16LE(2) }],
  [H4_EVENT, { size: 2, length: (b) => b.readUInt8(1) }],
]);

export class H4Reader {
  private pending = Buffer.alloc(0);

  constructor(private readonly maxAcl: number) {}

  /** Forgets a partial packet (after a framing error). */
  reset(): void {
    this.pending = Buffer.alloc(0);
  }

  /** Appends bytes; returns the packets they completed. Events from a host are not expected and are dropped. */
  push(bytes: Buffer): H4Packet[] {
    this.pending = Buffer.concat([this.pending, bytes]);
    const out: H4Packet[] = [];
    for (;;) {
      const packet = this.next();
      if (packet === undefined) return out;
      if (packet !== null) out.push(packet);
    }
  }

  /** One packet, null for a packet that is not for a controller, undefined when bytes are missing. */
  private next(): H4Packet | null | undefined {
    const b = this.pending;
    if (b.length === 0) return undefined;
    const type = b.readUInt8(0);
    const header = HEADER.get(type);
    if (header === undefined) throw new Error(`H4: unknown packet indicator 0x${type.toString(16)}: framing lost`);
    if (b.length < 1 + header.size) return undefined;
    const length = header.length(b.subarray(1));
    if (type === H4_ACL && length > this.maxAcl) throw new Error(`H4: ACL packet of ${length} bytes, over the ${this.maxAcl} the controller announced`);
    const end = 1 + header.size + length;
    if (b.length < end) return undefined;
    const body = Buffer.from(b.subarray(1 + header.size, end));
    const first = b.readUInt16LE(1);
    this.pending = b.subarray(end);
    if (type === H4_COMMAND) return { kind: 'command', opcode: first, params: body };
    if (type === H4_ACL) return { kind: 'acl', handle: first & 0x0fff, flags: first >> 12, data: body };
    return null;
  }
}

export function event(code: number, params: Buffer): Buffer {
  if (params.length > 255) throw new Error(`H4: event parameters of ${params.length} bytes`);
  return Buffer.concat([Buffer.of(H4_EVENT, code, params.length), params]);
}

/** Command Complete for `opcode`, one command credit: status then the return parameters. */
export function commandComplete(opcode: number, status: number, result: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt8(1, 0);
  head.writeUInt16LE(opcode, 1);
  head.writeUInt8(status, 3);
  return event(EVT_COMMAND_COMPLETE, Buffer.concat([head, result]));
}

export function commandStatus(opcode: number, status: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt8(status, 0);
  p.writeUInt8(1, 1);
  p.writeUInt16LE(opcode, 2);
  return event(EVT_COMMAND_STATUS, p);
}

export function disconnectionComplete(handle: number, reason: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt16LE(handle, 1);
  p.writeUInt8(reason, 3);
  return event(EVT_DISCONNECTION_COMPLETE, p);
}

export function completedPackets(handle: number, count: number): Buffer {
  const p = Buffer.alloc(5);
  p.writeUInt8(1, 0);
  p.writeUInt16LE(handle, 1);
  p.writeUInt16LE(count, 3);
  return event(EVT_NUMBER_OF_COMPLETED_PACKETS, p);
}

/** LE Connection Complete: `role` 0 central, 1 peripheral; the peer's public address, wire order. */
export function leConnectionComplete(status: number, handle: number, role: number, peer: Buffer): Buffer {
  const p = Buffer.alloc(19);
  p.writeUInt8(LE_CONNECTION_COMPLETE, 0);
  p.writeUInt8(status, 1);
  p.writeUInt16LE(handle, 2);
  p.writeUInt8(role, 4);
  p.writeUInt8(0, 5); // public address
  peer.copy(p, 6);
  p.writeUInt16LE(0x0018, 12); // interval 30 ms
  p.writeUInt16LE(0, 14); // latency
  p.writeUInt16LE(0x0048, 16); // supervision timeout 720 ms
  p.writeUInt8(0, 18);
  return event(EVT_LE_META, p);
}

/** One LE Advertising Report: `type` 0 ADV_IND, 4 SCAN_RSP. */
export function leAdvertisingReport(type: number, address: Buffer, data: Buffer, rssi: number): Buffer {
  const p = Buffer.alloc(12 + data.length);
  p.writeUInt8(LE_ADVERTISING_REPORT, 0);
  p.writeUInt8(1, 1);
  p.writeUInt8(type, 2);
  p.writeUInt8(0, 3);
  address.copy(p, 4);
  p.writeUInt8(data.length, 10);
  data.copy(p, 11);
  p.writeInt8(rssi, 11 + data.length);
  return event(EVT_LE_META, p);
}

export function aclPacket(handle: number, flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(H4_ACL, 0);
  head.writeUInt16LE(handle | (flags << 12), 1);
  head.writeUInt16LE(data.length, 3);
  return Buffer.concat([head, data]);
}
