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
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { makeSite, tempDir, type TestSite } from '../support/site.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { ptyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { createBundle, applyBundle } from '../../gateway/config/bundle.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { generateKeyPair } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { waitUntil } from '../support/wait.js';
import { writeGatewayConfig } from '../support/gateway-process.js';

const run = promisify(execFile);
const HERE = fileURLToPath(new URL('.', import.meta.url));
const MAIN = join(HERE, '..', '..', 'gateway', 'main.js');
const OTI = join(HERE, '..', '..', 'provisioning', 'cli.js');
/** Discovery's periodic announcement interval (gateway/discovery/discovery.ts DEFAULT_ANNOUNCE_MS). */
const PERIODIC_ANNOUNCEMENT_MS = 20_000;

interface Line {
  readonly msg: string;
  readonly time: number;
  readonly level: number;
  readonly [k: string]: unknown;
}

interface Gw {
  readonly i: number;
  readonly id: string;
  readonly dataDir: string;
  readonly config: string;
  readonly bundle: string;
  readonly lock: SimLock;
  proc?: ChildProcess;
  startedAt: number;
  logs: Line[];
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
  const links: SerialSimLink[] = [];
  t.after(async () => {
    for (const g of gws) g.lock.close();
    await Promise.all(links.map((l) => l.close()));
  });
  for (let i = 0; i < n; i++) {
    const id = `gw-${String.fromCharCode(97 + i)}`;
    const dataDir = join(dir, id);
    const { bundle } = await createBundle({ site: s.site, siteId: s.siteId, siteKeys: s.trust.siteKeys, gatewayId: id, validForMs: 86_400_000, now: Date.now() });
    const bundlePath = join(dir, `${id}.bundle.json`);
    await writeFile(bundlePath, JSON.stringify(bundle));
    await copyFile(bundlePath, `${bundlePath}.keep`);
    await applyBundle(bundlePath, dataDir, { now: Date.now() });
    const lockKey = generateKeyPair();
    const ident = await loadOrCreateIdentity(dataDir);
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: ident.trust, gatewayId: id, key: ident.key, genesis: ident.enrolment });
    await chain.append({ kind: 'roster', signed: signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id: `lock-${i}`, key: lockKey.publicKey, time: Date.now() }) });
    await chain.close();
    await store.close();
    const pty = await ptyPair(dir, `pty-${i}`);
    t.after(() => pty.kill());
    const config = await writeGatewayConfig(join(dir, `${id}.yaml`), {
      dataDir,
      broker: { host: '0.0.0.0', port: 1883 },
      api: { port: 8433 },
      serialPorts: [pty.gateway],
      portSettings: { reconnectMinMs: 100, reconnectMaxMs: 1000 },
    });
    const lock = new SimLock({ id: `lock-${i}`, seed: lockKey.seed, resendMs: 1000 });
    const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 100 });
    links.push(link);
    link.start();
    gws.push({ i, id, dataDir, config, bundle: bundlePath, lock, startedAt: 0, logs: [] });
  }
  return { s, topo, gws };
}

function start(topo: Topology, gw: Gw): void {
  gw.logs = [];
  gw.startedAt = Date.now();
  const proc = topo.exec(gw.i, process.execPath, [MAIN, '--config', gw.config], { stdio: ['ignore', 'pipe', 'pipe'] });
  gw.proc = proc;
  let partial = '';
  proc.stdout?.setEncoding('utf8').on('data', (c: string) => {
    partial += c;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      try {
        gw.logs.push(JSON.parse(l) as Line);
      } catch {
        gw.logs.push({ msg: l, time: Date.now(), level: 30 });
      }
    }
  });
}

async function stop(gw: Gw): Promise<void> {
  const p = gw.proc;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.kill('SIGTERM');
  await exited;
}

const running = (gw: Gw): boolean => gw.logs.some((l) => l.msg.includes('running; press Ctrl+C'));
const has = (gw: Gw, re: RegExp): Line | undefined => gw.logs.find((l) => re.test(l.msg));
/** Largest replica size of `origin` a gateway logged. */
const replicaOf = (gw: Gw, origin: string): number => Math.max(-1, ...gw.logs.filter((l) => l.msg.startsWith(`replica of ${origin} `)).map((l) => Number(l['size'])));

function keyLines(gw: Gw): string {
  const re = /peer |looking for|recovered|own chain checked|ledger |equivocation|chain oti|accepted|running|refused/;
  return gw.logs
    .filter((l) => re.test(l.msg))
    .map((l) => `  ${gw.id} +${l.time - gw.startedAt} ms [${l.level}] ${l.msg}`)
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
      const ms = found.time - gw.startedAt;
      const announcing = has(gw, /^announcing _oti\._tcp/) as Line;
      const otherAnnouncing = has(other, /^announcing _oti\._tcp/) as Line;
      t.diagnostic(`${gw.id} found ${other.id} ${ms} ms after its process started, ${found.time - announcing.time} ms after its discovery started, ${found.time - otherAnnouncing.time} ms after ${other.id}'s did`);
      assert.ok(ms < PERIODIC_ANNOUNCEMENT_MS, `${gw.id} found ${other.id} from the start-up announcements (${ms} ms), not a periodic one`);
    }
  }

  for (const gw of all) gw.lock.startAuto(20);
  for (const gw of all) for (const other of all) if (other !== gw) await waitUntil(`${gw.id} replicates ${other.id}`, () => replicaOf(gw, origin(other)) > 10, REPLICATION_MS);

  // (a) Re-flash of B's ledger: its lock pauses, A and C hold all of B's chain, B stops, its
  // ledger is wiped (identity and last-checkpoint record kept), the lock goes on, B restarts.
  const reflash = async (wipe: () => Promise<void>, label: string): Promise<void> => {
    b.lock.stopAuto();
    await waitUntil('B’s lock acknowledged', () => b.lock.pending === 0, REPLICATION_MS);
    const size = b.lock.acked.size + 2;
    for (const gw of [a, c]) await waitUntil(`${gw.id} holds B’s ${size} entries`, () => replicaOf(gw, origin(b)) >= size, REPLICATION_MS);
    await stop(b);
    await wipe();
    const ackedBefore = b.lock.acked.size;
    b.lock.startAuto(20);
    start(topo, b);
    await waitUntil(`${label}: B running again`, () => running(b), 120_000);
    const rec = has(b, /^recovered this gateway's own chain from peers: /);
    assert.ok(rec !== undefined, `${label}: B recovered its chain from peers before opening it:\n${keyLines(b)}`);
    assert.ok(Number(rec['after']) >= size, `${label}: recovered ${String(rec['after'])} of ${size} entries`);
    const opened = has(b, /^ledger .*: chain /) as Line;
    assert.ok(Number(opened['entries']) >= size, `${label}: the chain opened at ${String(opened['entries'])} entries, not a new one`);
    assert.ok(gws.indexOf(b) >= 0 && b.logs.indexOf(rec) < b.logs.indexOf(opened), `${label}: recovery came before the chain was opened`);
    // Its lock's events continue in the same chain, and A and C take them.
    await waitUntil(`${label}: B’s lock acknowledged again`, () => b.lock.acked.size > ackedBefore + 20, REPLICATION_MS);
    b.lock.stopAuto();
    await waitUntil(`${label}: B’s lock drained`, () => b.lock.pending === 0, REPLICATION_MS);
    const after = b.lock.acked.size + 2;
    for (const gw of [a, c]) await waitUntil(`${label}: ${gw.id} takes B’s new entries`, () => replicaOf(gw, origin(b)) >= after, REPLICATION_MS);
    t.diagnostic(`${label}: key log lines of B\n${keyLines(b)}`);
    for (const gw of all) assert.equal(gw.logs.find((l) => /equivocat/i.test(l.msg))?.msg, undefined, `${label}: no equivocation logged by ${gw.id}`);
  };

  await reflash(() => rm(join(b.dataDir, 'ledger'), { recursive: true, force: true }), 'ledger wiped');
  await reflash(async () => {
    await rm(b.dataDir, { recursive: true, force: true });
    await copyFile(`${b.bundle}.keep`, b.bundle);
    await applyBundle(b.bundle, b.dataDir, { now: Date.now() });
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
    const ms = (has(b, new RegExp(`^peer ${other.id} at `)) as Line).time - restoredAt;
    t.diagnostic(`after link up, B found ${other.id} in ${ms} ms`);
    assert.ok(ms < PERIODIC_ANNOUNCEMENT_MS / 2, `B found ${other.id} ${ms} ms after the link came up`);
  }

  for (const gw of all) gw.lock.stopAuto();
  for (const gw of all) await stop(gw);
  // Every acknowledged event of B's lock is in B's chain, as stored by A.
  const store = await LedgerStore.open(join(a.dataDir, 'ledger'));
  try {
    const cs = await store.chain(origin(b), 'peer');
    assert.ok(cs.head.size >= b.lock.acked.size + 2, `A holds ${cs.head.size} entries of B's chain, ${b.lock.acked.size} events acknowledged`);
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
  g.lock.startAuto(20);
  await waitUntil('events acknowledged', () => g.lock.acked.size > 20, REPLICATION_MS);
  g.lock.stopAuto();
  await waitUntil('lock drained', () => g.lock.pending === 0, REPLICATION_MS);
  await stop(g);
  const record = JSON.parse(await readFile(join(g.dataDir, 'last-checkpoint.json'), 'utf8')) as { checkpoint: string };
  const recorded = Number(record.checkpoint.split('\n')[1]);
  assert.ok(recorded >= g.lock.acked.size + 2, `the record (${recorded}) covers every entry (${g.lock.acked.size + 2})`);

  await rm(join(g.dataDir, 'ledger'), { recursive: true, force: true });
  const acked = g.lock.acked.size;
  g.lock.startAuto(20);
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
  assert.equal(g.lock.acked.size, acked, 'nothing acknowledged while the ledger is lost');
  assert.ok(g.lock.pending > 0, 'the lock keeps its events');
  assert.equal(has(g, /^ledger .*: chain /), undefined, 'no chain was opened');

  // The operator decides, with the real oti binary.
  const r = await run(process.execPath, [OTI, 'ledger', 'accept-loss', '--data', g.dataDir, '--yes', '--json']);
  assert.equal((JSON.parse(r.stdout) as { recordSize: number }).recordSize, recorded);
  await waitUntil('the loss accepted', () => has(g, /^an operator accepted the loss/) !== undefined, 30_000);
  await waitUntil('running after the decision', () => running(g), 30_000);
  assert.equal((await health()).status, 'ok');
  t.diagnostic(keyLines(g));
  g.lock.stopAuto();
  await stop(g);
  done = true;
});
