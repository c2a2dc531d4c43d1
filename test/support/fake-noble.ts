/**
 * A fake of @abandonware/noble 1.9.2-26 for the BLE driver's tests: the same event names, the
 * same *Async/callback pairs and the same ordering as the real library (lib/noble.js,
 * peripheral.js, characteristic.js, hci-socket/), with the radio replaced by in-process lock
 * objects (SimLock or anything of its shape).
 *
 * Reproduced on purpose, because the driver must survive them:
 * - `state` is 'unknown' until the first 'stateChange' listener makes the bindings initialise;
 *   then 'stateChange' arrives asynchronously.
 * - startScanningAsync rejects unless poweredOn and resolves on 'scanStart'; stopScanningAsync
 *   resolves on 'scanStop', which never comes while the adapter is off.
 * - One peripheral object per device, its `advertisement` replaced on each discovery; `mtu` is
 *   null until just after 'connect'.
 * - A disconnect drops every GATT operation in flight: its callback never fires. Characteristic
 *   objects are created per discovery and the old ones go silent.
 * - `disconnect()` sets state 'disconnecting' at once and emits 'disconnect' later, or never when
 *   the adapter is off; `cancelConnect()` makes a pending connect fail.
 * - Indications arrive as characteristic 'data' (data, true) then 'read' (data, true).
 */
import { EventEmitter } from 'node:events';
import { ACK_CHAR_UUID, EVENTS_CHAR_UUID, INFO_CHAR_UUID, MESSAGE_MAX_BYTES, SERVICE_UUID, encodeAdvertisement, encodeMessage } from '../../drivers/protocol.js';
import type { LockInfo } from '../../drivers/protocol.js';
import { Reassembler, fragment } from '../../drivers/framing.js';
import type { AdapterState, NobleAdvertisement, PeripheralState } from '../../drivers/noble-types.js';

/** The lock core a fake peripheral carries (drivers/simlock.ts SimLock has this shape). */
export interface FakeLock {
  readonly id: string;
  readonly pending: number;
  info(): LockInfo;
  connect(send: (message: Uint8Array) => void, opts?: { announceInfo?: boolean }): void;
  disconnect(): void;
  receive(message: Uint8Array): void;
}

const DEFAULT_MTU = 23;
/** HCI disconnect reasons as noble reports them. */
const REASON_TIMEOUT = 0x08;
const REASON_LOCAL = 0x16;

type Callback<T = void> = (error: Error | null | undefined, value?: T) => void;

function promised<T>(start: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((e, v) => (e ? reject(e) : resolve(v as T))));
}

export class FakeNoble extends EventEmitter {
  private adapter: AdapterState = 'unknown';
  private initialized = false;
  private scanning = false;
  private stalled = false;
  private readonly devices = new Map<string, FakePeripheral>();
  private readonly timer: NodeJS.Timeout;
  private nextAddress = 1;
  /** startScanningAsync calls that reached the radio. */
  startScans = 0;
  /** Peripherals connected at once, at most, so far. */
  maxConcurrent = 0;

  constructor(private readonly opts: { initialState?: AdapterState; advertiseEveryMs?: number } = {}) {
    super();
    this.timer = setInterval(() => this.advertise(), opts.advertiseEveryMs ?? 10);
    this.timer.unref();
    this.on('newListener', (event: string) => {
      if (event === 'stateChange' && !this.initialized) this.init();
    });
  }

  get state(): AdapterState {
    if (!this.initialized) this.init();
    return this.adapter;
  }

  get poweredOn(): boolean {
    return this.adapter === 'poweredOn';
  }

  get connectedCount(): number {
    let n = 0;
    for (const d of this.devices.values()) if (d.up) n++;
    return n;
  }

  startScanningAsync(serviceUuids: string[], allowDuplicates: boolean): Promise<void> {
    return promised((cb) => {
      if (this.adapter !== 'poweredOn') {
        cb(new Error(`Could not start scanning, state is ${this.adapter} (not poweredOn)`));
        return;
      }
      this.once('scanStart', () => cb(null));
      this.startScans++;
      this.filter = serviceUuids;
      this.duplicates = allowDuplicates;
      this.stalled = false;
      this.scanning = true;
      setImmediate(() => this.emit('scanStart', !allowDuplicates));
    });
  }

  stopScanningAsync(): Promise<void> {
    return promised((cb) => {
      this.once('scanStop', () => cb(null));
      this.scanning = false;
      if (this.adapter === 'poweredOn') setImmediate(() => this.emit('scanStop'));
    });
  }

  private filter: string[] = [];
  private duplicates = false;
  private readonly seen = new Set<string>();

  // Test controls

  /** A device carrying `lock`, advertising the OTI service and the lock's pending flag. */
  addLock(lock: FakeLock, opts: { mtu?: number } = {}): FakePeripheral {
    return this.add(new FakePeripheral(this, this.address(), lock, undefined, opts.mtu ?? DEFAULT_MTU));
  }

  /** A device that is not an OTI lock, advertising `advertisement`. */
  addDevice(advertisement: NobleAdvertisement): FakePeripheral {
    return this.add(new FakePeripheral(this, this.address(), undefined, advertisement, DEFAULT_MTU));
  }

  remove(p: FakePeripheral): void {
    this.devices.delete(p.id);
    p.drop(REASON_TIMEOUT);
  }

  /** Adapter state change; leaving poweredOn ends the scan and every link without events. */
  setAdapterState(state: AdapterState): void {
    this.adapter = state;
    if (state !== 'poweredOn') {
      this.scanning = false;
      for (const d of this.devices.values()) d.lose();
    }
    this.emit('stateChange', state);
  }

  /** The scan goes silent without a scanStop, until the next startScanning. */
  stallScan(): void {
    this.stalled = true;
  }

  /** The scan stops on its own (noble emits scanStop). */
  stopScanUnasked(): void {
    this.scanning = false;
    this.emit('scanStop');
  }

  close(): void {
    clearInterval(this.timer);
    for (const d of this.devices.values()) d.lose();
  }

  /** @internal for FakePeripheral */
  linked(): void {
    this.maxConcurrent = Math.max(this.maxConcurrent, this.connectedCount);
  }

  private init(): void {
    this.initialized = true;
    setImmediate(() => this.setAdapterState(this.opts.initialState ?? 'poweredOn'));
  }

  private address(): string {
    const n = this.nextAddress++;
    return `c0:ff:ee:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
  }

  private add(p: FakePeripheral): FakePeripheral {
    this.devices.set(p.id, p);
    return p;
  }

  private advertise(): void {
    if (!this.scanning || this.stalled || this.adapter !== 'poweredOn') return;
    for (const d of this.devices.values()) {
      if (!d.advertising) continue;
      const adv = d.currentAdvertisement();
      if (this.filter.length > 0 && !this.filter.some((u) => adv.serviceUuids?.includes(u))) continue;
      d.advertisement = adv;
      const again = this.seen.has(d.id);
      this.seen.add(d.id);
      if (this.duplicates || !again) this.emit('discover', d);
    }
  }
}

export class FakePeripheral extends EventEmitter {
  readonly id: string;
  readonly uuid: string;
  readonly addressType = 'random';
  readonly connectable = true;
  rssi = -60;
  advertisement: NobleAdvertisement = {};
  mtu: number | null = null;
  state: PeripheralState = 'disconnected';
  /** True while the radio link is up (the peer's view, not noble's `state`). */
  up = false;
  /** Connect requests seen. */
  connects = 0;
  /** Indications delivered, and the longest. */
  indications = 0;
  longestIndication = 0;
  /** Longest ack-characteristic write, and any write the fake could not reassemble. */
  longestWrite = 0;
  readonly writeRejections: string[] = [];
  private epoch = 0;
  private subscribed: FakeCharacteristic | undefined;
  private readonly outbox: Uint8Array[] = [];
  private flushing = false;
  private readonly reassembler = new Reassembler(MESSAGE_MAX_BYTES);
  private hang = 0;
  private disconnectAfter: number | undefined;
  private drops = 0;
  private corrupts = 0;

  constructor(
    private readonly noble: FakeNoble,
    readonly address: string,
    readonly lock: FakeLock | undefined,
    private readonly fixedAdvertisement: NobleAdvertisement | undefined,
    readonly preferredMtu: number,
  ) {
    super();
    this.id = address.split(':').join('');
    this.uuid = this.id;
  }

  get advertising(): boolean {
    return !this.up && this.state !== 'connecting';
  }

  currentAdvertisement(): NobleAdvertisement {
    if (this.fixedAdvertisement !== undefined) return this.fixedAdvertisement;
    return { serviceUuids: [SERVICE_UUID], manufacturerData: Buffer.from(encodeAdvertisement((this.lock?.pending ?? 0) > 0)) };
  }

  // Faults

  /** The next `n` connects never complete. */
  hangConnects(n = 1): void {
    this.hang += n;
  }

  /** The link drops (peer timeout) after `k` more indications. */
  disconnectAfterIndications(k: number): void {
    this.disconnectAfter = k;
  }

  dropNextIndications(n = 1): void {
    this.drops += n;
  }

  corruptNextIndications(n = 1): void {
    this.corrupts += n;
  }

  /** Sends raw bytes as one indication, outside the lock's fragmentation. */
  injectIndication(bytes: Uint8Array): void {
    this.outbox.push(bytes);
    this.flush();
  }

  /** The link drops from the peer's side (e.g. supervision timeout). */
  drop(reason = REASON_TIMEOUT): void {
    if (!this.up) return;
    this.down();
    this.state = 'disconnected';
    this.emit('disconnect', reason);
  }

  /** The link is gone without any event (the adapter went away under it). */
  lose(): void {
    if (this.up) this.down();
  }

  // noble's Peripheral API

  connect(callback?: (error?: Error) => void): void {
    if (callback !== undefined) this.once('connect', (e?: Error) => callback(e));
    if (this.state === 'connected') {
      this.emit('connect', new Error('Peripheral already connected'));
      return;
    }
    this.state = 'connecting';
    this.connects++;
    if (this.hang > 0) {
      this.hang--;
      return;
    }
    setImmediate(() => this.linkUp());
  }

  connectAsync(): Promise<void> {
    return promised((cb) => this.connect((e) => cb(e)));
  }

  cancelConnect(): void {
    if (this.state !== 'connecting') return;
    this.emit('connect', new Error('connection canceled!'));
    setImmediate(() => {
      if (this.state !== 'connecting') return;
      this.state = 'error';
      this.emit('connect', new Error('Connection Failed'));
    });
  }

  disconnect(callback?: () => void): void {
    if (callback !== undefined) this.once('disconnect', () => callback());
    this.state = 'disconnecting';
    if (!this.up || !this.noble.poweredOn) return;
    setImmediate(() => this.drop(REASON_LOCAL));
  }

  disconnectAsync(): Promise<void> {
    return promised((cb) => this.disconnect(() => cb(null)));
  }

  discoverSomeServicesAndCharacteristics(
    serviceUuids: string[],
    characteristicUuids: string[],
    callback: (error: Error | null, services: unknown[] | null, characteristics: FakeCharacteristic[] | null) => void,
  ): void {
    this.later(() => {
      if (this.lock === undefined || !serviceUuids.every((u) => u === SERVICE_UUID)) {
        callback(new Error('Could not find all requested services'), null, null);
        return;
      }
      const wanted = [INFO_CHAR_UUID, EVENTS_CHAR_UUID, ACK_CHAR_UUID].filter((u) => characteristicUuids.length === 0 || characteristicUuids.includes(u));
      const chars = wanted.map((u) => new FakeCharacteristic(this, u));
      callback(null, [{ uuid: SERVICE_UUID }], chars);
    });
  }

  discoverSomeServicesAndCharacteristicsAsync(serviceUuids: string[], characteristicUuids: string[]): Promise<{ services: unknown[]; characteristics: FakeCharacteristic[] }> {
    return new Promise((resolve, reject) =>
      this.discoverSomeServicesAndCharacteristics(serviceUuids, characteristicUuids, (e, services, characteristics) =>
        e ? reject(e) : resolve({ services: services ?? [], characteristics: characteristics ?? [] }),
      ),
    );
  }

  // GATT server side, used by FakeCharacteristic

  /** Runs `fn` after a turn if the same connection is still up; otherwise never (as noble). */
  later(fn: () => void): void {
    const epoch = this.epoch;
    setImmediate(() => {
      if (this.up && this.epoch === epoch) fn();
    });
  }

  readValue(uuid: string): Buffer {
    if (uuid === INFO_CHAR_UUID && this.lock !== undefined) return Buffer.from(encodeMessage({ t: 'info', info: this.lock.info() }));
    return Buffer.alloc(0);
  }

  written(uuid: string, data: Uint8Array): void {
    if (uuid !== ACK_CHAR_UUID) return;
    this.longestWrite = Math.max(this.longestWrite, data.length);
    const r = this.reassembler.push(data);
    if (r === undefined) return;
    if (!r.ok) {
      this.writeRejections.push(r.code);
      return;
    }
    this.lock?.receive(r.message);
  }

  subscribe(c: FakeCharacteristic): void {
    if (c.uuid === EVENTS_CHAR_UUID) this.subscribed = c;
  }

  private linkUp(): void {
    if (this.state !== 'connecting' || !this.noble.poweredOn) return;
    this.epoch++;
    this.up = true;
    this.state = 'connected';
    this.mtu = null;
    this.subscribed = undefined;
    this.outbox.length = 0;
    this.reassembler.reset();
    this.noble.linked();
    const epoch = this.epoch;
    this.lock?.connect((message) => this.send(epoch, message), { announceInfo: false });
    this.emit('connect', undefined);
    // The ATT MTU exchange noble starts on connect is answered before any other request.
    this.later(() => {
      this.mtu = this.preferredMtu;
    });
  }

  private down(): void {
    this.up = false;
    this.epoch++;
    this.subscribed = undefined;
    this.outbox.length = 0;
    this.lock?.disconnect();
  }

  private send(epoch: number, message: Uint8Array): void {
    if (!this.up || this.epoch !== epoch) return;
    for (const f of fragment(message, (this.mtu ?? DEFAULT_MTU) - 3)) this.outbox.push(f);
    this.flush();
  }

  /** One indication per turn, each confirmed before the next, as ATT indications are. */
  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    const step = (): void => {
      const f = this.outbox.shift();
      const c = this.subscribed;
      if (f === undefined || !this.up) {
        this.flushing = false;
        return;
      }
      if (this.drops > 0) {
        this.drops--;
      } else if (c !== undefined) {
        let data = Buffer.from(f);
        if (this.corrupts > 0 && data.length > 3) {
          this.corrupts--;
          data = Buffer.from(data);
          data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 0x5a;
        }
        this.indications++;
        this.longestIndication = Math.max(this.longestIndication, data.length);
        c.emit('data', data, true);
        c.emit('read', data, true);
        if (this.disconnectAfter !== undefined && --this.disconnectAfter <= 0) {
          this.disconnectAfter = undefined;
          this.drop(REASON_TIMEOUT);
        }
      }
      setImmediate(step);
    };
    setImmediate(step);
  }
}

export class FakeCharacteristic extends EventEmitter {
  readonly properties: string[];

  constructor(
    private readonly peripheral: FakePeripheral,
    readonly uuid: string,
  ) {
    super();
    this.properties = uuid === INFO_CHAR_UUID ? ['read'] : uuid === EVENTS_CHAR_UUID ? ['indicate'] : ['write'];
  }

  read(callback?: (error: Error | null, data: Buffer) => void): void {
    if (callback !== undefined) {
      const onRead = (data: Buffer, isNotification: boolean): void => {
        if (isNotification) return;
        this.removeListener('read', onRead);
        callback(null, data);
      };
      this.on('read', onRead);
    }
    this.peripheral.later(() => {
      const data = this.peripheral.readValue(this.uuid);
      this.emit('data', data, false);
      this.emit('read', data, false);
    });
  }

  readAsync(): Promise<Buffer> {
    return promised((cb) => this.read((e, d) => cb(e, d)));
  }

  write(data: Buffer, _withoutResponse: boolean, callback?: (error: Error | null) => void): void {
    if (!(data instanceof Uint8Array)) throw new Error('data must be a Buffer or Uint8Array');
    if (callback !== undefined) this.once('write', () => callback(null));
    const copy = Uint8Array.from(data);
    this.peripheral.later(() => {
      this.peripheral.written(this.uuid, copy);
      this.emit('write');
    });
  }

  writeAsync(data: Buffer, withoutResponse: boolean): Promise<void> {
    return promised((cb) => this.write(data, withoutResponse, (e) => cb(e)));
  }

  subscribe(callback?: (error: Error | null) => void): void {
    if (callback !== undefined) this.once('notify', () => callback(null));
    this.peripheral.later(() => {
      this.peripheral.subscribe(this);
      this.emit('notify', true);
    });
  }

  subscribeAsync(): Promise<void> {
    return promised((cb) => this.subscribe((e) => cb(e)));
  }
}
