/**
 * Recovery of the own chain and the confirmation quorum with peers that are offline or revoked,
 * on four real gateway processes on 127.0.0.1 (static peers, real LevelDB, real aedes), as a
 * technician meets them (docs/SYNC.md §Recovery of the own chain, §Witnessing and confirmation):
 *
 *  - a gateway revoked in the site's roster (recorded in another gateway's chain, never in its
 *    own) does not count toward the quorum of a gateway that replicates its chain;
 *  - a re-flashed gateway asks its peers at once: an offline peer and a revoked one do not use up
 *    the recovery time, so it recovers its chain from the one online peer within seconds;
 *  - a re-flashed gateway that sees, retained on a peer's broker, a checkpoint of its own chain
 *    beyond what the peers could give stays read-only (ERR_LEDGER_LOST) rather than fork, records
 *    that checkpoint, and `oti ledger accept-loss` lets it run again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { makeSite, tempDir } from '../support/site.js';
import { startGateway, type GatewayProcess, type LogLine } from '../support/gateway-process.js';
import { loopbackSite, type LoopbackGateway } from '../support/enrolled-gateway.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { applyBundle } from '../../gateway/config/bundle.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { makeGatewayCredential } from '../../gateway/broker/credentials.js';
import { Signer } from '../../ledger/crypto.js';
import { signCheckpoint } from '../../ledger/checkpoint.js';
import { encodeSigned, signStatement } from '../../ledger/roster.js';

const s = makeSite('peers-site');
const IDS = ['gw-a', 'gw-b', 'gw-c', 'gw-d'];
const origin = (id: string): string => `oti/${s.siteId}/${id}`;
/** sync.recoverTimeoutMs's default: before the fix, one silent peer used all of it. */
const RECOVER_TIMEOUT_MS = 15_000;

interface Gw extends LoopbackGateway {
  proc: GatewayProcess | undefined;
}

void test('revoked and offline peers: quorum, recovery at once from the online peer, and no fork past a retained checkpoint', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-recovery-peers-');
  const gws: Gw[] = (await loopbackSite(dir, s, IDS)).map((g) => ({ ...g, proc: undefined }));
  t.after(async () => {
    for (const g of gws) g.proc?.proc.kill('SIGKILL');
    await Promise.all(gws.flatMap((g) => (g.proc !== undefined ? [g.proc.exited] : [])));
  });
  const [a, b, c, d] = gws as [Gw, Gw, Gw, Gw];
  const start = (g: Gw): GatewayProcess => (g.proc = startGateway(['--config', g.config]));
  const running = (g: Gw): Promise<LogLine> => g.proc!.waitForLog(`${g.id} running`, (l) => l.msg.includes('running; press Ctrl+C'), 90_000);
  const stop = async (g: Gw): Promise<void> => {
    assert.equal(await g.proc!.stop(), 0, `${g.id} stops cleanly`);
  };
  const json = async <T>(g: Gw, path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${g.api}${path}`)).json()) as T;
  const held = async (g: Gw, of: Gw): Promise<number> => (await json<{ chains: { origin: string; size: number }[] }>(g, '/chains')).chains.find((x) => x.origin === origin(of.id))?.size ?? -1;
  const quorum = async (g: Gw): Promise<number> => (await json<{ sync: { quorum: number } }>(g, '/status')).sync.quorum;
  const lines = (g: Gw): string => g.proc!.logs.map((l) => `  ${g.id} [${l.level}] ${l.msg}`).join('\n');

  for (const g of gws) start(g);
  for (const g of gws) await running(g);
  for (const g of gws) for (const o of gws) if (o !== g) await waitUntil(`${g.id} holds ${o.id}'s chain`, async () => (await held(g, o)) > 0, 90_000);
  assert.equal(await quorum(c), 3, 'four gateways: a majority of 3');

  // gw-b goes off the site and is revoked at gw-a (its enrolment first: gw-a's chain does not list it yet).
  await stop(b);
  const post = async (g: Gw, body: Uint8Array): Promise<void> => {
    const r = await fetch(`http://127.0.0.1:${g.api}/roster`, { method: 'POST', headers: { 'content-type': 'application/cbor' }, body });
    assert.equal(r.status, 201, await r.text());
  };
  const bId = await loadOrCreateIdentity(b.dataDir);
  await post(a, encodeSigned(bId.enrolment));
  await post(a, encodeSigned(signStatement(s.site, { site: s.siteId, op: 'revoke', role: 'gateway', id: 'gw-b', key: bId.key.publicKey, time: Date.now() })));
  // gw-c and gw-d learn it from gw-a's chain; gw-b's own chain never says so, yet it counts no more.
  for (const g of [a, c, d]) await waitUntil(`${g.id}: quorum 2 of gw-a, gw-c, gw-d`, async () => (await quorum(g)) === 2, 90_000, () => lines(g));

  // gw-d goes offline (not revoked). gw-c is re-flashed: data folder wiped, its bundle applied again.
  await stop(d);
  const cSize = await held(a, c);
  await stop(c);
  const reflash = async (g: Gw): Promise<void> => {
    await rm(g.dataDir, { recursive: true, force: true });
    const again = `${g.bundle}.${Date.now()}.json`;
    await copyFile(g.bundle, again);
    await applyBundle(again, g.dataDir, { now: Date.now() });
  };
  await reflash(c);
  start(c);
  await running(c);
  const logs = c.proc!.logs;
  const rec = logs.find((l) => l.msg.startsWith("recovered this gateway's own chain from peers: "));
  assert.ok(rec !== undefined, `gw-c recovered its chain:\n${lines(c)}`);
  assert.equal(Number(rec['after']), cSize, 'all of it, from gw-a');
  const took = Number(rec['time']) - Number(logs[0]!['time']);
  t.diagnostic(`re-flashed gw-c recovered ${cSize} entries ${took} ms after its first log line`);
  assert.ok(took < RECOVER_TIMEOUT_MS / 2, `recovered in ${took} ms: the offline peer did not hold it up`);
  assert.deepEqual(rec['answered'], ['gw-a'], 'gw-a answered; gw-d (offline) did not, gw-b (revoked) was not asked');
  assert.ok(!(rec['peers'] as string[]).includes('gw-b'), 'the revoked gateway is not asked');
  assert.equal(logs.find((l) => /equivocat/i.test(l.msg))?.msg, undefined);

  // gw-c signed a checkpoint that its peers never fetched (it stopped before they pulled it): it
  // stays retained on gw-a's broker. Made here with gw-c's key, as gw-c would have.
  await stop(c);
  const held2 = await held(a, c);
  await reflash(c);
  const cId = await loadOrCreateIdentity(c.dataDir);
  const ahead = signCheckpoint({ origin: origin('gw-c'), size: held2 + 3, root: randomBytes(32), block: held2 + 2, blockHash: randomBytes(32) }, new Signer(cId.key.seed), origin('gw-c'));
  const client = connect(`mqtt://127.0.0.1:${a.broker}`, { ...makeGatewayCredential({ siteId: s.siteId, gatewayId: 'gw-c', key: cId.key, enrolment: cId.enrolment }), clientId: 'test-retained', reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  await client.publishAsync(`oti/${s.siteId}/chain/gw-c/checkpoint`, ahead.note, { qos: 1, retain: true });
  await client.endAsync();
  start(c);
  const lost = await c.proc!.waitForLog('ledger lost', (l) => l.msg.startsWith('ledger lost: '), 60_000);
  assert.equal(lost['code'], 'ERR_LEDGER_LOST');
  assert.equal(lost['record'], held2 + 3);
  assert.equal(c.proc!.logs.find((l) => l.msg.includes('running; press Ctrl+C')), undefined, 'read-only: not running');
  const health = await fetch(`http://127.0.0.1:${c.api}/health`);
  assert.equal(health.status, 503);
  // The retained checkpoint is the record now: a restart keeps waiting, and accept-loss names it.
  const record = JSON.parse(await readFile(join(c.dataDir, 'last-checkpoint.json'), 'utf8')) as { checkpoint: string };
  assert.equal(record.checkpoint, ahead.note);
  const r = await oti(['ledger', 'accept-loss', '--data', c.dataDir, '--yes', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { recordSize: number }).recordSize, held2 + 3);
  await c.proc!.waitForLog('loss accepted', (l) => l.msg.startsWith('an operator accepted the loss'), 30_000);
  await running(c);
  const opened = c.proc!.logs.find((l) => /^ledger .*: chain /.test(l.msg))!;
  assert.equal(Number(opened['entries']), held2, 'it continues from what the peers gave back');

  for (const g of [a, c]) await stop(g);
});
