/**
 * The BLE driver conformance suite (test/support/ble-suite.ts) on real host stacks: real noble
 * and BleDriver against a lock served by real bleno, through two virtual LE controllers over
 * ptys (test/support/ble-hci-rig.ts). No kernel Bluetooth needed; skipped, with the reason,
 * where the HCI socket package or bleno cannot load.
 */
import { test } from 'node:test';
import { bleSuite } from '../support/ble-suite.js';
import { hciRig, hciRigUnavailable } from '../support/ble-hci-rig.js';

const unavailable = hciRigUnavailable();

if (unavailable !== undefined) {
  void test('BLE driver on real host stacks over virtual HCI controllers', { skip: unavailable }, () => undefined);
} else {
  bleSuite('noble and bleno over virtual HCI', (t) => hciRig(t, { scanWatchdogMs: 1500 }), 20000);
}
