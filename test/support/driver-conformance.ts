/**
 * The LockDriver conformance suite (drivers/driver.ts states the contract): one set of cases that
 * every transport runs (STYLE.md "one suite, many implementations", as abstract-level's suite
 * for its backends). A transport hands in a rig factory: a started driver with one simulated
 * lock connected to it, and what the transport can do to that link (drop it, corrupt a frame,
 * take the device away, stall a scan). A case the transport cannot be put through is listed in
 * `notApplicable` with the reason, and shows as skipped with that reason.
 *
 * Run against: the in-process driver and the BLE driver over the fake radio
 * (test/unit/driver-conformance.test.ts), the serial driver over kernel ptys
 * (test/integration/driver-conformance.test.ts) and the BLE driver on real host stacks over
 * virtual HCI controllers (test/integration/ble-hci.test.ts).
 *
 * The gateway side of every case is `GatewaySide`: it reads both streams and answers each event
 * by a policy (ack, hold, nack); a duplicate of an event already acked is acked again with the
 * entry it was first acked with, as the ingest pipeline does, so "stored" is what a gateway would
 * have stored once.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERROR_CODES, isOtiError } from '../../ledger/base/errors.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { encode } from '../../ledger/base/cbor.js';
import { payloadBytes, type DriverNotice, type LockDriver, type ReceivedEvent } from '../../drivers/driver.js';
import type { SimLock } from '../../drivers/simlock.js';
import { waitUntil } from './wait.js';

/** The lock at the far end of the rig's link, as far as a test can see and steer it. */
export interface LockSide {
  readonly id: string;
  /** Records `n` new events; returns their counters. */
  record(n: number): number[];
  /** The entry hash the lock took in an ack for `ctr`. */
  acked(ctr: number): Uint8Array | undefined;
  /** The nacks the lock acted on, in order. */
  readonly nacks: readonly (readonly [ctr: number, code: string, retry: boolean])[];
  /** Events the lock holds (not yet acked, not dropped after a nack for good). */
  pending(): number;
  /** Event messages the lock has sent, resends included. */
  sent(): number;
  /** The lock runs in another process: what it reports (pending, sent) may lag a little. */
  readonly remote?: boolean;
  /** Sends these bytes as one whole message, as they are (garbage). */
  sendRaw(message: Uint8Array): void;
  /** The payload bytes the lock holds or held under `ctr`, when the rig can see them. */
  payloadOf?(ctr: number): Uint8Array | undefined;
}

/** A SimLock in this process as a LockSide. */
export function simLockSide(sim: SimLock): LockSide {
  const nacks: [number, string, boolean][] = [];
  sim.on('nack', (ctr, code, retry) => nacks.push([ctr, code, retry]));
  return {
    id: sim.id,
    record: (n) => Array.from({ length: n }, () => sim.record()),
    acked: (ctr) => sim.acked.get(ctr),
    nacks,
    pending: () => sim.pending,
    sent: () => sim.sent,
    sendRaw: (m) => assert.ok(sim.sendRaw(m), 'the lock has a link to send on'),
    payloadOf: (ctr) => {
      const p = sim.payloadOf(ctr);
      return p === undefined ? undefined : 'cose' in p ? p.cose : p.event;
    },
  };
}

/** A clock the test can hold still and move, for exact interval bounds; otherwise the real one. */
export class TestClock {
  private held: number | undefined;
  /** How often the driver read it: a driver's housekeeping tick reads it, so this counts ticks too. */
  reads = 0;
  readonly now = (): number => {
    this.reads++;
    return this.held ?? Date.now();
  };

  set(t: number): void {
    this.held = t;
  }

  /** Waits until the driver has read the clock `n` more times (n ticks of its housekeeping, at least n/4). */
  async readsMore(n: number, timeoutMs: number): Promise<void> {
    const target = this.reads + n;
    await waitUntil(`${n} more clock reads by the driver`, () => this.reads >= target, timeoutMs);
  }
}

export interface RigOptions {
  /** The driver's clock; the real one when absent. */
  readonly now?: () => number;
}

export interface DriverRig {
  /** Started, with the lock's link coming up. */
  readonly driver: LockDriver;
  readonly lock: LockSide;
  /** Capacity of the driver's event stream as the rig configured it; less than `window`. */
  readonly queue: number;
  /** hello.window as the rig configured it. */
  readonly window: number;
  /** Drops the lock's link; resolves once the driver has seen it go (`seen`: the notices read so far). */
  dropLink?(seen: readonly DriverNotice[]): Promise<void>;
  /** Brings the link back, where the transport does not by itself. */
  restoreLink?(): Promise<void>;
  /** Garbles the next frame (serial) or fragment (BLE) the lock sends, below the message layer. */
  corruptFrame?(): void;
  /** The device the driver reads through goes away (a cable pulled, an adapter powered off) and returns. */
  readonly outage?: {
    down(seen: readonly DriverNotice[], clock: TestClock): Promise<void>;
    up(): Promise<void>;
  };
  /** Makes the scan go deaf without telling the host (BLE). */
  stallScan?(): void;
  /** Makes the scan stop as if by itself: noble reports scanStop nobody asked for (BLE). */
  stopScanUnasked?(): void;
  /** The scan watchdog's period as the rig configured it (BLE). */
  readonly scanWatchdogMs?: number;
  /** Checks, after stop(), that the transport's resources are released (a port lock, radio listeners, the lock's link). */
  released(): Promise<void>;
}

export type CaseId = 'delivery' | 'back-pressure' | 'resend' | 'nack' | 'malformed' | 'stop' | 'outage-blind' | 'scan-blind';

export interface Transport {
  readonly name: string;
  readonly make: (t: TestContext, opts: RigOptions) => Promise<DriverRig>;
  /** Cases this transport cannot be put through, and why. */
  readonly notApplicable?: Partial<Record<CaseId, string>>;
  /** Bound on each wait (default 30 s). */
  readonly timeoutMs?: number;
}

/** The entry hash the gateway side acks (lock, ctr) with. */
export function entryFor(lock: string, ctr: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${lock}:${ctr}`).digest());
}

export type Answer = 'ack' | 'hold' | { readonly nack: string; readonly retry: boolean };

/** The gateway end of a driver: reads both streams and answers events by `policy`. */
export class GatewaySide {
  /** Every event handed out, duplicates included, in order. */
  readonly events: ReceivedEvent[] = [];
  readonly notices: DriverNotice[] = [];
  /** (lock:ctr) → the entry it was first acked with: what a gateway would have stored, once. */
  readonly stored = new Map<string, Uint8Array>();
  /** Events taken and not answered (policy 'hold'). */
  readonly held: ReceivedEvent[] = [];
  /** How often each (lock:ctr) was handed out. */
  readonly copies = new Map<string, number>();
  /** ack()/nack() calls that threw (the contract: they never do). */
  readonly throws: unknown[] = [];
  policy: (ev: ReceivedEvent, copy: number) => Answer = () => 'ack';
  /** A slow gateway: waits this long after each event before taking the next. */
  delayMs = 0;
  readonly done: Promise<void>;
  private paused: { promise: Promise<void>; resume: () => void } | undefined;

  constructor(
    readonly driver: LockDriver,
    opts: { reading?: boolean } = {},
  ) {
    if (opts.reading === false) this.pause();
    this.done = Promise.all([this.readEvents(), this.readNotices()]).then(() => undefined);
  }

  /** Stops taking events from the driver (the gateway is busy). */
  pause(): void {
    if (this.paused !== undefined) return;
    let resume!: () => void;
    const promise = new Promise<void>((r) => (resume = r));
    this.paused = { promise, resume };
  }

  resume(): void {
    const p = this.paused;
    this.paused = undefined;
    p?.resume();
  }

  /** Answers an event as the policy would for `a` (acks name the stored entry). */
  async answer(ev: ReceivedEvent, a: Answer): Promise<void> {
    try {
      if (a === 'hold') this.held.push(ev);
      else if (a === 'ack') {
        const key = `${ev.lock}:${ev.ctr}`;
        const entry = this.stored.get(key) ?? entryFor(ev.lock, ev.ctr);
        this.stored.set(key, entry);
        await this.driver.ack(ev, entry);
      } else await this.driver.nack(ev, a.nack, a.retry);
    } catch (e) {
      this.throws.push(e);
    }
  }

  /** Answers every held event by the current policy. */
  async release(): Promise<void> {
    for (const ev of this.held.splice(0)) await this.answer(ev, this.policy(ev, this.copies.get(`${ev.lock}:${ev.ctr}`) ?? 1));
  }

  /** The notices of one kind, in order. */
  ofKind<K extends DriverNotice['kind']>(kind: K): Extract<DriverNotice, { kind: K }>[] {
    return this.notices.filter((n): n is Extract<DriverNotice, { kind: K }> => n.kind === kind);
  }

  private async readEvents(): Promise<void> {
    const it = this.driver.events()[Symbol.asyncIterator]();
    for (;;) {
      await this.paused?.promise;
      const r = await it.next();
      if (r.done === true) return;
      const ev = r.value;
      this.events.push(ev);
      const key = `${ev.lock}:${ev.ctr}`;
      const copy = (this.copies.get(key) ?? 0) + 1;
      this.copies.set(key, copy);
      await this.answer(ev, this.policy(ev, copy));
      if (this.delayMs > 0) await sleep(this.delayMs);
    }
  }

  private async readNotices(): Promise<void> {
    for await (const n of this.driver.notices()) this.notices.push(n);
  }
}

/** Every counter acked at the lock with the entry the gateway side stored for it. */
function assertAckedAsStored(rig: DriverRig, gw: GatewaySide, ctrs: readonly number[]): void {
  for (const ctr of ctrs) {
    const stored = gw.stored.get(`${rig.lock.id}:${ctr}`);
    assert.ok(stored !== undefined, `event ${ctr} stored`);
    assert.ok(bytesEqual(rig.lock.acked(ctr) ?? new Uint8Array(0), stored), `the ack of ${ctr} names its stored entry`);
  }
}

function isKnownCode(code: string): boolean {
  return Object.hasOwn(ERROR_CODES, code);
}

export function driverConformance(transport: Transport): void {
  const ms = transport.timeoutMs ?? 30_000;
  const na = transport.notApplicable ?? {};
  const wait = (what: string, cond: () => boolean): Promise<void> => waitUntil(what, cond, ms);
  const allAcked = (rig: DriverRig, ctrs: readonly number[]): boolean => ctrs.every((c) => rig.lock.acked(c) !== undefined) && rig.lock.pending() === 0;
  const define = (id: CaseId, title: string, body: (t: TestContext) => Promise<void>): void => {
    const reason = na[id];
    const name = `${transport.name}: ${title}`;
    if (reason !== undefined) void test(name, { skip: `not applicable: ${reason}` }, () => undefined);
    else void test(name, { timeout: ms * 4 }, body);
  };

  define('delivery', 'events are delivered intact, with the lock info, and each ack reaches the lock naming its entry', async (t) => {
    const rig = await transport.make(t, {});
    const gw = new GatewaySide(rig.driver);
    const ctrs = rig.lock.record(5);
    await wait('all 5 acked at the lock', () => allAcked(rig, ctrs));
    assertAckedAsStored(rig, gw, ctrs);
    for (const ctr of ctrs) {
      const ev = gw.events.find((e) => e.ctr === ctr);
      assert.ok(ev !== undefined, `event ${ctr} delivered`);
      assert.equal(ev.lock, rig.lock.id);
      assert.equal(ev.from.driver, rig.driver.id);
      assert.equal(ev.invalid, undefined);
      assert.equal(ev.info?.lock, rig.lock.id, 'the event carries what the lock said about itself');
      const sent = rig.lock.payloadOf?.(ctr);
      if (sent !== undefined) assert.ok(bytesEqual(payloadBytes(ev), sent), `event ${ctr} arrives as the lock sent it`);
    }
    assert.ok(gw.ofKind('lock-seen').some((n) => n.info.lock === rig.lock.id), 'a lock-seen notice names the lock');
    if (rig.lock.remote !== true) assert.ok(gw.events.length <= rig.lock.sent(), `the driver invents no events (${gw.events.length} delivered, ${rig.lock.sent()} sent)`);
    await wait('acks counted', () => rig.driver.status().counters.acksOut >= ctrs.length);
    assert.ok(rig.driver.status().counters.eventsIn >= ctrs.length);
    assert.deepEqual(gw.throws, []);
    await assert.rejects(rig.driver.start(), (e) => isOtiError(e, 'ERR_ARGUMENT'), 'start() twice is an argument error');
  });

  define('back-pressure', 'a gateway slower than the lock: the driver takes no more than its queue holds, and nothing is lost', async (t) => {
    const rig = await transport.make(t, {});
    assert.ok(rig.queue < rig.window, 'the rig gives the driver a queue smaller than the window');
    const gw = new GatewaySide(rig.driver, { reading: false });
    const n = rig.window * 3;
    const ctrs = rig.lock.record(n);
    // Nobody reads: the driver may take what its queue holds, plus the one event each link's
    // reader holds while it waits for room (one more per reconnect).
    const taken = (): number => rig.driver.status().counters.eventsIn;
    const bound = (): number => rig.queue + 1 + rig.driver.status().counters.reconnects;
    await wait('the lock sent its window twice over (its resends too find no room)', () => {
      assert.ok(taken() <= bound(), `the driver took ${taken()} events with room for ${bound()}`);
      return rig.lock.sent() >= 2 * rig.window;
    });
    await wait('the queue full', () => taken() >= rig.queue);
    assert.ok(taken() <= bound(), `the driver took ${taken()} events with room for ${bound()}`);
    assert.equal(gw.events.length, 0);
    assert.equal(rig.lock.pending(), n, 'the lock still holds every event');
    // Now the gateway reads, slowly: everything arrives and is acked once stored.
    gw.delayMs = 5;
    gw.resume();
    await wait(`all ${n} acked`, () => allAcked(rig, ctrs));
    assertAckedAsStored(rig, gw, ctrs);
    assert.equal(gw.stored.size, n, 'each event stored once');
    assert.deepEqual(gw.throws, []);
  });

  define('resend', 'after the link drops and returns, unanswered events come again and their duplicates are acked with the stored entry', async (t) => {
    const rig = await transport.make(t, {});
    assert.ok(rig.dropLink !== undefined, 'the rig can drop the link');
    const gw = new GatewaySide(rig.driver);
    const first = rig.lock.record(2);
    await wait('2 acked', () => allAcked(rig, first));
    gw.policy = () => 'hold';
    const k = Math.min(4, rig.window);
    const ctrs = rig.lock.record(k);
    await wait(`${k} events taken and held`, () => new Set(gw.held.map((e) => e.ctr)).size === k);
    await rig.dropLink(gw.notices);
    const droppedAt = Date.now();
    // Answers for events of a link that has gone are dropped without an error, whether they come
    // while it is down or once a new link is up: they belong to the old link.
    const stale = gw.held.splice(0);
    const acksOut = rig.driver.status().counters.acksOut;
    const half = Math.ceil(stale.length / 2);
    for (const ev of stale.slice(0, half)) await gw.answer(ev, 'ack');
    await rig.restoreLink?.();
    await wait('every held event sent again on the new link', () => ctrs.every((c) => gw.held.some((e) => e.ctr === c && e.receivedAt >= droppedAt)));
    for (const ev of stale.slice(half)) await gw.answer(ev, 'ack');
    assert.deepEqual(gw.throws, [], 'ack() does not throw for a dead link');
    assert.equal(rig.driver.status().counters.acksOut, acksOut, 'no answer for the old link went out');
    assert.ok(
      ctrs.every((c) => rig.lock.acked(c) === undefined),
      'the lock got none of those answers',
    );
    gw.policy = () => 'ack';
    await gw.release();
    await wait(`all ${k} acked after the reconnect`, () => allAcked(rig, [...first, ...ctrs]));
    for (const c of ctrs) {
      const all = gw.events.filter((e) => e.ctr === c);
      for (const e of all) assert.ok(bytesEqual(payloadBytes(e), payloadBytes(all[0]!)), `every copy of ${c} is the same event`);
    }
    assertAckedAsStored(rig, gw, [...first, ...ctrs]);
    assert.equal(gw.stored.size, first.length + k, 'each event stored once');
  });

  define('nack', 'a nack with retry makes the lock send the event again; a nack without retry makes it drop the event', async (t) => {
    const rig = await transport.make(t, {});
    const gw = new GatewaySide(rig.driver);
    const warm = rig.lock.record(1);
    await wait('first acked', () => allAcked(rig, warm));
    let again = 0;
    let never = 0;
    gw.policy = (ev, copy) => (ev.ctr === again && copy === 1 ? { nack: 'ERR_BUSY', retry: true } : ev.ctr === never ? { nack: 'ERR_LOCK_REVOKED', retry: false } : 'ack');
    const [a, b, plain] = rig.lock.record(3) as [number, number, number];
    again = a;
    never = b;
    await wait('both nacks taken by the lock', () => rig.lock.nacks.length >= 2);
    await wait('the retried event and the plain one acked, nothing held', () => allAcked(rig, [again, plain]));
    assert.deepEqual(
      rig.lock.nacks.filter(([c]) => c === again || c === never),
      [
        [again, 'ERR_BUSY', true],
        [never, 'ERR_LOCK_REVOKED', false],
      ],
    );
    assert.ok((gw.copies.get(`${rig.lock.id}:${again}`) ?? 0) >= 2, 'the event nacked with retry came again');
    assert.equal(rig.lock.acked(never), undefined, 'the event nacked for good was dropped, never acked');
    assert.equal(gw.copies.get(`${rig.lock.id}:${never}`), 1, 'and never sent again');
    await wait('nacks counted', () => rig.driver.status().counters.nacksOut >= 2);
    assert.deepEqual(gw.throws, []);
  });

  define('malformed', 'malformed input gets a rejected notice with a documented code, and events still flow', async (t) => {
    const rig = await transport.make(t, {});
    const gw = new GatewaySide(rig.driver);
    const warm = rig.lock.record(1);
    await wait('first acked', () => allAcked(rig, warm));
    const garbage = [Uint8Array.of(0xff, 0x00, 0x13, 0x37), encode({ t: 'gossip', lock: rig.lock.id })];
    for (const g of garbage) rig.lock.sendRaw(g);
    await wait('a rejection per garbage message', () => gw.ofKind('rejected').length >= garbage.length);
    if (rig.corruptFrame !== undefined) {
      const before = gw.ofKind('rejected').length;
      rig.corruptFrame();
      const ctrs = rig.lock.record(1);
      await wait('the corrupted frame rejected', () => gw.ofKind('rejected').length > before);
      await wait('the event resent and acked', () => allAcked(rig, ctrs));
    }
    for (const r of gw.ofKind('rejected')) {
      assert.equal(r.from.driver, rig.driver.id);
      assert.ok(isKnownCode(r.code), `${r.code} is a documented error code (${r.detail})`);
    }
    assert.ok(rig.driver.status().counters.framesRejected >= garbage.length);
    const after = rig.lock.record(2);
    await wait('events flow after the garbage', () => allAcked(rig, after));
    assert.equal(gw.events.filter((e) => e.invalid !== undefined).length, 0, 'garbage never becomes an event');
  });

  define('stop', 'stop() is idempotent, ends both streams, releases the transport and leaves unanswered events with the lock', async (t) => {
    const rig = await transport.make(t, {});
    const gw = new GatewaySide(rig.driver);
    const first = rig.lock.record(2);
    await wait('2 acked', () => allAcked(rig, first));
    gw.policy = () => 'hold';
    const [kept] = rig.lock.record(1) as [number];
    await wait('an event taken and held', () => gw.held.some((e) => e.ctr === kept));
    await Promise.all([rig.driver.stop(), rig.driver.stop()]);
    await rig.driver.stop();
    await gw.done;
    const s = rig.driver.status();
    assert.equal(s.state, 'stopped');
    assert.deepEqual(
      s.links.filter((l) => l.state === 'open' || l.state === 'connecting'),
      [],
    );
    // Answers after stop go nowhere and do not throw.
    const [ev] = gw.held as [ReceivedEvent];
    await rig.driver.ack(ev, entryFor(ev.lock, ev.ctr));
    await rig.driver.nack(ev, 'ERR_BUSY', true);
    assert.equal(rig.lock.acked(kept), undefined);
    assert.ok(rig.lock.pending() >= 1, 'the unanswered event stays with the lock');
    await rig.released();
  });

  define('outage-blind', 'while the device is gone the driver is blind: one blind notice from when it saw it go to when it came back', async (t) => {
    const clock = new TestClock();
    const C0 = 1_000_000_000;
    clock.set(C0);
    const rig = await transport.make(t, { now: clock.now });
    assert.ok(rig.outage !== undefined, 'the rig can take the device away');
    const gw = new GatewaySide(rig.driver);
    const first = rig.lock.record(1);
    await wait('first acked', () => allAcked(rig, first));
    const mark = gw.notices.length;
    clock.set(C0 + 1000);
    await rig.outage.down(gw.notices, clock);
    const gone = gw.notices.slice(mark).find((n) => n.kind === 'link' && (n.state === 'closed' || n.state === 'backoff'));
    assert.ok(gone !== undefined, 'the driver reported the device gone');
    const C2 = C0 + 60_000;
    clock.set(C2);
    await rig.outage.up();
    await wait('the blind notice', () => gw.ofKind('blind').length > 0);
    const blinds = gw.ofKind('blind');
    assert.equal(blinds.length, 1, 'one outage, one blind interval');
    const [blind] = blinds as [Extract<DriverNotice, { kind: 'blind' }>];
    assert.equal(blind.driver, rig.driver.id);
    assert.equal(blind.start, gone.time, 'it starts when the driver saw the device go');
    assert.ok(blind.start >= C0 + 1000);
    assert.equal(blind.end, C2, 'it ends when the device came back');
    assert.equal(blind.time, blind.end);
    assert.ok(blind.reason.length > 0);
    const after = rig.lock.record(1);
    await wait('events flow again', () => allAcked(rig, after));
  });

  define('scan-blind', 'a stalled scan: restarted once silent for exactly scanWatchdogMs, blind from its last advertisement to the first after the restart', async (t) => {
    const clock = new TestClock();
    const C0 = 2_000_000_000;
    clock.set(C0);
    const rig = await transport.make(t, { now: clock.now });
    const W = rig.scanWatchdogMs;
    assert.ok(rig.stallScan !== undefined && W !== undefined, 'the rig can stall the scan');
    const gw = new GatewaySide(rig.driver);
    const restarts = (): number => (rig.driver.status() as { scan?: { restarts: number } }).scan?.restarts ?? 0;
    // The scan hears the site at C0 (the clock stands still); then it goes deaf.
    await clock.readsMore(40, ms);
    const before = restarts();
    rig.stallScan();
    // Reports already on their way land at C0 too.
    await clock.readsMore(40, ms);
    clock.set(C0 + W - 1);
    await clock.readsMore(40, ms);
    assert.equal(restarts(), before, 'no restart before scanWatchdogMs of silence');
    assert.equal(gw.ofKind('blind').length, 0);
    clock.set(C0 + W);
    await wait('the watchdog restart', () => restarts() > before);
    const restart = gw.ofKind('link').find((n) => n.from.link === 'adapter' && n.detail.startsWith('restarting scan'));
    assert.equal(restart?.time, C0 + W, 'restarted at exactly scanWatchdogMs of silence');
    await wait('the blind notice once advertisements come back', () => gw.ofKind('blind').length > 0);
    const [blind] = gw.ofKind('blind') as [Extract<DriverNotice, { kind: 'blind' }>];
    assert.deepEqual([blind.start, blind.end], [C0, C0 + W], 'blind from the last advertisement before the stall to the first after the restart');
    assert.equal(blind.driver, rig.driver.id);
    if (rig.stopScanUnasked !== undefined) {
      // A scan that stops by itself is blind from that moment to its restart, at once.
      // Within scanWatchdogMs of the last advertisement, so that only the stop restarts the scan.
      const C1 = C0 + W + 10;
      clock.set(C1);
      const again = restarts();
      rig.stopScanUnasked();
      clock.set(C1 + 25);
      await wait('the restart after the unasked stop', () => restarts() > again);
      await wait('its blind notice', () => gw.ofKind('blind').length > 1);
      const second = gw.ofKind('blind')[1]!;
      assert.deepEqual([second.start, second.end], [C1, C1 + 25]);
    }
    const ctrs = rig.lock.record(1);
    await wait('an event after the restarts acked', () => allAcked(rig, ctrs));
  });
}
