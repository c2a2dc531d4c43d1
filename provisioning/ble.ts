/**
 * Bluetooth for technicians: `oti ble scan` lists nearby locks that advertise the OTI service
 * (docs/PROTOCOL.md §BLE), and `oti lock enroll --ble` reads one lock's info characteristic to
 * learn its id, firmware and public key. Like the BLE driver, noble is imported lazily and
 * every radio operation is bounded; a machine without a usable adapter gets
 * ERR_DRIVER_UNAVAILABLE with the reason (drivers/noble-load.ts describeLoadFailure) and a remedy.
 */
import { bounded, describeLoadFailure, importNoble, kernelAdapterAbsence } from '../drivers/noble-load.js';
import { INFO_CHAR_UUID, INFO_MAX_BYTES, SERVICE_UUID, decodeLockMessage, parseAdvertisement, type LockInfo } from '../drivers/protocol.js';
import type { NobleLike, NoblePeripheral } from '../drivers/noble-types.js';
import { OtiError } from '../ledger/base/errors.js';

export { kernelAdapterAbsence } from '../drivers/noble-load.js';

const POWER_ON_WAIT_MS = 5000;
const GATT_TIMEOUT_MS = 10_000;
export const BLE_REMEDY = 'check that the adapter is present (hciconfig, bluetoothctl show), powered (rfkill unblock bluetooth) and that node may use it (setcap cap_net_raw,cap_net_admin+eip $(command -v node), or run as root)';

export interface SeenLock {
  readonly address: string;
  readonly name: string | undefined;
  readonly rssi: number | undefined;
  readonly pending: boolean;
}

/** Where the kernel has no Bluetooth at all, or no adapter, rfkill and capabilities do not help. */
const NO_KERNEL_SUPPORT_REMEDY = 'use a kernel built with Bluetooth (CONFIG_BT, as Raspberry Pi OS and Debian have), or scan from a machine that has one';
const NO_ADAPTER_REMEDY = 'plug in a Bluetooth adapter or enable the built-in one (a Raspberry Pi: no dtoverlay=disable-bt in config.txt), then check it with bluetoothctl show';

/** The remedy for a reason: EAFNOSUPPORT (no Bluetooth in the kernel), ENODEV (no adapter), else BLE_REMEDY. */
function remedyFor(reason: string): string {
  if (reason.includes('EAFNOSUPPORT')) return NO_KERNEL_SUPPORT_REMEDY;
  if (reason.includes('ENODEV')) return NO_ADAPTER_REMEDY;
  return BLE_REMEDY;
}

function unavailable(reason: string, cause?: unknown): OtiError {
  return new OtiError('ERR_DRIVER_UNAVAILABLE', `Bluetooth unavailable: ${reason}; ${remedyFor(reason)}`, { driver: 'ble' }, cause !== undefined ? { cause } : undefined);
}

/** Loads noble and waits until the adapter is powered on. */
export async function openRadio(load: () => Promise<NobleLike> = importNoble): Promise<NobleLike> {
  let noble: NobleLike;
  let state: string;
  if (load === importNoble) {
    const absent = kernelAdapterAbsence();
    if (absent !== undefined) throw unavailable(absent);
  }
  try {
    noble = await load();
    state = noble.state;
  } catch (e) {
    throw unavailable(describeLoadFailure(e), e);
  }
  if (state === 'poweredOn') return noble;
  const n = noble;
  return new Promise<NobleLike>((resolve, reject) => {
    const done = (err?: OtiError): void => {
      clearTimeout(timer);
      n.removeListener('stateChange', onState);
      n.removeListener('warning', onWarning);
      if (err !== undefined) reject(err);
      else resolve(n);
    };
    const onState = (s: string): void => {
      state = s;
      if (s === 'poweredOn') done();
      else if (s === 'unsupported' || s === 'unauthorized') done(unavailable(`the adapter is ${s}`));
    };
    const onWarning = (m: string): void => {
      if (m.startsWith('Initialization')) done(unavailable(`adapter initialisation failed: ${m}`));
    };
    const timer = setTimeout(() => done(unavailable(`the adapter stayed ${state} for ${POWER_ON_WAIT_MS / 1000} s`)), POWER_ON_WAIT_MS);
    n.on('stateChange', onState);
    n.on('warning', onWarning);
  });
}

/** Scans for `seconds` and returns the OTI locks seen (by address), with their peripherals. */
export async function scanLocks(noble: NobleLike, seconds: number, onSeen?: (l: SeenLock) => void): Promise<Map<string, { lock: SeenLock; peripheral: NoblePeripheral }>> {
  const found = new Map<string, { lock: SeenLock; peripheral: NoblePeripheral }>();
  const onDiscover = (p: NoblePeripheral): void => {
    const adv = parseAdvertisement(p.advertisement.manufacturerData);
    const advertisesService = p.advertisement.serviceUuids?.includes(SERVICE_UUID) === true;
    if (adv === undefined && !advertisesService) return;
    const address = p.address !== '' && p.address !== 'unknown' ? p.address : p.id;
    const rssi = (p as unknown as { rssi?: unknown }).rssi;
    const lock: SeenLock = { address, name: p.advertisement.localName, rssi: typeof rssi === 'number' ? rssi : undefined, pending: adv?.pending ?? false };
    if (!found.has(address)) onSeen?.(lock);
    found.set(address, { lock, peripheral: p });
  };
  noble.on('discover', onDiscover);
  try {
    await bounded(noble.startScanningAsync([SERVICE_UUID], false), GATT_TIMEOUT_MS, 'scan start');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await bounded(noble.stopScanningAsync(), GATT_TIMEOUT_MS, 'scan stop').catch(() => undefined);
  } finally {
    noble.removeListener('discover', onDiscover);
  }
  return found;
}

/** Connects to a lock and reads its info characteristic (id, firmware, key). */
export async function readLockInfo(p: NoblePeripheral): Promise<LockInfo> {
  await bounded(p.connectAsync(), GATT_TIMEOUT_MS, 'connect');
  try {
    const { characteristics } = await bounded(p.discoverSomeServicesAndCharacteristicsAsync([SERVICE_UUID], [INFO_CHAR_UUID]), GATT_TIMEOUT_MS, 'service discovery');
    const info = characteristics.find((c) => c.uuid === INFO_CHAR_UUID);
    if (info === undefined) throw new OtiError('ERR_MESSAGE', 'the lock has no OTI info characteristic');
    const raw = await bounded(info.readAsync(), GATT_TIMEOUT_MS, 'info read');
    if (raw.length > INFO_MAX_BYTES) throw new OtiError('ERR_FRAME_TOO_LARGE', `the info value is ${raw.length} bytes`);
    const m = decodeLockMessage(new Uint8Array(raw));
    if (m.t !== 'info') throw new OtiError('ERR_MESSAGE', `the info characteristic holds a ${m.t} message`);
    return m.info;
  } finally {
    p.disconnect();
  }
}
