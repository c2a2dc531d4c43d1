/**
 * Serial tests against a real device, named by environment variables (skipped otherwise, with
 * what to set in the title):
 *
 *   OTI_HW_SERIAL_PORT=/dev/ttyUSB0   the port (required)
 *   OTI_HW_SERIAL_BAUD=57600          its rate (default 115200)
 *   OTI_HW_SERIAL_MODE=loopback|lock  what is on the other end (default loopback):
 *     loopback  a loopback plug (TX bridged to RX): the doctor's loopback check, then 200 framed
 *               lock-protocol messages of every size class (1 byte to the protocol maximum)
 *               written and decoded back with their CRC, through the real UART
 *     lock      a real lock: the serial driver receives its info and at least one event
 *               (operate the lock during the test, up to 2 minutes) and acknowledges it
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { checkSerialPort } from './checks/serial.js';
import { encodeFrame, FrameDecoder, type FrameResult } from '../drivers/framing.js';
import { MESSAGE_MAX_BYTES } from '../drivers/protocol.js';
import { SerialDriver } from '../drivers/serial.js';
import type { DriverNotice, ReceivedEvent } from '../drivers/driver.js';

const path = process.env['OTI_HW_SERIAL_PORT'];
const baudRate = Number(process.env['OTI_HW_SERIAL_BAUD'] ?? '115200');
const mode = process.env['OTI_HW_SERIAL_MODE'] ?? 'loopback';
const SKIP = 'set OTI_HW_SERIAL_PORT=/dev/ttyUSB0 (and OTI_HW_SERIAL_BAUD, OTI_HW_SERIAL_MODE=loopback|lock) to run against a real serial device';

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (path === undefined || path === '') {
  void test('serial suite against a real device', { skip: SKIP }, () => undefined);
} else if (mode === 'loopback') {
  void test(`loopback plug on ${path} at ${baudRate}: bytes come back`, async () => {
    const r = await checkSerialPort(path, baudRate, true);
    assert.equal(r.status, 'pass', `${r.detail}${r.remedy !== undefined ? ` — ${r.remedy}` : ''}`);
  });

  void test(`loopback plug on ${path}: 200 frames of 1..${MESSAGE_MAX_BYTES} bytes come back intact`, { timeout: 300_000 }, async (t) => {
    const { SerialPort } = await import('serialport');
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e !== null ? reject(e) : resolve())));
    t.after(() => new Promise<void>((r) => port.close(() => r())));
    const decoder = new FrameDecoder(MESSAGE_MAX_BYTES);
    const got: FrameResult[] = [];
    port.on('data', (d: Buffer) => got.push(...decoder.push(d)));
    const sizes = Array.from({ length: 200 }, (_, i) => [1, 2, 20, 200, 1000, MESSAGE_MAX_BYTES][i % 6] as number);
    const bodies = sizes.map((n) => new Uint8Array(randomBytes(n)));
    for (const b of bodies) {
      await new Promise<void>((resolve, reject) => port.write(Buffer.from(encodeFrame(b)), (e) => (e !== null && e !== undefined ? reject(e) : resolve())));
      await new Promise<void>((resolve, reject) => port.drain((e) => (e !== null && e !== undefined ? reject(e) : resolve())));
    }
    await waitFor(`${bodies.length} frames back`, () => got.length >= bodies.length, 120_000);
    const bad = got.filter((f) => !f.ok);
    assert.equal(bad.length, 0, `rejected frames: ${bad.map((f) => (f.ok ? '' : f.code)).join(', ')}`);
    got.forEach((f, i) => assert.deepEqual(f.ok ? f.body : undefined, bodies[i], `frame ${i}`));
  });
} else {
  void test(`real lock on ${path} at ${baudRate}: info and an event arrive, the event is acknowledged`, { timeout: 180_000 }, async (t) => {
    const driver = new SerialDriver({ path, baudRate, gatewayId: 'hw-test', window: 4 });
    t.after(() => driver.stop());
    const events: ReceivedEvent[] = [];
    const notices: DriverNotice[] = [];
    await driver.start();
    void (async () => {
      for await (const n of driver.notices()) notices.push(n);
    })();
    void (async () => {
      for await (const ev of driver.events()) {
        events.push(ev);
        await driver.ack(ev, new Uint8Array(randomBytes(32)));
      }
    })();
    await waitFor('the lock’s info frame', () => notices.some((n) => n.kind === 'lock-seen'), 120_000);
    await waitFor('an event from the lock (operate it)', () => events.length > 0, 120_000);
    await waitFor('the acknowledgement to be written', () => driver.status().counters.acksOut >= 1, 10_000);
  });
}
