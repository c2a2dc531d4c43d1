/**
 * The local API's C2SP tlog-tiles routes (gateway/api/tlog-routes.ts, docs/API.md §Tiles) over a real
 * socket, for the gateway's own chain and a peer chain held beside it, each in a real LevelDB
 * store: every tile of each tree is fetched and checked against the chain itself (leaf hashes of
 * the bundled entries, the root rebuilt from the level-0 tiles, the level-1 nodes), block bundles
 * hold each block's header and checkpoint, partial tiles of older sizes are served, and nothing
 * wider than the stored chain or off the canonical paths is.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { LocalApi, type GatewayStatusJson } from '../../gateway/api/server.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';
import { makeSite, openChain, type OpenedChain } from '../support/site.js';
import { parseCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { CompactRange, leafHash } from '../../ledger/merkle.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { blockResources, decodeBundle, tilePath, treeResources, TILE_WIDTH } from '../../ledger/tiles.js';

const status = (): GatewayStatusJson => ({ gateway: 'gw-1', site: 'site-1', version: '0.1.0', startedAt: Date.now(), drivers: [] });

async function filled(t: TestContext, siteId: string, entries: number): Promise<OpenedChain> {
  const opened = await openChain(t, makeSite(siteId), { sealDelayMs: 1 });
  for (let i = 0; i < entries; i++) await opened.chain.append({ kind: 'health', source: 'test', status: `s${i}` });
  await opened.chain.flush();
  return opened;
}

async function get(url: string): Promise<{ status: number; body: Uint8Array; cache: string | null }> {
  const r = await fetch(url);
  return { status: r.status, body: new Uint8Array(await r.arrayBuffer()), cache: r.headers.get('cache-control') };
}

/** Fetches the whole tree of `origin` and checks it against its checkpoint. */
async function checkTree(api: string, opened: OpenedChain): Promise<number> {
  const origin = opened.chain.origin;
  const prefix = `${api}/tlog/${origin}`;
  const cp = await get(`${prefix}/checkpoint`);
  assert.equal(cp.status, 200);
  const checkpoint = parseCheckpoint(cp.body);
  verifyCheckpoint(checkpoint, origin, opened.gatewayKey.publicKey);
  const range = CompactRange.empty();
  const level8 = new Map<number, Uint8Array>();
  for (const r of treeResources(checkpoint.size)) {
    const tile = await get(`${prefix}/${tilePath(r)}`);
    assert.equal(tile.status, 200, tilePath(r));
    assert.equal(tile.cache, r.width === TILE_WIDTH ? 'public, max-age=31536000, immutable' : 'public, max-age=5', tilePath(r));
    if (r.kind === 'entries') {
      const entries = decodeBundle(tile.body);
      assert.equal(entries.length, r.width);
      const hashes = await get(`${prefix}/${tilePath({ kind: 'hash', level: 0, n: r.n, width: r.width })}`);
      entries.forEach((e, i) => {
        assert.deepEqual(hashes.body.subarray(32 * i, 32 * i + 32), new Uint8Array(leafHash(e)), `leaf ${r.n * TILE_WIDTH + i}`);
        range.append(leafHash(e), (level, index, hash) => {
          if (level === 8) level8.set(index, hash);
        });
      });
    } else if (r.kind === 'hash' && r.level === 1) {
      assert.equal(tile.body.length, 32 * r.width);
      for (let i = 0; i < r.width; i++) assert.deepEqual(tile.body.subarray(32 * i, 32 * i + 32), new Uint8Array(level8.get(r.n * TILE_WIDTH + i)!), `node 8/${i}`);
    }
  }
  assert.equal(range.size, checkpoint.size);
  assert.deepEqual(new Uint8Array(range.root()), new Uint8Array(checkpoint.root), 'the root rebuilt from the tiles is the checkpoint root');
  let next = 0;
  for (const r of blockResources(checkpoint.block + 1)) {
    const records = decodeBundle((await get(`${prefix}/${tilePath(r)}`)).body);
    assert.equal(records.length, 2 * r.width);
    for (let i = 0; i < records.length; i += 2) {
      const header = decodeBlockHeader(records[i]!);
      const blockCp = parseCheckpoint(records[i + 1]!);
      verifyCheckpoint(blockCp, origin, opened.gatewayKey.publicKey);
      assert.equal(header.first, next);
      assert.equal(blockCp.size, header.first + header.count);
      next = blockCp.size;
    }
  }
  assert.equal(next, checkpoint.size, 'the last block ends at the checkpoint size');
  return checkpoint.size;
}

void test('/tlog/<origin>/ serves the own chain and a peer chain as tlog-tiles that rebuild their checkpoints', { timeout: 120_000 }, async (t) => {
  const own = await filled(t, 'site-1', 600);
  const peer = await filled(t, 'site-2', 40);
  const api = await LocalApi.start({ host: '127.0.0.1', port: 0, chain: own.chain, status, metrics: new GatewayMetrics(), peers: () => [peer.chain] });
  t.after(() => api.close());

  const ownSize = await checkTree(api.url, own);
  assert.ok(ownSize > 512, `own chain of ${ownSize}`);
  assert.ok((await checkTree(api.url, peer)) >= 40);

  const prefix = `${api.url}/tlog/${own.chain.origin}`;
  // An older tree's narrower partial tile is served and is a prefix of today's.
  const width = ownSize % TILE_WIDTH;
  const n = Math.floor(ownSize / TILE_WIDTH);
  const today = await get(`${prefix}/tile/0/${String(n).padStart(3, '0')}.p/${width}`);
  const older = await get(`${prefix}/tile/0/${String(n).padStart(3, '0')}.p/1`);
  assert.equal(older.status, 200);
  assert.deepEqual(older.body, today.body.subarray(0, 32));
  // Nothing beyond the stored chain, nothing off the canonical paths, no other origin, no writes.
  const beyond = await fetch(`${prefix}/tile/0/${String(n).padStart(3, '0')}.p/${width + 1}`);
  assert.equal(beyond.status, 404);
  assert.equal(((await beyond.json()) as { error: { code: string } }).error.code, 'ERR_NOT_FOUND');
  for (const path of ['tile/0/0', 'tile/0/x000/000', 'tile/0/000.p/256', 'tile/data/000', 'checkpoint/']) assert.equal((await get(`${prefix}/${path}`)).status, 404, path);
  assert.equal((await get(`${api.url}/tlog/oti/site-3/gw-1/checkpoint`)).status, 404);
  assert.equal((await fetch(`${prefix}/checkpoint`, { method: 'POST' })).status, 405);
});
