/**
 * Sync test fixtures: whole gateways in one process (LevelDB store, chain, embedded broker on
 * 127.0.0.1 with signed gateway credentials, SyncNode), a real Mosquitto, and waiting helpers
 * that wait for outcomes, never for a fixed time.
 */
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import type { KeyPair } from '../../ledger/crypto.js';
import type { SignedStatement } from '../../ledger/roster.js';
import { Broker } from '../../gateway/broker/broker.js';
import { SyncNode, type SyncOptions } from '../../gateway/sync/node.js';
import { gatewayCredentialVerifier } from '../../gateway/broker/credentials.js';
import { enrollGateway, tempDir, signedEvent, type TestLock, type TestSite } from './site.js';
import { waitForEvent } from './wait.js';

export const WAIT_MS = 60_000;

export interface TestGateway {
  readonly id: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  readonly dir: string;
  store: LedgerStore;
  chain: Chain;
  broker: Broker | undefined;
  node: SyncNode | undefined;
  readonly url: string | undefined;
}

/** A gateway with its store and chain (and an embedded broker unless `broker: false`); no sync yet. */
export async function makeGateway(t: TestContext, s: TestSite, id: string, opts: { broker?: boolean; maxMessageBytes?: number; rate?: number } = {}): Promise<TestGateway> {
  const dir = await tempDir(t, `oti-sync-${id}-`);
  const { key, statement } = enrollGateway(s, id);
  const store = await LedgerStore.open(join(dir, 'ledger'));
  const chain = await Chain.open({ store, trust: s.trust, gatewayId: id, key, genesis: statement });
  const g: TestGateway = { id, key, enrolment: statement, dir, store, chain, broker: undefined, node: undefined, url: undefined };
  if (opts.broker !== false) {
    const broker = await Broker.start({
      site: s.siteId,
      host: '127.0.0.1',
      port: 0,
      allowAnonymous: false,
      maxMessageBytes: opts.maxMessageBytes ?? 512 * 1024,
      rateLimit: { messagesPerSecond: opts.rate ?? 2000, burst: opts.rate ?? 2000 },
      verifyGatewayCredential: gatewayCredentialVerifier({ trust: s.trust, isRefused: (gw, k) => g.node?.isRefusedGateway(gw, k) ?? false }),
      isRosterGateway: (gw) => g.node?.isRosterGateway(gw) ?? false,
    });
    g.broker = broker;
    (g as { url: string }).url = `mqtt://127.0.0.1:${broker.port}`;
  }
  t.after(async () => {
    await g.node?.stop();
    await g.broker?.close();
    await g.chain.close().catch(() => undefined);
    await g.store.close().catch(() => undefined);
  });
  return g;
}

/** Starts (or restarts) the gateway's sync node over `brokers` and attaches its chain. */
export async function startSync(g: TestGateway, s: TestSite, brokers: readonly string[], extra: Partial<SyncOptions> = {}): Promise<SyncNode> {
  await g.node?.stop();
  const node = new SyncNode({ store: g.store, trust: s.trust, gatewayId: g.id, key: g.key, enrolment: g.enrolment, brokers, stallMs: 5000, ...extra });
  g.node = node;
  await node.start();
  node.attachChain(g.chain);
  return node;
}

/** Appends `n` signed events of `lock` (enrolled first if new to this chain). */
export async function appendEvents(g: TestGateway, lock: TestLock, n: number): Promise<void> {
  if (g.chain.roster.get('lock', lock.id) === undefined) await g.chain.append({ kind: 'roster', signed: lock.statement });
  const all: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    all.push(g.chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true }));
    if (all.length >= 2048) await Promise.all(all.splice(0));
  }
  await Promise.all(all);
}

/** Waits until `node` holds `origin` at `size` entries. */
export async function untilReplicated(node: SyncNode, origin: string, size: number): Promise<void> {
  await waitForEvent(node, ['progress', 'synced'], `${origin} @ ${size} on ${node.origin}`, async () => (await node.replica(origin)).size >= size);
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * A real Mosquitto on 127.0.0.1 with a password file (mosquitto_passwd) holding one user per
 * gateway; Mosquitto cannot run our credential check, so the gateways log in with these and the
 * protocol relies on message-level signatures. Stopped on teardown.
 */
export async function startMosquitto(t: TestContext, users: Record<string, string>): Promise<string> {
  const dir = await tempDir(t, 'oti-mosquitto-');
  const passwd = join(dir, 'passwd');
  const run = promisify(execFile);
  let first = true;
  for (const [u, p] of Object.entries(users)) {
    await run('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', passwd, u, p]);
    first = false;
  }
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  // Run as this user (as root, Mosquitto would switch to user mosquitto, who cannot read the temp folder).
  await writeFile(conf, [`user ${userInfo().username}`, `listener ${port} 127.0.0.1`, 'allow_anonymous false', `password_file ${passwd}`, 'persistence false', 'max_packet_size 1048576', ''].join('\n'));
  const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  });
  // Ready once it accepts TCP connections.
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connectTcp(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`mosquitto did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return `mqtt://127.0.0.1:${port}`;
}
