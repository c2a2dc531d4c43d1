/**
 * The BLE cases every radio runs that need no simulated lock, so that a real adapter with a real
 * lock (hardware-test/ble.test.ts) can run them as well as the fake noble (test/unit/ble.test.ts)
 * and the virtual HCI rig (test/integration/ble-hci.test.ts): events flow and acks return, the
 * lock's info comes first and carries its key, stop() ends both streams. What every LockDriver
 * must do (back-pressure, resend after reconnect, nacks, malformed input, stop, blind intervals
 * with their bounds) is in the conformance suite, test/support/driver-conformance.ts, which the
 * BLE rigs run too.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { BleDriver } from '../../drivers/ble/driver.js';
import type { ReceivedEvent } from '../../drivers/driver.js';
import { GatewaySide, entryFor } from './driver-conformance.js';
import { waitUntil } from './wait.js';

export interface BleRig {
  readonly driver: BleDriver;
  /** The lock under test: its id or BLE address. */
  readonly lock: string;
  /** Makes the lock record `n` events, when the rig can (a simulated lock); returns their counters. */
  readonly record?: (n: number) => number[];
  /** The entry hash the lock received in an ack for `ctr`, when the rig can see it. */
  readonly ackedEntry?: (ctr: number) => Uint8Array | undefined;
  /** How many events to wait for when the rig cannot make any (a real lock operated by hand). */
  readonly expect?: number;
  /** The lock's public key, when the rig knows it: its info must carry it (enrolment reads it). */
  readonly key?: Uint8Array;
}

function mine(rig: BleRig, ev: ReceivedEvent): boolean {
  return ev.lock === rig.lock || ev.from.link === rig.lock;
}

export function bleSuite(title: string, makeRig: (t: TestContext) => Promise<BleRig>, timeoutMs = 30000): void {
  void test(`${title}: events flow in and acks return`, async (t) => {
    const rig = await makeRig(t);
    const gw = new GatewaySide(rig.driver);
    const ctrs = rig.record?.(5) ?? [];
    const want = rig.record === undefined ? (rig.expect ?? 1) : ctrs.length;
    await waitUntil('events from the lock', () => new Set(gw.events.filter((e) => mine(rig, e)).map((e) => e.ctr)).size >= want, timeoutMs);
    await waitUntil('acks written', () => rig.driver.status().counters.acksOut >= want, timeoutMs);
    assert.ok(gw.notices.some((n) => n.kind === 'lock-seen'), 'the lock identified itself');
    for (const ctr of ctrs) {
      await waitUntil(`ack of ${ctr} at the lock`, () => rig.ackedEntry?.(ctr) !== undefined, timeoutMs);
      const ev = gw.events.find((e) => e.ctr === ctr);
      assert.ok(ev !== undefined);
      assert.deepEqual(rig.ackedEntry?.(ctr), entryFor(ev.lock, ctr));
    }
    await rig.driver.stop();
    await gw.done;
  });

  void test(`${title}: the lock's info arrives first and carries its id and key (enrolment)`, async (t) => {
    const rig = await makeRig(t);
    const gw = new GatewaySide(rig.driver);
    rig.record?.(1);
    await waitUntil('the lock identifies itself', () => gw.notices.some((n) => n.kind === 'lock-seen'), timeoutMs);
    const seen = gw.notices.find((n) => n.kind === 'lock-seen');
    assert.ok(seen?.kind === 'lock-seen');
    if (rig.record !== undefined) assert.equal(seen.info.lock, rig.lock);
    if (rig.key !== undefined) assert.deepEqual(seen.info.key, rig.key);
    await waitUntil('an event from the lock', () => gw.events.some((e) => mine(rig, e)), timeoutMs);
    assert.deepEqual(gw.events.find((e) => mine(rig, e))?.info, seen.info, 'events come after the info and carry it');
    await rig.driver.stop();
    await gw.done;
  });

  // Also a conformance case; here so that a real adapter (hardware-test/ble.test.ts) runs it too.
  void test(`${title}: stop() is idempotent and ends both streams`, async (t) => {
    const rig = await makeRig(t);
    const gw = new GatewaySide(rig.driver);
    await Promise.all([rig.driver.stop(), rig.driver.stop()]);
    await rig.driver.stop();
    await gw.done;
    const s = rig.driver.status();
    assert.equal(s.state, 'stopped');
    assert.equal(s.links.filter((l) => l.state === 'open' || l.state === 'connecting').length, 0);
  });
}
