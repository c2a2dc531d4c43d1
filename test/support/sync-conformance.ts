/**
 * The sync conformance suite: the same cases against any network a SyncNode can run on
 * (test/support/sync-nets.ts): the in-memory pipe (test/unit/sync-pipe.test.ts) and real aedes
 * brokers over TCP (test/integration/sync-conformance.test.ts). Gateways are whole (LevelDB
 * store, chain, SyncNode) in one process; faults are injected on the messages a node receives.
 * Every wait is for an outcome, with a generous bound.
 */
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { decodeBlockHeader } from '../../ledger/block.js';
import { Chain, chainOrigin } from '../../ledger/chain.js';
import { toHex, type KeyPair } from '../../ledger/crypto.js';
import { decodeEvidence, verifyEvidence } from '../../ledger/evidence.js';
import type { SignedStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { verifyChain } from '../../ledger/verify.js';
import { SyncNode, type SyncOptions, type SyncProgress, type SyncRefusal } from '../../gateway/sync/node.js';
import { listRefusedChains } from '../../gateway/sync/flags.js';
import { RANGE_OVERHEAD_BYTES, decodeRange } from '../../gateway/sync/wire.js';
import { enrollGateway, enrollLock, makeSite, signedEvent, tempDir, type TestLock, type TestSite } from './site.js';
import { untilReplicated } from './sync.js';
import { waitForEvent, waitUntil } from './wait.js';
import type { NetMessage, SyncNet, SyncNetFactory } from './sync-nets.js';

/** Smallest range message a node may send: a long window takes several messages. */
const SMALL_MESSAGES = RANGE_OVERHEAD_BYTES + 16 * 1024;
const STALL_MS = 1000;

interface Gw {
  readonly id: string;
  /** The node's name on the network (a copy of a gateway runs under another name). */
  readonly name: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  readonly dir: string;
  store: LedgerStore;
  chain: Chain;
  node: SyncNode | undefined;
  readonly url: string;
}

interface Fixture {
  readonly net: SyncNet;
  readonly site: TestSite;
  gateway(id: string): Promise<Gw>;
  start(g: Gw, brokers: readonly string[], extra?: Partial<SyncOptions>): Promise<SyncNode>;
  /** A copy of `g`'s data folder running as a second gateway with the same identity (and its own broker). */
  clone(g: Gw): Promise<Gw>;
  /**
   * `g` re-flashed: its node stopped, an empty data folder, a started SyncNode with its identity
   * and name (so on the same links) and no chain attached, as before recovery.
   */
  reflash(g: Gw, brokers: readonly string[], extra?: Partial<SyncOptions>): Promise<{ store: LedgerStore; node: SyncNode }>;
}

async function fixture(t: TestContext, factory: SyncNetFactory, siteId: string): Promise<Fixture> {
  const site = makeSite(siteId);
  const nodes = new Map<string, SyncNode>();
  const net = await factory(t, site, nodes);
  const open = async (id: string, name: string, key: KeyPair, enrolment: SignedStatement, dir: string): Promise<Gw> => {
    const store = await LedgerStore.open(join(dir, 'ledger'));
    const chain = await Chain.open({ store, trust: site.trust, gatewayId: id, key, genesis: enrolment });
    const g: Gw = { id, name, key, enrolment, dir, store, chain, node: undefined, url: await net.broker(name) };
    t.after(async () => {
      await g.node?.stop();
      await g.chain.close().catch(() => undefined);
      await g.store.close().catch(() => undefined);
    });
    return g;
  };
  return {
    net,
    site,
    gateway: async (id) => {
      const { key, statement } = enrollGateway(site, id);
      return open(id, id, key, statement, await tempDir(t, `oti-conf-${id}-`));
    },
    start: async (g, brokers, extra = {}) => {
      await g.node?.stop();
      await net.join(g.name, brokers);
      const node = new SyncNode({ store: g.store, trust: site.trust, gatewayId: g.id, key: g.key, enrolment: g.enrolment, brokers, stallMs: STALL_MS, ...net.options(g.name), ...extra });
      g.node = node;
      nodes.set(g.name, node);
      await node.start();
      node.attachChain(g.chain);
      return node;
    },
    clone: async (g) => {
      await g.node?.stop();
      g.node = undefined;
      await g.chain.close();
      await g.store.close();
      const dir = await tempDir(t, `oti-conf-${g.id}-copy-`);
      await cp(join(g.dir, 'ledger'), join(dir, 'ledger'), { recursive: true });
      g.store = await LedgerStore.open(join(g.dir, 'ledger'));
      g.chain = await Chain.open({ store: g.store, trust: site.trust, gatewayId: g.id, key: g.key, genesis: g.enrolment });
      return open(g.id, `${g.name}-copy`, g.key, g.enrolment, dir);
    },
    reflash: async (g, brokers, extra = {}) => {
      await g.node?.stop();
      g.node = undefined;
      await g.chain.close();
      await g.store.close();
      const store = await LedgerStore.open(join(await tempDir(t, `oti-conf-${g.id}-reflashed-`), 'ledger'));
      t.after(() => store.close());
      const node = new SyncNode({ store, trust: site.trust, gatewayId: g.id, key: g.key, enrolment: g.enrolment, brokers, stallMs: STALL_MS, ...net.options(g.name), ...extra });
      t.after(() => node.stop());
      nodes.set(g.name, node);
      await node.start();
      return { store, node };
    },
  };
}

/** Appends `n` events of `lock` in blocks of at most `block` entries. */
async function append(g: Gw, lock: TestLock, n: number, block = 100): Promise<void> {
  if (g.chain.roster.get('lock', lock.id) === undefined) await g.chain.append({ kind: 'roster', signed: lock.statement });
  for (let done = 0; done < n; ) {
    const k = Math.min(block, n - done);
    await Promise.all(Array.from({ length: k }, () => g.chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true })));
    done += k;
  }
}

function originOf(f: Fixture, g: Gw): string {
  return chainOrigin(f.site.siteId, g.id);
}

async function assertSameChain(f: Fixture, holder: Gw, of: Gw): Promise<void> {
  const r = await holder.node!.replica(originOf(f, of));
  assert.equal(r.size, of.chain.size);
  assert.equal(toHex(r.checkpoint!.root), toHex(of.chain.checkpoint!.root));
  const report = await verifyChain(r, { trust: f.site.trust });
  assert.equal(report.entries, of.chain.size);
}

const isRange = (m: NetMessage, to: string): boolean => m.to === to && m.topic.includes('/range/');
const isRequest = (m: NetMessage, to: string): boolean => m.to === to && m.topic.includes('/req/');
/** Lets deliveries already scheduled (one macrotask each) happen. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

/** Registers the suite's cases for one network. */
export function syncConformance(label: string, factory: SyncNetFactory): void {
  const it = (name: string, body: (t: TestContext, f: Fixture) => Promise<void>): void => {
    void test(`${label}: ${name}`, async (t) => body(t, await fixture(t, factory, 'conf-site')));
  };

  it('two gateways replicate each other and each confirms the other’s cosignature', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const b = await f.gateway('gw-b');
    await append(a, enrollLock(f.site, 'lock-a'), 300);
    await append(b, enrollLock(f.site, 'lock-b'), 200);
    const urls = [a.url, b.url];
    const na = await f.start(a, urls);
    const nb = await f.start(b, urls);
    await untilReplicated(na, originOf(f, b), b.chain.size);
    await untilReplicated(nb, originOf(f, a), a.chain.size);
    await assertSameChain(f, a, b);
    await assertSameChain(f, b, a);
    for (const [n, g] of [[na, a], [nb, b]] as const) {
      await waitForEvent(n.coverage, ['coverage'], `${g.id} confirmed`, () => n.coverage.confirmedSize >= g.chain.size);
    }
    assert.deepEqual(na.coverage.witnesses().map((w) => w.witness), ['gw-b']);
    await append(a, enrollLock(f.site, 'lock-a2'), 50);
    await untilReplicated(nb, originOf(f, a), a.chain.size);
    await assertSameChain(f, b, a);
  });

  it('three gateways replicate every chain; confirmation needs two of three', async (_t, f) => {
    const gws = [await f.gateway('gw-1'), await f.gateway('gw-2'), await f.gateway('gw-3')];
    const urls = gws.map((g) => g.url);
    for (const [i, g] of gws.entries()) await append(g, enrollLock(f.site, `lock-${i}`), 100 + 50 * i);
    for (const g of gws) await f.start(g, urls);
    for (const holder of gws) for (const of of gws) if (holder !== of) await untilReplicated(holder.node!, originOf(f, of), of.chain.size);
    for (const holder of gws) for (const of of gws) if (holder !== of) await assertSameChain(f, holder, of);
    for (const g of gws) {
      assert.equal(g.node!.quorum, 2);
      await waitForEvent(g.node!.coverage, ['coverage'], `${g.id} confirmed`, () => g.node!.coverage.confirmedSize >= g.chain.size);
    }
  });

  it('a long chain is caught up window by window, with progress', async (_t, f) => {
    const a = await f.gateway('gw-src');
    const c = await f.gateway('gw-late');
    await append(a, enrollLock(f.site, 'lock-long'), 3000);
    const urls = [a.url, c.url];
    let requests = 0;
    f.net.fault((m) => {
      if (isRequest(m, 'gw-src') && m.topic.endsWith('/gw-late')) requests++;
      return 'deliver';
    });
    await f.start(a, urls);
    const progress: SyncProgress[] = [];
    const nc = await f.start(c, urls, { windowEntries: 500 });
    nc.on('progress', (p) => progress.push(p));
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    await assertSameChain(f, c, a);
    assert.ok(requests >= 5, `requests: ${requests}`);
    assert.ok(progress.length >= 5, `progress events: ${progress.length}`);
    for (const [i, p] of progress.entries()) {
      assert.equal(p.remaining, a.chain.size - p.size);
      assert.ok(p.entriesPerSecond >= 0);
      if (i > 0) assert.ok(p.size > progress[i - 1]!.size);
    }
    assert.equal(progress.at(-1)!.size, a.chain.size);
  });

  it('a peer that restarts mid-way resumes from what it stored', async (_t, f) => {
    const a = await f.gateway('gw-src');
    const c = await f.gateway('gw-late');
    await append(a, enrollLock(f.site, 'lock-long'), 2000);
    const urls = [a.url, c.url];
    // The third range message and all after it are held: the first session stops with part of the chain.
    let ranges = 0;
    const removeHold = f.net.fault((m) => (isRange(m, 'gw-late') && ++ranges >= 3 ? 'hold' : 'deliver'));
    await f.start(a, urls);
    const nc = await f.start(c, urls, { windowEntries: 500 });
    await waitUntil('the first session to store part of the chain and be held', async () => ranges >= 3 && (await nc.replica(originOf(f, a))).size > 0);
    await nc.stop();
    const stored = (await nc.replica(originOf(f, a))).size;
    assert.ok(stored > 0 && stored < a.chain.size, `stored ${stored} of ${a.chain.size}`);
    removeHold();
    const second: SyncProgress[] = [];
    const nc2 = await f.start(c, urls, { windowEntries: 500 });
    nc2.on('progress', (p) => second.push(p));
    f.net.release(); // to the stopped session: dropped
    await untilReplicated(nc2, originOf(f, a), a.chain.size);
    assert.ok(second.length > 0 && second.every((p) => p.size > stored), `resumed from ${stored}: ${second.map((p) => p.size).join(',')}`);
    await assertSameChain(f, c, a);
  });

  it('a link cut mid-pull and restored: the pull resumes from what is stored', async (_t, f) => {
    const a = await f.gateway('gw-src');
    const c = await f.gateway('gw-late');
    await append(a, enrollLock(f.site, 'lock-long'), 2000);
    const urls = [a.url, c.url];
    let ranges = 0;
    let cutAt: number | undefined;
    f.net.fault((m) => {
      if (!isRange(m, 'gw-late') || ++ranges !== 3) return 'deliver';
      for (const u of urls) f.net.cut(u, 'gw-late');
      cutAt = ranges;
      return 'drop';
    });
    await f.start(a, urls);
    const nc = await f.start(c, urls, { windowEntries: 500 });
    await waitUntil('the cut', () => cutAt !== undefined);
    const atCut = (await nc.replica(originOf(f, a))).size;
    assert.ok(atCut < a.chain.size, `cut at ${atCut} of ${a.chain.size}`);
    for (const u of urls) f.net.restore(u, 'gw-late');
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    await assertSameChain(f, c, a);
  });

  it('a re-flashed gateway recovers its own chain over another link when the one it started on is cut', async (_t, f) => {
    const r = await f.gateway('gw-r');
    const keep = await f.gateway('gw-keep');
    await append(r, enrollLock(f.site, 'lock-r'), 2000);
    const urls = [r.url, keep.url];
    await f.start(r, urls);
    const nk = await f.start(keep, urls);
    await untilReplicated(nk, originOf(f, r), r.chain.size);
    const lost = r.chain.size;
    const lostRoot = toHex(r.chain.checkpoint!.root);
    // The second range message of the own chain cuts the link it came on, for good.
    let ownRanges = 0;
    let cut: string | undefined;
    f.net.fault((m) => {
      if (!isRange(m, 'gw-r') || decodeRange(m.payload, 1 << 20).chain !== originOf(f, r) || ++ownRanges !== 2) return 'deliver';
      cut = m.broker;
      f.net.cut(m.broker, 'gw-r');
      return 'drop';
    });
    const { store, node } = await f.reflash(r, urls, { windowEntries: 500 });
    const got = await node.recoverOwnChain({ timeoutMs: 60_000, settleMs: 500 });
    assert.ok(cut !== undefined, 'a link was cut during the recovery');
    assert.deepEqual(got, { before: 0, after: lost, peers: ['gw-keep'], answered: ['gw-keep'] });
    const chain = await Chain.open({ store, trust: f.site.trust, gatewayId: r.id, key: r.key, genesis: r.enrolment });
    assert.equal(chain.size, lost);
    assert.equal(toHex(chain.checkpoint!.root), lostRoot);
    await chain.close();
  });

  it('duplicated range messages are dropped unread', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const c = await f.gateway('gw-c');
    await append(a, enrollLock(f.site, 'lock-a'), 1000);
    const urls = [a.url, c.url];
    let duplicated = 0;
    f.net.fault((m) => (isRange(m, 'gw-c') ? (duplicated++, 'duplicate') : 'deliver'));
    await f.start(a, urls);
    const refused: SyncRefusal[] = [];
    // Windows that fit one message each: every copy arrives once its window has ended.
    const nc = await f.start(c, urls, { windowEntries: 200 });
    nc.on('refused', (r) => refused.push(r));
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    await settle();
    assert.ok(duplicated >= 4, `duplicated: ${duplicated}`);
    assert.deepEqual(refused.filter((r) => r.code !== 'ERR_SYNC_STALE'), []);
    await assertSameChain(f, c, a);
  });

  it('reordered range messages are refused, nothing is stored out of order, and the pull is tried again', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const c = await f.gateway('gw-c');
    await append(a, enrollLock(f.site, 'lock-a'), 1000);
    const urls = [a.url, c.url];
    let held = 0;
    const remove = f.net.fault((m) => {
      if (!isRange(m, 'gw-c')) return 'deliver';
      held++;
      if (held === 2)
        setImmediate(() => {
          remove();
          f.net.release('reverse');
        });
      return 'hold';
    });
    await f.start(a, urls, { maxMessageBytes: SMALL_MESSAGES });
    const refused: { r: SyncRefusal; stored: number }[] = [];
    const nc = await f.start(c, urls, { windowEntries: 500 });
    const replica = await nc.replica(originOf(f, a));
    nc.on('refused', (r) => refused.push({ r, stored: replica.size }));
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    const invalid = refused.filter((x) => x.r.code === 'ERR_BLOCK_INVALID');
    assert.equal(invalid.length, 1, JSON.stringify(refused));
    assert.equal(invalid[0]!.r.peer, 'gw-a');
    assert.equal(invalid[0]!.stored, 0, 'nothing stored from the reordered window');
    await assertSameChain(f, c, a);
  });

  it('range messages that arrive together are stored together; one that does not follow: what came before it is stored, then the refusal', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const c = await f.gateway('gw-c');
    await append(a, enrollLock(f.site, 'lock-a'), 1000, 50);
    const urls = [a.url, c.url];
    // The first request's range messages are held to its last, then delivered at once in order,
    // the fourth lost: the first is stored (the pull waits for it), the second and third come in
    // while it is, and the fifth does not follow the third.
    let first: number | undefined;
    let ranges = 0;
    let storedBefore = 0;
    const remove = f.net.fault((m) => {
      if (!isRange(m, 'gw-c')) return 'deliver';
      const r = decodeRange(m.payload, 1 << 20);
      first ??= r.id;
      if (r.id !== first) return 'deliver';
      ranges++;
      if (ranges <= 3) for (const b of r.blocks) storedBefore += decodeBlockHeader(b.h).count;
      if (r.end)
        setImmediate(() => {
          remove();
          f.net.release();
        });
      return ranges === 4 ? 'drop' : 'hold';
    });
    await f.start(a, urls, { maxMessageBytes: SMALL_MESSAGES });
    const nc = await f.start(c, urls, { windowEntries: 1000 });
    const replica = await nc.replica(originOf(f, a));
    const refused: { r: SyncRefusal; stored: number }[] = [];
    const progress: number[] = [];
    nc.on('refused', (r) => refused.push({ r, stored: replica.size }));
    nc.on('progress', (p) => refused.length === 0 && progress.push(p.size));
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    const invalid = refused.filter((x) => x.r.code === 'ERR_BLOCK_INVALID');
    assert.equal(invalid.length, 1, JSON.stringify(refused));
    assert.ok(storedBefore > 0 && storedBefore < a.chain.size, `blocks in the first three messages: ${storedBefore} entries`);
    assert.equal(invalid[0]!.stored, storedBefore, 'the blocks of the three messages before the gap are stored');
    assert.ok(progress.length < 3, `three messages stored in writes ending at ${progress.join(',')}`);
    await assertSameChain(f, c, a);
  });

  it('late range messages (their request ended) are dropped unread', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const c = await f.gateway('gw-c');
    await append(a, enrollLock(f.site, 'lock-a'), 500);
    const urls = [a.url, c.url];
    // The answers to the first request are held until a second request went out.
    let requests = 0;
    let held = 0;
    f.net.fault((m) => {
      if (isRequest(m, 'gw-a') && m.topic.endsWith('/gw-c')) requests++;
      if (isRange(m, 'gw-c') && requests < 2) return (held++, 'hold');
      return 'deliver';
    });
    await f.start(a, urls);
    const refused: SyncRefusal[] = [];
    const nc = await f.start(c, urls);
    nc.on('refused', (r) => refused.push(r));
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    assert.ok(held > 0);
    assert.equal(f.net.release(), held);
    await settle();
    assert.deepEqual(refused.filter((r) => r.code !== 'ERR_SYNC_STALE'), []);
    await assertSameChain(f, c, a);
  });

  // Regression (main 999b393): a pull that stalled while nothing of the chain was stored waited for
  // the next checkpoint, which an idle peer never sends. It is retried, on another connected link.
  it('a first request that is lost is retried on another connected link, with nothing stored yet', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const c = await f.gateway('gw-c');
    await append(a, enrollLock(f.site, 'lock-a'), 200);
    const urls = [a.url, c.url];
    const requests: string[] = [];
    f.net.fault((m) => {
      if (!isRequest(m, 'gw-a') || !m.topic.endsWith('/gw-c')) return 'deliver';
      requests.push(m.broker);
      return requests.length === 1 ? 'drop' : 'deliver';
    });
    await f.start(a, urls);
    const nc = await f.start(c, urls);
    await untilReplicated(nc, originOf(f, a), a.chain.size);
    assert.ok(requests.length >= 2, `requests: ${requests.length}`);
    assert.notEqual(requests[1], requests[0], 'the retry goes through the other broker');
    await assertSameChain(f, c, a);
  });

  it('an equivocating (cloned) gateway becomes evidence: the site refuses it and it learns it was copied', async (_t, f) => {
    const a = await f.gateway('gw-a');
    const b = await f.gateway('gw-b');
    const c = await f.gateway('gw-c');
    const lock = enrollLock(f.site, 'lock-c');
    await append(c, lock, 30);
    const urls = [a.url, b.url, c.url];
    const C = originOf(f, c);
    const na = await f.start(a, urls);
    const nb = await f.start(b, urls);
    await f.start(c, urls);
    await untilReplicated(na, C, c.chain.size);
    await untilReplicated(nb, C, c.chain.size);
    const shared = c.chain.size;
    // The copy runs first and appends 5 events, which the peers replicate: a fork of gw-c.
    const copy = await f.clone(c);
    const all = [...urls, copy.url];
    const nCopy = await f.start(copy, all);
    for (const [g, n] of [[a, na], [b, nb]] as const) {
      await f.net.join(g.name, [copy.url]);
      await n.addBroker(copy.url);
    }
    await append(copy, lock, 5, 5);
    await untilReplicated(na, C, shared + 5);
    await untilReplicated(nb, C, shared + 5);
    // The real gw-c comes back and appends 20 others in one block: its tree at shared + 5 differs.
    const nc = await f.start(c, all);
    await append(c, lock, 20, 20);
    const flagged = (n: SyncNode): boolean => n.peerViews().some((p) => p.gateway === 'gw-c' && p.state === 'equivocated' && p.evidence !== null);
    await waitForEvent(na, ['evidence', 'peers'], 'gw-a refuses gw-c with evidence', () => flagged(na));
    await waitForEvent(nb, ['evidence', 'peers'], 'gw-b refuses gw-c with evidence', () => flagged(nb));
    await waitForEvent(nc, ['evidence', 'peers'], 'the real gw-c knows it was copied', () => nc.compromised().includes('gw-c'));
    await waitForEvent(nCopy, ['evidence', 'peers'], 'the copy knows too', () => nCopy.compromised().includes('gw-c'));
    for (const g of [a, b]) {
      const records = await g.store.listEvidence();
      assert.ok(records.length >= 1, `${g.id} stores the evidence`);
      const ev = decodeEvidence(records[0]!.record);
      assert.equal(ev.origin, C);
      assert.ok(verifyEvidence(ev, c.key.publicKey));
      assert.deepEqual((await listRefusedChains(g.store)).map((x) => x.origin), [C]);
    }
    assert.deepEqual(na.compromised(), ['gw-c']);
    assert.deepEqual(na.knownGateways().sort(), ['gw-a', 'gw-b']);
  });
}
