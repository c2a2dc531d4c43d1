/**
 * The archive's intake over several MQTT sessions (`broker.sessions`, docs/ARCHIVE.md
 * §Sessions): real Mosquitto (TLS), two real gateway processes of two sites uplinking, a private
 * MariaDB and the real archive process. The archive first runs with one session, is stopped
 * while both sites push (their blocks queue in that session), and comes back with two: each
 * site's blocks then come on the session that takes the site, while the older session still
 * holds some of both. Every block is archived exactly once, none is refused for arriving ahead
 * of its chain, and no session takes a site the archive does not trust.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { freePort } from '../support/gateway-process.js';
import { startMosquitto, type TlsMosquitto } from '../support/mosquitto.js';
import { startMariaDb, type TestMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { startArchive, stopProc } from '../support/archive-process.js';
import { uplinkingGateway, uplinkStatus, archivedCounts, writeArchiveConfig, type FleetGateway } from '../support/fleet.js';
import { sessionOf } from '../../gateway/archive/uplink-intake.js';

const USERS = { uplink: 'uplink-password-2', archive: 'archive-password-2' };
const TOKEN = 'archive-api-token-sessions-0123';

function writeConfig(dir: string, broker: TlsMosquitto, db: TestMariaDb, siteFiles: string[], sessions: number): Promise<string> {
  return writeArchiveConfig(dir, { broker: { url: broker.url, caFile: broker.caFile, password: USERS.archive, sessions }, db, token: TOKEN, siteFiles, file: `archive-${sessions}.yaml` });
}

async function api<T>(port: number, path: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200, path);
  return (await res.json()) as T;
}

async function siteOf(g: FleetGateway): Promise<string> {
  return (JSON.parse(await readFile(join(g.data, 'site.json'), 'utf8')) as { siteId: string }).siteId;
}

void test('archive: blocks queued in one session and then taken by two sessions side by side are archived exactly once, none refused for arriving ahead', { timeout: 300_000 }, async (t: TestContext) => {
  const dir = await tempDir(t, 'oti-archive-sessions-');
  const [db, broker] = await Promise.all([startMariaDb(t), startMosquitto(t, USERS, { tls: true }) as Promise<TlsMosquitto>]);
  const offline = { url: `mqtts://127.0.0.1:${await freePort()}`, caFile: broker.caFile };
  // Each site's identity from a first start (its site.json is what the archive trusts).
  const first = await Promise.all(['gw-a', 'gw-b'].map((n) => uplinkingGateway(t, dir, n, offline, 0, USERS.uplink)));
  const sites = await Promise.all(first.map(siteOf));
  for (const g of first) await stopProc(g.gw);
  const siteFiles = first.map((g) => join(g.data, 'site.json'));
  // The fewest sessions that put the two sites on different ones.
  let n = 2;
  while (sessionOf(sites[0]!, n) === sessionOf(sites[1]!, n)) n++;

  // One session first: it subscribes, and is stopped; both sites push meanwhile.
  let arch = await startArchive(t, await writeConfig(dir, broker, db, siteFiles, 1));
  await stopProc(arch);
  const pushing = await Promise.all(['gw-a', 'gw-b'].map((name) => uplinkingGateway(t, dir, name, broker, 1, USERS.uplink)));
  await waitUntil('both sites pushed blocks the stopped archive has not taken', async () => (await Promise.all(pushing.map(uplinkStatus))).every((s) => (s.uplink?.next ?? 0) >= 4));

  // n sessions: session 0 (the same client id) holds what queued; the sites' new blocks come on their own sessions.
  arch = await startArchive(t, await writeConfig(dir, broker, db, siteFiles, n));
  for (let k = 0; k < n; k++) await arch.waitForLog(`session ${k} connected`, (l) => l.msg.startsWith('archive: connected to the central broker') && l.msg.includes(`(session ${k} of ${n})`));
  await new Promise((r) => setTimeout(r, 2000));
  for (const g of pushing) await stopProc(g.gw);
  // Without locks they only push what is left.
  const quiet = await Promise.all(['gw-a', 'gw-b'].map((name) => uplinkingGateway(t, dir, name, broker, 0, USERS.uplink)));
  await waitUntil('both uplinks caught up', async () => (await Promise.all(quiet.map(uplinkStatus))).every((s) => s.uplink?.connected === true && s.uplink.behind === 0));
  for (const g of quiet) {
    const s = await uplinkStatus(g);
    await waitUntil(`the archive holds all of ${s.chain.origin}`, async () => (await archivedCounts(db, s.chain.origin)).blocks === s.chain.blocks, 60_000, () => `archive log: ${arch.logs.filter((l) => !l.msg.startsWith('archive: connected')).slice(-8).map((l) => l.msg).join(' | ')}`);
    assert.deepEqual(await archivedCounts(db, s.chain.origin), { entries: s.chain.size, blocks: s.chain.blocks, maxIdx: s.chain.size - 1 }, `${s.chain.origin}: every block exactly once`);
  }
  for (const site of sites) assert.deepEqual((await api<{ evidence: { code: string }[] }>(arch.port, `/v1/evidence?site=${site}`)).evidence, [], `no block of ${site} refused`);

  // No session takes a site the archive does not trust: a message on such a topic is not even received.
  const before = await api<{ refused: number; duplicates: number }>(arch.port, '/v1/intake');
  const file = join(dir, 'noise');
  await writeFile(file, 'not a range message');
  const pub = (topic: string): Promise<unknown> => promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', broker.caFile, '-u', 'uplink', '-P', USERS.uplink, '-t', topic, '-q', '1', '-f', file]);
  await pub('oti-fleet/untrusted-site/gw/block');
  await pub(`oti-fleet/${sites[0]}/gw/block`);
  await pub(`oti-fleet/${sites[1]}/gw/block`);
  await waitUntil('the trusted sites\' noise is refused', async () => (await api<{ refused: number }>(arch.port, '/v1/intake')).refused >= before.refused + 2);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await api<{ refused: number }>(arch.port, '/v1/intake')).refused, before.refused + 2, 'the untrusted site\'s message was not taken');
});
