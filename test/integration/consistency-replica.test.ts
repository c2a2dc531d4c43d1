/**
 * GET /proof/consistency on a replica: the local API over a real socket, with the gateway's own
 * chain and a peer's chain replicated into the same LevelDB store (ledger/peer.ts), answers for
 * the replica with the peer's stored checkpoints and a proof that verifies between them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeSite, enrollLock, enrollGateway, openChain, signedEvent, tempDir } from '../support/site.js';
import { LocalApi } from '../../gateway/api/server.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';
import { ChainReplica, type ReplicaBlock } from '../../ledger/peer.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { verifyConsistency } from '../../ledger/merkle.js';
import { consistencyBetween } from '../../ledger/history.js';

void test('consistency proofs for a replica held here, with that chain\'s own checkpoints', async (t) => {
  const site = makeSite();
  // The peer gw-1 writes its chain elsewhere: four blocks.
  const peer = (await openChain(t, site, { sealDelayMs: 1 })).chain;
  const lock = enrollLock(site, 'door');
  await peer.append({ kind: 'roster', signed: lock.statement });
  for (let b = 0; b < 3; b++) {
    await Promise.all([1, 2].map(() => peer.append({ kind: 'lock-event', cose: signedEvent(lock) })));
    await peer.flush();
  }
  const blocks: ReplicaBlock[] = [];
  for await (const b of peer.blocks(0)) blocks.push({ headerBytes: b.headerBytes, checkpoint: b.checkpoint, entries: await peer.entryRange(b.header.first, b.header.first + b.header.count) });
  assert.ok(blocks.length >= 4);

  // This gateway, gw-2, holds its own chain and a replica of gw-1's.
  const store = await LedgerStore.open(join(await tempDir(t), 'ledger'));
  const gw2 = enrollGateway(site, 'gw-2');
  const own = await Chain.open({ store, trust: site.trust, gatewayId: 'gw-2', key: gw2.key, genesis: gw2.statement });
  const replica = await ChainReplica.open(store, peer.origin, 'peer', { trust: site.trust });
  await replica.append(blocks);
  const api = await LocalApi.start({ host: '127.0.0.1', port: 0, chain: own, peers: () => [replica], status: () => ({ gateway: 'gw-2', site: site.siteId, version: '0.1.0', startedAt: Date.now(), drivers: [], peers: [] }), metrics: new GatewayMetrics() });
  t.after(async () => {
    await api.close();
    await own.close();
    await store.close();
  });

  const from = blocks[1]!.checkpoint.size;
  const to = blocks[3]!.checkpoint.size;
  const res = await fetch(`${api.url}/proof/consistency?chain=${encodeURIComponent(peer.origin)}&from=${from}&to=${to}`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { chain: string; proof: string[]; fromCheckpoint: string; checkpoint: string };
  assert.equal(body.chain, peer.origin);
  assert.equal(body.fromCheckpoint, blocks[1]!.checkpoint.note);
  assert.equal(body.checkpoint, blocks[3]!.checkpoint.note);
  const proof = body.proof.map((h) => Buffer.from(h, 'base64'));
  assert.deepEqual(proof.map((h) => h.toString('hex')), (await consistencyBetween(peer, from, to)).map((h) => Buffer.from(h).toString('hex')), 'the same proof as the writer would give');
  assert.ok(verifyConsistency(from, to, parseCheckpoint(body.fromCheckpoint).root, parseCheckpoint(body.checkpoint).root, proof));
  // The own chain, by default, is another chain: its size is 1.
  const ownAnswer = (await (await fetch(`${api.url}/proof/consistency?from=1`)).json()) as { chain: string; to: number };
  assert.deepEqual([ownAnswer.chain, ownAnswer.to], [own.origin, 1]);
});
