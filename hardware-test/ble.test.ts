/**
 * The BLE suite of test/support/ble-suite.ts against a real Bluetooth adapter (through the real,
 * lazily loaded @abandonware/noble) and a real lock. Set OTI_HW_BLE_LOCK to the lock's BLE
 * address or id; operate the lock (or let it have pending events) while the test runs.
 */
import { test } from 'node:test';
import { BleDriver } from '../drivers/ble/driver.js';
import { bleSuite } from '../test/support/ble-suite.js';

const lock = process.env['OTI_HW_BLE_LOCK'];

if (lock === undefined || lock === '') {
  void test('BLE driver against a real adapter and lock', { skip: 'set OTI_HW_BLE_LOCK=<address> (and have a Bluetooth adapter) to run' }, () => undefined);
} else {
  bleSuite(
    `real adapter, lock ${lock}`,
    async (t) => {
      const driver = new BleDriver({ gatewayId: 'hw-test', window: 4, scanWatchdogMs: 30000, backoff: { minMs: 1000, maxMs: 10000 } });
      t.after(() => driver.stop());
      await driver.start();
      return { driver, lock, expect: 1 };
    },
    120000,
  );
}
