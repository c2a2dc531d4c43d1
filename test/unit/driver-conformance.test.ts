/**
 * The LockDriver conformance suite (test/support/driver-conformance.ts) on the transports that
 * need no child process: the in-process driver and the BLE driver over the fake radio
 * (test/support/fake-noble.ts). The serial driver over ptys and the BLE driver on real host
 * stacks run it in test/integration/.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { InProcessDriver, INPROCESS_BACKLOG_MAX } from '../../drivers/inprocess.js';
import { SimLock } from '../../drivers/simlock.js';
import { BleDriver } from '../../drivers/ble/driver.js';
import { FakeNoble } from '../support/fake-noble.js';
import { driverConformance, simLockSide } from '../support/driver-conformance.js';
import { waitUntil } from '../support/wait.js';

const WINDOW = 8;
const QUEUE = 2;

driverConformance({
  name: 'in-process',
  notApplicable: {
    'outage-blind': 'no device between the gateway and its locks that could go away; a disconnected lock is its own absence, not the gateway being blind',
    'scan-blind': 'no scan',
  },
  make: async (t) => {
    const driver = new InProcessDriver({ gatewayId: 'gw-1', window: WINDOW, eventQueue: QUEUE });
    const sim = new SimLock({ id: 'front-door', seed: randomBytes(32), resendMs: 200 });
    t.after(async () => {
      await driver.stop();
      sim.close();
    });
    await driver.start();
    driver.connect(sim);
    return {
      driver,
      lock: simLockSide(sim),
      queue: QUEUE,
      window: WINDOW,
      dropLink: () => {
        driver.disconnect(sim);
        return Promise.resolve();
      },
      restoreLink: () => {
        driver.connect(sim);
        return Promise.resolve();
      },
      released: () => {
        assert.equal(sim.connected, false, 'the lock was disconnected');
        return Promise.resolve();
      },
    };
  },
});

const NOBLE_EVENTS = ['stateChange', 'scanStart', 'scanStop', 'discover', 'warning'] as const;

driverConformance({
  name: 'BLE over the fake radio',
  make: async (t, opts) => {
    const fake = new FakeNoble();
    const scanWatchdogMs = 30_000;
    const driver = new BleDriver({
      gatewayId: 'gw-1',
      window: WINDOW,
      eventQueue: QUEUE,
      scanWatchdogMs,
      backoff: { minMs: 20, maxMs: 200 },
      connectTimeoutMs: 2000,
      gattTimeoutMs: 2000,
      idleMs: 100,
      noble: fake,
      ...(opts.now === undefined ? {} : { now: opts.now }),
    });
    const sim = new SimLock({ id: 'gate', seed: randomBytes(32), resendMs: 200 });
    const p = fake.addLock(sim, { mtu: 23 });
    t.after(async () => {
      await driver.stop();
      fake.close();
      sim.close();
    });
    await driver.start();
    await waitUntil('scanning', () => fake.startScans >= 1);
    return {
      driver,
      lock: simLockSide(sim),
      queue: QUEUE,
      window: WINDOW,
      scanWatchdogMs,
      dropLink: () => {
        p.drop();
        return Promise.resolve();
      },
      corruptFrame: () => p.corruptNextIndications(1),
      outage: {
        down: () => {
          fake.setAdapterState('poweredOff');
          return Promise.resolve();
        },
        up: () => {
          fake.setAdapterState('poweredOn');
          return Promise.resolve();
        },
      },
      stallScan: () => fake.stallScan(),
      stopScanUnasked: () => fake.stopScanUnasked(),
      released: async () => {
        for (const e of NOBLE_EVENTS) assert.equal(fake.listenerCount(e), 0, `no '${e}' listener left on noble`);
        await waitUntil('no peripheral connected', () => fake.connectedCount === 0);
        assert.equal(sim.connected, false);
      },
    };
  },
});

void test('in-process: what a lock sends while the gateway does not read waits in a bounded backlog (INPROCESS_BACKLOG_MAX); beyond it messages are dropped and counted, and the lock sends its events again', async (t) => {
  const driver = new InProcessDriver({ gatewayId: 'gw-1', window: WINDOW, eventQueue: 1 });
  const sim = new SimLock({ id: 'back-door', seed: randomBytes(32), resendMs: 50 });
  t.after(async () => {
    await driver.stop();
    sim.close();
  });
  await driver.start();
  driver.connect(sim);
  for (let i = 0; i < 4; i++) sim.record();
  // The queue (1) holds one event; everything else waits in the backlog (the link waits for room
  // before it takes the next message out).
  await waitUntil('the event queue is full', () => driver.status().counters.eventsIn >= 1);
  const garbage = new Uint8Array([0xff, 0x00]);
  for (let i = 0; i < INPROCESS_BACKLOG_MAX + 500; i++) sim.sendRaw(garbage);
  const rejected = driver.status().counters.framesRejected;
  assert.ok(rejected >= 500 && rejected <= 500 + 64, `dropped beyond the cap: ${rejected}`);
  // Reading again: every event arrives (resent where its frame was dropped), none twice.
  const seen = new Set<number>();
  for await (const ev of driver.events()) {
    seen.add(ev.ctr);
    await driver.ack(ev, new Uint8Array(32).fill(seen.size));
    if (seen.size === 4) break;
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [1, 2, 3, 4]);
});
