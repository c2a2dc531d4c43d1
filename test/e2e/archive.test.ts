/**
 * The fleet tier end to end, all real parts: a private MariaDB (Debian's mariadb-server), a real
 * Mosquitto as the central broker (TLS, password file), real gateway processes (`--demo`:
 * simulated locks on kernel ptys, each gateway its own development site) uplinking their chains,
 * and the real archive process (`node dist/gateway/archive/main.js`). Checks what the tables
 * hold with SQL and what the API answers with fetch, and what mosquitto_pub can push at it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { freePort, type GatewayProcess } from '../support/gateway-process.js';
import { uplinkingGateway, uplinkStatus, archivedCounts, writeArchiveConfig, forgedNext, equivocating, type FleetGateway } from '../support/fleet.js';
import { startMosquitto, type TlsMosquitto } from '../support/mosquitto.js';
import { startMariaDb, type TestMariaDb } from '../support/mariadb.js';
import { waitUntil } from '../support/wait.js';
import { oti } from '../support/oti-cli.js';
import { startArchive, stopProc } from '../support/archive-process.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import type { SiteTrust } from '../../ledger/roster.js';
import { encodeRange } from '../../gateway/sync/wire.js';
import { fromHex, generateKeyPair } from '../../ledger/crypto.js';
import { readKeyFile } from '../../ledger/keyfile.js';

const USERS = { uplink: 'uplink-password-1', archive: 'archive-password-1' };
const TOKEN = 'archive-api-token-0123456789';

type Gw = FleetGateway;

const gateway = (t: TestContext, dir: string, name: string, broker: { url: string; caFile: string }, demoLocks: number): Promise<Gw> => uplinkingGateway(t, dir, name, broker, demoLocks, USERS.uplink);
const status = uplinkStatus;
const archived = archivedCounts;

async function archive(t: TestContext, dir: string, broker: TlsMosquitto, db: TestMariaDb, siteFiles: string[]): Promise<{ proc: GatewayProcess; port: number; config: string }> {
  return runArchive(t, await writeArchiveConfig(dir, { broker: { url: broker.url, caFile: broker.caFile, password: USERS.archive }, db, token: TOKEN, siteFiles }));
}

async function runArchive(t: TestContext, config: string): Promise<{ proc: GatewayProcess; port: number; config: string }> {
  const proc = await startArchive(t, config);
  return { proc, port: proc.port, config };
}

async function api(port: number, path: string, token = TOKEN): Promise<{ status: number; body: unknown; bytes: Buffer }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const bytes = Buffer.from(await res.arrayBuffer());
  const json = (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(bytes.toString('utf8')) as unknown) : undefined;
  return { status: res.status, body: json, bytes };
}

async function trustOf(data: string): Promise<SiteTrust> {
  const s = JSON.parse(await readFile(join(data, 'site.json'), 'utf8')) as { siteId: string; siteKeys: string[] };
  return { siteId: s.siteId, siteKeys: s.siteKeys.map((k) => fromHex('siteKey', k, 32)) };
}

/** The uplink message of a chain's last archived block, rebuilt from the tables (what the gateway sent). */
async function lastBlockMessage(db: TestMariaDb, origin: string): Promise<Buffer> {
  const c = await db.root();
  try {
    const [b] = await c.query(`SELECT header, checkpoint, first_index, count FROM ${db.database}.blocks WHERE origin = ? ORDER BY n DESC LIMIT 1`, [origin]);
    const blk = (b as { header: Buffer; checkpoint: string; first_index: number; count: number }[])[0]!;
    const [e] = await c.query(`SELECT bytes FROM ${db.database}.entries WHERE origin = ? AND idx >= ? ORDER BY idx LIMIT ?`, [origin, blk.first_index, blk.count]);
    const entries = (e as { bytes: Buffer }[]).map((r) => new Uint8Array(r.bytes));
    return Buffer.from(encodeRange({ id: 0, chain: origin, first: Number(blk.first_index), entries, blocks: [{ h: new Uint8Array(blk.header), cp: blk.checkpoint }], end: true }));
  } finally {
    await c.end();
  }
}

/** mosquitto_pub of a binary payload (from a file) with QoS 1, as the uplink user. */
async function pub(broker: TlsMosquitto, topic: string, payload: Buffer): Promise<void> {
  const dir = dirname(broker.caFile);
  const file = join(dir, `msg-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  await writeFile(file, payload);
  await promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', broker.caFile, '-u', 'uplink', '-P', USERS.uplink, '-t', topic, '-q', '1', '-f', file]);
}

void test('fleet tier: gateways uplink their chains to Mosquitto, the archive verifies them into MariaDB exactly once, and answers queries with receipts that verify offline', { timeout: 600_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-');
  const [db, broker] = await Promise.all([startMariaDb(t), startMosquitto(t, USERS, { tls: true })]);

  // Site A is offline from the central broker while its locks work: its uplink points at a closed port.
  const offline = { url: `mqtts://127.0.0.1:${await freePort()}`, caFile: broker.caFile };
  let a = await gateway(t, dir, 'gw-a', offline, 1);
  await waitUntil('site A has blocks waiting for the uplink', async () => ((await status(a)).uplink?.behind ?? 0) >= 5);
  const aOffline = await status(a);
  assert.equal(aOffline.uplink?.connected, false);
  await stopProc(a.gw);

  // The archive takes its persistent session on the central broker before site B pushes (docs/ARCHIVE.md §Order of starting).
  // Site B's identity is made by a first start (its site.json is what the archive is told to trust).
  await stopProc((await gateway(t, dir, 'gw-b', offline, 0)).gw);
  const archiveRun = await archive(t, dir, broker, db, [join(a.data, 'site.json'), join(dir, 'gw-b', 'site.json')]);
  let arch = archiveRun;
  let b = await gateway(t, dir, 'gw-b', broker, 1);
  const originB = (await status(b)).chain.origin;
  await waitUntil('the archive holds blocks of site B', async () => (await archived(db, originB)).blocks >= 3).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; archive log: ${arch.proc.logs.slice(-8).map((l) => l.msg).join(' | ')}`);
  });

  // The archive is killed while B keeps pushing, and started again: nothing is lost or doubled.
  await stopProc(arch.proc, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  arch = await runArchive(t, archiveRun.config);

  // B is killed without warning (its cursor may be behind what the broker acknowledged) and comes back without locks: it replays.
  await stopProc(b.gw, 'SIGKILL');
  b = await gateway(t, dir, 'gw-b', broker, 0);
  // A comes back online, without locks: it catches up from its cursor.
  a = await gateway(t, dir, 'gw-a', broker, 0);
  const finalA = await status(a);
  const finalB = await status(b);
  assert.ok(finalA.chain.size > 0 && finalB.chain.size > 0);
  await waitUntil('both uplinks caught up', async () => (await status(a)).uplink?.behind === 0 && (await status(b)).uplink?.behind === 0);
  for (const s of [finalA, finalB]) {
    await waitUntil(`the archive holds all of ${s.chain.origin}`, async () => (await archived(db, s.chain.origin)).blocks === s.chain.blocks);
    assert.deepEqual(await archived(db, s.chain.origin), { entries: s.chain.size, blocks: s.chain.blocks, maxIdx: s.chain.size - 1 }, `${s.chain.origin}: every block exactly once`);
  }

  // Queries: events of a site, paginated; a lock's history; chain state; a receipt that verifies offline with the site's keys only.
  const siteA = finalA.chain.origin.split('/')[1]!;
  const first = await api(arch.port, `/v1/events?site=${siteA}&limit=2`);
  assert.equal(first.status, 200);
  const page1 = first.body as { items: { origin: string; index: number; lock: string; time: number }[]; next?: string };
  assert.equal(page1.items.length, 2);
  assert.ok(page1.next !== undefined);
  const page2 = (await api(arch.port, `/v1/events?site=${siteA}&limit=2&after=${page1.next}`)).body as typeof page1;
  assert.ok(page2.items.length >= 1);
  assert.ok(page2.items[0]!.time > page1.items[1]!.time || (page2.items[0]!.time === page1.items[1]!.time && page2.items[0]!.index > page1.items[1]!.index));
  const lock = page1.items[0]!.lock;
  const history = (await api(arch.port, `/v1/events?lock=${lock}&limit=1000`)).body as typeof page1;
  assert.ok(history.items.length >= 2 && history.items.every((e) => e.lock === lock));
  const chains = (await api(arch.port, `/v1/chains?site=${siteA}`)).body as { chains: { origin: string; size: number; evidence: number }[] };
  assert.deepEqual(chains.chains.map((c) => [c.origin, c.size]), [[finalA.chain.origin, finalA.chain.size]]);
  const ev = page1.items[0]!;
  const receipt = await api(arch.port, `/v1/receipt?origin=${encodeURIComponent(ev.origin)}&index=${ev.index}`);
  assert.equal(receipt.status, 200);
  const verified = verifyReceipt(receipt.bytes, await trustOf(a.data));
  assert.equal(verified.index, ev.index);
  assert.equal(verified.gatewayId, ev.origin.split('/')[2]);
  assert.equal(verified.checkpoint.origin, ev.origin);
  const receiptFile = join(dir, 'archived.receipt.cbor');
  await writeFile(receiptFile, receipt.bytes);
  const cli = await oti(['receipt', 'verify', receiptFile, '--site-keys', join(a.data, 'site.json')]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.throws(() => verifyReceipt(receipt.bytes, { siteId: siteA, siteKeys: [generateKeyPair().publicKey] }), { code: 'ERR_RECEIPT_INVALID' });

  // The same questions with the real oti binary.
  const cliApi = ['--archive', `http://127.0.0.1:${arch.port}`, '--token', TOKEN];
  const cliEvents = await oti(['archive', 'events', '--lock', lock, '--limit', '1000', '--json', ...cliApi]);
  assert.equal(cliEvents.code, 0, cliEvents.stderr);
  assert.deepEqual(cliEvents.json<typeof history>().items.map((e) => e.index), history.items.map((e) => e.index));
  const cliChains = await oti(['archive', 'chains', '--json', ...cliApi]);
  assert.deepEqual(cliChains.json<{ chains: { origin: string }[] }>().chains.map((c) => c.origin).sort(), [finalA.chain.origin, finalB.chain.origin].sort());
  const cliGaps = await oti(['archive', 'gaps', '--site', siteA, '--from', '2020-01-01', '--json', ...cliApi]);
  assert.equal(cliGaps.code, 0, cliGaps.stderr);
  assert.ok(Array.isArray(cliGaps.json<{ items: unknown[] }>().items));
  const cliReceipt = await oti(['archive', 'receipt', ev.origin, String(ev.index), '--out', join(dir, 'cli.receipt.cbor'), ...cliApi]);
  assert.equal(cliReceipt.code, 0, cliReceipt.stderr);
  assert.equal((await oti(['receipt', 'verify', join(dir, 'cli.receipt.cbor'), '--site-keys', join(a.data, 'site.json')])).code, 0);
  const refused = await oti(['archive', 'events', '--site', siteA, ...cliApi.slice(0, 2), '--token', 'wrong']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /ERR_UNAUTHORIZED/);

  // The API: a token is required; injection-shaped parameters are refused with a code, never run.
  assert.equal((await api(arch.port, `/v1/events?site=${siteA}`, 'wrong-token')).status, 401);
  for (const q of [`site=${encodeURIComponent("x' OR '1'='1")}`, `lock=${encodeURIComponent('a"; DROP TABLE entries; --')}`, `site=${siteA}&from=${encodeURIComponent('0 OR 1=1')}`, `site=${siteA}&after=${encodeURIComponent("') OR 1=1 --")}`, `site=${siteA}&limit=100000000`]) {
    const r = await api(arch.port, `/v1/events?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal((r.body as { error: { code: string } }).error.code, 'ERR_ARGUMENT', q);
  }
  assert.equal((await archived(db, finalA.chain.origin)).entries, finalA.chain.size, 'the tables are intact');

  // A forged block pushed on B's topic by someone holding broker credentials: refused, kept as evidence; B's chain unaffected.
  const topicB = `oti-fleet/${originB.split('/')[1]}/${originB.split('/')[2]}/block`;
  const lastB = await lastBlockMessage(db, originB);
  await pub(broker, topicB, forgedNext(lastB));
  await pub(broker, topicB, lastB);
  const evidence = async (): Promise<{ code: string }[]> => ((await api(arch.port, `/v1/evidence?site=${originB.split('/')[1]}`)).body as { evidence: { code: string }[] }).evidence;
  await waitUntil('the forgery is kept as evidence', async () => (await evidence()).length >= 1);
  assert.deepEqual((await evidence()).map((e) => e.code), ['ERR_CHECKPOINT_SIGNATURE']);
  // The same block number with other content, signed with B's own gateway key (a copied key, say): equivocation, kept as evidence.
  await pub(broker, topicB, equivocating(lastB, await readKeyFile(join(dir, 'gw-b', 'gateway.key'))));
  await waitUntil('the equivocation is kept as evidence', async () => (await evidence()).some((e) => e.code === 'ERR_EQUIVOCATION'));
  // A message on an injection-shaped topic names no site: dropped and counted, nothing written, nothing run.
  const refusedBefore = ((await api(arch.port, '/v1/intake')).body as { refused: number }).refused;
  await pub(broker, "oti-fleet/x'; DROP TABLE entries; --/gw/block", lastB);
  await waitUntil('the injection-shaped topic is refused', async () => ((await api(arch.port, '/v1/intake')).body as { refused: number }).refused > refusedBefore);
  await waitUntil('the duplicate is counted', async () => ((await api(arch.port, '/v1/intake')).body as { duplicates: number }).duplicates >= 1);
  assert.deepEqual(await archived(db, originB), { entries: finalB.chain.size, blocks: finalB.chain.blocks, maxIdx: finalB.chain.size - 1 });
});
