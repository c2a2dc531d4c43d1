/**
 * A cloned gateway on a real network: three gateways in network namespaces on one bridge, found
 * by multicast mDNS only, default timings, locks on ptys. gw-c's data folder is copied while it
 * is stopped and the copy runs in a fourth namespace under the same identity; both copies take
 * in events of their own. Someone must turn the fork into evidence; every gateway shows gw-c as
 * compromised (GET /status with curl, oti status), oti verify does not say "ok" for gw-c's chain
 * and shows the evidence, and the technician's path (revoke gw-c, then oti evidence clear on a
 * stopped gateway) clears it. On the way: the lifecycle on a real broker (mosquitto_sub), with
 * `replicated` before `confirmed`, each naming its cosigners.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSite, tempDir } from '../support/site.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { enrolledGateway, APP_USER, type EnrolledGateway } from '../support/enrolled-gateway.js';
import { isRunning, lockOn, nsGateway, startIn, stopIn, type NsGateway } from '../support/netns-site.js';
import { CLI, oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { SimLock } from '../../drivers/simlock.js';
import { encodeSigned, signStatement } from '../../ledger/roster.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';

/** Discovery, replication and evidence across namespaces can take a while: a longer bound than wait.ts's default. */
const REPLICATION_MS = 120_000;
const skip = await netnsUnavailable();

type Gw = NsGateway;

interface StatusJson {
  peers: { gateway: string; state: string; evidence: string | null; refusal: { code: string; count: number } | null }[];
  sync: { compromised: string[]; evidence: { id: string; gateway: string; reporter: string | null; refused: boolean; a: { size: number }; b: { size: number } }[] };
}

void test('a cloned gateway in a fourth namespace is detected, shown everywhere, and cleared by the technician’s path', { skip: skip ?? false, timeout: 600_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-netns-clone-');
  const s = makeSite('clone-site');
  const topo: Topology = await createTopology(4);
  t.after(() => topo.destroy());
  const locks: SimLock[] = [];

  /** Runs a command in namespace i to its end: curl, mosquitto_sub, the oti binary. */
  const run = (i: number, cmd: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const p = topo.exec(i, cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      p.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      p.once('close', (code) => resolve({ code, stdout, stderr }));
    });
  const status = async (gw: Gw): Promise<StatusJson | undefined> => {
    const r = await run(gw.ns, 'curl', ['-s', '-m', '5', 'http://127.0.0.1:8433/status']);
    try {
      return JSON.parse(r.stdout) as StatusJson;
    } catch {
      return undefined;
    }
  };
  /** A simulated lock on `gw`'s serial line, sending an event every 100 ms. */
  const startLock = (lock: SimLock, gw: Gw): void => {
    locks.push(lock);
    lockOn(t, gw, lock).start();
    lock.startAuto(100);
  };
  const configure = (g: EnrolledGateway, ns: number): Promise<Gw> => nsGateway(t, dir, g, ns);
  const start = (gw: Gw): void => startIn(topo, gw);
  const running = (gw: Gw): Promise<void> => waitUntil(`${gw.id} in ns ${gw.ns} running`, () => isRunning(gw), REPLICATION_MS);
  const stop = (gw: Gw): Promise<void> => stopIn(gw);

  const gws: Gw[] = [];
  for (let i = 0; i < 3; i++) gws.push(await configure(await enrolledGateway(dir, s, `gw-${'abc'[i]}`, { lock: `lock-${i}` }), i));
  const [a, b, c] = gws as [Gw, Gw, Gw];
  gws.forEach(start);
  for (const gw of gws) await running(gw);
  for (const gw of gws) startLock(new SimLock({ id: gw.lock!.id, seed: gw.lock!.key.seed, resendMs: 1000 }), gw);

  // The lifecycle on gw-a's broker: replicated (naming who holds it), then confirmed.
  const states: { id: string; state: string; cosigners?: string[] }[] = [];
  const sub = topo.exec(0, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-u', APP_USER.username, '-P', APP_USER.password, '-t', `oti/${s.siteId}/status/lock-0/#`, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  sub.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.includes('"state"')) states.push(JSON.parse(l.slice(l.indexOf(' ') + 1)) as (typeof states)[number]);
  });
  const confirmedAfterReplicated = (): boolean => {
    const r = states.findIndex((m) => m.state === 'replicated');
    return r >= 0 && states.some((m, k) => k > r && m.state === 'confirmed' && m.id === states[r]!.id);
  };
  await waitUntil('an event of lock-0 replicated, then confirmed, on gw-a\'s broker', confirmedAfterReplicated, 180_000);
  sub.kill();
  const replicated = states.find((m) => m.state === 'replicated')!;
  assert.ok((replicated.cosigners ?? []).length >= 1 && !(replicated.cosigners ?? []).includes('gw-a'), `replicated names the other gateways that hold it: ${JSON.stringify(replicated)}`);
  const confirmed = states.find((m) => m.state === 'confirmed' && m.id === replicated.id)!;
  assert.equal(confirmed.cosigners?.[0], 'gw-a', 'confirmed names the origin first');
  t.diagnostic(`lifecycle of ${replicated.id}: ${states.filter((m) => m.id === replicated.id).map((m) => `${m.state}${m.cosigners !== undefined ? ` ${m.cosigners.join(',')}` : ''}`).join(' → ')}`);

  for (const gw of gws) {
    await waitUntil(`${gw.id} sees both peers synced`, async () => {
      const st = await status(gw);
      return st?.peers.length === 2 && st.peers.every((p) => p.state === 'synced' || p.state === 'syncing');
    }, REPLICATION_MS);
  }

  // Clone gw-c: its data folder copied while it is stopped, the copy in namespace 3 with the same identity.
  await stop(c);
  const copyDir = join(dir, 'gw-c-copy');
  await cp(c.dataDir, copyDir, { recursive: true });
  const copy = await configure({ id: 'gw-c', dataDir: copyDir, bundle: c.bundle, lock: c.lock! }, 3);
  start(c);
  start(copy);
  await running(c);
  await running(copy);
  // The same lock id on the copy's serial line, counting from far ahead: both copies take in events.
  const twin = new SimLock({ id: c.lock!.id, seed: c.lock!.key.seed, resendMs: 1000, firstCounter: 1_000_000 });
  startLock(twin, copy);

  // Someone turns the two inconsistent gw-c trees into evidence; every gateway refuses gw-c.
  for (const gw of [a, b, c, copy]) {
    await waitUntil(`gw-${gw.id === 'gw-c' ? `c (ns ${gw.ns})` : gw.id.slice(3)} knows gw-c is compromised`, async () => (await status(gw))?.sync.compromised.includes('gw-c') === true, 240_000);
  }
  const st = (await status(a))!;
  const peerC = st.peers.find((p) => p.gateway === 'gw-c')!;
  assert.equal(peerC.state, 'equivocated');
  const ev = st.sync.evidence.find((e) => e.id === peerC.evidence)!;
  assert.ok(ev.refused && ev.gateway === 'gw-c');
  t.diagnostic(`evidence record on gw-a (GET /status sync.evidence): ${JSON.stringify(ev)}`);
  const statusText = await run(0, process.execPath, [CLI, 'status', '--api', 'http://127.0.0.1:8433']);
  assert.match(statusText.stdout, /COMPROMISED \(refused for equivocation, see oti evidence list\): gw-c/);
  assert.match(statusText.stdout, /peer gw-c: equivocated/);

  // oti verify on gw-a's data folder (running: a copy is verified): gw-c's chain is not "ok".
  const v = await oti(['verify', '--data', a.dataDir]);
  assert.equal(v.code, 1, v.stdout + v.stderr);
  assert.match(v.stdout, /REFUSED\s+oti\/clone-site\/gw-c \(peer\): its blocks verify, but the site refuses it/);
  assert.doesNotMatch(v.stdout, /ok\s+oti\/clone-site\/gw-c/);
  assert.match(v.stdout, /evidence [0-9a-f]{16}: gw-c's key signed oti\/clone-site\/gw-c @ \d+ .* verifies with its enrolled key; its chain is refused/);
  t.diagnostic(`oti verify: ${v.stdout.trim().split('\n').join(' | ')}`);

  // The technician's path. 1: both copies of gw-c off the network.
  await stop(copy);
  await stop(c);
  // 2 before re-keying: clearing is refused while gw-c still holds the key that signed the evidence.
  await stop(a);
  const early = await oti(['evidence', 'clear', '--data', a.dataDir, '--gateway', 'gw-c', '--yes']);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /still holds the key .* \[ERR_ROSTER\]/);
  // 3: gw-c revoked through gw-a's API (what oti gateway revoke sends), then cleared on gw-a.
  start(a);
  await running(a);
  // gw-a's chain lists only its own gateway: gw-c's enrolment (from its bundle) goes in first, then the revocation.
  const cId = await loadOrCreateIdentity(c.dataDir);
  const enrolment = join(dir, 'enrol-gw-c.cbor');
  await writeFile(enrolment, encodeSigned(cId.enrolment));
  const revoke = join(dir, 'revoke-gw-c.cbor');
  await writeFile(revoke, encodeSigned(signStatement(s.site, { site: s.siteId, op: 'revoke', role: 'gateway', id: 'gw-c', key: cId.key.publicKey, time: Date.now() })));
  for (const file of [enrolment, revoke]) {
    const posted = await run(0, 'curl', ['-s', '-w', ' %{http_code}', '-H', 'Content-Type: application/cbor', '--data-binary', `@${file}`, 'http://127.0.0.1:8433/roster']);
    assert.match(posted.stdout, / 201$/, posted.stdout);
  }
  await stop(a);
  const cleared = await oti(['evidence', 'clear', '--data', a.dataDir, '--gateway', 'gw-c', '--yes']);
  assert.equal(cleared.code, 0, cleared.stderr);
  start(a);
  await running(a);
  await waitUntil('gw-a no longer refuses gw-c, which shows as revoked', async () => {
    const after = await status(a);
    return after !== undefined && after.sync.compromised.length === 0 && after.peers.find((p) => p.gateway === 'gw-c')?.state === 'revoked';
  }, REPLICATION_MS);
  const after = (await status(a))!;
  assert.ok(after.sync.evidence.some((e) => e.id === ev.id && !e.refused), 'the evidence stays stored, marked cleared');
  for (const l of locks) l.stopAuto();
  for (const gw of [a, b]) await stop(gw);
});
