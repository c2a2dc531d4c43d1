/**
 * The BLE driver suite that every radio runs (STYLE.md "one suite, many implementations"): the
 * fake noble in test/unit/ble.test.ts and a real adapter with a real lock in
 * hardware-test/ble.test.ts. A rig gives a started driver and, where it can, a way to make the
 * lock record events and to read what the lock was told.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { waitUntil } from './wait.js';
import type { BleDriver } from '../../drivers/ble.js';
import type { DriverNotice, ReceivedEvent } from '../../drivers/driver.js';

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
  /** Makes the lock drop its link, when the rig can. */
  readonly dropLink?: () => void;
  /** Makes the scan go deaf without telling the host (a stalled scan), when the rig can. */
  readonly stallScan?: () => void;
}

/** The gateway side of a test: acks every event with a hash derived from (lock, ctr). */
export interface Gateway {
  readonly events: ReceivedEvent[];
  readonly notices: DriverNotice[];
  readonly done: Promise<void>;
}

export function entryFor(lock: string, ctr: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${lock}:${ctr}`).digest());
}

export function runGateway(driver: BleDriver): Gateway {
  const events: ReceivedEvent[] = [];
  const notices: DriverNotice[] = [];
  const loop = async (): Promise<void> => {
    for await (const ev of driver.events()) {
      events.push(ev);
      await driver.ack(ev, entryFor(ev.lock, ev.ctr));
    }
  };
  const watch = async (): Promise<void> => {
    for await (const n of driver.notices()) notices.push(n);
  };
  return { events, notices, done: Promise.all([loop(), watch()]).then(() => undefined) };
}

function mine(rig: BleRig, ev: ReceivedEvent): boolean {
  return ev.lock === rig.lock || ev.from.link === rig.lock;
}

export function bleSuite(title: string, makeRig: (t: TestContext) => Promise<BleRig>, timeoutMs = 30000): void {
  void test(`${title}: events flow in and acks return`, async (t) => {
    const rig = await makeRig(t);
    const gw = runGateway(rig.driver);
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
    const gw = runGateway(rig.driver);
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

  void test(`${title}: after the lock drops the link the driver reconnects and nothing is lost`, async (t) => {
    const rig = await makeRig(t);
    if (rig.record === undefined || rig.dropLink === undefined) return t.skip('the rig cannot make the lock drop its link');
    const gw = runGateway(rig.driver);
    const acked = (ctrs: number[]): boolean => ctrs.every((c) => rig.ackedEntry?.(c) !== undefined);
    const before = rig.record(2);
    await waitUntil('acks before the drop', () => acked(before), timeoutMs);
    await waitUntil('a link open', () => rig.driver.status().links.some((l) => l.state === 'open'), timeoutMs);
    rig.dropLink();
    await waitUntil('the link reported down', () => gw.notices.some((n) => n.kind === 'link' && (n.state === 'backoff' || n.state === 'closed') && /disconnected/.test(n.detail)), timeoutMs);
    const after = rig.record(3);
    await waitUntil('acks after the reconnect', () => acked(after), timeoutMs);
    assert.ok(rig.driver.status().counters.reconnects >= 1 || gw.notices.filter((n) => n.kind === 'link' && n.state === 'open').length >= 2, 'a second link came up');
    for (const ctr of [...before, ...after]) assert.deepEqual(rig.ackedEntry?.(ctr), entryFor(rig.lock, ctr));
    await rig.driver.stop();
    await gw.done;
  });

  void test(`${title}: a stalled scan is restarted by the watchdog and its silence reported as blind`, async (t) => {
    const rig = await makeRig(t);
    if (rig.record === undefined || rig.stallScan === undefined) return t.skip('the rig cannot stall the scan');
    const gw = runGateway(rig.driver);
    await waitUntil('scanning', () => rig.driver.status().scan.adapter === 'poweredOn', timeoutMs);
    const restarts = rig.driver.status().scan.restarts;
    const stalledAt = Date.now();
    rig.stallScan();
    await waitUntil('a watchdog restart', () => rig.driver.status().scan.restarts > restarts, timeoutMs);
    await waitUntil('a blind interval', () => gw.notices.some((n) => n.kind === 'blind'), timeoutMs);
    const blind = gw.notices.find((n) => n.kind === 'blind');
    assert.ok(blind?.kind === 'blind' && blind.start <= blind.end && blind.end >= stalledAt, 'the blind interval covers the stall');
    const [ctr] = rig.record(1);
    await waitUntil('an event after the restart acked', () => rig.ackedEntry?.(ctr!) !== undefined, timeoutMs);
    await rig.driver.stop();
    await gw.done;
  });

  void test(`${title}: stop() is idempotent and ends both streams`, async (t) => {
    const rig = await makeRig(t);
    const gw = runGateway(rig.driver);
    await Promise.all([rig.driver.stop(), rig.driver.stop()]);
    await rig.driver.stop();
    await gw.done;
    const s = rig.driver.status();
    assert.equal(s.state, 'stopped');
    assert.equal(s.links.filter((l) => l.state === 'open' || l.state === 'connecting').length, 0);
  });
}
