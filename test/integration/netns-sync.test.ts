/**
 * Three real gateway processes in three network namespaces joined by veth pairs and a bridge:
 * they find each other by real multicast mDNS, log in to each other's brokers with their signed
 * credentials and replicate every chain. One gateway's link is cut while all three ingest events
 * from simulated locks on ptys, then restored: every chain converges on every gateway and no
 * acknowledged event is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeSite, tempDir } from '../support/site.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { enrolledGateway } from '../support/enrolled-gateway.js';
import { isRunning, lockOn, nsGateway, replicaOf, startIn, stopIn, type NsGateway } from '../support/netns-site.js';
import { SimLock } from '../../drivers/simlock.js';
import type { SerialSimLink } from '../../drivers/simlink.js';
import { LedgerStore } from '../../ledger/store.js';
import { decodeEntry } from '../../ledger/entry.js';
import { verifyChain } from '../../ledger/verify.js';
import { waitUntil } from '../support/wait.js';

const N = 3;

/** Replication across namespaces can take a while: a longer bound than wait.ts's default. */
const REPLICATION_MS = 90_000;

const skip = await netnsUnavailable();

void test('three gateways in network namespaces discover each other, sync, survive a cut link and converge', { skip: skip ?? false, timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-netns-sync-');
  const s = makeSite('netns-site');
  const topo: Topology = await createTopology(N);
  t.after(() => topo.destroy());
  const gws: NsGateway[] = [];
  const locks: SimLock[] = [];
  const links: SerialSimLink[] = [];
  for (let i = 0; i < N; i++) {
    // The installer's path: a bundle from the site authority, applied on the gateway; one lock
    // per gateway, enrolled in that gateway's chain.
    const g = await enrolledGateway(dir, s, `gw-${String.fromCharCode(97 + i)}`, { lock: `lock-${i}` });
    const gw = await nsGateway(t, dir, g, i, { sync: { recoverWaitMs: 0 } });
    gws.push(gw);
    const lock = new SimLock({ id: g.lock!.id, seed: g.lock!.key.seed, resendMs: 1000 });
    locks.push(lock);
    links.push(lockOn(t, gw, lock));
  }

  for (const gw of gws) startIn(topo, gw);
  for (const gw of gws) await waitUntil(`${gw.id} running`, () => isRunning(gw), REPLICATION_MS);
  for (const l of links) l.start();
  for (const l of locks) l.startAuto(20);

  // Each gateway finds the two others by multicast and holds a replica of their chains.
  const origin = (i: number): string => `oti/${s.siteId}/${gws[i]!.id}`;
  for (const [i, gw] of gws.entries()) {
    for (let j = 0; j < N; j++) if (j !== i) await waitUntil(`${gw.id} replicates ${origin(j)}`, () => replicaOf(gw, origin(j)) > 2, REPLICATION_MS);
  }

  // Cut gw-c off while everyone keeps ingesting, then plug it back in.
  await topo.cut(2);
  const cutAt = locks.map((l) => l.counter);
  await sleep(4000);
  await topo.restore(2);
  await waitUntil('events recorded after the cut', () => locks.every((l, i) => l.counter > (cutAt[i] as number) + 40), REPLICATION_MS);
  for (const l of locks) l.stopAuto();
  await waitUntil('every event acknowledged', () => locks.every((l) => l.pending === 0), REPLICATION_MS);

  // Stop all three cleanly once every replica has caught up with every chain's last block.
  await sleep(1000);
  // Wait until, for every origin, all replicas report the same (largest) size.
  const report = (): string =>
    gws.map((gw, i) => `${gw.id}: ${Array.from({ length: N }, (_, j) => (j === i ? '' : `${origin(j)}=${replicaOf(gw, origin(j))}`)).join(' ')} | ${gw.logs.filter((l) => String(l['part']) === 'sync' || l.msg.includes('sync')).slice(-4).map((l) => l.msg).join(' / ')}`).join('\n');
  let done = false;
  t.after(() => {
    if (!done) t.diagnostic(report());
  });
  await waitUntil(
    'all replicas converge',
    () => {
      for (let j = 0; j < N; j++) {
        // Every peer holds the same size, and at least every event lock j had acknowledged
        // (plus the gateway's enrolment and the lock's).
        const sizes = gws.flatMap((gw, i) => (i === j ? [] : [replicaOf(gw, origin(j))]));
        if (sizes.some((x) => x !== sizes[0]) || (sizes[0] as number) < (locks[j] as SimLock).acked.size + 2) return false;
      }
      return true;
    },
    120_000,
  );
  await Promise.all(gws.map(stopIn));

  // Every gateway holds every chain, identical and verified, with every acknowledged event.
  const heads: Map<string, string>[] = [];
  for (const gw of gws) {
    const store = await LedgerStore.open(join(gw.dataDir, 'ledger'));
    try {
      const seen = new Map<string, string>();
      for (let j = 0; j < N; j++) {
        const cs = await store.chain(origin(j), j === gws.indexOf(gw) ? 'self' : 'peer');
        await verifyChain(cs, { trust: s.trust });
        const block = await cs.block(cs.head.n);
        seen.set(origin(j), `${cs.head.size}:${Buffer.from(block.header.root).toString('hex')}`);
        if (j === gws.indexOf(gw)) {
          const lock = locks[j] as SimLock;
          const ctrs = new Set<number>();
          for (let k = 0; k < cs.head.size; k++) {
            const b = decodeEntry(await cs.entry(k)).body;
            if (b.kind === 'lock-event') ctrs.add(b.event.ctr);
          }
          for (const ctr of lock.acked.keys()) assert.ok(ctrs.has(ctr), `${lock.id}:${ctr} acknowledged and stored`);
        }
      }
      heads.push(seen);
    } finally {
      await store.close();
    }
  }
  for (let j = 0; j < N; j++) {
    const views = heads.map((h) => h.get(origin(j)));
    assert.ok(views.every((v) => v === views[0]), `every gateway holds the same ${origin(j)}: ${views.join(' ')}`);
  }
  done = true;
});
