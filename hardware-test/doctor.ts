/**
 * `oti doctor`: the on-device checks of a gateway, each pass, warn, fail or skip (with the
 * reason) and a remedy for every warn and fail. Which hardware to check comes from the
 * gateway's configuration (gateway/config/config.ts: dataDir, serial.ports, broker, ble.enabled),
 * overridable per run. The checks themselves live in hardware-test/checks/.
 */
import { checkBluetooth } from './checks/bluetooth.js';
import { checkSerialPort } from './checks/serial.js';
import { checkDataDir, checkFsync } from './checks/storage.js';
import { checkClockYear, checkNtp } from './checks/clock.js';
import { checkBrokerPort, checkMulticast } from './checks/network.js';
import { checkSignatureVerifier } from './checks/crypto.js';
import { checkIdentity, checkGatewayRunning } from './checks/identity.js';
import { result, type CheckResult } from './checks/result.js';
import type { NobleLike } from '../drivers/noble-types.js';

export type { CheckResult, CheckStatus } from './checks/result.js';

export interface DoctorOptions {
  readonly dataDir: string;
  readonly serialPorts: readonly { readonly path: string; readonly baudRate: number }[];
  /** TX is bridged to RX on every serial port (loopback plug): also check that bytes come back. */
  readonly loopback: boolean;
  /** The serial ports the gateway's configuration names (serial.ports): held by it while it runs. */
  readonly gatewaySerialPorts?: readonly string[];
  /** Check Bluetooth, or the reason not to (shown as the check's SKIP). */
  readonly ble: true | { readonly skip: string };
  readonly bleScanSeconds: number;
  readonly brokerHost: string;
  readonly brokerPort: number;
  readonly fsyncFiles: number;
  readonly now?: () => number;
  readonly loadNoble?: () => Promise<NobleLike>;
  /** The gateway's local API, to tell whether it runs (`http://127.0.0.1:8433`). */
  readonly apiUrl?: string;
  /** Called as each check finishes (for live output). */
  readonly onResult?: (r: CheckResult) => void;
}

export async function runDoctor(o: DoctorOptions): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const add = (r: CheckResult): void => {
    out.push(r);
    o.onResult?.(r);
  };
  const dir = await checkDataDir(o.dataDir);
  add(dir);
  add(dir.status === 'fail' || dir.data?.['missing'] === true ? result('storage fsync', 'skip', 'the data folder is not usable or does not exist yet') : await checkFsync(o.dataDir, o.fsyncFiles));
  if (dir.data?.['missing'] !== true) add(await checkIdentity(o.dataDir, (o.now ?? Date.now)()));
  const running = o.apiUrl !== undefined ? await checkGatewayRunning(o.apiUrl) : undefined;
  if (running !== undefined) add(running);
  const gatewayRuns = running?.data?.['answers'] === true;
  add(checkSignatureVerifier());
  add(checkClockYear((o.now ?? Date.now)()));
  add(await checkNtp());
  if (o.serialPorts.length === 0) add(result('serial', 'skip', 'no serial ports configured (serial.ports, or --serial PATH)'));
  for (const p of o.serialPorts) add(await checkSerialPort(p.path, p.baudRate, o.loopback, undefined, gatewayRuns && (o.gatewaySerialPorts ?? []).includes(p.path)));
  add(o.ble === true ? await checkBluetooth({ scanSeconds: o.bleScanSeconds, ...(o.loadNoble !== undefined ? { load: o.loadNoble } : {}) }) : result('bluetooth', 'skip', o.ble.skip));
  add(await checkMulticast());
  add(await checkBrokerPort(o.brokerHost, o.brokerPort));
  return out;
}

/** True when no check failed (warnings and skips do not fail the run). */
export function healthy(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.status !== 'fail');
}
