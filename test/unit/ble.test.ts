import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BleDriver } from '../../drivers/ble/driver.js';
import type { BleDriverOptions } from '../../drivers/ble/driver.js';
import type { DriverNotice } from '../../drivers/driver.js';
import { SimLock } from '../../drivers/simlock.js';
import { SERVICE_UUID } from '../../drivers/protocol.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { FakeNoble } from '../support/fake-noble.js';
import { releaseNoble } from '../support/ble-hci-rig.js';
import type { NobleLike } from '../../drivers/noble-types.js';
import type { FakePeripheral } from '../support/fake-noble.js';
import { bleSuite } from '../support/ble-suite.js';
import { GatewaySide } from '../support/driver-conformance.js';
import { waitUntil } from '../support/wait.js';

const FAST: Partial<BleDriverOptions> = {
  scanWatchdogMs: 5000,
  backoff: { minMs: 20, maxMs: 200 },
  connectTimeoutMs: 2000,
  gattTimeoutMs: 2000,
  idleMs: 100,
};

interface Setup {
  readonly fake: FakeNoble;
  readonly driver: BleDriver;
  lock(id: string, mtu?: number, resendMs?: number): { sim: SimLock; p: FakePeripheral };
}

function setup(t: TestContext, extra: Partial<BleDriverOptions> = {}, fakeOpts: ConstructorParameters<typeof FakeNoble>[0] = {}): Setup {
  const fake = new FakeNoble(fakeOpts);
  const driver = new BleDriver({ gatewayId: 'gw-1', window: 4, ...FAST, ...extra, noble: fake });
  const sims: SimLock[] = [];
  t.after(async () => {
    await driver.stop();
    fake.close();
    for (const s of sims) s.close();
  });
  return {
    fake,
    driver,
    lock(id, mtu = 23, resendMs = 300) {
      const sim = new SimLock({ id, seed: randomBytes(32), resendMs });
      sims.push(sim);
      return { sim, p: fake.addLock(sim, { mtu }) };
    },
  };
}

function allAcked(sim: SimLock, n: number): boolean {
  return sim.acked.size >= n && sim.pending === 0;
}

function ofKind<K extends DriverNotice['kind']>(notices: DriverNotice[], kind: K): Extract<DriverNotice, { kind: K }>[] {
  return notices.filter((n): n is Extract<DriverNotice, { kind: K }> => n.kind === kind);
}

for (const mtu of [23, 185, 247, 517]) {
  bleSuite(`fake noble, ATT MTU ${mtu}`, async (t) => {
    const s = setup(t);
    const { sim, p } = s.lock('front-door', mtu);
    t.after(() => {
      // Fragments never exceed the negotiated MTU in either direction.
      assert.ok(p.longestIndication <= mtu - 3 && p.longestWrite <= mtu - 3);
      assert.deepEqual(p.writeRejections, []);
    });
    await s.driver.start();
    return {
      driver: s.driver,
      lock: sim.id,
      record: (n) => Array.from({ length: n }, () => sim.record('unlocked')),
      ackedEntry: (ctr) => sim.acked.get(ctr),
    };
  });
}

void test('a disconnect mid-transfer loses nothing; resent events come again as the same (lock, ctr)', async (t) => {
  const s = setup(t);
  const { sim, p } = s.lock('back-door', 23);
  const gw = new GatewaySide(s.driver);
  await s.driver.start();
  for (let i = 0; i < 20; i++) sim.record('locked');
  p.disconnectAfterIndications(7);
  await waitUntil('first drop', () => gw.notices.some((n) => n.kind === 'link' && n.state === 'backoff'));
  p.disconnectAfterIndications(30);
  await waitUntil('all 20 acknowledged', () => allAcked(sim, 20));
  const ctrs = gw.events.map((e) => e.ctr);
  for (let c = 1; c <= 20; c++) assert.ok(ctrs.includes(c), `ctr ${c} received`);
  for (const e of gw.events) {
    assert.equal(e.lock, 'back-door');
    const first = gw.events.find((x) => x.ctr === e.ctr);
    assert.deepEqual(e.payload, first?.payload, 'a duplicate carries the same event');
  }
  assert.ok(p.connects >= 2);
  assert.ok(s.driver.status().counters.reconnects >= 1);
});

void test('an adapter power cycle closes links, reports a blind interval and resumes scanning', async (t) => {
  const s = setup(t);
  const { sim } = s.lock('side-door');
  const gw = new GatewaySide(s.driver);
  await s.driver.start();
  sim.record();
  await waitUntil('first event acked', () => allAcked(sim, 1));
  const scans = s.fake.startScans;
  s.fake.setAdapterState('poweredOff');
  await waitUntil('degraded', () => s.driver.status().state === 'degraded');
  sim.record();
  sim.record();
  s.fake.setAdapterState('poweredOn');
  await waitUntil('blind notice', () => ofKind(gw.notices, 'blind').length > 0);
  await waitUntil('events after power-on acked', () => allAcked(sim, 3));
  const [blind] = ofKind(gw.notices, 'blind');
  assert.ok(blind !== undefined && blind.start <= blind.end);
  assert.equal(s.driver.status().state, 'running');
  assert.ok(s.fake.startScans > scans);
});

void test('a quiet site (no lock in range) restarts the scan but records no blind interval', async (t) => {
  const s = setup(t, { scanWatchdogMs: 100 });
  const gw = new GatewaySide(s.driver);
  await s.driver.start();
  await waitUntil('two watchdog restarts', () => s.driver.status().scan.restarts >= 2);
  assert.equal(ofKind(gw.notices, 'blind').length, 0);
});

void test('a connect that hangs times out, backs off and is retried', async (t) => {
  const s = setup(t, { connectTimeoutMs: 150 });
  const { sim, p } = s.lock('garage');
  p.hangConnects(2);
  const gw = new GatewaySide(s.driver);
  await s.driver.start();
  sim.record();
  await waitUntil('acked after retries', () => allAcked(sim, 1));
  assert.ok(p.connects >= 3);
  assert.ok(gw.notices.filter((n) => n.kind === 'link' && n.state === 'backoff').length >= 2);
});

void test('maxConnections is honoured and every pending lock is drained', async (t) => {
  const s = setup(t, { maxConnections: 2 });
  const sims = Array.from({ length: 6 }, (_, i) => s.lock(`door-${i}`).sim);
  for (const sim of sims) for (let i = 0; i < 3; i++) sim.record();
  new GatewaySide(s.driver);
  await s.driver.start();
  await waitUntil('all locks drained', () => sims.every((sim) => allAcked(sim, 3)), 60000);
  assert.ok(s.fake.maxConcurrent <= 2, `at most 2 links at once, saw ${s.fake.maxConcurrent}`);
});

void test('devices that are not OTI locks are never connected', async (t) => {
  const s = setup(t);
  const other = s.fake.addDevice({ serviceUuids: [SERVICE_UUID], manufacturerData: Buffer.from([0x4c, 0x00, 0x02, 0x15, 0x01]) });
  const noData = s.fake.addDevice({ serviceUuids: [SERVICE_UUID] });
  const { sim } = s.lock('lobby');
  new GatewaySide(s.driver);
  await s.driver.start();
  sim.record();
  await waitUntil('lock acked', () => allAcked(sim, 1));
  assert.equal(other.connects, 0);
  assert.equal(noData.connects, 0);
});

void test('garbage indications are rejected with codes, too much of it drops the link, nothing crashes', async (t) => {
  const s = setup(t, { idleMs: 60000 });
  const { sim, p } = s.lock('vault', 23, 200);
  const gw = new GatewaySide(s.driver);
  await s.driver.start();
  sim.record();
  await waitUntil('first acked', () => allAcked(sim, 1));
  p.corruptNextIndications(1);
  sim.record();
  await waitUntil('corrupted event resent and acked', () => allAcked(sim, 2));
  for (let i = 0; i < 25; i++) p.injectIndication(i % 2 === 0 ? Uint8Array.of(0x05, 1, 2, 3) : Uint8Array.of(0xc0, 0x00, 0x02, 0xff, 0xff));
  await waitUntil('link dropped for garbage', () => gw.notices.some((n) => n.kind === 'link' && n.state === 'backoff'));
  const rejected = ofKind(gw.notices, 'rejected');
  assert.ok(rejected.length > 20);
  for (const r of rejected) assert.match(r.code, /^ERR_[A-Z_]+$/);
  assert.ok(rejected.some((r) => r.code === 'ERR_FRAGMENT'));
  sim.record();
  await waitUntil('events flow again', () => allAcked(sim, 3));
});

void test('an adapter that is unsupported makes the driver unavailable with a reason', async (t) => {
  const s = setup(t, {}, { initialState: 'unsupported' });
  await s.driver.start();
  await waitUntil('unavailable', () => s.driver.status().state === 'unavailable');
  assert.ok((s.driver.status().reason ?? '').length > 0);
});

void test('a noble that cannot load makes start() reject ERR_DRIVER_UNAVAILABLE and status() say why', async () => {
  const err = Object.assign(new Error('Address family not supported by protocol'), { code: 'EAFNOSUPPORT' });
  const driver = new BleDriver({ gatewayId: 'gw-1', window: 4, loadNoble: () => Promise.reject(err) });
  await assert.rejects(driver.start(), (e) => isOtiError(e, 'ERR_DRIVER_UNAVAILABLE'));
  const st = driver.status();
  assert.equal(st.state, 'unavailable');
  assert.ok((st.reason ?? '').length > 0);
  await driver.stop();
  assert.equal(driver.status().state, 'unavailable');
});

void test('the real lazy noble import on this machine: unavailable with a reason, or running; never a crash', async () => {
  let loaded: NobleLike | undefined;
  const loadNoble = async (): Promise<NobleLike> => {
    const mod = (await import('@abandonware/noble')) as unknown as { default?: unknown };
    loaded = (mod.default ?? mod) as NobleLike;
    return loaded;
  };
  const driver = new BleDriver({ gatewayId: 'gw-1', window: 4, loadNoble });
  try {
    await driver.start();
    assert.notEqual(driver.status().state, 'unavailable');
  } catch (e) {
    assert.ok(isOtiError(e, 'ERR_DRIVER_UNAVAILABLE'));
    const st = driver.status();
    assert.equal(st.state, 'unavailable');
    assert.equal(st.reason, e.message);
  } finally {
    await driver.stop();
    // Where the HCI socket's prebuilt binary loads, noble would keep this process alive.
    if (loaded !== undefined) releaseNoble(loaded);
  }
});

void test('a full event queue pauses the link; a bounded buffer, then a drop; nothing lost once the gateway reads again', async (t) => {
  const s = setup(t, { eventQueue: 1, idleMs: 60000 });
  const { sim } = s.lock('loading-bay', 23, 100);
  for (let i = 0; i < 10; i++) sim.record();
  const notices: DriverNotice[] = [];
  void (async () => {
    for await (const n of s.driver.notices()) notices.push(n);
  })();
  await s.driver.start();
  // Nobody reads events: the lock's resends pile up in the link's bounded buffer until it is dropped.
  await waitUntil('link dropped while the gateway is busy', () => notices.some((n) => n.kind === 'link' && n.state === 'backoff'));
  void (async () => {
    for await (const ev of s.driver.events()) await s.driver.ack(ev, new Uint8Array(32));
  })();
  await waitUntil('all 10 acknowledged', () => allAcked(sim, 10));
});

void test('events beyond the window are nacked ERR_WINDOW with retry over BLE too (docs/PROTOCOL.md §Flow, the window)', async (t) => {
  const s = setup(t);
  const seed = randomBytes(32);
  const sim = new SimLock({ id: 'eager', seed, resendMs: 60_000 });
  t.after(() => sim.close());
  s.fake.addLock(sim, { mtu: 185 });
  const nacks: [number, string, boolean][] = [];
  sim.on('nack', (ctr, code, retry) => nacks.push([ctr, code, retry]));
  const notices: DriverNotice[] = [];
  const held: number[] = [];
  // A gateway that takes events and answers none of them yet: the window fills.
  void (async () => {
    for await (const ev of s.driver.events()) held.push(ev.ctr);
  })();
  void (async () => {
    for await (const n of s.driver.notices()) notices.push(n);
  })();
  await s.driver.start();
  sim.record(); // pending: the gateway connects, greets it and takes event 1
  await waitUntil('event 1 taken', () => held.length === 1 && sim.greeted);
  const maker = new SimLock({ id: 'eager', seed });
  for (let i = 0; i < 6; i++) maker.record();
  for (let c = 2; c <= 6; c++) assert.ok(sim.inject(maker.payloadOf(c)!, 1));
  await waitUntil('two refused', () => nacks.length === 2);
  assert.deepEqual(nacks, [[5, 'ERR_WINDOW', true], [6, 'ERR_WINDOW', true]]);
  assert.deepEqual(held, [1, 2, 3, 4]);
  assert.equal(ofKind(notices, 'rejected').filter((n) => n.code === 'ERR_WINDOW').length, 2);
});

void test('a refusal at info reaches the lock over BLE as a refuse message, and a refusal for good keeps it from sending', async (t) => {
  const s = setup(t);
  const { sim } = s.lock('gone', 185);
  const refused: [string, boolean][] = [];
  sim.on('refused', (code, retry) => refused.push([code, retry]));
  const events: number[] = [];
  void (async () => {
    for await (const ev of s.driver.events()) events.push(ev.ctr);
  })();
  // What the ingest pipeline does for a revoked lock's info (gateway/ingest.ts, screenInfo).
  void (async () => {
    for await (const n of s.driver.notices()) if (n.kind === 'lock-seen') await s.driver.refuseLink(n.from, 'ERR_LOCK_REVOKED', false);
  })();
  await s.driver.start();
  sim.record();
  await waitUntil('refused', () => refused.length > 0);
  assert.deepEqual(refused[0], ['ERR_LOCK_REVOKED', false]);
  const before = events.length;
  const sent = sim.sent;
  sim.record();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sim.sent, sent, 'refused for good at info: the lock sends nothing more on that link');
  assert.equal(events.length, before);
});
