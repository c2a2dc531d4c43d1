/**
 * Three real gateway processes in three network namespaces joined by veth pairs and a bridge:
 * they find each other by real multicast mDNS, log in to each other's brokers with their signed
 * credentials and replicate every chain. One gateway's link is cut while all three ingest events
 * from simulated locks on ptys, then restored: every chain converges on every gateway and no
 * acknowledged event is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { makeSite, tempDir } from '../support/site.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { createBundle, applyBundle } from '../../gateway/config/bundle.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { generateKeyPair } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { decodeEntry } from '../../ledger/entry.js';
import { verifyChain } from '../../ledger/verify.js';
import { waitUntil } from '../support/wait.js';
import { writeGatewayConfig } from '../support/gateway-process.js';

const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'gateway', 'main.js');
const N = 3;

interface Gw {
  readonly id: string;
  readonly dataDir: string;
  readonly config: string;
  proc?: ChildProcess;
  readonly logs: { msg: string; [k: string]: unknown }[];
}

/** Replication across namespaces can take a while: a longer bound than wait.ts's default. */
const REPLICATION_MS = 90_000;

const skip = await netnsUnavailable();

void test('three gateways in network namespaces discover each other, sync, survive a cut link and converge', { skip: skip ?? false, timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-netns-sync-');
  const s = makeSite('netns-site');
  const topo: Topology = await createTopology(N);
  t.after(() => topo.destroy());
  const gws: Gw[] = [];
  const locks: SimLock[] = [];
  const links: SerialSimLink[] = [];
  const ptys: PtyPair[] = [];
  t.after(async () => {
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
    await Promise.all(ptys.map((p) => p.kill()));
  });
  for (let i = 0; i < N; i++) {
    const id = `gw-${String.fromCharCode(97 + i)}`;
    const dataDir = join(dir, id);
    // The installer's path: a bundle from the site authority, applied on the gateway.
    const { bundle } = await createBundle({ site: s.site, siteId: s.siteId, siteKeys: s.trust.siteKeys, gatewayId: id, validForMs: 86_400_000, now: Date.now() });
    const bundlePath = join(dir, `${id}.bundle.json`);
    await writeFile(bundlePath, JSON.stringify(bundle));
    await applyBundle(bundlePath, dataDir, { now: Date.now() });
    // One lock per gateway, enrolled in that gateway's chain.
    const lockKey = generateKeyPair();
    const ident = await loadOrCreateIdentity(dataDir);
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: ident.trust, gatewayId: id, key: ident.key, genesis: ident.enrolment });
    await chain.append({ kind: 'roster', signed: signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id: `lock-${i}`, key: lockKey.publicKey, time: Date.now() }) });
    await chain.close();
    await store.close();
    const pty = await ptyPair(dir, `pty-${i}`);
    ptys.push(pty);
    const config = await writeGatewayConfig(join(dir, `${id}.yaml`), {
      dataDir,
      broker: { host: '0.0.0.0', port: 1883 },
      api: { port: 8433 },
      serialPorts: [pty.gateway],
      portSettings: { reconnectMinMs: 100, reconnectMaxMs: 1000 },
      more: { sync: { recoverWaitMs: 0 } },
    });
    const gw: Gw = { id, dataDir, config, logs: [] };
    gws.push(gw);
    const lock = new SimLock({ id: `lock-${i}`, seed: lockKey.seed, resendMs: 1000 });
    locks.push(lock);
    links.push(new SerialSimLink(lock, { path: pty.lock, reopenMs: 100 }));
  }

  const start = (gw: Gw, i: number): void => {
    const proc = topo.exec(i, process.execPath, [MAIN, '--config', gw.config], { stdio: ['ignore', 'pipe', 'pipe'] });
    gw.proc = proc;
    let partial = '';
    proc.stdout?.setEncoding('utf8').on('data', (c: string) => {
      partial += c;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        try {
          gw.logs.push(JSON.parse(l) as Gw['logs'][number]);
        } catch {
          gw.logs.push({ msg: l });
        }
      }
    });
  };
  gws.forEach(start);
  for (const gw of gws) await waitUntil(`${gw.id} running`, () => gw.logs.some((l) => l.msg.includes('running; press Ctrl+C')), REPLICATION_MS);
  for (const l of links) l.start();
  for (const l of locks) l.startAuto(20);

  // Each gateway finds the two others by multicast and holds a replica of their chains.
  const replicaOf = (gw: Gw, origin: string): number =>
    Math.max(-1, ...gw.logs.filter((l) => l.msg.startsWith(`replica of ${origin}`)).map((l) => Number(l['size'])));
  const origin = (i: number): string => `oti/${s.siteId}/${(gws[i] as Gw).id}`;
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
  for (const gw of gws) gw.proc?.kill('SIGTERM');
  await Promise.all(gws.map((gw) => new Promise<void>((resolve) => (gw.proc?.exitCode !== null ? resolve() : gw.proc.once('exit', () => resolve())))));

  // Every gateway holds every chain, identical and verified, with every acknowledged event.
  const heads: Map<string, string>[] = [];
  for (const gw of gws) {
    const store = await LedgerStore.open(join(gw.dataDir, 'ledger'));
    try {
      const seen = new Map<string, string>();
      for (let j = 0; j < N; j++) {
        const cs = await store.chain(origin(j), j === gws.indexOf(gw) ? 'self' : 'peer');
        await verifyChain(cs, { trust: s.trust });
        const block = await cs.getBlock(cs.head.n);
        seen.set(origin(j), `${cs.head.size}:${Buffer.from(block.header.root).toString('hex')}`);
        if (j === gws.indexOf(gw)) {
          const lock = locks[j] as SimLock;
          const ctrs = new Set<number>();
          for (let k = 0; k < cs.head.size; k++) {
            const b = decodeEntry(await cs.getEntry(k)).body;
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
