/**
 * The archive and a site on the gateways' embedded brokers, all real parts: two real gateway
 * processes of one enrolled site (static peers, each its own aedes broker; their chains filled
 * with lock events before they start), a private MariaDB, a real Mosquitto as the central broker
 * (TLS) and the real archive process.
 *
 * - Pulling (docs/ARCHIVE.md §Pulling from sites): gw-a's users file has an `archive` user
 *   (`oti mqtt user add archive --role archive`); the archive pulls the site through gw-a's
 *   embedded broker with it. gw-b has no uplink, so its chain reaches the archive by the pull
 *   alone, every block verified into MariaDB, and so do gw-a's cosignatures of it (read on
 *   `oti/<site>/chain/+/cosig/+`): gw-b's chain and events become `confirmed`. The same user is
 *   refused, with ERR_MQTT_ACL in the gateway's log and metrics, for every publish that would
 *   write into the site, a cosignature included.
 * - Receipts with cosignatures (§Receipts): gw-a uplinks its chain and the cosignatures gw-b
 *   makes of it to the central broker, also those made before its uplink started, with no new
 *   block (a subscriber on the central broker sees them). The archive's receipt of a gw-a event carries gw-b's
 *   cosignature line and is byte for byte the gateway's own (GET /receipts/{id}), also against an
 *   older checkpoint (`size`); `oti receipt verify` checks it and names the cosigner, Go's
 *   sumdb/note checks the cosignature as a C2SP tlog-proof (skipped without Go).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect, connectAsync, type MqttClient } from 'mqtt';
import { makeSite, enrollLock, signedEvent, tempDir, type TestLock } from '../support/site.js';
import { loopbackSite, type EnrolledGateway } from '../support/enrolled-gateway.js';
import { startTestGateway, type GatewayProcess } from '../support/gateway-process.js';
import { startMosquitto } from '../support/mosquitto.js';
import { startMariaDb, type TestMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { oti } from '../support/oti-cli.js';
import { startArchive } from '../support/archive-process.js';
import { writeArchiveConfig } from '../support/fleet.js';
import { buildGoTlog, cosignerVerifierKey, missingGo, noteVerifierKey } from '../support/go-tlog-build.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { verifyCosignature } from '../../gateway/sync/witness.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeReceipt, verifyReceipt } from '../../ledger/receipt.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';

const SITE = 'site-emb';
const TOKEN = 'archive-api-token-embedded-0123';
const CENTRAL = { uplink: 'uplink-password-1', archive: 'archive-password-1' };
const ARCHIVE_USER = { username: 'archive', password: 'archive-site-password-1' };
const run = promisify(execFile);

/** Appends `n` signed events of `lock` to the gateway's chain (offline, before it starts), in blocks of `per`. */
async function fill(g: EnrolledGateway, lock: TestLock, n: number, per: number): Promise<void> {
  const id = await loadOrCreateIdentity(g.dataDir);
  const store = await LedgerStore.open(join(g.dataDir, 'ledger'));
  const chain = await Chain.open({ store, trust: id.trust, gatewayId: g.id, key: id.key, genesis: id.enrolment });
  await chain.append({ kind: 'roster', signed: lock.statement });
  for (let done = 0; done < n; done += per) {
    await Promise.all(Array.from({ length: Math.min(per, n - done) }, () => chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true })));
  }
  await chain.close();
  await store.close();
}

interface Gw {
  readonly g: EnrolledGateway;
  readonly proc: GatewayProcess;
  readonly broker: number;
  readonly api: number;
  readonly origin: string;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; bytes: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, type: res.headers.get('content-type') ?? '', bytes: Buffer.from(await res.arrayBuffer()) };
}

async function ownSize(gw: Gw): Promise<number> {
  const chains = JSON.parse((await get(`http://127.0.0.1:${gw.api}/chains`)).bytes.toString('utf8')) as { chains: { origin: string; size: number }[] };
  return chains.chains.find((c) => c.origin === gw.origin)?.size ?? 0;
}

async function counts(db: TestMariaDb, origin: string): Promise<{ blocks: number; entries: number; maxIdx: number; lastBlockEnd: number[] }> {
  const c = await db.root();
  try {
    const [e] = await c.query(`SELECT COUNT(*) AS n, COALESCE(MAX(idx), -1) AS m FROM ${db.database}.entries WHERE origin = ?`, [origin]);
    const [b] = await c.query(`SELECT first_index + count AS e FROM ${db.database}.blocks WHERE origin = ? ORDER BY n`, [origin]);
    const er = (e as { n: number; m: number }[])[0]!;
    const ends = (b as { e: number }[]).map((r) => Number(r.e));
    return { blocks: ends.length, entries: Number(er.n), maxIdx: Number(er.m), lastBlockEnd: ends };
  } finally {
    await c.end();
  }
}

/** An mqtt.js client of gw-a's broker with the archive user; resolves once connected. */
function archiveClient(port: number, clientId: string, user = ARCHIVE_USER): Promise<MqttClient> {
  const c = connect(`mqtt://127.0.0.1:${port}`, { ...user, clientId, reconnectPeriod: 0, protocolVersion: 4 });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

void test('archive: pulls a site on its embedded brokers with an archive user that cannot write into it, and serves receipts with the cosignatures, byte for byte the gateway\'s', { timeout: 420_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-embedded-');
  const s = makeSite(SITE);
  const [db, central] = await Promise.all([startMariaDb(t), startMosquitto(t, CENTRAL, { tls: true })]);
  // What the uplinks send to the central broker as cosignatures, seen from before any gateway starts.
  const uplinked: { topic: string; size: number }[] = [];
  const spy = await connectAsync(central.url, { username: 'archive', password: CENTRAL.archive, ca: await readFile(central.caFile), clientId: 'cosignature-spy', reconnectPeriod: 0 });
  t.after(() => spy.endAsync(true));
  spy.on('message', (topic, payload) => uplinked.push({ topic, size: parseCheckpoint(payload.toString('utf8')).size }));
  await spy.subscribeAsync('oti-fleet/+/+/cosig/+', { qos: 1 });

  // The site: gw-a and gw-b, chains of a few blocks each; gw-a has an archive user and an uplink, gw-b neither.
  const ids = ['gw-a', 'gw-b'] as const;
  const locks = { 'gw-a': enrollLock(s, 'door-a'), 'gw-b': enrollLock(s, 'door-b') };
  const uplinkPw = join(dir, 'uplink.password');
  await writeFile(uplinkPw, `${CENTRAL.uplink}\n`, { mode: 0o600 });
  const site = await loopbackSite(dir, s, ids, {
    prepare: async (g) => {
      await fill(g, locks[g.id as (typeof ids)[number]], 90, 30);
      if (g.id !== 'gw-a') return;
      const added = await oti(['mqtt', 'user', 'add', ARCHIVE_USER.username, '--role', 'archive', '--file', join(g.dataDir, 'mqtt-users.json'), '--json'], { env: { OTI_MQTT_PASSWORD: ARCHIVE_USER.password } });
      assert.equal(added.code, 0, added.stderr);
      assert.equal(added.json<{ role: string }>().role, 'archive');
    },
    more: (id) => (id === 'gw-a' ? { uplink: { url: central.url, username: 'uplink', passwordFile: uplinkPw, ca: central.caFile, window: 4 } } : {}),
  });
  const gws: Gw[] = site.map((g) => ({ g, proc: startTestGateway(t, ['--config', g.config]), broker: g.broker, api: g.api, origin: `oti/${SITE}/${g.id}` }));
  for (const gw of gws) await gw.proc.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 90_000);
  const [a, b] = gws as [Gw, Gw];

  // The archive: the central broker for gw-a's uplink, and a pull of the site through gw-a's embedded broker.
  const config = await writeArchiveConfig(dir, {
    broker: { url: central.url, caFile: central.caFile, password: CENTRAL.archive },
    db,
    token: TOKEN,
    sites: [{ siteId: SITE, siteKeys: s.trust.siteKeys }],
    pull: [{ siteId: SITE, url: `mqtt://127.0.0.1:${a.broker}`, username: ARCHIVE_USER.username, password: ARCHIVE_USER.password }],
    verifyThreads: 1,
  });
  const arch = await startArchive(t, config);
  const auth = { authorization: `Bearer ${TOKEN}` };
  const archApi = `http://127.0.0.1:${arch.port}`;

  // 2. Both chains archived whole: gw-b's by the pull alone (it has no uplink), through gw-a's broker.
  for (const gw of gws) {
    await waitUntil(`the archive holds all of ${gw.origin}`, async () => {
      const size = await ownSize(gw);
      const c = await counts(db, gw.origin);
      return size > 0 && c.entries === size && c.maxIdx === size - 1 && c.lastBlockEnd.at(-1) === size;
    }, 180_000).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await counts(db, gw.origin))} of ${await ownSize(gw)}; archive log: ${arch.logs.slice(-6).map((l) => l.msg).join(' | ')}`);
    });
  }
  const intake = JSON.parse((await get(`${archApi}/v1/intake`, auth)).bytes.toString('utf8')) as { refused: number; pull: { site: string; connected: boolean; requests: number }[] };
  assert.equal(intake.refused, 0);
  assert.deepEqual(intake.pull.map((p) => [p.site, p.connected]), [[SITE, true]]);
  assert.ok(intake.pull[0]!.requests >= 1);
  // What was pulled ends at the checkpoint gw-b signed (the archive's last checkpoint of the chain is gw-b's own note).
  const bStatus = JSON.parse((await get(`http://127.0.0.1:${b.api}/status`)).bytes.toString('utf8')) as { chain: { checkpoint: string } };
  assert.equal((await get(`${archApi}/v1/tlog/${b.origin}/checkpoint`, auth)).bytes.toString('utf8'), bStatus.chain.checkpoint);
  const pulled = await oti(['archive', 'events', '--lock', 'door-b', '--limit', '1000', '--json', '--archive', archApi, '--token', TOKEN]);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.equal(pulled.json<{ items: unknown[] }>().items.length, 90);

  // The archive user writes nothing into the site: each such publish closes its connection, ERR_MQTT_ACL in gw-a's log and metrics.
  const sizeBefore = await ownSize(a);
  const forbidden: [string, boolean][] = [
    [`oti/${SITE}/chain/gw-a/checkpoint`, true],
    [`oti/${SITE}/chain/gw-a/cosig/archive`, true],
    [`oti/${SITE}/chain/gw-a/cosig/gw-b`, true],
    [`oti/${SITE}/chain/gw-a/range/archive`, false],
    [`oti/${SITE}/chain/gw-a/req/gw-b`, false],
    [`oti/${SITE}/evidence/archive`, true],
    [`oti/${SITE}/gateways/archive/state`, true],
    [`oti/${SITE}/events/door-a`, false],
    [`oti/${SITE}/status/door-a/1`, true],
  ];
  for (const [i, [topic, retain]] of forbidden.entries()) {
    const c = await archiveClient(a.broker, `forger-${i}`);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.publish(topic, 'forged', { qos: 1, retain });
    await closed;
    c.end(true);
  }
  const refusedLines = (): number => a.proc.logs.filter((l) => l.msg.startsWith('MQTT publish refused') && l['role'] === 'archive' && l['code'] === 'ERR_MQTT_ACL').length;
  await waitUntil('every refusal logged', () => refusedLines() === forbidden.length);
  const metrics = (await get(`http://127.0.0.1:${a.api}/metrics`)).bytes.toString('utf8');
  assert.match(metrics, new RegExp(`oti_mqtt_publishes_refused_total\\{code="ERR_MQTT_ACL"\\} ${forbidden.length}\\b`));
  // A subscription beyond its four filters gets 0x80; its own filters are granted.
  const reader = await archiveClient(a.broker, 'reader');
  const granted = await reader.subscribeAsync([`oti/${SITE}/chain/+/checkpoint`, `oti/${SITE}/chain/+/range/archive`, `oti/${SITE}/#`, `oti/${SITE}/chain/+/cosig/+`, `oti/${SITE}/chain/+/cosig/#`], { qos: 1 }).catch((e: { packet?: { granted?: number[] } }) => e.packet?.granted?.map((qos) => ({ qos })) ?? []);
  assert.deepEqual(granted.map((g) => g.qos), [1, 1, 0x80, 1, 0x80]);
  reader.end(true);
  assert.equal(await ownSize(a), sizeBefore, 'nothing was written into gw-a\'s chain');

  // A site only pulled is confirmed too: gw-a's cosignatures of gw-b's chain, read on gw-a's broker, make gw-b's chain and events confirmed
  // (a site of two chains: the origin and one witness).
  const bSize = await ownSize(b);
  const chainOf = async (origin: string): Promise<{ quorum: number; replicated: number; confirmed: number; cosigners: { gateway: string; size: number }[] } | undefined> =>
    (JSON.parse((await get(`${archApi}/v1/chains?site=${SITE}`, auth)).bytes.toString('utf8')) as { chains: { origin: string; quorum: number; replicated: number; confirmed: number; cosigners: { gateway: string; size: number }[] }[] }).chains.find((c) => c.origin === origin);
  await waitUntil('gw-b\'s pulled chain is confirmed in the archive', async () => (await chainOf(b.origin))?.confirmed === bSize, 120_000).catch(async (e: unknown) => {
    throw new Error(`${(e as Error).message} (size ${bSize}): ${JSON.stringify(await chainOf(b.origin))}; intake ${(await get(`${archApi}/v1/intake`, auth)).bytes.toString('utf8')}`);
  });
  const bChain = (await chainOf(b.origin))!;
  assert.deepEqual([bChain.quorum, bChain.replicated, bChain.cosigners.map((c) => [c.gateway, c.size])], [2, bSize, [['gw-a', bSize]]]);
  assert.ok(!uplinked.some((m) => m.topic.startsWith(`oti-fleet/${SITE}/gw-b/`)), 'gw-b uplinks nothing: its cosignatures came by the pull');
  const bEvents = JSON.parse((await get(`${archApi}/v1/events?lock=door-b&limit=1000`, auth)).bytes.toString('utf8')) as { items: { status: string }[] };
  assert.deepEqual([...new Set(bEvents.items.map((e) => e.status))], ['confirmed']);

  // 1. gw-b's cosignature of all of gw-a's chain reaches the archive with no new block, through gw-a's uplink (docs/ARCHIVE.md §Uplink)
  // whether gw-b made it before or after the uplink started (and through the pull too).
  const size = await ownSize(a);
  await waitUntil('the uplink sends gw-b\'s cosignature of all of gw-a', () => uplinked.some((m) => m.topic === `oti-fleet/${SITE}/gw-a/cosig/gw-b` && m.size === size), 120_000);
  const cosigners = async (): Promise<{ witness: string; size: number }[]> => (JSON.parse((await get(`${archApi}/v1/cosignatures?origin=${encodeURIComponent(a.origin)}`, auth)).bytes.toString('utf8')) as { cosignatures: { witness: string; size: number }[] }).cosignatures;
  await waitUntil('gw-b\'s cosignature of all of gw-a is archived', async () => (await cosigners()).some((c) => c.witness === 'gw-b' && c.size === size), 120_000).catch(async (e: unknown) => {
    const st = (await get(`http://127.0.0.1:${a.api}/status`)).bytes.toString('utf8');
    throw new Error(`${(e as Error).message} (size ${size}): ${JSON.stringify(await cosigners())}; intake ${(await get(`${archApi}/v1/intake`, auth)).bytes.toString('utf8')}; gw-a status ${st.slice(0, 3000)}; archive log: ${arch.logs.slice(-8).map((l) => l.msg).join(' | ')}`);
  });
  const events = JSON.parse((await get(`${archApi}/v1/events?lock=door-a&limit=1000`, auth)).bytes.toString('utf8')) as { items: { index: number; ctr: number; origin: string }[] };
  assert.equal(events.items.length, 90);
  const ev = events.items[10]!;
  const fromArchive = (await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}`, auth)).bytes;
  const fromGateway = (await get(`http://127.0.0.1:${a.api}/receipts/door-a:${ev.ctr}`, { accept: 'application/cbor' })).bytes;
  const note = decodeReceipt(fromArchive).checkpoint;
  assert.equal(parseCheckpoint(note).size, size);
  assert.deepEqual(parseCheckpoint(note).signatures.map((x) => x.name), [a.origin, b.origin], 'the gateway\'s signature, then gw-b\'s cosignature');
  assert.equal(fromArchive.toString('base64'), fromGateway.toString('base64'), 'the archive\'s receipt is the gateway\'s, byte for byte');
  const v = verifyReceipt(new Uint8Array(fromArchive), s.trust);
  assert.deepEqual([v.index, v.provenance, v.roster], [ev.index, 'lock-signed', 'committed']);
  const bKey = (await loadOrCreateIdentity(b.g.dataDir)).key;
  assert.notEqual(verifyCosignature(parseCheckpoint(note), b.origin, bKey.publicKey, Math.floor(Date.now() / 1000)), undefined, 'gw-b\'s line verifies with gw-b\'s key');

  // Against an older checkpoint (a block that ended before the head): the gateway's receipt with ?size=N, the same bytes from the archive.
  const older = (await counts(db, a.origin)).lastBlockEnd.find((e) => e > ev.index && e < size)!;
  assert.ok(older !== undefined, 'a block ends between the event and the head');
  const olderArchive = (await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}&size=${older}`, auth)).bytes;
  const olderGateway = (await get(`http://127.0.0.1:${a.api}/receipts/door-a:${ev.ctr}?size=${older}`, { accept: 'application/cbor' })).bytes;
  const od = decodeReceipt(olderArchive);
  assert.equal(parseCheckpoint(od.checkpoint).size, older);
  assert.equal(od.newer !== undefined && parseCheckpoint(od.newer.checkpoint).size, size, 'it carries the last checkpoint and the consistency proof to it');
  // The archive keeps each witness's largest cosigned checkpoint only; the gateway may also hold lines for older sizes.
  const gwOlder = decodeReceipt(olderGateway);
  const archLines = parseCheckpoint(od.checkpoint).signatures.map((x) => x.name);
  assert.deepEqual(archLines, [a.origin]);
  const gatewayLineOnly = gwOlder.checkpoint.split('\n').filter((l) => !l.startsWith('— ') || l.startsWith(`— ${a.origin} `)).join('\n');
  assert.deepEqual({ ...gwOlder, checkpoint: gatewayLineOnly }, od, 'the same receipt but for cosignature lines the archive no longer holds');
  assert.equal(verifyReceipt(new Uint8Array(olderArchive), s.trust).newer?.size, size);
  assert.equal((await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}&size=${older + 1}`, auth)).status, 404, 'no block ends there');
  assert.equal((await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}&size=${size + 1}`, auth)).status, 400, 'beyond the archived chain');
  for (const bad of ['0', 'x', '-1']) assert.equal((await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}&size=${bad}`, auth)).status, 400, `size=${bad}`);
  assert.equal((await get(`${archApi}/v1/receipt?origin=${encodeURIComponent(a.origin)}&index=${ev.index}&format=json`, auth)).status, 400, 'format: cbor or tlog-proof');

  // The CLI: oti archive receipt (CBOR and tlog-proof), checked offline by oti receipt verify, which names the cosigner.
  const cbor = join(dir, 'a.receipt.cbor');
  const cli = await oti(['archive', 'receipt', a.origin, String(ev.index), '--out', cbor, '--json', '--archive', archApi, '--token', TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(await readFile(cbor), fromArchive);
  const olderFile = join(dir, 'a-older.receipt.cbor');
  const cliOlder = await oti(['archive', 'receipt', a.origin, String(ev.index), '--size', String(older), '--out', olderFile, '--archive', archApi, '--token', TOKEN]);
  assert.equal(cliOlder.code, 0, cliOlder.stderr);
  assert.deepEqual(await readFile(olderFile), olderArchive);
  const proofFile = join(dir, 'a.tlog-proof');
  const cliProof = await oti(['archive', 'receipt', a.origin, String(ev.index), '--format', 'tlog-proof', '--out', proofFile, '--archive', archApi, '--token', TOKEN]);
  assert.equal(cliProof.code, 0, cliProof.stderr);
  const gwProof = (await get(`http://127.0.0.1:${a.api}/receipts/door-a:${ev.ctr}?format=tlog-proof`)).bytes;
  assert.equal((await readFile(proofFile)).toString('utf8'), gwProof.toString('utf8'), 'the tlog-proof forms are the same text too');
  for (const f of [cbor, proofFile]) {
    const verified = await oti(['receipt', 'verify', f, '--site-keys', a.g.dataDir]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, new RegExp(`signature lines of ${b.origin.replace(/\//g, '\\/')} \\(witness cosignatures`));
  }

  const verifiedOlder = await oti(['receipt', 'verify', olderFile, '--site-keys', a.g.dataDir]);
  assert.equal(verifiedOlder.code, 0, verifiedOlder.stderr);
  assert.match(verifiedOlder.stdout, new RegExp(`under checkpoint size ${older}, .*\\n.*\\n.*prefix of the newer checkpoint size ${size}`, 's'));

  // Go's sumdb/note opens the checkpoint with gw-a's key and gw-b's cosignature key, sumdb/tlog checks the inclusion.
  const noGo = missingGo();
  if (noGo !== undefined) {
    t.diagnostic(`Go check skipped: ${noGo}`);
  } else {
    const bin = await buildGoTlog(join(dir, 'go'));
    const record = join(dir, 'a.record');
    await writeFile(record, decodeReceipt(fromArchive).entry);
    const aKey = (await loadOrCreateIdentity(a.g.dataDir)).key;
    const { stdout } = await run(bin, ['-proof', proofFile, '-record', record, '-vkey', noteVerifierKey(a.origin, aKey.publicKey), '-cosigner', cosignerVerifierKey(b.origin, bKey.publicKey)]);
    const go = JSON.parse(stdout) as { included: boolean; signatures: string[]; cosigners: string[] };
    assert.deepEqual([go.included, go.signatures, go.cosigners], [true, [a.origin, b.origin], [b.origin]]);
  }

  // gw-a restarted: gw-b's cosignature, retained on the site's brokers, is checked again by sync while gw-a starts, before its
  // uplink does, and the uplink sends it on its first connection, with no new block.
  assert.equal(await a.proc.stop(), 0);
  uplinked.length = 0;
  const again = startTestGateway(t, ['--config', join(dir, 'gw-a.yaml')]);
  await again.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 90_000);
  await waitUntil('after the restart the uplink sends gw-b\'s cosignature again', () => uplinked.some((m) => m.topic === `oti-fleet/${SITE}/gw-a/cosig/gw-b` && m.size === size), 60_000);
  assert.equal(await ownSize(a), size, 'no new block');
});
