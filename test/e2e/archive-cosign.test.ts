/**
 * Cosignatures and confirmation in the fleet archive, all real parts but the gateways' processes:
 * a site of three gateways (in this process: LevelDB, chain, SyncNode, the real uplink) syncing
 * through the site's Mosquitto, which bridges their cosignature topics to the central Mosquitto
 * (TLS) as docs/ARCHIVE.md §Cosignatures and confirmation says; each gateway uplinks its chain
 * there; the real archive process verifies everything into a private MariaDB. Checks that the
 * archive records the cosignatures the gateways made, that entries covered by the site's quorum
 * are `confirmed` in the API and the CLI, and that a forged cosignature is refused as evidence.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeSite, enrollLock, tempDir, type TestSite } from '../support/site.js';
import { makeGateway, startSync, appendEvents, type TestGateway } from '../support/sync.js';
import type { GatewayProcess } from '../support/gateway-process.js';
import { startMosquitto, type TlsMosquitto } from '../support/mosquitto.js';
import { startMariaDb, type TestMariaDb } from '../support/mariadb.js';
import { siteMosquitto, writeArchiveConfig } from '../support/fleet.js';
import { waitUntil } from '../support/wait.js';
import { oti } from '../support/oti-cli.js';
import { startArchive } from '../support/archive-process.js';
import { Uplink } from '../../gateway/sync/uplink.js';
import { cosign, verifyCosignature } from '../../gateway/sync/witness.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { blockResources, tilePath, treeResources } from '../../ledger/tiles.js';
import { chainCheckpoint, readTile } from '../../ledger/tile-source.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';

const CENTRAL_USERS = { uplink: 'uplink-password-1', archive: 'archive-password-1' };
const TOKEN = 'archive-api-token-cosign-0123';
const GATEWAYS = ['gw-1', 'gw-2', 'gw-3'] as const;
const PREFIX = 'oti-fleet';

/**
 * The site's Mosquitto: a user per gateway, and a bridge to the central broker that forwards the
 * cosignature topics, `oti/<site>/chain/<gw>/cosig/<witness>` → `oti-fleet/<site>/<gw>/cosig/<witness>`.
 */
async function bridgedSiteMosquitto(t: TestContext, site: string, users: Record<string, string>, central: TlsMosquitto): Promise<string> {
  const bridge = [
    'connection central', `address 127.0.0.1:${central.port}`, `bridge_cafile ${central.caFile}`, 'remote_username uplink', `remote_password ${CENTRAL_USERS.uplink}`,
    'cleansession false', `remote_clientid bridge-${site}`, `topic +/cosig/+ out 1 oti/${site}/chain/ ${PREFIX}/${site}/`,
  ];
  return (await siteMosquitto(t, users, { moreConfig: bridge })).url;
}

function runArchive(t: TestContext, dir: string, central: TlsMosquitto, db: TestMariaDb, s: TestSite, quorum?: number): Promise<GatewayProcess & { port: number }> {
  return writeArchiveConfig(dir, {
    broker: { url: central.url, caFile: central.caFile, password: CENTRAL_USERS.archive, clientId: 'oti-archive-cosign' },
    db,
    token: TOKEN,
    sites: [{ siteId: s.siteId, siteKeys: s.trust.siteKeys, ...(quorum !== undefined ? { quorum } : {}) }],
    verifyThreads: 1,
  }).then((config) => startArchive(t, config));
}

async function api(port: number, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: (await res.json()) as unknown };
}

interface ChainRow {
  origin: string;
  size: number;
  quorum: number;
  replicated: number;
  confirmed: number;
  cosigners: { gateway: string; size: number; time: number }[];
}

void test('archive: the cosignatures a site\'s gateways make reach the archive through a broker bridge, are verified, and confirm entries once the quorum has cosigned', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-cosign-');
  const s = makeSite('site-cosign');
  const [db, central] = await Promise.all([startMariaDb(t), startMosquitto(t, CENTRAL_USERS, { tls: true })]);
  const siteUsers = Object.fromEntries(GATEWAYS.map((g) => [g, `${g}-site-password`]));
  const siteBroker = await bridgedSiteMosquitto(t, s.siteId, siteUsers, central);
  let arch = await runArchive(t, dir, central, db, s);

  const upPw = join(dir, 'uplink.password');
  await writeFile(upPw, `${CENTRAL_USERS.uplink}\n`, { mode: 0o600 });
  const gws: TestGateway[] = [];
  for (const id of GATEWAYS) {
    const g = await makeGateway(t, s, id, { broker: false });
    const up = await Uplink.start({ url: central.url, username: 'uplink', passwordFile: upPw, ca: central.caFile, topicPrefix: PREFIX, window: 4 }, { chain: g.chain, dataDir: g.dir });
    t.after(() => up.stop());
    gws.push(g);
  }
  const lock = enrollLock(s, 'front-door');
  await appendEvents(gws[0]!, lock, 40);
  for (const g of gws) await startSync(g, s, [siteBroker], { login: () => ({ username: g.id, password: Buffer.from(siteUsers[g.id]!) }) });

  // gw-1's chain: three chains archived, so the quorum is 2 (gw-1 and one witness); its events become confirmed.
  const origin = gws[0]!.chain.origin;
  const size = gws[0]!.chain.size;
  const row = async (): Promise<ChainRow | undefined> => ((await api(arch.port, `/v1/chains?site=${s.siteId}`)).body as { chains: ChainRow[] }).chains.find((c) => c.origin === origin);
  await waitUntil('gw-1 is confirmed in the archive', async () => (await row())?.confirmed === size).catch(async (e: unknown) => {
    throw new Error(`${(e as Error).message}: ${JSON.stringify(await row())}; archive log: ${arch.logs.slice(-6).map((l) => l.msg).join(' | ')}`);
  });
  // Both other gateways cosign it in the end (what follows compares answers taken at different times).
  await waitUntil('gw-2 and gw-3 cosigned all of gw-1', async () => (await row())!.cosigners.filter((c) => c.size === size).length === 2);
  const chain = (await row())!;
  assert.equal(chain.quorum, 2);
  assert.equal(chain.replicated, size);
  assert.deepEqual(chain.cosigners.map((c) => [c.gateway, c.size]), [['gw-2', size], ['gw-3', size]]);
  const events = (await api(arch.port, `/v1/events?site=${s.siteId}&limit=100`)).body as { items: { origin: string; status: string }[] };
  assert.equal(events.items.length, 40);
  assert.ok(events.items.every((e) => e.status === 'confirmed'), JSON.stringify(events.items.map((e) => e.status)));

  // The cosigned notes as the witnesses signed them: anyone checks them with the witness's key.
  const cos = (await api(arch.port, `/v1/cosignatures?origin=${encodeURIComponent(origin)}`)).body as { cosignatures: { witness: string; size: number; note: string }[] };
  assert.deepEqual(cos.cosignatures.map((c) => [c.witness, c.size]), [['gw-2', size], ['gw-3', size]]);
  for (const c of cos.cosignatures) {
    const w = gws.find((g) => g.id === c.witness)!;
    assert.notEqual(verifyCosignature(parseCheckpoint(c.note), `oti/${s.siteId}/${w.id}`, w.key.publicKey, Math.floor(Date.now() / 1000)), undefined);
  }
  const cliApi = ['--archive', `http://127.0.0.1:${arch.port}`, '--token', TOKEN];
  const cli = await oti(['archive', 'cosignatures', origin, '--json', ...cliApi]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(cli.json<{ cosignatures: { witness: string }[] }>().cosignatures.map((c) => c.witness), cos.cosignatures.map((c) => c.witness));
  const cliChains = await oti(['archive', 'chains', '--site', s.siteId, ...cliApi]);
  assert.equal(cliChains.code, 0, cliChains.stderr);
  assert.match(cliChains.stdout, new RegExp(`${origin}  \\d+ blocks  ${size} entries  confirmed ${size} \\(quorum 2, cosigned by gw-`));

  // More events on gw-1 with the other gateways' sync stopped: archived, verified, not cosigned yet.
  for (const g of gws.slice(1)) await g.node?.stop();
  await appendEvents(gws[0]!, lock, 5);
  const bigger = gws[0]!.chain.size;
  await waitUntil('the new events are archived', async () => (await row())?.size === bigger);
  const later = (await api(arch.port, `/v1/events?lock=front-door&from=0&limit=100`)).body as { items: { index: number; status: string }[] };
  assert.deepEqual(later.items.filter((e) => e.index >= size).map((e) => e.status), ['verified', 'verified', 'verified', 'verified', 'verified']);

  // A cosignature forged with a key that is not gw-2's, pushed on the central broker: refused, kept as evidence, coverage unchanged.
  const cp = parseCheckpoint(gws[0]!.chain.checkpoint!.note);
  const forged = cosign(cp, new Signer(generateKeyPair().seed), `oti/${s.siteId}/gw-2`, Math.floor(Date.now() / 1000));
  const file = join(dir, 'forged.cosig');
  await writeFile(file, forged.note);
  await promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(central.port), '--cafile', central.caFile, '-u', 'uplink', '-P', CENTRAL_USERS.uplink, '-t', `${PREFIX}/${s.siteId}/gw-1/cosig/gw-2`, '-q', '1', '-f', file]);
  const evidence = async (): Promise<{ code: string; origin: string }[]> => ((await api(arch.port, `/v1/evidence?site=${s.siteId}`)).body as { evidence: { code: string; origin: string }[] }).evidence;
  await waitUntil('the forged cosignature is kept as evidence', async () => (await evidence()).some((e) => e.code === 'ERR_CHECKPOINT_SIGNATURE'));
  assert.deepEqual((await evidence()).map((e) => [e.origin, e.code]), [[origin, 'ERR_CHECKPOINT_SIGNATURE']]);
  assert.equal((await row())!.confirmed, size);

  // The witnesses come back: the new events are confirmed too.
  for (const g of gws.slice(1)) await startSync(g, s, [siteBroker], { login: () => ({ username: g.id, password: Buffer.from(siteUsers[g.id]!) }) });
  await waitUntil('the new events are confirmed', async () => (await row())?.confirmed === bigger);

  // The site's quorum set to 4 (more than its three gateways): after a restart nothing is confirmed, what was cosigned is replicated.
  arch.proc.kill('SIGTERM');
  await arch.exited;
  arch = await runArchive(t, dir, central, db, s, 4);
  const r4 = (await row())!;
  assert.deepEqual([r4.quorum, r4.confirmed, r4.replicated], [4, 0, bigger]);
  const now = (await api(arch.port, `/v1/events?site=${s.siteId}&limit=100`)).body as { items: { status: string }[] };
  assert.ok(now.items.length === 45 && now.items.every((e) => e.status === 'replicated'));

  // Tiles: past two full tiles of entries, every C2SP tlog-tiles resource of gw-1's chain is served with the very bytes the
  // gateway's own tile source (ledger/tile-source.ts, checked with Go's sumdb/tlog in tlog-interop.test.ts) makes.
  await appendEvents(gws[0]!, lock, 600);
  const cs = gws[0]!.chain;
  await waitUntil('the 600 events are archived', async () => (await row())?.size === cs.head.size);
  // The nodes of height 8 were written with the blocks that completed them, before any tile or receipt asked.
  const root = await db.root();
  const [stored] = await root.query(`SELECT COUNT(*) AS n FROM ${db.database}.tree_nodes WHERE origin = ? AND height = 8`, [origin]);
  await root.end();
  assert.equal(Number((stored as { n: number }[])[0]!.n), Math.floor(cs.head.size / 256));
  const tlog = async (path: string): Promise<Response> => fetch(`http://127.0.0.1:${arch.port}/v1/tlog/${origin}/${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const sameTiles = async (): Promise<void> => {
    const resources = [...treeResources(cs.head.size), ...blockResources(cs.head.n + 1)];
    assert.ok(resources.some((r) => r.kind === 'hash' && r.level === 1 && r.width >= 2), 'a level-1 tile (stored tree nodes) is among them');
    for (const r of resources) {
      const res = await tlog(tilePath(r));
      assert.equal(res.status, 200, tilePath(r));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from(await readTile(cs, r)), tilePath(r));
      assert.equal(res.headers.get('cache-control'), r.width === 256 ? 'private, max-age=31536000, immutable' : 'private, max-age=5');
    }
  };
  await sameTiles();
  const cpRes = await tlog('checkpoint');
  assert.equal(await cpRes.text(), await chainCheckpoint(cs));
  assert.equal((await tlog('tile/0/009.p/1')).status, 404, 'beyond the archived chain');
  assert.equal((await tlog('tile/0/0')).status, 404, 'only canonical tile paths');
  assert.equal((await fetch(`http://127.0.0.1:${arch.port}/v1/tlog/${origin}/checkpoint`)).status, 401, 'tiles need the token too');
  // A receipt of the last entry, its proof read through the stored tree nodes, verifies with the site's keys.
  const rc = await fetch(`http://127.0.0.1:${arch.port}/v1/receipt?origin=${encodeURIComponent(origin)}&index=${cs.head.size - 1}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(verifyReceipt(new Uint8Array(await rc.arrayBuffer()), s.trust).index, cs.head.size - 1);

  // Killed and started again, the archive rebuilds gw-1's verifier from the stored tree nodes and the entries after them, and goes on.
  arch.proc.kill('SIGKILL');
  await arch.exited;
  arch = await runArchive(t, dir, central, db, s, 4);
  await appendEvents(gws[0]!, lock, 300);
  await waitUntil('the archive goes on after the restart', async () => (await row())?.size === cs.head.size);
  await sameTiles();
});
