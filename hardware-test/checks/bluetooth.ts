/**
 * Bluetooth: an adapter is present, powered on, and a scan starts and stops. A machine with no
 * Bluetooth support or no adapter reports the check as skipped with the reason; an adapter that
 * is there but unusable (off, not permitted) fails with the remedy.
 */
import { openRadio, scanLocks, BLE_REMEDY } from '../../provisioning/ble.js';
import type { NobleLike } from '../../drivers/noble-types.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { result, why, type CheckResult } from './result.js';

/** Load failures that mean "no Bluetooth hardware here" rather than "Bluetooth is broken". */
const ABSENT = /EAFNOSUPPORT|ENODEV|not installed/;

export async function checkBluetooth(opts: { scanSeconds: number; load?: () => Promise<NobleLike> }): Promise<CheckResult> {
  let noble: NobleLike;
  try {
    noble = await openRadio(opts.load);
  } catch (e) {
    if (isOtiError(e, 'ERR_DRIVER_UNAVAILABLE') && ABSENT.test(e.message)) return result('bluetooth', 'skip', e.message.replace(/;.*$/, ''));
    return result('bluetooth', 'fail', why(e), BLE_REMEDY);
  }
  try {
    const found = await scanLocks(noble, opts.scanSeconds);
    return result('bluetooth', 'pass', `adapter powered on; a ${opts.scanSeconds} s scan saw ${found.size} OTI lock(s)`, undefined, { locks: [...found.keys()] });
  } catch (e) {
    return result('bluetooth', 'fail', `the adapter is on but scanning failed: ${why(e)}`, 'restart bluetoothd (systemctl restart bluetooth), check dmesg for adapter resets; a USB adapter may need more power');
  }
}
