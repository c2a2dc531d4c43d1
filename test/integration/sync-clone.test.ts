/**
 * Two running copies of one gateway identity (a copied data folder), over real MQTT on
 * 127.0.0.1, each with its embedded broker: gw-c's copy appends events of its own, its peers
 * replicate that fork, and then the real gw-c appends other events. Two checkpoints signed with
 * gw-c's key that cannot both be true must become evidence (not an endless "did not prove
 * extends"), the peers refuse gw-c and say so, and gw-c itself learns its key is used elsewhere.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { chainOrigin, Chain } from '../../ledger/chain.js';
import { LedgerStore } from '../../ledger/store.js';
import { decodeEvidence, verifyEvidence } from '../../ledger/evidence.js';
import { Broker } from '../../gateway/broker/broker.js';
import { gatewayCredentialVerifier } from '../../gateway/broker/credentials.js';
import { clearRefusedChain, listRefusedChains } from '../../gateway/sync/flags.js';
import { SyncNode, type SyncRefusal } from '../../gateway/sync/node.js';
import { signStatement } from '../../ledger/roster.js';
import { waitForEvent, waitUntil } from '../support/wait.js';
import { enrollLock, makeSite, tempDir } from '../support/site.js';
import { appendEvents, makeGateway, startSync, untilReplicated, type TestGateway } from '../support/sync.js';

const site = makeSite('clone-site');
const C = chainOrigin(site.siteId, 'gw-c');

/** A second gateway process image: gw-c's data folder copied while it was stopped, with its own broker. */
async function cloneOf(t: Parameters<typeof makeGateway>[0], c: TestGateway): Promise<TestGateway> {
  await c.node?.stop();
  c.node = undefined;
  await c.chain.close();
  await c.store.close();
  const dir = await tempDir(t, 'oti-sync-gw-c-copy-');
  await cp(join(c.dir, 'ledger'), join(dir, 'ledger'), { recursive: true });
  c.store = await LedgerStore.open(join(c.dir, 'ledger'));
  c.chain = await Chain.open({ store: c.store, trust: site.trust, gatewayId: c.id, key: c.key, genesis: c.enrolment });
  const store = await LedgerStore.open(join(dir, 'ledger'));
  const chain = await Chain.open({ store, trust: site.trust, gatewayId: c.id, key: c.key, genesis: c.enrolment });
  const g: TestGateway = { id: c.id, key: c.key, enrolment: c.enrolment, dir, store, chain, broker: undefined, node: undefined, url: undefined };
  const broker = await Broker.start({
    site: site.siteId,
    host: '127.0.0.1',
    port: 0,
    allowAnonymous: false,
    maxMessageBytes: 512 * 1024,
    rateLimit: { messagesPerSecond: 2000, burst: 2000 },
    verifyGatewayCredential: gatewayCredentialVerifier({ trust: site.trust, isRefused: (gw, k) => g.node?.isRefusedGateway(gw, k) ?? false }),
  });
  g.broker = broker;
  (g as { url: string }).url = `mqtt://127.0.0.1:${broker.port}`;
  t.after(async () => {
    await g.node?.stop();
    await broker.close();
    await chain.close().catch(() => undefined);
    await store.close().catch(() => undefined);
  });
  return g;
}

void test('a cloned gateway: the fork becomes evidence, the site refuses gw-c, and gw-c learns it was copied', async (t) => {
  const a = await makeGateway(t, site, 'gw-a');
  const b = await makeGateway(t, site, 'gw-b');
  const c = await makeGateway(t, site, 'gw-c');
  const lock = enrollLock(site, 'lock-c');
  await appendEvents(c, lock, 30);
  const urls = [a.url!, b.url!, c.url!];
  const logged: { msg: string; peer?: string; code?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged.push(JSON.parse(chunk.toString('utf8')) as (typeof logged)[number]);
      done();
    },
  });
  const na = await startSync(a, site, urls, { logger: pino({ level: 'warn' }, sink) });
  const nb = await startSync(b, site, urls);
  await startSync(c, site, urls);
  await untilReplicated(na, C, c.chain.size);
  await untilReplicated(nb, C, c.chain.size);
  const shared = c.chain.size;

  // The copy runs first: it appends a few events, which the peers replicate (a fork of gw-c).
  const copy = await cloneOf(t, c);
  const all = [...urls, copy.url!];
  const refusedA: SyncRefusal[] = [];
  na.on('refused', (r) => refusedA.push(r));
  const nCopy = await startSync(copy, site, all);
  for (const n of [na, nb]) await n.addBroker(copy.url!);
  await appendEvents(copy, lock, 5);
  await untilReplicated(na, C, copy.chain.size);
  await untilReplicated(nb, C, copy.chain.size);
  assert.equal((await na.replica(C)).size, shared + 5);

  // Then the real gw-c comes back and appends 20 others in one block: its tree at shared + 5 differs.
  const nc = await startSync(c, site, all);
  await appendEvents(c, lock, 20);
  assert.equal(c.chain.size, shared + 20);

  const flagged = (n: typeof na): boolean => n.peerViews().some((p) => p.gateway === 'gw-c' && p.state === 'equivocated' && p.evidence !== null);
  await waitForEvent(na, ['evidence', 'peers'], 'gw-a refuses gw-c with evidence', () => flagged(na));
  await waitForEvent(nb, ['evidence', 'peers'], 'gw-b refuses gw-c with evidence', () => flagged(nb));
  // Both copies of gw-c learn that its key signs elsewhere too.
  await waitForEvent(nc, ['evidence', 'peers'], 'the real gw-c knows it was copied', () => nc.compromised().includes('gw-c'));
  await waitForEvent(nCopy, ['evidence', 'peers'], 'the copy knows too', () => nCopy.compromised().includes('gw-c'));
  assert.deepEqual(na.compromised(), ['gw-c']);

  // The evidence is stored, verifies with gw-c's key, and names the two inconsistent checkpoints.
  for (const g of [a, b]) {
    const records = await g.store.listEvidence();
    assert.ok(records.length >= 1, `${g.id} stores the evidence`);
    const ev = decodeEvidence(records[0]!.record);
    assert.equal(ev.origin, C);
    assert.ok(verifyEvidence(ev, c.key.publicKey));
    const flags = await listRefusedChains(g.store);
    assert.deepEqual(flags.map((f) => f.origin), [C]);
    assert.ok(flags[0]!.reporter !== undefined && ['gw-a', 'gw-b', 'gw-c'].includes(flags[0]!.reporter));
  }
  const view = na.evidence().find((e) => e.origin === C)!;
  assert.equal(view.gateway, 'gw-c');
  assert.ok(view.refused);
  t.diagnostic(`evidence on gw-a: ${JSON.stringify(view)}`);
  // No endless loop of unprovable pulls: at most a few refusals of gw-c's ranges, not one per checkpoint.
  assert.ok(refusedA.filter((r) => r.code === 'ERR_PROOF_INVALID').length <= 3, `ERR_PROOF_INVALID refusals: ${refusedA.filter((r) => r.code === 'ERR_PROOF_INVALID').length}`);
  // gw-a and gw-b, unaffected, still count each other.
  assert.deepEqual(na.knownGateways().sort(), ['gw-a', 'gw-b']);

  // gw-c (both copies) keeps cosigning gw-a's chain: each cosignature is refused and counted, but
  // logged once (rate-limited), not once or twice per cosignature.
  const lockA = enrollLock(site, 'lock-a');
  const fromC = (): SyncRefusal[] => refusedA.filter((r) => r.peer === 'gw-c' && r.code === 'ERR_ROSTER');
  for (let round = 0; round < 4 && fromC().length < 4; round++) {
    const before = fromC().length;
    await appendEvents(a, lockA, 3);
    await waitForEvent(na, ['refused'], 'gw-c cosigns again and is refused', () => fromC().length > before);
  }
  assert.ok(fromC().length >= 4, `refusals of gw-c's cosignatures: ${fromC().length}`);
  const lines = logged.filter((l) => l.peer === 'gw-c' && l.code === 'ERR_ROSTER');
  assert.equal(lines.length, 1, `logged: ${lines.map((l) => l.msg).join(' | ')}`);
  assert.equal(na.peerViews().find((p) => p.gateway === 'gw-c')!.refusal!.count >= fromC().length, true);

  // The technician's path on gw-a: both copies of gw-c off the network, gw-c revoked in gw-a's
  // chain, gw-a stopped and its flag cleared (oti evidence clear). gw-b has not cleared yet: its
  // broker, and gw-a's, still retain the evidence. gw-a's sync starts before its chain is open
  // (the start-up waits there to recover its own chain): the revocation it stored counts already,
  // and the retained evidence does not refuse gw-c again, then or once the chain is attached.
  await c.node?.stop();
  await copy.node?.stop();
  await a.chain.append({ kind: 'roster', signed: c.enrolment });
  await a.chain.append({ kind: 'roster', signed: signStatement(site.site, { site: site.siteId, op: 'revoke', role: 'gateway', id: 'gw-c', key: c.key.publicKey, time: Date.now() }) });
  await na.stop();
  assert.equal(await clearRefusedChain(a.store, C), true);
  const seen: { origin?: string; reporter?: string }[] = [];
  const debugSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      seen.push(JSON.parse(chunk.toString('utf8')) as (typeof seen)[number]);
      done();
    },
  });
  const restarted = new SyncNode({ store: a.store, trust: site.trust, gatewayId: 'gw-a', key: a.key, enrolment: a.enrolment, brokers: [a.url!, b.url!], stallMs: 5000, logger: pino({ level: 'debug' }, debugSink) });
  a.node = restarted;
  await restarted.start();
  assert.equal(restarted.isRefusedGateway('gw-c', c.key.publicKey), true, 'gw-c, revoked in the stored chain, is refused before the chain is open');
  await waitUntil('the retained evidence against gw-c to reach the restarted gw-a', () => seen.some((l) => l.origin === C && l.reporter !== undefined));
  assert.deepEqual(restarted.compromised(), [], 'not refused again before the chain is open');
  assert.equal(restarted.peerViews().find((p) => p.gateway === 'gw-c')?.state, 'revoked');
  restarted.attachChain(a.chain);
  assert.deepEqual(restarted.compromised(), []);
  assert.equal(restarted.peerViews().find((p) => p.gateway === 'gw-c')?.state, 'revoked');
  assert.ok(restarted.evidence().some((e) => e.origin === C && !e.refused), 'the evidence stays stored, marked cleared');
});
