/**
 * Serial: each configured port opens at its rate; with `loopback` (TX bridged to RX by a
 * loopback plug, or a pty pair in CI) random bytes written come back unchanged. A port the
 * running gateway holds passes as held by it.
 */
import { randomBytes } from 'node:crypto';
import { result, why, type CheckResult } from './result.js';

const TIMEOUT_MS = 3000;

interface Port {
  open(cb: (err: Error | null) => void): void;
  close(cb: (err: Error | null) => void): void;
  write(data: Buffer, cb: (err: Error | null | undefined) => void): void;
  on(ev: 'data', l: (d: Buffer) => void): void;
  isOpen: boolean;
}

/** What serialport says when another process holds a port's lock (flock, bindings-cpp serialport_unix.cpp). */
const HELD = /Cannot lock port|EBUSY|Resource busy/;

/**
 * `gatewayHolds`: the gateway runs here and the port is one of its serial.ports. A port held by
 * another process then passes as the gateway's own (as the broker port held by an MQTT broker
 * does): the gateway keeps its lines open, and the check cannot open one as well.
 */
export async function checkSerialPort(path: string, baudRate: number, loopback: boolean, peer?: string, gatewayHolds = false): Promise<CheckResult> {
  const name = `serial ${path}`;
  const { SerialPort } = await import('serialport');
  const port = new SerialPort({ path, baudRate, autoOpen: false }) as unknown as Port;
  try {
    await new Promise<void>((resolve, reject) => port.open((e) => (e !== null ? reject(e) : resolve())));
  } catch (e) {
    const m = why(e);
    if (gatewayHolds && HELD.test(m)) return result(name, 'pass', 'held by the running gateway (one of its serial.ports; oti status shows its link); stop the gateway to test the port itself', undefined, { heldByGateway: true });
    const remedy = /EACCES|Permission/.test(m)
      ? 'add the gateway user to the dialout group (usermod -aG dialout oti) and log in again'
      : /ENOENT|No such file/.test(m)
        ? 'check the cable and the device name (oti ports lists the ports); USB adapters may change name: use /dev/serial/by-id/...'
        : 'check that no other program holds the port (fuser -v ' + path + ')';
    return result(name, 'fail', `cannot open at ${baudRate} baud: ${m}`, remedy);
  }
  try {
    if (!loopback) return result(name, 'pass', `opens at ${baudRate} baud`);
    const probe = randomBytes(64);
    let got = Buffer.alloc(0);
    const echoed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), TIMEOUT_MS);
      port.on('data', (d) => {
        got = Buffer.concat([got, d]);
        if (got.includes(probe)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    await new Promise<void>((resolve, reject) => port.write(probe, (e) => (e !== null && e !== undefined ? reject(e) : resolve())));
    if (await echoed) return result(name, 'pass', `opens at ${baudRate} baud; ${probe.length} bytes came back through the loopback`);
    return result(name, 'fail', `opens, but ${got.length === 0 ? 'nothing' : `${got.length} other bytes`} came back within ${TIMEOUT_MS} ms${peer !== undefined ? ` (peer ${peer})` : ''}`, 'check that TX and RX are bridged (loopback plug) and the baud rate; for RS-485, that the adapter echoes or the bus is terminated');
  } catch (e) {
    return result(name, 'fail', `write failed: ${why(e)}`, 'check the cable and adapter');
  } finally {
    if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }
}
