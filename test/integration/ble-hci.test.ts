/**
 * The BLE suite (test/support/ble-suite.ts) and the LockDriver conformance suite
 * (test/support/driver-conformance.ts) on real host stacks: real noble
 * and BleDriver against a lock served by real bleno, through two virtual LE controllers over
 * ptys (test/support/ble-hci-rig.ts). No kernel Bluetooth needed; skipped, with the reason,
 * where the HCI socket package or bleno cannot load.
 */
import { test } from 'node:test';
import { bleSuite } from '../support/ble-suite.js';
import { hciConformanceRig, hciRig, hciRigUnavailable } from '../support/ble-hci-rig.js';
import { driverConformance } from '../support/driver-conformance.js';

const unavailable = hciRigUnavailable();

if (unavailable !== undefined) {
  void test('BLE driver on real host stacks over virtual HCI controllers', { skip: unavailable }, () => undefined);
} else {
  bleSuite('noble and bleno over virtual HCI', (t) => hciRig(t), 20000);
  driverConformance({
    name: 'BLE, noble and bleno over virtual HCI',
    make: hciConformanceRig,
    timeoutMs: 20_000,
    notApplicable: { 'outage-blind': 'the virtual controller cannot be powered off under noble (no HCI power state to report); the fake radio runs this case' },
  });
}
