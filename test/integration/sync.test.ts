/**
 * Chain sync between in-process gateways over real MQTT on 127.0.0.1: the mesh of embedded
 * brokers (two and three gateways converge and confirm), a late joiner catching up a long chain
 * with progress and resuming after its sync node restarts, the external-broker topology against
 * a real Mosquitto, and recovery of a gateway's own chain from its peers after losing its data.
 * Every wait is for an outcome, with a generous timeout.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { LedgerStore } from '../../ledger/store.js';
import { Chain, chainOrigin } from '../../ledger/chain.js';
import { verifyChain } from '../../ledger/verify.js';
import { toHex } from '../../ledger/crypto.js';
import { SyncNode, type SyncProgress } from '../../gateway/sync/node.js';
import type { CoverageEvent } from '../../gateway/sync/witness.js';
import { enrollLock, makeSite, signedEvent, tempDir } from '../support/site.js';
import { appendEvents, makeGateway, startSync, untilReplicated, type TestGateway } from '../support/sync.js';
import { startMosquitto } from '../support/mosquitto.js';
import { waitForEvent } from '../support/wait.js';

const site = makeSite('site-1');
const origin = (g: TestGateway): string => chainOrigin(site.siteId, g.id);

async function assertSameChain(holder: TestGateway, of: TestGateway): Promise<void> {
  const r = await holder.node!.replica(origin(of));
  assert.equal(r.size, of.chain.size);
  assert.equal(toHex(r.checkpoint!.root), toHex(of.chain.checkpoint!.root));
  const report = await verifyChain(r, { trust: site.trust });
  assert.equal(report.entries, of.chain.size);
}

void test('two gateways with embedded brokers converge and each confirms the other’s cosignature', async (t) => {
  const a = await makeGateway(t, site, 'gw-a');
  const b = await makeGateway(t, site, 'gw-b');
  const lockA = enrollLock(site, 'lock-a');
  const lockB = enrollLock(site, 'lock-b');
  await appendEvents(a, lockA, 300);
  await appendEvents(b, lockB, 200);
  const urls = [a.url!, b.url!];
  const confirmedA: CoverageEvent[] = [];
  const na = await startSync(a, site, urls);
  na.coverage.on('coverage', (e) => confirmedA.push(e));
  const nb = await startSync(b, site, urls);
  await untilReplicated(na, origin(b), b.chain.size);
  await untilReplicated(nb, origin(a), a.chain.size);
  await assertSameChain(a, b);
  await assertSameChain(b, a);
  // A quorum of 2 (majority of 2 gateways): gw-a itself and gw-b's cosignature.
  await waitForEvent(na.coverage, ['coverage'], 'gw-a confirmed by gw-b', () => na.coverage.confirmedSize >= a.chain.size);
  const last = confirmedA.filter((e) => e.state === 'confirmed').at(-1)!;
  assert.equal(last.to, a.chain.size);
  assert.deepEqual(last.cosigners, ['gw-a', 'gw-b']);
  // New events keep flowing.
  await appendEvents(a, lockA, 50);
  await untilReplicated(nb, origin(a), a.chain.size);
  await assertSameChain(b, a);
});

void test('three gateways converge on every chain; confirmation needs two of three', async (t) => {
  const gws = [await makeGateway(t, site, 'gw-1'), await makeGateway(t, site, 'gw-2'), await makeGateway(t, site, 'gw-3')];
  const urls = gws.map((g) => g.url!);
  for (const [i, g] of gws.entries()) await appendEvents(g, enrollLock(site, `lock-${i}`), 100 + 50 * i);
  for (const g of gws) await startSync(g, site, urls);
  for (const holder of gws) for (const of of gws) if (holder !== of) await untilReplicated(holder.node!, origin(of), of.chain.size);
  for (const holder of gws) for (const of of gws) if (holder !== of) await assertSameChain(holder, of);
  for (const g of gws) {
    assert.equal(g.node!.quorum, 2);
    await waitForEvent(g.node!.coverage, ['coverage'], `${g.id} confirmed`, () => g.node!.coverage.confirmedSize >= g.chain.size);
  }
});

void test('a late joiner catches up a 20,000-entry chain with progress, and resumes from its store after a restart', async (t) => {
  const a = await makeGateway(t, site, 'gw-src');
  const c = await makeGateway(t, site, 'gw-late');
  await appendEvents(a, enrollLock(site, 'lock-long'), 20_000);
  const urls = [a.url!, c.url!];
  await startSync(a, site, urls);
  const first: SyncProgress[] = [];
  const nc = await startSync(c, site, urls, { windowEntries: 4096 });
  nc.on('progress', (p) => {
    if (p.origin === origin(a)) first.push(p);
  });
  await waitForEvent(nc, ['progress'], 'first progress', () => first.length > 0);
  // Stop mid-way (or at the end, if it was quick); the next session starts from what is stored.
  await nc.stop();
  const stored = (await nc.replica(origin(a))).size;
  assert.ok(stored > 0);
  assert.ok(first.every((p) => p.entriesPerSecond >= 0 && p.remaining === a.chain.size - p.size));
  const second: SyncProgress[] = [];
  const nc2 = await startSync(c, site, urls, { windowEntries: 4096 });
  nc2.on('progress', (p) => second.push(p));
  await untilReplicated(nc2, origin(a), a.chain.size);
  if (stored < a.chain.size) assert.ok(second.length > 0 && second[0]!.size > stored - 1 && second.every((p) => p.size > stored));
  await assertSameChain(c, a);
});

void test('external broker: gateways sync through a real Mosquitto with its own password file', async (t) => {
  const users = { 'gw-x': 'secret-x', 'gw-y': 'secret-y' };
  const { url } = await startMosquitto(t, users, { maxPacketBytes: 1048576 });
  const x = await makeGateway(t, site, 'gw-x', { broker: false });
  const y = await makeGateway(t, site, 'gw-y', { broker: false });
  await appendEvents(x, enrollLock(site, 'lock-x'), 500);
  await appendEvents(y, enrollLock(site, 'lock-y'), 100);
  const nx = await startSync(x, site, [url], { login: () => ({ username: 'gw-x', password: Buffer.from(users['gw-x']) }) });
  const ny = await startSync(y, site, [url], { login: () => ({ username: 'gw-y', password: Buffer.from(users['gw-y']) }) });
  await untilReplicated(ny, origin(x), x.chain.size);
  await untilReplicated(nx, origin(y), y.chain.size);
  await assertSameChain(y, x);
  await assertSameChain(x, y);
  await waitForEvent(nx.coverage, ['coverage'], 'gw-x confirmed through mosquitto', () => nx.coverage.confirmedSize >= x.chain.size);
});

void test('a gateway that lost its data recovers its own chain from a peer and continues from the tip', async (t) => {
  const a = await makeGateway(t, site, 'gw-r');
  const b = await makeGateway(t, site, 'gw-keep');
  const lock = enrollLock(site, 'lock-r');
  await appendEvents(a, lock, 1000);
  const urls = [a.url!, b.url!];
  await startSync(a, site, urls);
  const nb = await startSync(b, site, urls);
  await untilReplicated(nb, origin(a), a.chain.size);
  const lostSize = a.chain.size;
  const lostRoot = a.chain.checkpoint!.root;
  // gw-r is re-flashed: same key, empty data folder. Its broker keeps running on the same port.
  await a.node!.stop();
  a.node = undefined;
  await a.chain.close();
  await a.store.close();
  const dir = await tempDir(t, 'oti-reflashed-');
  const store = await LedgerStore.open(join(dir, 'ledger'));
  t.after(() => store.close());
  const node = new SyncNode({ store, trust: site.trust, gatewayId: a.id, key: a.key, enrolment: a.enrolment, brokers: urls });
  t.after(() => node.stop());
  await node.start();
  const r = await node.recoverOwnChain({ timeoutMs: 30_000, settleMs: 3000 });
  assert.equal(r.before, 0);
  assert.equal(r.after, lostSize);
  assert.deepEqual(r.peers, ['gw-keep']);
  const chain = await Chain.open({ store, trust: site.trust, gatewayId: a.id, key: a.key, genesis: a.enrolment });
  t.after(() => chain.close());
  assert.equal(chain.size, lostSize);
  assert.equal(toHex(chain.checkpoint!.root), toHex(lostRoot));
  // Appending continues the same chain, so gw-keep accepts the new blocks.
  node.attachChain(chain);
  await chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  await untilReplicated(nb, origin(a), lostSize + 1);
  assert.equal(nb.blocked.size, 0);
});
