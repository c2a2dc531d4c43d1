/**
 * Virtual Bluetooth LE controllers on one simulated radio, for running real host stacks (noble,
 * bleno) without kernel Bluetooth. Each controller talks HCI over H4 (test/support/hci-h4.ts) to
 * its host through one end of a socat pty pair (drivers/pty.ts); the host opens the other end
 * with @stoprocent/bluetooth-hci-socket's UART transport (BLUETOOTH_HCI_SOCKET_UART_PORT).
 *
 * What a controller does, and nothing more (anything else is answered "Unknown HCI Command",
 * 0x01, and listed in `unknown`):
 * - Initialisation: Reset, Set Event Mask, LE Set Event Mask, Read Local Version (Bluetooth 5.0),
 *   Read Local Supported Commands (none of the optional ones), Read Buffer Size, LE Read Buffer
 *   Size (27-byte ACL packets, 8 in flight), Read BD_ADDR (a fixed public address), Read/Write
 *   LE Host Supported, Read RSSI.
 * - Advertising: LE Set Advertising Parameters/Data/Scan Response Data/Enable. Every tick
 *   (ADV_INTERVAL_MS) an advertising controller is heard by every scanning one as an ADV_IND
 *   report with its advertising data and, when that scan is active (LE Set Scan Parameters type
 *   1), a SCAN_RSP report with its scan response data, as a real scan request would get.
 *   LE Set Scan Enable honours filter duplicates.
 * - Connections: LE Create Connection (Command Status, then) connects when the initiator next
 *   hears a connectable advertisement from the public address it asked for: the link is routed
 *   by that address, both sides get LE Connection Complete (central role 0, peripheral role 1,
 *   each naming the other's public address) and the peripheral stops advertising. LE Create
 *   Connection Cancel ends a pending one with status 0x02.
 * - ACL data from a host goes to the peer's host on the peer's handle (a host's start fragment,
 *   flags 0b00, arrives as 0b10, as a controller reports it); the sender gets Number Of Completed
 *   Packets at once. Disconnect (Command Status, then) gives Disconnection Complete to both: 0x16
 *   (local host) to the host that asked, its reason to the peer.
 *
 * Test controls: `beacon()` makes a host-less neighbour that always advertises; `drop()` loses a controller's link as a radio would (reason 0x08, supervision
 * timeout, on both sides); `stallScan()` makes a scan stop delivering reports without telling its
 * host, until the host turns scanning off and on again (what noble on a Raspberry Pi sometimes
 * sees, and what the BLE driver's scan watchdog is for).
 */
import { SerialPort } from 'serialport';
import {
  H4Reader,
  aclPacket,
  commandComplete,
  commandStatus,
  completedPackets,
  disconnectionComplete,
  leAdvertisingReport,
  leConnectionComplete,
  type H4Packet,
} from './hci-h4.js';

/** How often an advertising controller is heard. */
const ADV_INTERVAL_MS = 20;
const ACL_MAX = 27;
const ACL_IN_FLIGHT = 8;
const RSSI = -50;

const STATUS_OK = 0x00;
const STATUS_UNKNOWN_COMMAND = 0x01;
const STATUS_UNKNOWN_CONNECTION = 0x02;
const STATUS_DISALLOWED = 0x0c;
const REASON_TIMEOUT = 0x08;
const REASON_LOCAL_HOST = 0x16;

const ADV_IND = 0x00;
const SCAN_RSP = 0x04;

const op = (ogf: number, ocf: number): number => (ogf << 10) | ocf;
const OP = {
  disconnect: op(0x01, 0x0006),
  setEventMask: op(0x03, 0x0001),
  reset: op(0x03, 0x0003),
  readLeHostSupported: op(0x03, 0x006c),
  writeLeHostSupported: op(0x03, 0x006d),
  readLocalVersion: op(0x04, 0x0001),
  readLocalCommands: op(0x04, 0x0002),
  readBufferSize: op(0x04, 0x0005),
  readBdAddr: op(0x04, 0x0009),
  readRssi: op(0x05, 0x0005),
  leSetEventMask: op(0x08, 0x0001),
  leReadBufferSize: op(0x08, 0x0002),
  leSetAdvParams: op(0x08, 0x0006),
  leSetAdvData: op(0x08, 0x0008),
  leSetScanRspData: op(0x08, 0x0009),
  leSetAdvEnable: op(0x08, 0x000a),
  leSetScanParams: op(0x08, 0x000b),
  leSetScanEnable: op(0x08, 0x000c),
  leCreateConnection: op(0x08, 0x000d),
  leCreateConnectionCancel: op(0x08, 0x000e),
} as const;

/** Answers that need no state: opcode → return parameters after the status. */
const CONSTANT_ANSWERS = new Map<number, Buffer>([
  [OP.setEventMask, Buffer.alloc(0)],
  [OP.leSetEventMask, Buffer.alloc(0)],
  [OP.writeLeHostSupported, Buffer.alloc(0)],
  [OP.readLeHostSupported, Buffer.of(1, 0)],
  // HCI 5.0 (0x09), revision 0, LMP 5.0, manufacturer 0xffff (none), subversion 0.
  [OP.readLocalVersion, Buffer.of(0x09, 0, 0, 0x09, 0xff, 0xff, 0, 0)],
  [OP.readLocalCommands, Buffer.alloc(64)],
  // ACL length (2), SCO length (1), ACL packets (2), SCO packets (2).
  [OP.readBufferSize, Buffer.of(ACL_MAX, 0, 0, ACL_IN_FLIGHT, 0, 0, 0)],
  [OP.leReadBufferSize, Buffer.of(ACL_MAX, 0, ACL_IN_FLIGHT)],
  [OP.leSetAdvParams, Buffer.alloc(0)],
]);

interface LinkEnd {
  readonly controller: VirtualController;
  readonly handle: number;
}

/** Wire order (least significant byte first) of "aa:bb:cc:dd:ee:ff". */
export function addressBytes(address: string): Buffer {
  return Buffer.from(address.split(':').reverse().join(''), 'hex');
}

export class VirtualController {
  readonly address: string;
  readonly addressWire: Buffer;
  /** Opcodes this controller does not know, as the hosts sent them. */
  readonly unknown = new Set<number>();
  /** ACL packets for a link that is gone (dropped, as a controller does). */
  aclDropped = 0;
  /** Framing or protocol errors seen from the host. */
  readonly errors: string[] = [];
  private readonly reader = new H4Reader(ACL_MAX);
  private send: (bytes: Buffer) => void = () => undefined;
  private advertising = false;
  private advData = Buffer.alloc(0);
  private scanRspData = Buffer.alloc(0);
  private scanning = false;
  private activeScan = false;
  private filterDuplicates = false;
  private readonly reported = new Set<string>();
  private stalled = false;
  private initiating: Buffer | undefined;
  private nextHandle = 0x0040;
  /** This controller's handle → the other end of the link. */
  private readonly links = new Map<number, LinkEnd>();

  constructor(
    private readonly radio: Radio,
    address: string,
  ) {
    this.address = address;
    this.addressWire = addressBytes(address);
  }

  /** Connects the controller to its host's byte stream. */
  attach(send: (bytes: Buffer) => void): void {
    this.send = send;
  }

  /** Bytes from the host. */
  receive(bytes: Buffer): void {
    let packets: H4Packet[];
    try {
      packets = this.reader.push(bytes);
    } catch (e) {
      this.errors.push(e instanceof Error ? e.message : String(e));
      this.reader.reset();
      return;
    }
    for (const p of packets) {
      if (p.kind === 'command') this.command(p.opcode, p.params);
      else this.acl(p.handle, p.flags, p.data);
    }
  }

  get connected(): boolean {
    return this.links.size > 0;
  }

  get isScanning(): boolean {
    return this.scanning;
  }

  /** The radio loses this controller's links (supervision timeout on both sides). */
  drop(): void {
    for (const [handle, peer] of [...this.links]) this.radio.unlink({ controller: this, handle }, peer, REASON_TIMEOUT, REASON_TIMEOUT);
  }

  /** Advertises `adv` (and `scanRsp`) with no host behind it: a neighbouring device. */
  beacon(adv: Buffer, scanRsp: Buffer): void {
    this.advData = Buffer.from(adv);
    this.scanRspData = Buffer.from(scanRsp);
    this.advertising = true;
  }

  /** The scan keeps running but hears nothing, until the host restarts it. */
  stallScan(): void {
    this.stalled = true;
  }

  private command(opcode: number, params: Buffer): void {
    const constant = CONSTANT_ANSWERS.get(opcode);
    if (constant !== undefined) {
      this.send(commandComplete(opcode, STATUS_OK, constant));
      return;
    }
    switch (opcode) {
      case OP.reset:
        this.reset();
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.readBdAddr:
        return this.send(commandComplete(opcode, STATUS_OK, this.addressWire));
      case OP.readRssi:
        return this.send(commandComplete(opcode, STATUS_OK, Buffer.concat([params.subarray(0, 2), Buffer.of(RSSI & 0xff)])));
      case OP.leSetAdvData:
        this.advData = Buffer.from(params.subarray(1, 1 + Math.min(31, params.readUInt8(0))));
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.leSetScanRspData:
        this.scanRspData = Buffer.from(params.subarray(1, 1 + Math.min(31, params.readUInt8(0))));
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.leSetAdvEnable:
        this.advertising = params.readUInt8(0) === 1 && !this.connected;
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.leSetScanParams:
        this.activeScan = params.readUInt8(0) === 1;
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.leSetScanEnable:
        this.scanning = params.readUInt8(0) === 1;
        this.filterDuplicates = params.readUInt8(1) === 1;
        this.reported.clear();
        this.stalled = false;
        return this.send(commandComplete(opcode, STATUS_OK));
      case OP.leCreateConnection:
        return this.createConnection(params);
      case OP.leCreateConnectionCancel:
        return this.cancelConnection();
      case OP.disconnect:
        return this.disconnect(params.readUInt16LE(0) & 0x0fff, params.readUInt8(2));
      default:
        this.unknown.add(opcode);
        this.send(commandComplete(opcode, STATUS_UNKNOWN_COMMAND));
    }
  }

  private reset(): void {
    for (const [handle, peer] of [...this.links]) this.radio.unlink({ controller: this, handle }, peer, REASON_LOCAL_HOST, REASON_TIMEOUT, false);
    this.advertising = false;
    this.scanning = false;
    this.initiating = undefined;
  }

  private createConnection(params: Buffer): void {
    if (this.initiating !== undefined) return this.send(commandStatus(OP.leCreateConnection, STATUS_DISALLOWED));
    // scan interval(2) window(2) filter policy(1) peer address type(1) peer address(6) ...
    this.initiating = Buffer.from(params.subarray(6, 12));
    this.send(commandStatus(OP.leCreateConnection, STATUS_OK));
  }

  private cancelConnection(): void {
    if (this.initiating === undefined) return this.send(commandComplete(OP.leCreateConnectionCancel, STATUS_DISALLOWED));
    const peer = this.initiating;
    this.initiating = undefined;
    this.send(commandComplete(OP.leCreateConnectionCancel, STATUS_OK));
    this.send(leConnectionComplete(STATUS_UNKNOWN_CONNECTION, 0, 0, peer));
  }

  private disconnect(handle: number, reason: number): void {
    const peer = this.links.get(handle);
    if (peer === undefined) return this.send(commandStatus(OP.disconnect, STATUS_UNKNOWN_CONNECTION));
    this.send(commandStatus(OP.disconnect, STATUS_OK));
    this.radio.unlink({ controller: this, handle }, peer, REASON_LOCAL_HOST, reason);
  }

  private acl(handle: number, flags: number, data: Buffer): void {
    const peer = this.links.get(handle);
    if (peer === undefined) {
      // A host may send on a link that went down before it read the Disconnection Complete.
      this.aclDropped++;
      return;
    }
    const boundary = flags & 0x3;
    peer.controller.send(aclPacket(peer.handle, boundary === 0 ? 0x2 : boundary, data));
    this.send(completedPackets(handle, 1));
  }

  // Called by the radio.

  /** A tick of the air: what this controller hears from `from`. */
  hear(from: VirtualController): void {
    if (!from.advertising) return;
    if (this.initiating !== undefined && this.initiating.equals(from.addressWire)) {
      this.initiating = undefined;
      this.radio.link(this, from);
      return;
    }
    if (!this.scanning || this.stalled) return;
    if (this.filterDuplicates && this.reported.has(from.address)) return;
    this.reported.add(from.address);
    this.send(leAdvertisingReport(ADV_IND, from.addressWire, from.advData, RSSI));
    if (this.activeScan) this.send(leAdvertisingReport(SCAN_RSP, from.addressWire, from.scanRspData, RSSI));
  }

  /** A handle for a new link on this controller. */
  allocate(): number {
    return this.nextHandle++;
  }

  /** Routes `handle` to `peer`; a connected controller stops advertising. */
  bind(handle: number, peer: LinkEnd): void {
    this.links.set(handle, peer);
    this.advertising = false;
  }

  close(handle: number, reason: number, tell: boolean): void {
    if (!this.links.delete(handle)) return;
    if (tell) this.send(disconnectionComplete(handle, reason));
  }

  announce(handle: number, role: number, peer: VirtualController): void {
    this.send(leConnectionComplete(STATUS_OK, handle, role, peer.addressWire));
  }
}

/** The air between virtual controllers: advertising ticks, link set-up and tear-down. */
export class Radio {
  private readonly controllers: VirtualController[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.tick(), ADV_INTERVAL_MS);
    this.timer.unref();
  }

  controller(address: string): VirtualController {
    const c = new VirtualController(this, address);
    this.controllers.push(c);
    return c;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    for (const from of this.controllers) {
      for (const to of this.controllers) if (to !== from) to.hear(from);
    }
  }

  /** `central` heard `peripheral` advertising while initiating a connection to it. */
  link(central: VirtualController, peripheral: VirtualController): void {
    const c = central.allocate();
    const p = peripheral.allocate();
    central.bind(c, { controller: peripheral, handle: p });
    peripheral.bind(p, { controller: central, handle: c });
    central.announce(c, 0, peripheral);
    peripheral.announce(p, 1, central);
  }

  /** Ends a link: `local` gets `localReason` (unless `tellLocal` is false), the peer `peerReason`. */
  unlink(local: LinkEnd, peer: LinkEnd, localReason: number, peerReason: number, tellLocal = true): void {
    local.controller.close(local.handle, localReason, tellLocal);
    peer.controller.close(peer.handle, peerReason, true);
  }
}

/** Opens a controller's end of a pty pair and wires it to the controller. */
export async function attachPty(controller: VirtualController, path: string): Promise<() => Promise<void>> {
  const port = new SerialPort({ path, baudRate: 1000000, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  port.on('data', (bytes: Buffer) => controller.receive(bytes));
  port.on('error', (e) => controller.errors.push(`port: ${e.message}`));
  controller.attach((bytes) => port.write(bytes));
  return () => new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve()));
}
