/**
 * `oti doctor` and `oti ble scan` tell "no Bluetooth here" from "an adapter that is off" by what
 * the kernel lists in /sys/class/bluetooth (the prebuilt HCI socket loads without Bluetooth, and
 * noble then only says poweredOff).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelAdapterAbsence } from '../../provisioning/ble.js';

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
