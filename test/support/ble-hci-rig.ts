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
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BleDriver, type BleDriverOptions } from '../../drivers/ble.js';
import type { NobleLike } from '../../drivers/noble-types.js';
import { ptyPair } from '../../drivers/pty.js';
import { keyPairFromSeed } from '../../ledger/crypto.js';
import { Radio, attachPty, type VirtualController } from './hci-controller.js';
import type { BleRig } from './ble-suite.js';
import { waitUntil } from './wait.js';

const require = createRequire(import.meta.url);
const CHILD = fileURLToPath(new URL('./ble-lock-child.js', import.meta.url));
const GATEWAY_ADDRESS = 'a0:0e:71:00:00:01';
const LOCK_ADDRESS = 'b0:0e:71:00:00:02';
const NEIGHBOUR_ADDRESS = 'c0:0e:71:00:00:03';

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
}

interface ChildMessage {
  readonly t: 'ready' | 'ack' | 'link' | 'fail';
  readonly ctr?: number;
  readonly entry?: string;
  readonly up?: boolean;
  readonly message?: string;
}

function startLock(t: TestContext, port: string, id: string, seed: Buffer, rig: { acks: Map<number, Uint8Array>; lockLinks: boolean[] }): Promise<ChildProcess> {
  const child = fork(CHILD, [port, id, seed.toString('hex')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    child.on('message', (m: ChildMessage) => {
      if (m.t === 'ready') resolve(child);
      if (m.t === 'ack' && m.ctr !== undefined && m.entry !== undefined) rig.acks.set(m.ctr, new Uint8Array(Buffer.from(m.entry, 'hex')));
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
  const dir = await mkdtemp(join(tmpdir(), 'oti-hci-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const radio = new Radio();
  t.after(() => radio.close());
  const gateway = radio.controller(GATEWAY_ADDRESS);
  const lockController = radio.controller(LOCK_ADDRESS);
  // A neighbour that is not a lock and always advertises, as at any site: it keeps a healthy scan
  // busy while the lock, connected, is silent, so only a stalled scan goes quiet.
  // Flags and Shortened Local Name "tag"; its scan response: Complete Local Name "tag-1".
  radio.controller(NEIGHBOUR_ADDRESS).beacon(Buffer.from('0201060408746167', 'hex'), Buffer.from('0609746167' + '2d31', 'hex'));
  // Each pair: the host opens `.gateway`, the controller `.lock`.
  const pairs = [await ptyPair(dir, 'central'), await ptyPair(dir, 'peripheral')];
  t.after(() => Promise.all(pairs.map((p) => p.kill())));
  const [central, peripheral] = pairs as [(typeof pairs)[0], (typeof pairs)[0]];
  const detach = [await attachPty(gateway, central.lock), await attachPty(lockController, peripheral.lock)];
  t.after(() => Promise.all(detach.map((d) => d())));
  t.after(() => {
    // The hosts must have spoken HCI the controllers understood.
    for (const c of [gateway, lockController]) {
      if (c.errors.length > 0) throw new Error(`controller ${c.address}: ${c.errors.join('; ')}`);
      if (c.unknown.size > 0) process.stderr.write(`controller ${c.address}: unknown opcodes ${[...c.unknown].map((o) => `0x${o.toString(16)}`).join(', ')}\n`);
    }
  });

  const id = `lock-${randomBytes(3).toString('hex')}`;
  const seed = randomBytes(32);
  const acks = new Map<number, Uint8Array>();
  const lockLinks: boolean[] = [];
  const child = await startLock(t, peripheral.gateway, id, seed, { acks, lockLinks });

  const noble = makeNoble(central.gateway);
  t.after(() => releaseNoble(noble));
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
  t.after(() => driver.stop());
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
    record: (n) => {
      child.send({ t: 'record', n });
      const ctrs = Array.from({ length: n }, (_, i) => next + i);
      next += n;
      return ctrs;
    },
    ackedEntry: (ctr) => acks.get(ctr),
    dropLink: () => child.send({ t: 'disconnect' }),
    stallScan: () => gateway.stallScan(),
  };
}
