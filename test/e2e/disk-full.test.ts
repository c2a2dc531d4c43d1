/**
 * End to end: the real gateway process with its data folder on a small tmpfs that fills up.
 *
 * While running: simulated locks on real ptys record events; the disk is filled; the gateway must
 * stay up, stop acknowledging (nothing that is not durable is acked), say so once at warn level,
 * answer /health with 503 degraded ERR_DISK_FULL and show the condition in the metrics; once the
 * filler is deleted it must resume by itself, with no restart, and every acknowledged event must
 * be in a chain that verifies (the library's verifier and the real `oti verify`).
 *
 * At start-up: a gateway started on a full disk must wait for space (ERR_DISK_FULL, logged once)
 * instead of exiting with ERR_STORE_CORRUPT, and start once there is space.
 *
 * Needs root for the tmpfs mount; skipped with the reason otherwise.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess, type LogLine } from '../support/gateway-process.js';
import { mountTmpfs, fillDisk, removeFiller } from '../support/tmpfs.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { devGateway } from '../support/enrolled-gateway.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import type { Identity } from '../../gateway/config/identity.js';
import { toHex } from '../../ledger/crypto.js';
import { LedgerStore } from '../../ledger/store.js';
import { verifyChain } from '../../ledger/verify.js';
import { decodeEntry } from '../../ledger/entry.js';
import { leafHash } from '../../ledger/merkle.js';

const running = (l: LogLine): boolean => l.msg.includes('running; press Ctrl+C');
const diskFullWarning = (l: LogLine): boolean => l.level === 40 && l.code === 'ERR_DISK_FULL';

/** Teardown steps run last-registered first (node:test runs after hooks in registration order). */
function teardown(t: TestContext): (step: () => unknown) => void {
  const steps: Array<() => unknown> = [];
  t.after(async () => {
    for (const s of steps.reverse()) await Promise.resolve(s()).catch(() => undefined);
  });
  return (step) => steps.push(step);
}

/** A folder with a 16 MiB tmpfs in it, or undefined (the test was skipped with the reason). */
async function smallDisk(t: TestContext, onTeardown: (step: () => unknown) => void): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'oti-diskfull-'));
  onTeardown(() => rm(dir, { recursive: true, force: true }));
  const fs = await mountTmpfs(dir, 16);
  if (typeof fs === 'string') {
    t.skip(fs);
    return undefined;
  }
  onTeardown(() => fs.unmount());
  return dir;
}


async function health(apiPort: number): Promise<{ httpStatus: number; body: { status: string; conditions?: { id: string; level: string; code: string; reason: string }[] } }> {
  const r = await fetch(`http://127.0.0.1:${apiPort}/health`);
  return { httpStatus: r.status, body: (await r.json()) as { status: string } };
}

async function gatewayConfig(dir: string, dataDir: string, ptys: readonly PtyPair[]): Promise<{ config: string; apiPort: number }> {
  const apiPort = await freePort();
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir,
    broker: { host: '127.0.0.1', port: await freePort() },
    api: { port: apiPort },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
    more: { discovery: { enabled: false } },
  });
  return { config, apiPort };
}

interface Running {
  readonly id: Identity;
  readonly dataDir: string;
  readonly filler: string;
  readonly apiPort: number;
  readonly gw: GatewayProcess;
  readonly locks: readonly SimLock[];
}

/** The gateway on the small disk, with three simulated locks on ptys recording 40 events/s each. */
async function gatewayWithLocks(dir: string, onTeardown: (step: () => unknown) => void): Promise<Running> {
  const dataDir = join(dir, 'tmpfs', 'data');
  const { id, lockKeys } = await devGateway(dataDir, 3);
  const ptys: PtyPair[] = [];
  for (let i = 0; i < lockKeys.length; i++) ptys.push(await ptyPair(dir, `door-${i}`));
  onTeardown(() => Promise.all(ptys.map((p) => p.kill())));
  const { config, apiPort } = await gatewayConfig(dir, dataDir, ptys);
  const gw = startGateway(['--config', config]);
  onTeardown(async () => {
    gw.proc.kill('SIGKILL');
    await gw.exited;
  });
  await gw.waitForLog('running', running);
  const locks = lockKeys.map((k, i) => new SimLock({ id: `door-${i}`, seed: k.seed, resendMs: 500 }));
  const links = locks.map((l, i) => new SerialSimLink(l, { path: (ptys[i] as PtyPair).lock, reopenMs: 50 }));
  onTeardown(async () => {
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
  });
  for (const l of links) l.start();
  for (const l of locks) l.startAuto(40);
  return { id, dataDir, filler: join(dir, 'tmpfs', 'filler'), apiPort, gw, locks };
}

/** /health answers 503 degraded with the disk-full condition. */
async function degradedByFullDisk(apiPort: number): Promise<boolean> {
  const h = await health(apiPort);
  return h.httpStatus === 503 && h.body.status === 'degraded' && (h.body.conditions ?? []).some((c) => c.id === 'disk-full' && c.code === 'ERR_DISK_FULL' && c.level === 'degraded');
}

/** Every event a lock holds an ack for is in the stopped gateway's chain, named by the ack, and the chain verifies. */
async function checkLedger(r: Running, allStored: boolean): Promise<void> {
  const store = await LedgerStore.open(join(r.dataDir, 'ledger'));
  try {
    const cs = await store.chain(`oti/${r.id.trust.siteId}/${r.id.gatewayId}`, 'self');
    const stored = new Map<string, string>();
    for (let i = 0; i < cs.head.size; i++) {
      const bytes = await cs.entry(i);
      const body = decodeEntry(bytes).body;
      if (body.kind === 'lock-event') stored.set(`${body.event.lock}:${body.event.ctr}`, toHex(leafHash(bytes)));
    }
    for (const l of r.locks) {
      assert.ok(l.acked.size > 0);
      for (const [ctr, entry] of l.acked) assert.equal(stored.get(`${l.id}:${ctr}`), toHex(entry), `the acknowledged ${l.id}:${ctr} is stored`);
      if (allStored) for (let c = 1; c < l.counter; c++) assert.ok(stored.has(`${l.id}:${c}`), `${l.id}:${c} is stored`);
    }
    const report = await verifyChain(cs, { trust: r.id.trust });
    assert.equal(report.entries, cs.head.size);
  } finally {
    await store.close();
  }
  const verified = await oti(['verify', '--data', r.dataDir]);
  assert.equal(verified.code, 0, `oti verify: ${verified.stdout}${verified.stderr}`);
}

void test('a full disk pauses ingest without losing or acking anything, and it resumes by itself once there is space', { timeout: 240_000 }, async (t) => {
  const onTeardown = teardown(t);
  const dir = await smallDisk(t, onTeardown);
  if (dir === undefined) return;
  const r = await gatewayWithLocks(dir, onTeardown);
  const { gw, locks, apiPort, filler } = r;
  await waitUntil('events acknowledged before the disk fills', () => locks.every((l) => l.acked.size > 20));

  // The disk fills up under load.
  await fillDisk(filler);
  await waitUntil('/health says degraded: the disk is full', () => degradedByFullDisk(apiPort));
  const metrics = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
  assert.match(metrics, /oti_health_condition\{condition="disk-full",level="degraded",code="ERR_DISK_FULL"\} 1/);
  // Paused: the locks go on recording, nothing more is acknowledged (nothing is durable).
  const ackedAtPause = locks.map((l) => l.acked.size);
  const counterAtPause = locks.map((l) => l.counter);
  await waitUntil('the locks recorded more events while the disk is full', () => locks.every((l, i) => l.counter > (counterAtPause[i] as number) + 40));
  assert.deepEqual(
    locks.map((l) => l.acked.size),
    ackedAtPause,
    'no event is acknowledged while the disk is full',
  );
  assert.equal(gw.proc.exitCode, null, 'the gateway is still running');

  // Space comes back: the gateway resumes by itself, without a restart.
  await removeFiller(filler);
  await waitUntil('/health is ok again', async () => (await health(apiPort)).httpStatus === 200);
  await waitUntil('events acknowledged after the disk had room again', () => locks.every((l, i) => l.acked.size > (ackedAtPause[i] as number) + 40));
  for (const l of locks) l.stopAuto();
  await waitUntil('every event acknowledged', () => locks.every((l) => l.pending === 0));
  assert.equal(gw.logs.filter(diskFullWarning).length, 1, 'the full disk is logged once at warn level');
  assert.ok(gw.logs.some((l) => l.msg.includes('there is space on the disk again')));
  assert.ok(!gw.logs.some((l) => l.level >= 50), `nothing logged as an error: ${gw.logs.filter((l) => l.level >= 50).map((l) => l.msg).join(' | ')}`);
  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, `a clean stop; stderr: ${gw.stderr()}`);

  // Every acknowledged event is in the chain, named by its ack, and the chain verifies.
  await checkLedger(r, true);
});

void test('SIGTERM while the disk is full stops the gateway cleanly; everything acknowledged is stored', { timeout: 240_000 }, async (t) => {
  const onTeardown = teardown(t);
  const dir = await smallDisk(t, onTeardown);
  if (dir === undefined) return;
  const r = await gatewayWithLocks(dir, onTeardown);
  await waitUntil('events acknowledged before the disk fills', () => r.locks.every((l) => l.acked.size > 20));
  await fillDisk(r.filler);
  await waitUntil('/health says degraded: the disk is full', () => degradedByFullDisk(r.apiPort));
  r.gw.proc.kill('SIGTERM');
  assert.equal(await r.gw.exited, 0, `a clean stop, within its bound; stderr: ${r.gw.stderr()}`);
  for (const l of r.locks) l.stopAuto();
  await removeFiller(r.filler);
  await checkLedger(r, false);
});

void test('a gateway started on a full disk waits for space (ERR_DISK_FULL, not ERR_STORE_CORRUPT) and then starts', { timeout: 120_000 }, async (t) => {
  const onTeardown = teardown(t);
  const dir = await smallDisk(t, onTeardown);
  if (dir === undefined) return;
  const dataDir = join(dir, 'tmpfs', 'data');
  const filler = join(dir, 'tmpfs', 'filler');
  await devGateway(dataDir, 1);
  const { config, apiPort } = await gatewayConfig(dir, dataDir, []);
  await fillDisk(filler);
  const gw = startGateway(['--config', config]);
  onTeardown(async () => {
    gw.proc.kill('SIGKILL');
    await gw.exited;
  });
  const warning = await gw.waitForLog('the full disk reported', diskFullWarning);
  assert.match(warning.msg, /full/);
  // It keeps waiting (probing for space) rather than exiting.
  await sleep(1500);
  assert.equal(gw.proc.exitCode, null, `the gateway is still running; stderr: ${gw.stderr()}`);
  assert.ok(!gw.stderr().includes('ERR_STORE_CORRUPT') && !gw.logs.some((l) => l.code === 'ERR_STORE_CORRUPT'), 'a full disk is not reported as corruption');

  await removeFiller(filler);
  await gw.waitForLog('running once there is space', running);
  assert.equal((await health(apiPort)).httpStatus, 200);
  assert.equal(gw.logs.filter(diskFullWarning).length, 1, 'logged once at warn level');
  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, `a clean stop; stderr: ${gw.stderr()}`);
});
