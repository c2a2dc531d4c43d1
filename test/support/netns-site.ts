/**
 * Gateways of one site in network namespaces (test/support/netns.ts), as the netns tests run
 * them: each an installer's data folder (enrolledGateway: bundle applied, a lock enrolled in its
 * chain), a pty whose other end a simulated lock uses, a configuration with the broker on
 * 0.0.0.0:1883 and the API on 8433 (each namespace has its own ports), and the real gateway process
 * (`node dist/gateway/main.js --config FILE`) started in its namespace.
 */
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import type { SimLock } from '../../drivers/simlock.js';
import type { EnrolledGateway } from './enrolled-gateway.js';
import { startGatewayIn, writeGatewayConfig, type GatewayProcess, type LogLine } from './gateway-process.js';
import type { Topology } from './netns.js';

export interface NsGateway extends EnrolledGateway {
  /** The namespace it runs in. */
  readonly ns: number;
  readonly config: string;
  /** The serial line of its lock: the gateway has `pty.gateway`, the lock `pty.lock`. */
  readonly pty: PtyPair;
  /** The current process (undefined before the first start). */
  proc: GatewayProcess | undefined;
  /** When the current process was started (Date.now()). */
  startedAt: number;
  /** The current process's log lines ([] before the first start). */
  readonly logs: LogLine[];
}

/** A pty and a configuration file for `g` in namespace `ns`; `more` adds top-level sections (sync, …). */
export async function nsGateway(t: TestContext, dir: string, g: EnrolledGateway, ns: number, more?: Record<string, unknown>): Promise<NsGateway> {
  const pty = await ptyPair(dir, `pty-${ns}`);
  t.after(() => pty.kill());
  const config = await writeGatewayConfig(join(dir, `${g.id}-${ns}.yaml`), {
    dataDir: g.dataDir,
    broker: { host: '0.0.0.0', port: 1883 },
    api: { port: 8433 },
    serialPorts: [pty.gateway],
    portSettings: { reconnectMinMs: 100, reconnectMaxMs: 1000 },
    ...(more !== undefined ? { more } : {}),
  });
  const gw: NsGateway = {
    ...g,
    ns,
    config,
    pty,
    proc: undefined,
    startedAt: 0,
    get logs(): LogLine[] {
      return gw.proc?.logs ?? [];
    },
  };
  return gw;
}

/** Starts `gw`'s gateway process in its namespace (a new process: its logs start empty). */
export function startIn(topo: Topology, gw: NsGateway): void {
  gw.startedAt = Date.now();
  gw.proc = startGatewayIn(topo, gw.ns, ['--config', gw.config]);
}

/** Stops `gw`'s gateway process (SIGTERM) and waits for its exit. */
export async function stopIn(gw: NsGateway): Promise<void> {
  await gw.proc?.stop();
}

/** Whether `gw`'s current process logged that it runs. */
export const isRunning = (gw: NsGateway): boolean => gw.logs.some((l) => l.msg.includes('running; press Ctrl+C'));

/** `lock` on the lock's end of `gw`'s serial line (not started); both are closed on teardown. */
export function lockOn(t: TestContext, gw: NsGateway, lock: SimLock): SerialSimLink {
  const link = new SerialSimLink(lock, { path: gw.pty.lock, reopenMs: 100 });
  t.after(async () => {
    lock.close();
    await link.close();
  });
  return link;
}

/** The largest replica size of `origin` that `gw` logged (-1 if none). */
export const replicaOf = (gw: NsGateway, origin: string): number => Math.max(-1, ...gw.logs.filter((l) => l.msg.startsWith(`replica of ${origin} `)).map((l) => Number(l['size'])));
