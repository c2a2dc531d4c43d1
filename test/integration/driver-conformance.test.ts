/**
 * The LockDriver conformance suite (test/support/driver-conformance.ts) on the serial driver over
 * real kernel ptys (socat, drivers/pty.ts): the driver on one end, a simulated lock
 * (SerialSimLink) on the other. Pulling the cable is killing socat; plugging it back, a new pair
 * under the same paths.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readlink, realpath } from 'node:fs/promises';
import { ptyPair } from '../../drivers/pty.js';
import { SerialDriver } from '../../drivers/serial.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import type { DriverNotice } from '../../drivers/driver.js';
import { driverConformance, simLockSide } from '../support/driver-conformance.js';
import { tempDir } from '../support/site.js';
import { waitUntil } from '../support/wait.js';

const WINDOW = 8;
const QUEUE = 2;

/** Waits for the driver's notice that its port went away, after the first `from` notices. */
function portGone(seen: readonly DriverNotice[], from: number): Promise<void> {
  return waitUntil('the driver saw the port go', () => seen.slice(from).some((n) => n.kind === 'link' && (n.state === 'closed' || n.state === 'backoff')));
}

/** Whether this process still has a file descriptor open on `device`. */
async function holds(device: string): Promise<boolean> {
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target === device) return true;
  }
  return false;
}

driverConformance({
  name: 'serial over a pty',
  notApplicable: { 'scan-blind': 'no scan: a serial port does not go deaf silently; its outages are the cable case' },
  make: async (t, opts) => {
    const pty = await ptyPair(await tempDir(t));
    t.after(() => pty.kill());
    const device = await realpath(pty.gateway);
    const driver = new SerialDriver({
      path: pty.gateway,
      gatewayId: 'gw-1',
      window: WINDOW,
      queueSize: QUEUE,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      probeMs: 100,
      ...(opts.now === undefined ? {} : { now: opts.now }),
    });
    const sim = new SimLock({ id: 'front-door', seed: randomBytes(32), resendMs: 200 });
    const link = new SerialSimLink(sim, { path: pty.lock, reopenMs: 20 });
    t.after(async () => {
      await driver.stop();
      sim.close();
      await link.close();
    });
    await driver.start();
    link.start();
    const cable = {
      down: async (seen: readonly DriverNotice[]) => {
        const from = seen.length;
        await pty.kill();
        await portGone(seen, from);
      },
      up: () => pty.start(),
    };
    return {
      driver,
      lock: simLockSide(sim),
      queue: QUEUE,
      window: WINDOW,
      dropLink: cable.down,
      restoreLink: cable.up,
      corruptFrame: () => link.corruptNext(1),
      outage: cable,
      released: async () => assert.equal(await holds(device), false, `the port ${device} is closed`),
    };
  },
});
