/**
 * An archive outage longer than the central broker's queue (docs/ARCHIVE.md §The central broker,
 * §Gaps in the intake), all real parts: a real gateway process uplinking to a real Mosquitto whose
 * `max_queued_messages` is 10, a private MariaDB and the real archive process.
 *
 * The archive is stopped while the gateway keeps pushing; Mosquitto drops what is over its queue
 * for the archive's session, yet acknowledges it to the gateway, whose cursor moves on. Started
 * again without `pull`, the archive sets the blocks after the gap aside: no refusal, no evidence,
 * the chain shown BEHIND in `oti archive chains` and `/v1/intake` with the remedy, one warning
 * line (not one per block), and a warning at start that the site has no pull. Started with `pull`
 * (the gateway's embedded broker, an `archive` user), it fills the gap and keeps up: every block
 * archived once, nothing behind, no evidence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { freePort } from '../support/gateway-process.js';
import { uplinkingGateway, uplinkStatus, archivedCounts, writeArchiveConfig } from '../support/fleet.js';
import { startMosquitto } from '../support/mosquitto.js';
import { startMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { oti } from '../support/oti-cli.js';
import { startArchive, stopProc } from '../support/archive-process.js';

const USERS = { uplink: 'uplink-password-gap', archive: 'archive-password-gap' };
const SITE_ARCHIVE_USER = { username: 'archive', password: 'archive-site-password-gap' };
const TOKEN = 'archive-api-token-gap-0123';

interface Intake {
  refused: number;
  setAside: number;
  behindChains: number;
  evidenceDropped: number;
  behind: { origin: string; next: number; seen: number; remedy: string }[];
}

void test('archive: blocks the central broker dropped during an outage leave the chain behind (not evidence), shown with the remedy; with pull the gap is filled', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-gap-');
  const [db, broker] = await Promise.all([startMariaDb(t), startMosquitto(t, USERS, { tls: true, moreConfig: ['max_queued_messages 10'] })]);

  // The gateway's identity (a first start, offline), and an archive user on its embedded broker for the pull later.
  const offline = { url: `mqtts://127.0.0.1:${await freePort()}`, caFile: broker.caFile };
  await stopProc((await uplinkingGateway(t, dir, 'gw', offline, 0, USERS.uplink)).gw);
  const added = await oti(['mqtt', 'user', 'add', SITE_ARCHIVE_USER.username, '--role', 'archive', '--file', join(dir, 'gw', 'mqtt-users.json'), '--json'], { env: { OTI_MQTT_PASSWORD: SITE_ARCHIVE_USER.password } });
  assert.equal(added.code, 0, added.stderr);

  const base = { broker: { url: broker.url, caFile: broker.caFile, password: USERS.archive }, db, token: TOKEN, siteFiles: [join(dir, 'gw', 'site.json')], verifyThreads: 1 };
  const config = await writeArchiveConfig(dir, base);
  let arch = await startArchive(t, config);
  const sitePort = await freePort();
  const gw = await uplinkingGateway(t, dir, 'gw', broker, 1, USERS.uplink, sitePort);
  const origin = (await uplinkStatus(gw)).chain.origin;
  const siteId = origin.split('/')[1]!;
  await waitUntil('the archive holds blocks of the chain', async () => (await archivedCounts(db, origin)).blocks >= 3);
  const startWarning = arch.logs.find((l) => l.msg.includes('without pull'));
  assert.ok(startWarning !== undefined && startWarning.level === 40, 'the archive warns at start that the site has no pull');

  // The outage: the gateway pushes on, Mosquitto acknowledges every block and drops what is over the archive's queue.
  await stopProc(arch);
  const held = (await archivedCounts(db, origin)).blocks;
  await waitUntil('the gateway pushed 40 blocks more', async () => ((await uplinkStatus(gw)).uplink?.next ?? 0) >= held + 40);
  await waitUntil('Mosquitto drops messages for the archive', () => broker.log().includes('Outgoing messages are being dropped for client oti-archive'));

  // Back without pull: the chain is behind, nothing is refused or kept as evidence.
  arch = await startArchive(t, config);
  const api = async <T>(path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${arch.port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;
  await waitUntil('the archive shows the chain behind', async () => (await api<Intake>('/v1/intake')).behindChains === 1, 60_000);
  await waitUntil('more blocks are set aside', async () => (await api<Intake>('/v1/intake')).setAside >= 5);
  const intake = await api<Intake>('/v1/intake');
  assert.deepEqual([intake.refused, intake.evidenceDropped], [0, 0]);
  assert.equal(intake.behind[0]!.origin, origin);
  assert.equal(intake.behind[0]!.next, (await archivedCounts(db, origin)).blocks, 'the first missing block is the one after the archived ones');
  assert.match(intake.behind[0]!.remedy, new RegExp(`configure pull for site ${siteId}`));
  assert.deepEqual((await api<{ evidence: unknown[] }>(`/v1/evidence?site=${siteId}`)).evidence, []);
  const chains = await oti(['archive', 'chains', '--archive', `http://127.0.0.1:${arch.port}`, '--token', TOKEN]);
  assert.equal(chains.code, 0, chains.stderr);
  assert.match(chains.stdout, /BEHIND: block \d+ and later missing/);
  assert.doesNotMatch(chains.stdout, /EVIDENCE/);
  assert.equal(arch.logs.filter((l) => l.msg.includes('is behind')).length, 1, 'one warning line, not one per block');
  assert.ok(arch.logs.every((l) => l['name'] === undefined || l['name'] === 'oti-archive'), 'the archive logs as oti-archive');
  await stopProc(arch);

  // With pull through the gateway's embedded broker: the gap is filled and the archive keeps up.
  const pullConfig = await writeArchiveConfig(dir, { ...base, pull: [{ siteId, url: `mqtt://127.0.0.1:${sitePort}`, ...SITE_ARCHIVE_USER }], file: 'archive-pull.yaml' });
  arch = await startArchive(t, pullConfig, 'archive: pulling site');
  const target = (await uplinkStatus(gw)).chain.blocks;
  await waitUntil('the archive holds the whole chain again, without a hole', async () => {
    const c = await archivedCounts(db, origin);
    return c.blocks >= target && c.maxIdx === c.entries - 1 && (await api<Intake>('/v1/intake')).behindChains === 0;
  }, 120_000).catch(async (e: unknown) => {
    throw new Error(`${(e as Error).message}: ${JSON.stringify(await archivedCounts(db, origin))} of ${target} blocks; intake ${JSON.stringify(await api<Intake>('/v1/intake'))}; log: ${arch.logs.slice(-6).map((l) => l.msg).join(' | ')}`);
  });
  assert.deepEqual((await api<{ evidence: unknown[] }>(`/v1/evidence?site=${siteId}`)).evidence, []);
  assert.equal((await api<Intake>('/v1/intake')).refused, 0);
});
