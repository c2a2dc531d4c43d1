/**
 * Pulling a site's chains as a read-only peer, all real parts but the gateways' processes: two
 * gateways of a site (in this process: LevelDB, chain, SyncNode) on the site's Mosquitto, whose
 * ACL gives the archive's user exactly the four filters docs/ARCHIVE.md §Pulling from sites
 * names; no uplink at all. The real archive process asks the gateways for ranges with the sync
 * protocol, verifies them into a private MariaDB, and keeps up as the chains grow; it reads the
 * gateways' cosignatures of each other there too, so the site's chains become `confirmed`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, tempDir } from '../support/site.js';
import { makeGateway, startSync, appendEvents, type TestGateway } from '../support/sync.js';
import { startMosquitto } from '../support/mosquitto.js';
import { startMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { startArchive } from '../support/archive-process.js';
import { oti } from '../support/oti-cli.js';
import { archivedCounts, siteAcl, siteMosquitto, writeArchiveConfig } from '../support/fleet.js';

const TOKEN = 'archive-api-token-pull-0123';
const SITE = 'site-pull';

void test('archive: pulls a site\'s chains as a read-only peer through the sync protocol, verifies them exactly once, and keeps up as they grow', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-pull-');
  const s = makeSite(SITE);
  const users = { 'gw-a': 'gw-a-site-password', 'gw-b': 'gw-b-site-password', archive: 'archive-site-password' };
  const [db, central, siteBroker] = await Promise.all([startMariaDb(t), startMosquitto(t, { archive: 'archive-central-password' }, { tls: true }), siteMosquitto(t, users, { acl: siteAcl(SITE, ['gw-a', 'gw-b']), maxPacketBytes: 1048576 })]);
  const sitePort = siteBroker.port;

  // Two gateways with chains of some blocks each, syncing with each other through the site broker.
  const gws: TestGateway[] = [];
  for (const id of ['gw-a', 'gw-b'] as const) {
    const g = await makeGateway(t, s, id, { broker: false });
    await appendEvents(g, enrollLock(s, `lock-${id}`), 700);
    await startSync(g, s, [`mqtt://127.0.0.1:${sitePort}`], { login: () => ({ username: id, password: Buffer.from(users[id]) }) });
    gws.push(g);
  }

  const config = await writeArchiveConfig(dir, {
    broker: { url: central.url, caFile: central.caFile, password: 'archive-central-password' },
    db,
    token: TOKEN,
    sites: [{ siteId: s.siteId, siteKeys: s.trust.siteKeys }],
    pull: [{ siteId: s.siteId, url: `mqtt://127.0.0.1:${sitePort}`, username: 'archive', password: users.archive }],
    verifyThreads: 1,
  });
  const arch = await startArchive(t, config, `archive: pulling site ${SITE}`);
  const port = arch.port;

  const whole = async (g: TestGateway): Promise<boolean> => {
    const c = await archivedCounts(db, g.chain.origin);
    return c.blocks === g.chain.head.n + 1 && c.entries === g.chain.head.size && c.maxIdx === g.chain.head.size - 1;
  };
  for (const g of gws) {
    await waitUntil(`the archive pulled all of ${g.chain.origin}`, () => whole(g)).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await archivedCounts(db, g.chain.origin))} of ${g.chain.head.size}; log: ${arch.logs.slice(-6).map((l) => l.msg).join(' | ')}`);
    });
  }
  // Every row names its chain's site and gateway, in the runs of 64 entries or more (their columns from session variables) as in shorter ones.
  const root = await db.root();
  try {
    for (const g of gws) {
      const [rows] = await root.query(`SELECT e.site_id, e.gateway_id, e.status, COUNT(*) AS n, MAX(b.count) AS most FROM ${db.database}.entries e JOIN ${db.database}.blocks b ON b.origin = e.origin AND b.n = e.block_n WHERE e.origin = ? GROUP BY e.site_id, e.gateway_id, e.status`, [g.chain.origin]);
      const r = rows as { site_id: string; gateway_id: string; status: string; n: number; most: number }[];
      assert.deepEqual(r.map((x) => [x.site_id, x.gateway_id, x.status, Number(x.n)]), [[SITE, g.id, 'verified', g.chain.head.size]]);
      assert.ok(Number(r[0]!.most) >= 64, `a block of ${g.chain.origin} holds 64 entries or more (${r[0]!.most})`);
    }
  } finally {
    await root.end();
  }

  // The chains grow: the new checkpoints bring the new blocks in.
  await appendEvents(gws[0]!, enrollLock(s, 'lock-late'), 300);
  await waitUntil('the archive pulled the new blocks', () => whole(gws[0]!));
  const intake = (await (await fetch(`http://127.0.0.1:${port}/v1/intake`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { archived: number; refused: number; pull: { site: string; connected: boolean; behindChains: number; requests: number }[] };
  assert.equal(intake.refused, 0);
  assert.deepEqual(intake.pull.map((p) => [p.site, p.connected, p.behindChains]), [[SITE, true, 0]]);
  assert.ok(intake.pull[0]!.requests >= 3);
  assert.equal(intake.archived, gws.reduce((n, g) => n + g.chain.head.n + 1, 0), 'every block archived once');

  // What was pulled answers queries like what was uplinked.
  const events = await oti(['archive', 'events', '--lock', 'lock-late', '--limit', '1000', '--json', '--archive', `http://127.0.0.1:${port}`, '--token', TOKEN]);
  assert.equal(events.code, 0, events.stderr);
  assert.equal(events.json<{ items: unknown[] }>().items.length, 300);

  // Pulled only, and confirmed: each gateway's cosignature of the other's whole chain, read on the site broker, is archived.
  const chains = async (): Promise<{ origin: string; confirmed: number; cosigners: { gateway: string; size: number }[] }[]> =>
    ((await (await fetch(`http://127.0.0.1:${port}/v1/chains?site=${SITE}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { chains: { origin: string; confirmed: number; cosigners: { gateway: string; size: number }[] }[] }).chains;
  for (const [i, g] of gws.entries()) {
    await waitUntil(`${g.chain.origin} is confirmed in the archive`, async () => (await chains()).find((c) => c.origin === g.chain.origin)?.confirmed === g.chain.head.size).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message} (size ${g.chain.head.size}): ${JSON.stringify(await chains())}`);
    });
    const c = (await chains()).find((x) => x.origin === g.chain.origin)!;
    assert.deepEqual(c.cosigners.map((w) => [w.gateway, w.size]), [[gws[1 - i]!.id, g.chain.head.size]]);
  }
  const late = await oti(['archive', 'events', '--lock', 'lock-late', '--limit', '1000', '--json', '--archive', `http://127.0.0.1:${port}`, '--token', TOKEN]);
  assert.deepEqual([...new Set(late.json<{ items: { status: string }[] }>().items.map((e) => e.status))], ['confirmed']);
});
