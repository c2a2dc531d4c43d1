/**
 * The BLE driver on a real host stack, without kernel Bluetooth: real @abandonware/noble (with
 * @stoprocent/bluetooth-hci-socket's UART transport, as package.json's overrides install it) and
 * the project's BleDriver in this process; a lock played by real bleno in a child process
 * (test/support/ble-lock-child.ts); between them two virtual LE controllers on one simulated
 * radio (test/support/hci-controller.ts), each reached over a socat pty pair (drivers/pty.ts).
 *
 *   BleDriver → noble → UART HCI ⇄ pty ⇄ controller ~ radio ~ controller ⇄ pty ⇄ UART HCI ← bleno ← SimLock
 *
 * noble reads its port from BLUETOOTH_HCI_SOCKET_UART_PORT when its bindings initialise (in
 * BleDriver.start()), so the rig sets it just before; each scenario gets a fresh Noble (noble's
 * with-custom-binding). noble never releases its HCI socket (it polls the adapter every second
 * for the life of the process), so the teardown stops its socket and that poll through noble's
 * internals: the only place the rig reaches inside the library, and only to end it.
 */
import type { TestContext } from 'node:test';
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BleDriver, type BleDriverOptions } from '../../drivers/ble/driver.js';
import type { NobleLike } from '../../drivers/noble-types.js';
import { ptyPair } from '../../drivers/pty.js';
import { keyPairFromSeed } from '../../ledger/crypto.js';
import { Radio, attachPty, type VirtualController } from './hci-controller.js';
import type { BleRig } from './ble-suite.js';
import type { DriverRig, LockSide, RigOptions } from './driver-conformance.js';
import type { DriverNotice } from '../../drivers/driver.js';
import { waitUntil } from './wait.js';

const require = createRequire(import.meta.url);
const CHILD = fileURLToPath(new URL('./ble-lock-child.js', import.meta.url));
const GATEWAY_ADDRESS = 'a0:0e:71:00:00:01';
const LOCK_ADDRESS = 'b0:0e:71:00:00:02';
const NEIGHBOUR_ADDRESS = 'c0:0e:71:00:00:03';
const NOBLE_EVENTS = ['stateChange', 'scanStart', 'scanStop', 'discover', 'warning'] as const;

/** Why this machine cannot run the rig, or undefined when it can. */
export function hciRigUnavailable(): string | undefined {
  try {
    // The socket noble itself loads (installed under noble's own node_modules by the alias).
    const nobleRequire = createRequire(require.resolve('@abandonware/noble'));
    const socket = nobleRequire('@abandonware/bluetooth-hci-socket/package.json') as { name: string };
    if (socket.name !== '@stoprocent/bluetooth-hci-socket') return `noble's HCI socket is ${socket.name}, not the @stoprocent one with a UART transport (npm ci?)`;
    // Its drivers, not its index: the index picks its driver once, from the environment of
    // its first require, which must be noble's, after the rig set the UART port.
    nobleRequire('@abandonware/bluetooth-hci-socket/lib/native.js'); // the prebuilt binary production uses
    nobleRequire('@abandonware/bluetooth-hci-socket/lib/uart.js');
    require('@stoprocent/bleno');
    return undefined;
  } catch (e) {
    return `the HCI socket or bleno cannot load here: ${e instanceof Error ? e.message : String(e)}`;
  }
}

export interface HciRig extends BleRig {
  readonly gateway: VirtualController;
  readonly lockController: VirtualController;
  /** Acks the lock took, by counter. */
  readonly acks: Map<number, Uint8Array>;
  /** Connection changes the lock saw (true: up). */
  readonly lockLinks: boolean[];
  /** Makes the lock drop its link (HCI Disconnect from the lock's side). */
  readonly dropLink: () => void;
  /** The nacks the lock acted on. */
  readonly nacks: [number, string, boolean][];
  /** What the lock last reported of its counts. */
  readonly counts: { pending: number; sent: number };
  /** Makes the lock send these bytes as one message, as they are. */
  readonly sendRaw: (message: Uint8Array) => void;
  readonly noble: NobleLike;
  /** Listeners noble had on its own events before the driver started. */
  readonly ownListeners: ReadonlyMap<string, number>;
}

interface ChildMessage {
  readonly t: 'ready' | 'ack' | 'nack' | 'state' | 'link' | 'fail';
  readonly ctr?: number;
  readonly entry?: string;
  readonly code?: string;
  readonly retry?: boolean;
  readonly pending?: number;
  readonly sent?: number;
  readonly up?: boolean;
  readonly message?: string;
}

interface LockReports {
  readonly acks: Map<number, Uint8Array>;
  readonly lockLinks: boolean[];
  readonly nacks: [number, string, boolean][];
  readonly counts: { pending: number; sent: number };
}

function startLock(port: string, id: string, seed: Buffer, rig: LockReports, teardown: (() => unknown)[]): Promise<ChildProcess> {
  const child = fork(CHILD, [port, id, seed.toString('hex')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  teardown.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    child.on('message', (m: ChildMessage) => {
      if (m.t === 'ready') resolve(child);
      if (m.t === 'ack' && m.ctr !== undefined && m.entry !== undefined) rig.acks.set(m.ctr, new Uint8Array(Buffer.from(m.entry, 'hex')));
      if (m.t === 'nack' && m.ctr !== undefined && m.code !== undefined) rig.nacks.push([m.ctr, m.code, m.retry === true]);
      if (m.t === 'state' && m.pending !== undefined && m.sent !== undefined) Object.assign(rig.counts, { pending: m.pending, sent: m.sent });
      if (m.t === 'link') rig.lockLinks.push(m.up === true);
      if (m.t === 'fail') reject(new Error(`lock child: ${m.message}`));
    });
    child.once('exit', (code) => reject(new Error(`lock child exited (${code}) before it was ready`)));
  });
}

/**
 * Ends a real noble's HCI socket and its once-a-second adapter poll (noble 1.9.2-26 has no
 * public way to), so that a test process can exit. The gateway and the CLI exit explicitly.
 */
export function releaseNoble(noble: NobleLike): void {
  const bindings = (noble as unknown as { _bindings?: { _hci?: { pollIsDevUp: () => void; _socket: { stop: () => void } }; onSigIntBinded?: () => void } })._bindings;
  const hci = bindings?._hci;
  if (hci !== undefined) {
    hci.pollIsDevUp = () => undefined;
    hci._socket.stop();
  }
  if (bindings?.onSigIntBinded !== undefined) process.removeListener('SIGINT', bindings.onSigIntBinded);
}

/** A fresh noble on `port`. */
function makeNoble(port: string): NobleLike {
  process.env['BLUETOOTH_HCI_SOCKET_UART_PORT'] = port;
  return (require('@abandonware/noble/with-custom-binding') as () => NobleLike)();
}

export async function hciRig(t: TestContext, opts: Partial<BleDriverOptions> = {}): Promise<HciRig> {
  // One teardown, in the reverse order of set-up, that runs to its end whatever fails in it (a
  // hook that throws would skip the hooks after it and leave noble's socket holding the process).
  const teardown: (() => unknown)[] = [];
  const controllers: VirtualController[] = [];
  t.after(async () => {
    // The hosts must have spoken HCI the controllers understood; read before teardown makes their ports fail.
    const errors = controllers.filter((c) => c.errors.length > 0).map((c) => `controller ${c.address}: ${c.errors.join('; ')}`);
    for (const c of controllers) {
      if (c.unknown.size > 0) process.stderr.write(`controller ${c.address}: unknown opcodes ${[...c.unknown].map((o) => `0x${o.toString(16)}`).join(', ')}\n`);
    }
    for (const step of teardown.reverse()) {
      try {
        await step();
      } catch (e) {
        errors.push(`teardown: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (errors.length > 0) throw new Error(errors.join('; '));
  });
  const dir = await mkdtemp(join(tmpdir(), 'oti-hci-'));
  teardown.push(() => rm(dir, { recursive: true, force: true }));
  const radio = new Radio();
  teardown.push(() => radio.close());
  const gateway = radio.controller(GATEWAY_ADDRESS);
  const lockController = radio.controller(LOCK_ADDRESS);
  controllers.push(gateway, lockController);
  // A neighbour that is not a lock and always advertises, as at any site: it keeps a healthy scan
  // busy while the lock, connected, is silent, so only a stalled scan goes quiet.
  // Flags and Shortened Local Name "tag"; its scan response: Complete Local Name "tag-1".
  radio.controller(NEIGHBOUR_ADDRESS).beacon(Buffer.from('0201060408746167', 'hex'), Buffer.from('0609746167' + '2d31', 'hex'));
  // Each pair: the host opens `.gateway`, the controller `.lock`.
  const pairs = [await ptyPair(dir, 'central'), await ptyPair(dir, 'peripheral')];
  teardown.push(() => Promise.all(pairs.map((p) => p.kill())));
  const [central, peripheral] = pairs as [(typeof pairs)[0], (typeof pairs)[0]];
  const detach = [await attachPty(gateway, central.lock), await attachPty(lockController, peripheral.lock)];
  teardown.push(() => Promise.all(detach.map((d) => d())));

  const id = `lock-${randomBytes(3).toString('hex')}`;
  const seed = randomBytes(32);
  const acks = new Map<number, Uint8Array>();
  const lockLinks: boolean[] = [];
  const nacks: [number, string, boolean][] = [];
  const counts = { pending: 0, sent: 0 };
  const child = await startLock(peripheral.gateway, id, seed, { acks, lockLinks, nacks, counts }, teardown);

  // noble's bindings and its UART socket each add a process 'exit' listener per instance and keep
  // no handle to give it back: one pair per scenario would pass Node's limit of 10 and warn. They
  // go with the scenario.
  const exitListeners = new Set(process.listeners('exit'));
  teardown.push(() => {
    for (const l of process.listeners('exit')) if (!exitListeners.has(l)) process.removeListener('exit', l);
  });
  const noble = makeNoble(central.gateway);
  teardown.push(() => releaseNoble(noble));

  // noble listens to some of its own events (its 'warning' logger): what is there before the driver.
  const ownListeners = new Map(NOBLE_EVENTS.map((e) => [e, (noble as unknown as EventEmitter).listenerCount(e)]));
  const driver = new BleDriver({
    gatewayId: 'gw-hci',
    window: 4,
    scanWatchdogMs: 5000,
    backoff: { minMs: 100, maxMs: 1000 },
    connectTimeoutMs: 3000,
    gattTimeoutMs: 3000,
    idleMs: 1000,
    ...opts,
    noble,
  });
  teardown.push(() => driver.stop());
  await driver.start();
  await waitUntil('noble powered on', () => driver.status().scan.adapter === 'poweredOn', 10000);
  await waitUntil('the scan enabled at the controller', () => gateway.isScanning, 10000);

  let next = 1;
  return {
    driver,
    lock: id,
    key: keyPairFromSeed(seed).publicKey,
    gateway,
    lockController,
    acks,
    lockLinks,
    nacks,
    counts,
    noble,
    ownListeners,
    sendRaw: (message) => child.send({ t: 'raw', hex: Buffer.from(message).toString('hex') }),
    record: (n) => {
      child.send({ t: 'record', n });
      const ctrs = Array.from({ length: n }, (_, i) => next + i);
      next += n;
      return ctrs;
    },
    ackedEntry: (ctr) => acks.get(ctr),
    dropLink: () => child.send({ t: 'disconnect' }),
  };
}

/**
 * The hci rig as a rig of the LockDriver conformance suite (test/support/driver-conformance.ts):
 * a window of 8 over an event queue of 2, the scan watchdog at its default 30 s (on the suite's
 * clock where a case brings one).
 */
export async function hciConformanceRig(t: TestContext, opts: RigOptions): Promise<DriverRig> {
  const scanWatchdogMs = 30_000;
  const rig = await hciRig(t, { window: 8, eventQueue: 2, scanWatchdogMs, ...(opts.now === undefined ? {} : { now: opts.now }) });
  const lock: LockSide = {
    id: rig.lock,
    remote: true,
    record: (n) => rig.record?.(n) ?? [],
    acked: (ctr) => rig.acks.get(ctr),
    nacks: rig.nacks,
    pending: () => rig.counts.pending,
    sent: () => rig.counts.sent,
    sendRaw: rig.sendRaw,
  };
  return {
    driver: rig.driver,
    lock,
    queue: 2,
    window: 8,
    scanWatchdogMs,
    dropLink: async (seen: readonly DriverNotice[]) => {
      const from = seen.length;
      rig.dropLink();
      await waitUntil('the driver saw the link drop', () => seen.slice(from).some((n) => n.kind === 'link' && (n.state === 'backoff' || n.state === 'closed') && /disconnected/.test(n.detail)), 20_000);
    },
    stallScan: () => rig.gateway.stallScan(),
    released: async () => {
      for (const e of NOBLE_EVENTS) assert.equal((rig.noble as unknown as EventEmitter).listenerCount(e), rig.ownListeners.get(e), `no '${e}' listener of the driver left on noble`);
      await waitUntil('the scan disabled at the controller', () => !rig.gateway.isScanning, 10_000);
      await waitUntil('the lock saw its link go', () => rig.lockLinks.at(-1) === false, 10_000);
    },
  };
}
