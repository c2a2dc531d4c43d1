/**
 * Sync test fixtures: whole gateways in one process (LevelDB store, chain, embedded broker on
 * 127.0.0.1 with signed gateway credentials, SyncNode), and untilReplicated, which waits for an
 * outcome, never for a fixed time (test/support/wait.ts). A real Mosquitto: test/support/mosquitto.ts.
 */
import { join } from 'node:path';
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
