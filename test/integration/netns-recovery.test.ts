/**
 * Recovery of a gateway's own chain across real gateway processes in network namespaces, with
 * mDNS only (no static peers) and default timings (issues 13.8, 14.1, 14.2):
 *
 *  - peers are found from the announcements and queries made at start, well before the first
 *    periodic announcement (20 s);
 *  - a gateway whose ledger was wiped (identity kept), and one whose whole data folder was wiped
 *    and its bundle applied again, recover their chain from the others before appending: no
 *    equivocation anywhere, and their locks' events continue in the same chain;
 *  - a gateway whose ledger was wiped with no peer stays read-only (nothing acknowledged, /health
 *    503 with ledger-lost) until `oti ledger accept-loss`.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { makeSite, tempDir, type TestSite } from '../support/site.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { enrolledGateway } from '../support/enrolled-gateway.js';
import { isRunning, lockOn, nsGateway, replicaOf, startIn, stopIn, type NsGateway } from '../support/netns-site.js';
import type { LogLine } from '../support/gateway-process.js';
import { SimLock } from '../../drivers/simlock.js';
import { applyBundle } from '../../gateway/config/bundle.js';
import { LedgerStore } from '../../ledger/store.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);
const HERE = fileURLToPath(new URL('.', import.meta.url));
const OTI = join(HERE, '..', '..', 'provisioning', 'cli.js');
/** Discovery's periodic announcement interval (gateway/discovery/discovery.ts DEFAULT_ANNOUNCE_MS). */
const PERIODIC_ANNOUNCEMENT_MS = 20_000;

type Line = LogLine;

interface Gw extends NsGateway {
  readonly i: number;
  readonly sim: SimLock;
}

/** Recovery and replication across namespaces can take a while: a longer bound than wait.ts's default. */
const REPLICATION_MS = 90_000;
const skip = await netnsUnavailable();

/** N gateways of one site, each with one lock on a pty enrolled in its chain. mDNS only, default sync settings. */
async function makeSiteGateways(t: TestContext, n: number): Promise<{ s: TestSite; topo: Topology; gws: Gw[] }> {
  const dir = await tempDir(t, 'oti-netns-recovery-');
  const s = makeSite('recovery-site');
  const topo = await createTopology(n);
  t.after(() => topo.destroy());
  const gws: Gw[] = [];
  for (let i = 0; i < n; i++) {
    const g = await enrolledGateway(dir, s, `gw-${String.fromCharCode(97 + i)}`, { lock: `lock-${i}` });
    const gw = await nsGateway(t, dir, g, i);
    const sim = new SimLock({ id: g.lock!.id, seed: g.lock!.key.seed, resendMs: 1000 });
    lockOn(t, gw, sim).start();
    gws.push(Object.assign(gw, { i, sim }));
  }
  return { s, topo, gws };
}

const start = (topo: Topology, gw: Gw): void => startIn(topo, gw);
const stop = (gw: Gw): Promise<void> => stopIn(gw);
const running = (gw: Gw): boolean => isRunning(gw);
const has = (gw: Gw, re: RegExp): Line | undefined => gw.logs.find((l) => re.test(l.msg));
/** When a log line was written (pino's `time`). */
const at = (l: Line): number => Number(l['time']);

function keyLines(gw: Gw): string {
  const re = /peer |looking for|recovered|own chain checked|ledger |equivocation|chain oti|accepted|running|refused/;
  return gw.logs
    .filter((l) => re.test(l.msg))
    .map((l) => `  ${gw.id} +${at(l) - gw.startedAt} ms [${l.level}] ${l.msg}`)
    .join('\n');
}

void test('three gateways (mDNS only, default timings): peers found at start; a wiped ledger and a wiped data folder recover their chain before appending', { skip: skip ?? false, timeout: 420_000 }, async (t) => {
  const { s, topo, gws } = await makeSiteGateways(t, 3);
  const origin = (gw: Gw): string => `oti/${s.siteId}/${gw.id}`;
  const [a, b, c] = gws as [Gw, Gw, Gw];
  const all = [a, b, c];
  let done = false;
  t.after(() => {
    if (!done) t.diagnostic(all.map(keyLines).join('\n'));
  });

  // (c) Started together, each finds both others from the start-up announcements and queries.
  for (const gw of all) start(topo, gw);
  for (const gw of all) await waitUntil(`${gw.id} running`, () => running(gw), REPLICATION_MS);
  for (const gw of all) {
    for (const other of all) {
      if (other === gw) continue;
      await waitUntil(`${gw.id} finds ${other.id}`, () => has(gw, new RegExp(`^peer ${other.id} at `)) !== undefined, REPLICATION_MS);
      const found = has(gw, new RegExp(`^peer ${other.id} at `)) as Line;
      const ms = at(found) - gw.startedAt;
      const announcing = has(gw, /^announcing _oti\._tcp/) as Line;
      const otherAnnouncing = has(other, /^announcing _oti\._tcp/) as Line;
      t.diagnostic(`${gw.id} found ${other.id} ${ms} ms after its process started, ${at(found) - at(announcing)} ms after its discovery started, ${at(found) - at(otherAnnouncing)} ms after ${other.id}'s did`);
      assert.ok(ms < PERIODIC_ANNOUNCEMENT_MS, `${gw.id} found ${other.id} from the start-up announcements (${ms} ms), not a periodic one`);
    }
  }

  for (const gw of all) gw.sim.startAuto(20);
  for (const gw of all) for (const other of all) if (other !== gw) await waitUntil(`${gw.id} replicates ${other.id}`, () => replicaOf(gw, origin(other)) > 10, REPLICATION_MS);

  // (a) Re-flash of B's ledger: its lock pauses, A and C hold all of B's chain, B stops, its
  // ledger is wiped (identity and last-checkpoint record kept), the lock goes on, B restarts.
  const reflash = async (wipe: () => Promise<void>, label: string): Promise<void> => {
    b.sim.stopAuto();
    await waitUntil('B’s lock acknowledged', () => b.sim.pending === 0, REPLICATION_MS);
    const size = b.sim.acked.size + 2;
    for (const gw of [a, c]) await waitUntil(`${gw.id} holds B’s ${size} entries`, () => replicaOf(gw, origin(b)) >= size, REPLICATION_MS);
    await stop(b);
    await wipe();
    const ackedBefore = b.sim.acked.size;
    b.sim.startAuto(20);
    start(topo, b);
    await waitUntil(`${label}: B running again`, () => running(b), 120_000);
    const rec = has(b, /^recovered this gateway's own chain from peers: /);
    assert.ok(rec !== undefined, `${label}: B recovered its chain from peers before opening it:\n${keyLines(b)}`);
    assert.ok(Number(rec['after']) >= size, `${label}: recovered ${String(rec['after'])} of ${size} entries`);
    const opened = has(b, /^ledger .*: chain /) as Line;
    assert.ok(Number(opened['entries']) >= size, `${label}: the chain opened at ${String(opened['entries'])} entries, not a new one`);
    assert.ok(gws.indexOf(b) >= 0 && b.logs.indexOf(rec) < b.logs.indexOf(opened), `${label}: recovery came before the chain was opened`);
    // Its lock's events continue in the same chain, and A and C take them.
    await waitUntil(`${label}: B’s lock acknowledged again`, () => b.sim.acked.size > ackedBefore + 20, REPLICATION_MS);
    b.sim.stopAuto();
    await waitUntil(`${label}: B’s lock drained`, () => b.sim.pending === 0, REPLICATION_MS);
    const after = b.sim.acked.size + 2;
    for (const gw of [a, c]) await waitUntil(`${label}: ${gw.id} takes B’s new entries`, () => replicaOf(gw, origin(b)) >= after, REPLICATION_MS);
    t.diagnostic(`${label}: key log lines of B\n${keyLines(b)}`);
    for (const gw of all) assert.equal(gw.logs.find((l) => /equivocat/i.test(l.msg))?.msg, undefined, `${label}: no equivocation logged by ${gw.id}`);
  };

  await reflash(() => rm(join(b.dataDir, 'ledger'), { recursive: true, force: true }), 'ledger wiped');
  await reflash(async () => {
    await rm(b.dataDir, { recursive: true, force: true });
    const again = `${b.bundle}.again.json`;
    await copyFile(b.bundle, again);
    await applyBundle(again, b.dataDir, { now: Date.now() });
  }, 'data folder wiped, bundle applied again');

  // Link up: B starts with its link down; when it comes back, B browses and announces again
  // and finds A and C within seconds, not at their next periodic announcement.
  await stop(b);
  await topo.cut(1);
  start(topo, b);
  await waitUntil('B running without its link', () => running(b), 60_000);
  assert.equal(has(b, /^peer /), undefined, 'no peer while the link is down');
  await topo.restore(1);
  const restoredAt = Date.now();
  for (const other of [a, c]) {
    await waitUntil(`B finds ${other.id} after the link came up`, () => has(b, new RegExp(`^peer ${other.id} at `)) !== undefined, REPLICATION_MS);
    const ms = at(has(b, new RegExp(`^peer ${other.id} at `)) as Line) - restoredAt;
    t.diagnostic(`after link up, B found ${other.id} in ${ms} ms`);
    assert.ok(ms < PERIODIC_ANNOUNCEMENT_MS / 2, `B found ${other.id} ${ms} ms after the link came up`);
  }

  for (const gw of all) gw.sim.stopAuto();
  for (const gw of all) await stop(gw);
  // Every acknowledged event of B's lock is in B's chain, as stored by A.
  const store = await LedgerStore.open(join(a.dataDir, 'ledger'));
  try {
    const cs = await store.chain(origin(b), 'peer');
    assert.ok(cs.head.size >= b.sim.acked.size + 2, `A holds ${cs.head.size} entries of B's chain, ${b.sim.acked.size} events acknowledged`);
  } finally {
    await store.close();
  }
  done = true;
});

void test('a gateway whose ledger was wiped, with no peer, stays read-only until oti ledger accept-loss', { skip: skip ?? false, timeout: 240_000 }, async (t) => {
  const { topo, gws } = await makeSiteGateways(t, 1);
  const g = gws[0] as Gw;
  let done = false;
  t.after(() => {
    if (!done) t.diagnostic(keyLines(g));
  });
  start(topo, g);
  await waitUntil('running', () => running(g), REPLICATION_MS);
  g.sim.startAuto(20);
  await waitUntil('events acknowledged', () => g.sim.acked.size > 20, REPLICATION_MS);
  g.sim.stopAuto();
  await waitUntil('lock drained', () => g.sim.pending === 0, REPLICATION_MS);
  await stop(g);
  const record = JSON.parse(await readFile(join(g.dataDir, 'last-checkpoint.json'), 'utf8')) as { checkpoint: string };
  const recorded = Number(record.checkpoint.split('\n')[1]);
  assert.ok(recorded >= g.sim.acked.size + 2, `the record (${recorded}) covers every entry (${g.sim.acked.size + 2})`);

  await rm(join(g.dataDir, 'ledger'), { recursive: true, force: true });
  const acked = g.sim.acked.size;
  g.sim.startAuto(20);
  start(topo, g);
  await waitUntil('ledger lost reported', () => has(g, /^ledger lost: /) !== undefined, 60_000);
  const lost = has(g, /^ledger lost: /) as Line;
  assert.equal(lost['code'], 'ERR_LEDGER_LOST');
  assert.ok(lost.level >= 50, 'logged at error');
  const health = async (): Promise<{ status: string; conditions?: { id: string; code: string }[] }> => {
    const { stdout } = await run('ip', ['netns', 'exec', topo.namespaces[0] as string, 'curl', '-s', 'http://127.0.0.1:8433/health']);
    return JSON.parse(stdout) as { status: string; conditions?: { id: string; code: string }[] };
  };
  await waitUntil('the waiting API answers', () => has(g, /answers \/health with 503/) !== undefined, REPLICATION_MS);
  const h = await health();
  assert.equal(h.status, 'unavailable');
  assert.deepEqual(h.conditions?.map((c) => [c.id, c.code]), [['ledger-lost', 'ERR_LEDGER_LOST']]);
  // Read-only for a while: nothing is acknowledged, no chain is opened; the lock keeps its events.
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(g.sim.acked.size, acked, 'nothing acknowledged while the ledger is lost');
  assert.ok(g.sim.pending > 0, 'the lock keeps its events');
  assert.equal(has(g, /^ledger .*: chain /), undefined, 'no chain was opened');

  // The operator decides, with the real oti binary.
  const r = await run(process.execPath, [OTI, 'ledger', 'accept-loss', '--data', g.dataDir, '--yes', '--json']);
  assert.equal((JSON.parse(r.stdout) as { recordSize: number }).recordSize, recorded);
  await waitUntil('the loss accepted', () => has(g, /^an operator accepted the loss/) !== undefined, 30_000);
  await waitUntil('running after the decision', () => running(g), 30_000);
  assert.equal((await health()).status, 'ok');
  t.diagnostic(keyLines(g));
  g.sim.stopAuto();
  await stop(g);
  done = true;
});
