/**
 * Pulling a site's chains as a read-only peer, all real parts but the gateways' processes: two
 * gateways of a site (in this process: LevelDB, chain, SyncNode) on the site's Mosquitto, whose
 * ACL gives the archive's user exactly the four filters docs/ARCHIVE.md §Pulling from sites
 * names; no uplink at all. The real archive process asks the gateways for ranges with the sync
 * protocol, verifies them into a private MariaDB, and keeps up as the chains grow; it reads the
 * gateways' cosignatures of each other there too, so the site's chains become `confirmed`.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { makeSite, enrollLock, tempDir } from '../support/site.js';
import { makeGateway, startSync, appendEvents, type TestGateway } from '../support/sync.js';
import { freePort } from '../support/gateway-process.js';
import { startMosquitto } from '../support/mosquitto.js';
import { startMariaDb, type TestMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { startArchive } from '../support/archive-process.js';
import { oti } from '../support/oti-cli.js';
import { toHex } from '../../ledger/crypto.js';

const TOKEN = 'archive-api-token-pull-0123';
const SITE = 'site-pull';

/** The site's Mosquitto: a user per gateway (everything), and `archive`, held by the ACL to reading checkpoints, cosignatures and its answers and writing its requests. */
async function siteMosquitto(t: TestContext, users: Record<string, string>): Promise<number> {
  const dir = await tempDir(t, 'oti-site-mosquitto-');
  const passwd = join(dir, 'passwd');
  const run = promisify(execFile);
  let first = true;
  for (const [u, p] of Object.entries(users)) {
    await run('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', passwd, u, p]);
    first = false;
  }
  const acl = join(dir, 'acl');
  const gateways = Object.keys(users).filter((u) => u !== 'archive');
  await writeFile(
    acl,
    [
      ...gateways.flatMap((g) => [`user ${g}`, 'topic readwrite oti/#']),
      'user archive', `topic read oti/${SITE}/chain/+/checkpoint`, `topic read oti/${SITE}/chain/+/cosig/+`, `topic read oti/${SITE}/chain/+/range/archive`, `topic write oti/${SITE}/chain/+/req/archive`, '',
    ].join('\n'),
  );
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(conf, [`user ${userInfo().username}`, `listener ${port} 127.0.0.1`, 'allow_anonymous false', `password_file ${passwd}`, `acl_file ${acl}`, 'persistence false', 'max_packet_size 1048576', ''].join('\n'));
  const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  });
  await waitUntil('the site broker accepts connections', () =>
    new Promise<boolean>((resolve, reject) => {
      if (proc.exitCode !== null) reject(new Error(`mosquitto did not start: ${log}`));
      const sock = connectTcp(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    }),
  );
  return port;
}

async function counts(db: TestMariaDb, origin: string): Promise<{ blocks: number; entries: number; maxIdx: number }> {
  const c = await db.root();
  try {
    const [e] = await c.query(`SELECT COUNT(*) AS n, COALESCE(MAX(idx), -1) AS m FROM ${db.database}.entries WHERE origin = ?`, [origin]);
    const [b] = await c.query(`SELECT COUNT(*) AS n FROM ${db.database}.blocks WHERE origin = ?`, [origin]);
    const er = (e as { n: number; m: number }[])[0]!;
    return { blocks: Number((b as { n: number }[])[0]!.n), entries: Number(er.n), maxIdx: Number(er.m) };
  } finally {
    await c.end();
  }
}

void test('archive: pulls a site\'s chains as a read-only peer through the sync protocol, verifies them exactly once, and keeps up as they grow', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-pull-');
  const s = makeSite(SITE);
  const users = { 'gw-a': 'gw-a-site-password', 'gw-b': 'gw-b-site-password', archive: 'archive-site-password' };
  const [db, central, sitePort] = await Promise.all([startMariaDb(t), startMosquitto(t, { archive: 'archive-central-password' }, { tls: true }), siteMosquitto(t, users)]);

  // Two gateways with chains of some blocks each, syncing with each other through the site broker.
  const gws: TestGateway[] = [];
  for (const id of ['gw-a', 'gw-b'] as const) {
    const g = await makeGateway(t, s, id, { broker: false });
    await appendEvents(g, enrollLock(s, `lock-${id}`), 700);
    await startSync(g, s, [`mqtt://127.0.0.1:${sitePort}`], { login: () => ({ username: id, password: Buffer.from(users[id]) }) });
    gws.push(g);
  }

  const files = { central: join(dir, 'central.password'), site: join(dir, 'site.password'), token: join(dir, 'archive.token') };
  await writeFile(files.central, 'archive-central-password\n', { mode: 0o600 });
  await writeFile(files.site, `${users.archive}\n`, { mode: 0o600 });
  await writeFile(files.token, `${TOKEN}\n`, { mode: 0o600 });
  const config = join(dir, 'archive.yaml');
  await writeFile(
    config,
    stringify({
      broker: { url: central.url, username: 'archive', passwordFile: files.central, ca: central.caFile },
      mysql: { host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database },
      sites: [{ siteId: s.siteId, siteKeys: s.trust.siteKeys.map((k) => toHex(k)) }],
      pull: [{ siteId: s.siteId, url: `mqtt://127.0.0.1:${sitePort}`, username: 'archive', passwordFile: files.site }],
      api: { host: '127.0.0.1', port: 0, tokenFile: files.token },
      verifyThreads: 1,
    }),
  );
  const arch = await startArchive(t, config, `archive: pulling site ${SITE}`);
  const port = arch.port;

  const whole = async (g: TestGateway): Promise<boolean> => {
    const c = await counts(db, g.chain.origin);
    return c.blocks === g.chain.head.n + 1 && c.entries === g.chain.head.size && c.maxIdx === g.chain.head.size - 1;
  };
  for (const g of gws) {
    await waitUntil(`the archive pulled all of ${g.chain.origin}`, () => whole(g)).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await counts(db, g.chain.origin))} of ${g.chain.head.size}; log: ${arch.logs.slice(-6).map((l) => l.msg).join(' | ')}`);
    });
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
