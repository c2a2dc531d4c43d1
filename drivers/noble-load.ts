/**
 * Loading @abandonware/noble (lazily: importing it on a machine without Bluetooth throws
 * EAFNOSUPPORT), naming why it failed, and bounding noble's calls, whose promises may never
 * settle, and telling a machine without Bluetooth from an adapter that is off. Shared by the BLE
 * driver and the CLI's BLE commands (provisioning/ble.ts).
 */
import { readdirSync } from 'node:fs';
import { OtiError } from '../ledger/base/errors.js';
import type { NobleLike } from './noble-types.js';

/** A promise that rejects when a link closes (the driver's per-link close signal). */
export type ClosedSignal = Promise<never>;

/** Races `p` against a timeout and, if given, a link's closing. `p` may never settle (noble). */
export function bounded<T>(p: Promise<T>, ms: number, what: string, closed?: ClosedSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OtiError('ERR_DRIVER_STOPPED', `${what} timed out after ${ms} ms`)), ms);
  });
  p.catch(() => undefined);
  return Promise.race(closed === undefined ? [p, timeout] : [p, timeout, closed]).finally(() => clearTimeout(timer));
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Why the noble import failed, in words a technician can act on. */
export function describeLoadFailure(e: unknown): string {
  const code = (e as { code?: unknown } | undefined)?.code;
  switch (code) {
    case 'EAFNOSUPPORT':
      return 'no Bluetooth support on this machine (EAFNOSUPPORT)';
    case 'ENODEV':
      return 'no Bluetooth adapter found (ENODEV)';
    case 'EPERM':
    case 'EACCES':
      return `not permitted to use the Bluetooth adapter (${code}); grant CAP_NET_RAW or run as root`;
    case 'ERR_MODULE_NOT_FOUND':
      return '@abandonware/noble is not installed';
    default:
      return `cannot load @abandonware/noble: ${messageOf(e)}${typeof code === 'string' ? ` (${code})` : ''}`;
  }
}

export async function importNoble(): Promise<NobleLike> {
  const mod = (await import('@abandonware/noble')) as unknown as { default?: unknown };
  return (mod.default ?? mod) as NobleLike;
}

/**
 * Why the kernel offers no Bluetooth adapter, or undefined when it lists one (or when the HCI
 * transport is a UART, BLUETOOTH_HCI_SOCKET_UART_PORT, which the kernel does not see). The
 * prebuilt HCI socket loads even on a kernel without Bluetooth and noble then only says
 * "poweredOff", so this is what tells "no Bluetooth here" from "an adapter that is off" (for the
 * CLI's `oti ble scan` and `oti doctor`, and for the reason the BLE driver's status gives).
 */
export function kernelAdapterAbsence(sysClass = '/sys/class/bluetooth', env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env['BLUETOOTH_HCI_SOCKET_UART_PORT'] !== undefined) return undefined;
  let names: string[];
  try {
    names = readdirSync(sysClass);
  } catch {
    return 'no Bluetooth support on this machine (EAFNOSUPPORT: the kernel has no Bluetooth)';
  }
  return names.some((n) => /^hci\d+$/.test(n)) ? undefined : 'no Bluetooth adapter found (ENODEV)';
}
