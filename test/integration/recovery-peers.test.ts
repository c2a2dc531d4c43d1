/**
 * Recovery of the own chain and the confirmation quorum with peers that are offline or revoked,
 * on four real gateway processes on 127.0.0.1 (static peers, real LevelDB, real aedes), as a
 * technician meets them (docs/SYNC.md §Recovery of the own chain, §Witnessing and confirmation):
 *
 *  - a gateway revoked in the site's roster (recorded in another gateway's chain, never in its
 *    own) does not count toward the quorum of a gateway that replicates its chain;
 *  - a re-flashed gateway asks its peers at once: an offline peer and a revoked one do not use up
 *    the recovery time, so it recovers its chain from the one online peer within seconds;
 *  - a re-flashed gateway that recovers all of its chain says nothing about the checkpoint retained
 *    on the brokers (it is no further than what was recovered);
 *  - a re-flashed gateway that sees, retained on a peer's broker, a checkpoint of its own chain
 *    beyond what the peers could give stays read-only (ERR_LEDGER_LOST) rather than fork, records
 *    that checkpoint as seen by peers, and says (log, /health, the accept-loss prompt) to retire
 *    the id rather than accept the loss; the technician then follows docs/SYNC.md with the real
 *    `oti`: `gateway revoke --data` (its enrolment submitted first, since no peer's roster lists
 *    it), `gateway enroll` of a new id, `gateway apply-bundle --force` on the same data folder; the
 *    new id runs there and the peers list the old one revoked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { makeSite, tempDir, writeSiteDir } from '../support/site.js';
import { startGateway, type GatewayProcess, type LogLine } from '../support/gateway-process.js';
import { loopbackSite, type LoopbackGateway } from '../support/enrolled-gateway.js';
import { errorCode, oti, otiIn } from '../support/oti-cli.js';
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
const PASS = 'correct horse battery staple';

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
  // The checkpoint retained on gw-a's broker is no further than what was recovered: no warning about it.
  assert.equal(logs.find((l) => l.msg.includes('retained on the brokers, is ahead'))?.msg, undefined, 'no warning when everything was recovered');

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
  // Peers saw that checkpoint: the remedy named is to retire the id, not to accept the loss.
  assert.equal(lost['seenByPeers'], true);
  assert.match(lost.msg, /do not accept the loss.*oti gateway revoke --id gw-c --data /);
  const health = await fetch(`http://127.0.0.1:${c.api}/health`);
  assert.equal(health.status, 503);
  assert.match(await health.text(), /retire the id/);
  // The retained checkpoint is the record now, marked as seen by peers: a restart keeps waiting, and accept-loss warns.
  const record = JSON.parse(await readFile(join(c.dataDir, 'last-checkpoint.json'), 'utf8')) as { checkpoint: string; seenByPeers?: boolean };
  assert.equal(record.checkpoint, ahead.note);
  assert.equal(record.seenByPeers, true);
  const asked = await oti(['ledger', 'accept-loss', '--data', c.dataDir]);
  assert.equal(errorCode(asked), 'ERR_USAGE', 'no terminal, no --yes: nothing written');
  assert.match(asked.stderr, /WARNING: peers saw a checkpoint of gw-c's chain .*compromised.*Retire the id instead/);

  // docs/SYNC.md §Recovery: stop it, revoke gw-c at gw-a (no roster there lists it: its enrolment goes first), enrol a new id, apply it to the same data folder.
  await stop(c);
  await writeSiteDir(s, join(dir, 'site'), PASS);
  const env = { OTI_PASSPHRASE: PASS };
  const api = ['--api', `http://127.0.0.1:${a.api}`];
  const unlisted = await otiIn(['gateway', 'revoke', '--site-dir', 'site', '--id', 'gw-c', ...api, '--yes'], dir, env);
  assert.equal(errorCode(unlisted), 'ERR_NOT_FOUND');
  assert.match(unlisted.stderr, /not in the roster of .*give its data folder \(--data DIR\) or its bundle \(--bundle FILE\)/);
  const revoked = await otiIn(['gateway', 'revoke', '--site-dir', 'site', '--id', 'gw-c', '--data', c.dataDir, ...api, '--yes', '--json'], dir, env);
  assert.equal(revoked.code, 0, revoked.stderr);
  const rj = revoked.json<{ op: string; index: number; enrolment: { op: string; index: number } }>();
  assert.equal(rj.enrolment.op, 'enroll');
  assert.equal(rj.op, 'revoke');
  assert.ok(rj.index > rj.enrolment.index, 'the enrolment is recorded first, then the revocation');
  const enrolled = await otiIn(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-e', '--out', 'gw-e.bundle.json'], dir, env);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const refused = await otiIn(['gateway', 'apply-bundle', 'gw-e.bundle.json', '--data', c.dataDir], dir);
  assert.equal(errorCode(refused), 'ERR_BUNDLE');
  const applied = await otiIn(['gateway', 'apply-bundle', 'gw-e.bundle.json', '--data', c.dataDir, '--force', '--json'], dir);
  assert.equal(applied.code, 0, applied.stderr);
  const replaced = applied.json<{ replaced: { folder: string; gatewayId: string; moved: string[] } }>().replaced;
  assert.equal(replaced.gatewayId, 'gw-c');
  for (const f of ['site.json', 'gateway.key', 'ledger', 'last-checkpoint.json']) assert.ok(replaced.moved.includes(f), `${f} moved aside`);
  assert.deepEqual((await readdir(replaced.folder)).sort(), [...replaced.moved].sort());
  start(c);
  await running(c);
  assert.equal(c.proc!.logs.find((l) => l['code'] === 'ERR_CHAIN_READ_ONLY' || l['code'] === 'ERR_CHECKPOINT_SIGNATURE')?.msg, undefined, lines(c));
  assert.equal((await json<{ gatewayId?: string; chain: { origin: string } }>(c, '/status')).chain.origin, origin('gw-e'));
  const listedAt = async (g: Gw): Promise<{ id: string; revoked: boolean }[]> => (await json<{ members: { role: string; id: string; revoked: boolean }[] }>(g, '/roster')).members.filter((m) => m.role === 'gateway');
  assert.deepEqual((await listedAt(a)).find((m) => m.id === 'gw-c')?.revoked, true, 'gw-a lists gw-c revoked');
  await waitUntil("gw-a holds gw-e's chain", async () => (await held(a, { ...c, id: 'gw-e' })) > 0, 90_000, () => lines(c));

  for (const g of [a, c]) await stop(g);
});
