/**
 * `oti doctor`, `oti ble scan` and the BLE driver's status tell "no Bluetooth here" from "an
 * adapter that is off" by what the kernel lists in /sys/class/bluetooth (the prebuilt HCI socket
 * loads without Bluetooth, and noble then only says poweredOff).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelAdapterAbsence } from '../../provisioning/ble.js';
import { BleDriver } from '../../drivers/ble/driver.js';
import { FakeNoble } from '../support/fake-noble.js';
import { waitUntil } from '../support/wait.js';

void test('no /sys/class/bluetooth is "no Bluetooth support", an empty one "no adapter", an hciN an adapter; a UART transport is not checked', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oti-sysbt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sys = join(dir, 'bluetooth');
  assert.match(kernelAdapterAbsence(sys, {}) ?? '', /EAFNOSUPPORT/);
  await mkdir(sys);
  assert.match(kernelAdapterAbsence(sys, {}) ?? '', /ENODEV/);
  await mkdir(join(sys, 'rfkill0'));
  assert.match(kernelAdapterAbsence(sys, {}) ?? '', /ENODEV/);
  await mkdir(join(sys, 'hci0'));
  assert.equal(kernelAdapterAbsence(sys, {}), undefined);
  assert.equal(kernelAdapterAbsence(join(dir, 'none'), { BLUETOOTH_HCI_SOCKET_UART_PORT: '/dev/pts/9' }), undefined);
});

void test('the BLE driver gives the real reason when noble says poweredOff on a machine without Bluetooth or without an adapter', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oti-sysbt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sys = join(dir, 'bluetooth');
  const status = async (): Promise<{ state: string; reason?: string }> => {
    const fake = new FakeNoble({ initialState: 'poweredOff' });
    const driver = new BleDriver({ gatewayId: 'gw-1', window: 4, noble: fake, adapterAbsence: () => kernelAdapterAbsence(sys, {}) });
    try {
      await driver.start();
      await waitUntil('the adapter state seen', () => driver.status().state !== 'starting' && driver.status().state !== 'running', 5_000);
      return driver.status();
    } finally {
      await driver.stop();
      fake.close();
    }
  };
  // No Bluetooth in the kernel: it will not come by itself.
  const kernel = await status();
  assert.equal(kernel.state, 'unavailable');
  assert.match(kernel.reason ?? '', /no Bluetooth support on this machine \(EAFNOSUPPORT/);
  // No adapter: one may be plugged in.
  await mkdir(sys);
  const none = await status();
  assert.equal(none.state, 'degraded');
  assert.match(none.reason ?? '', /no Bluetooth adapter found \(ENODEV\)/);
  // An adapter that is there and off is said to be off.
  await mkdir(join(sys, 'hci0'));
  const off = await status();
  assert.equal(off.state, 'degraded');
  assert.equal(off.reason, 'Bluetooth adapter poweredOff');
});
