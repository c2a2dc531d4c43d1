/**
 * Equivocation evidence received by a gateway that holds no copy of the accused chain (re-flashed,
 * or enrolled after the evidence was found): docs/SYNC.md §Equivocation. Whole gateways in one
 * process over the in-memory pipe (gateway/sync/transport-pipe.ts); the evidence is published as
 * a reporter would, on oti/<site>/evidence/<reporter>.
 *
 *  - evidence carrying the site-signed statement of the accused gateway's key is checked at once;
 *    a statement not signed by the site, or about another gateway, and checkpoints signed by
 *    another key are refused;
 *  - evidence without it waits for the key: the chain is fetched, checked against the evidence
 *    as soon as its first block is stored, and refused without ever being cosigned; forged
 *    evidence that waited is refused then, and the chain syncs as usual;
 *  - what waits is bounded per chain.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { Chain, chainOrigin } from '../../ledger/chain.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import { generateKeyPair, Signer, type KeyPair } from '../../ledger/crypto.js';
import { decodeEvidence, encodeEvidence, type Equivocation } from '../../ledger/evidence.js';
import { signStatement, type SignedStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { MAX_WAITING_PER_CHAIN } from '../../gateway/sync/evidence.js';
import { SyncNode, type SyncRefusal } from '../../gateway/sync/node.js';
import { PipeNetwork } from '../../gateway/sync/transport-pipe.js';
import { enrollGateway, enrollLock, makeSite, signedEvent, tempDir, type TestSite } from '../support/site.js';
import { waitForEvent, waitUntil } from '../support/wait.js';

interface Gw {
  readonly id: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  readonly url: string;
  readonly chain: Chain;
  readonly store: LedgerStore;
}

interface Rig {
  readonly site: TestSite;
  readonly net: PipeNetwork;
  gateway(id: string): Promise<Gw>;
  start(g: Gw, brokers: readonly string[]): SyncNode;
  /** Publishes `payload` retained on `url` as gateway `reporter`'s evidence. */
  publish(url: string, reporter: string, payload: Uint8Array): void;
}

function rig(t: TestContext): Rig {
  const site = makeSite('ev-site');
  const net = new PipeNetwork();
  return {
    site,
    net,
    gateway: async (id) => {
      const { key, statement } = enrollGateway(site, id);
      const store = await LedgerStore.open(join(await tempDir(t, `oti-ev-${id}-`), 'ledger'));
      const chain = await Chain.open({ store, trust: site.trust, gatewayId: id, key, genesis: statement });
      t.after(async () => {
        await chain.close().catch(() => undefined);
        await store.close().catch(() => undefined);
      });
      const url = `pipe://${id}`;
      net.addBroker(url);
      return { id, key, enrolment: statement, url, chain, store };
    },
    start: (g, brokers) => {
      const node = new SyncNode({ store: g.store, trust: site.trust, gatewayId: g.id, key: g.key, enrolment: g.enrolment, brokers, stallMs: 1000, transport: net.transport(g.id), logger: pino({ level: 'warn' }, sink) });
      t.after(() => node.stop());
      return node;
    },
    publish: (url, reporter, payload) => {
      net.publish(net.reachable(url, reporter)!, reporter, `oti/${site.siteId}/evidence/${reporter}`, Buffer.from(payload), true);
    },
  };
}

/** Log lines of every node, for the waits on what is only logged. */
const logged: { msg: string; origin?: string }[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    logged.push(JSON.parse(chunk.toString('utf8')) as (typeof logged)[number]);
    done();
  },
});

/** Two checkpoints of `origin` at one size with different roots, signed with `key`: equivocation. */
function equivocation(origin: string, key: KeyPair, statement?: SignedStatement): Equivocation {
  const signer = new Signer(key.seed);
  const cp = (): ReturnType<typeof signCheckpoint> => signCheckpoint({ origin, size: 5, root: randomBytes(32), block: 1, blockHash: randomBytes(32) }, signer, origin);
  return { origin, a: cp(), b: cp(), ...(statement !== undefined ? { statement } : {}) };
}

async function started(node: SyncNode): Promise<SyncNode> {
  await node.start();
  return node;
}

void test('evidence carrying the statement of the gateway key is checked at once by a gateway that holds no copy of the chain', async (t) => {
  const r = rig(t);
  const c = await r.gateway('gw-c');
  const d = await r.gateway('gw-d');
  const C = chainOrigin(r.site.siteId, 'gw-c');
  const nd = await started(r.start(d, [d.url]));
  nd.attachChain(d.chain);
  const refused: SyncRefusal[] = [];
  nd.on('refused', (x) => refused.push(x));

  // Forged: the statement signed by a key that is not the site's; a statement of another
  // gateway; checkpoints signed by another key than the statement gives.
  const notSite = signStatement(new Signer(generateKeyPair().seed), { site: r.site.siteId, op: 'enroll', role: 'gateway', id: 'gw-c', key: c.key.publicKey, time: 1 });
  r.publish(d.url, 'gw-x', encodeEvidence(equivocation(C, c.key, notSite)));
  r.publish(d.url, 'gw-y', encodeEvidence(equivocation(C, c.key, d.enrolment)));
  r.publish(d.url, 'gw-z', encodeEvidence(equivocation(C, generateKeyPair(), c.enrolment)));
  await waitForEvent(nd, 'refused', 'the three forged ones refused', () => refused.length >= 3);
  assert.deepEqual(refused.map((x) => `${x.peer} ${x.code}`).sort(), ['gw-x ERR_ROSTER', 'gw-y ERR_ROSTER', 'gw-z ERR_PROOF_INVALID']);
  assert.deepEqual(nd.compromised(), []);

  r.publish(d.url, 'gw-a', encodeEvidence(equivocation(C, c.key, c.enrolment)));
  await waitForEvent(nd, ['evidence'], 'gw-d refuses gw-c', () => nd.compromised().includes('gw-c'));
  assert.equal(nd.peerViews().find((p) => p.gateway === 'gw-c')?.state, 'equivocated');
  const stored = decodeEvidence((await d.store.listEvidence())[0]!.record);
  assert.equal(stored.statement?.statement.id, 'gw-c', 'stored as received, statement included');
  assert.equal(refused.length, 3);
});

void test('evidence without the statement waits for the key: the chain is checked as its first block is stored, and never cosigned', async (t) => {
  const r = rig(t);
  const c = await r.gateway('gw-c');
  const d = await r.gateway('gw-d');
  const C = chainOrigin(r.site.siteId, 'gw-c');
  const lock = enrollLock(r.site, 'lock-c');
  await c.chain.append({ kind: 'roster', signed: lock.statement });
  for (let i = 0; i < 20; i++) await c.chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true });
  const nd = await started(r.start(d, [d.url, c.url]));
  nd.attachChain(d.chain);
  const refused: SyncRefusal[] = [];
  nd.on('refused', (x) => refused.push(x));

  r.publish(d.url, 'gw-a', encodeEvidence(equivocation(C, c.key)));
  await waitUntil('gw-d keeps the evidence it cannot check yet', () => logged.some((l) => l.origin === C && l.msg.includes('cannot be checked yet')));
  assert.deepEqual(nd.compromised(), []);
  assert.deepEqual(refused, [], 'not refused: it waits');

  // gw-c comes online, linked to its own broker only (one linked to gw-d's would get the evidence
  // too and refuse to serve its chain): gw-d fetches the chain, learns the key from its first
  // block, and refuses it.
  const nc = await started(r.start(c, [c.url]));
  nc.attachChain(c.chain);
  await waitForEvent(nd, ['evidence'], 'gw-d refuses gw-c once the key is known', () => nd.compromised().includes('gw-c'));
  assert.equal(nd.evidence()[0]?.reporter, 'gw-a');
  assert.equal(nd.peerViews().find((p) => p.gateway === 'gw-c')?.state, 'equivocated');
  for (const url of [c.url, d.url]) assert.equal(r.net.retainedOn(url, `oti/${r.site.siteId}/chain/gw-c/cosig/gw-d`), undefined, 'gw-d never cosigned gw-c');
  assert.ok((await nd.replica(C)).size > 0, 'the copy fetched meanwhile is kept, refused');
  assert.ok(r.net.retainedOn(c.url, `oti/${r.site.siteId}/evidence/gw-d`) !== undefined, 'and passes the evidence on');
});

void test('forged evidence that waited is refused once the key is known, and the chain syncs as usual', async (t) => {
  const r = rig(t);
  const c = await r.gateway('gw-c');
  const d = await r.gateway('gw-d');
  const C = chainOrigin(r.site.siteId, 'gw-c');
  const nd = await started(r.start(d, [d.url, c.url]));
  nd.attachChain(d.chain);
  const refused: SyncRefusal[] = [];
  nd.on('refused', (x) => refused.push(x));

  // Distinct evidence from several reporters: a few wait, the rest are refused at once.
  const forger = generateKeyPair();
  for (let i = 0; i <= MAX_WAITING_PER_CHAIN; i++) r.publish(d.url, `gw-${i}`, encodeEvidence(equivocation(C, forger)));
  await waitForEvent(nd, 'refused', 'one beyond the bound refused', () => refused.length >= 1);
  await waitUntil('the others kept', () => logged.filter((l) => l.origin === C && l.msg.includes('cannot be checked yet')).length >= MAX_WAITING_PER_CHAIN);
  assert.equal(refused.length, 1);
  assert.equal(refused[0]!.code, 'ERR_PROOF_INVALID');

  const nc = await started(r.start(c, [c.url]));
  nc.attachChain(c.chain);
  await waitForEvent(nd, 'refused', 'the waiting ones refused once gw-c\'s key is known', () => refused.length >= MAX_WAITING_PER_CHAIN + 1);
  assert.deepEqual(refused.map((x) => `${x.peer} ${x.code}`).sort(), Array.from({ length: MAX_WAITING_PER_CHAIN + 1 }, (_, i) => `gw-${i} ERR_PROOF_INVALID`));
  await waitUntil('gw-d cosigns gw-c\'s chain', () => r.net.retainedOn(d.url, `oti/${r.site.siteId}/chain/gw-c/cosig/gw-d`) !== undefined);
  assert.deepEqual(nd.compromised(), []);
  assert.equal((await nd.replica(C)).size, c.chain.size);
});
