/**
 * The subset of @abandonware/noble (1.9.2-26) that the BLE driver uses, typed here because the
 * package's own typings are loose (string errors, untyped event names) and because hardware
 * enters the driver only through its constructor: the real noble and the test fake
 * (test/support/fake-noble.ts) both satisfy these interfaces.
 *
 * Behaviour of the real library that the driver relies on or guards against (read from
 * node_modules/@abandonware/noble/lib/{noble,peripheral,characteristic}.js and hci-socket/):
 * - Reading `state` (or adding the first 'stateChange' listener) initialises the HCI bindings;
 *   a failure there is reported only as a 'warning' event.
 * - `startScanningAsync` rejects when the adapter is not poweredOn and otherwise resolves on the
 *   next 'scanStart'. `stopScanningAsync` resolves on the next 'scanStop'.
 * - One Peripheral object per device id for the life of the process; its `advertisement` is
 *   updated in place on each discovery. `mtu` is null until the ATT MTU exchange completes, which
 *   happens after 'connect' but before the first GATT response.
 * - On a disconnect the pending GATT callbacks are dropped: a read, write, subscribe or discovery
 *   in flight never settles. Every GATT call therefore needs its own bound.
 * - `cancelConnect()` makes a pending `connectAsync()` reject. Characteristic objects are created
 *   afresh by each discovery; old ones receive nothing after a disconnect.
 * - A characteristic emits 'data' (value, isNotification) for read responses and for
 *   notifications/indications alike.
 */

export type AdapterState = 'unknown' | 'resetting' | 'unsupported' | 'unauthorized' | 'poweredOff' | 'poweredOn';

export interface NobleAdvertisement {
  readonly localName?: string;
  readonly manufacturerData?: Uint8Array;
  readonly serviceUuids?: readonly string[];
}

export interface NobleEvents {
  stateChange: [state: string];
  scanStart: [filterDuplicates?: boolean];
  scanStop: [];
  discover: [peripheral: NoblePeripheral];
  warning: [message: string];
}

export interface NobleLike {
  /** The adapter state. Reading it first initialises the real library's bindings. */
  readonly state: string;
  startScanningAsync(serviceUuids: string[], allowDuplicates: boolean): Promise<void>;
  stopScanningAsync(): Promise<void>;
  on<K extends keyof NobleEvents>(event: K, listener: (...args: NobleEvents[K]) => void): unknown;
  removeListener<K extends keyof NobleEvents>(event: K, listener: (...args: NobleEvents[K]) => void): unknown;
}

export type PeripheralState = 'error' | 'connecting' | 'connected' | 'disconnecting' | 'disconnected';

export interface PeripheralEvents {
  /** `reason` is an HCI disconnect reason code on Linux. */
  disconnect: [reason?: unknown];
}

export interface NoblePeripheral {
  readonly id: string;
  readonly address: string;
  readonly advertisement: NobleAdvertisement;
  readonly state: PeripheralState;
  /** The negotiated ATT MTU, null until the exchange completed. */
  readonly mtu: number | null;
  connectAsync(): Promise<void>;
  cancelConnect(): void;
  /** Fire and forget: completion is the 'disconnect' event, which may never come. */
  disconnect(): void;
  discoverSomeServicesAndCharacteristicsAsync(
    serviceUuids: string[],
    characteristicUuids: string[],
  ): Promise<{ readonly characteristics: readonly NobleCharacteristic[] }>;
  on<K extends keyof PeripheralEvents>(event: K, listener: (...args: PeripheralEvents[K]) => void): unknown;
  removeListener<K extends keyof PeripheralEvents>(event: K, listener: (...args: PeripheralEvents[K]) => void): unknown;
}

export interface CharacteristicEvents {
  data: [data: Uint8Array, isNotification: boolean];
}

export interface NobleCharacteristic {
  readonly uuid: string;
  readAsync(): Promise<Uint8Array>;
  /** withoutResponse false: an ATT write request, settled by the peer's write response. */
  writeAsync(data: Buffer, withoutResponse: boolean): Promise<void>;
  subscribeAsync(): Promise<void>;
  on<K extends keyof CharacteristicEvents>(event: K, listener: (...args: CharacteristicEvents[K]) => void): unknown;
  removeListener<K extends keyof CharacteristicEvents>(event: K, listener: (...args: CharacteristicEvents[K]) => void): unknown;
}
