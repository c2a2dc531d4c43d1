/**
 * The real gateway (`node dist/gateway/main.js`, what `npm start` runs) in a subprocess, for
 * end-to-end tests: its JSON log lines are parsed as they come, so a test can wait for a message
 * and read the ports it reports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { waitUntil } from './wait.js';
import type { Topology } from './netns.js';
import type { TestContext } from 'node:test';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'gateway', 'main.js');
/** The V8 flags `npm start` and the systemd unit give the gateway (package.json, deploy/; docs/DECISIONS.md, Memory). */
export const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=2', '--v8-pool-size=1', '--heap-growing-percent=40'] as const;

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface GatewayProcess {
  readonly proc: ChildProcess;
  readonly logs: LogLine[];
  /** Everything the process wrote to stderr. */
  stderr(): string;
  /** Resolves with the first log line that matches; fails at once if the gateway exits first. */
  waitForLog(what: string, match: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
  /** SIGTERM (unless it has exited already), then its exit code or signal. */
  stop(): Promise<number | string>;
}

export function startGateway(args: readonly string[], env: Record<string, string> = {}): GatewayProcess {
  const proc = spawn(process.execPath, [...GATEWAY_NODE_FLAGS, MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return followGateway(proc);
}

/** startGateway, and on teardown a SIGKILL for it if it still runs (then its exit is awaited). */
export function startTestGateway(t: TestContext, args: readonly string[], env: Record<string, string> = {}): GatewayProcess {
  const gw = startGateway(args, env);
  t.after(async () => {
    if (gw.proc.exitCode === null && gw.proc.signalCode === null) gw.proc.kill('SIGKILL');
    await gw.exited;
  });
  return gw;
}

/** The same gateway started in network namespace `ns` of a topology (test/support/netns.ts), which kills it on destroy(). */
export function startGatewayIn(topo: Pick<Topology, 'exec'>, ns: number, args: readonly string[]): GatewayProcess {
  return followGateway(topo.exec(ns, process.execPath, [...GATEWAY_NODE_FLAGS, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Follows a gateway started some other way (e.g. by `npm start`): its log lines and its exit. */
export function followGateway(proc: ChildProcess): GatewayProcess {
  const logs: LogLine[] = [];
  let err = '';
  let partial = '';
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      try {
        logs.push(JSON.parse(l) as LogLine);
      } catch {
        logs.push({ level: 30, msg: l });
      }
    }
  });
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  let done = false;
  void exited.then(() => (done = true));
  return {
    proc,
    logs,
    stderr: () => err,
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    async waitForLog(what, match, ms = 30_000) {
      let hit: LogLine | undefined;
      const found = (): boolean => {
        hit = logs.find(match);
        if (hit !== undefined) return true;
        if (done) throw new Error(`the gateway exited before "${what}"; stderr: ${err.slice(-2000)}`);
        return false;
      };
      await waitUntil(`"${what}"`, found, ms, () => `last log lines: ${logs.slice(-5).map((l) => l.msg).join(' | ')}`);
      return hit!;
    },
  };
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a gateway (or a server) to listen on
 * later. It is picked below the kernel's range of ephemeral ports
 * (/proc/sys/net/ipv4/ip_local_port_range): a port from that range, free when picked, could be
 * given to some outgoing connection before the gateway listens on it (ERR_PORT_IN_USE). Below
 * it, only another explicit listen can take it.
 */
export async function freePort(): Promise<number> {
  const below = Math.min(ephemeralStart(), 32768);
  for (let i = 0; i < 200; i++) {
    const port = FIRST_PICKED_PORT + Math.floor(Math.random() * (below - FIRST_PICKED_PORT));
    if (await canListen(port)) return port;
  }
  // Nothing free below the range: any port the kernel gives.
  return listenOn(0);
}

/** The lowest port picked by freePort (below it: well-known services). */
const FIRST_PICKED_PORT = 10_000;

function ephemeralStart(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > FIRST_PICKED_PORT + 1000 ? lo : 32768;
  } catch {
    return 32768;
  }
}

async function canListen(port: number): Promise<boolean> {
  try {
    return (await listenOn(port)) === port;
  } catch {
    return false;
  }
}

/** Listens on 127.0.0.1:`port` (0: any), closes again, and resolves to the port it had. */
async function listenOn(port: number): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** What a test or benchmark gateway's configuration file says (docs/CONFIGURATION.md). */
export interface TestGatewayConfig {
  readonly dataDir: string;
  readonly broker: { readonly host: string; readonly port: number };
  readonly api: Readonly<Record<string, string | number>>;
  /** The gateway ends of the locks' serial lines (ptys). */
  readonly serialPorts: readonly string[];
  /** Settings given to every serial port (reconnect bounds, baud rate). */
  readonly portSettings?: Readonly<Record<string, number>>;
  /** Other top-level sections (webhooks, sync, log, …). */
  readonly more?: Readonly<Record<string, unknown>>;
}

/** Writes a gateway configuration file (YAML, BLE off, as on a machine without Bluetooth) and returns its path. */
export async function writeGatewayConfig(path: string, c: TestGatewayConfig): Promise<string> {
  const doc = {
    dataDir: c.dataDir,
    broker: c.broker,
    api: c.api,
    ble: { enabled: false },
    serial: { ports: c.serialPorts.map((p) => ({ path: p, ...c.portSettings })) },
    ...c.more,
  };
  await writeFile(path, stringify(doc));
  return path;
}
