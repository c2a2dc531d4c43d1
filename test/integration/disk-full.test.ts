/**
 * The ledger on a real file system that runs out of space (a 16 MiB tmpfs): appends wait while
 * the disk is full and are written once there is space (LevelDB reopened under the store), and a
 * store told to stop waiting fails them as not durable. Needs root for the mount; skipped with
 * the reason otherwise.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountTmpfs, fillDisk, removeFiller } from '../support/tmpfs.js';
import { makeSite, enrollGateway, enrollLock, signedEvent, type TestSite, type TestLock } from '../support/site.js';
import { waitUntil } from '../support/wait.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain, type AppendResult } from '../../ledger/chain.js';
import { verifyChain } from '../../ledger/verify.js';
import { isOtiError, type OtiError } from '../../ledger/base/errors.js';

interface Setup {
  readonly site: TestSite;
  readonly lock: TestLock;
  readonly path: string;
  readonly filler: string;
  readonly open: () => Promise<{ store: LedgerStore; chain: Chain }>;
}

/** A store on a fresh tmpfs with one enrolled lock; undefined when the test was skipped. */
async function setup(t: TestContext): Promise<Setup | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'oti-diskfull-'));
  const steps: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })];
  t.after(async () => {
    for (const s of steps.reverse()) await s().catch(() => undefined);
  });
  const fs = await mountTmpfs(dir, 16);
  if (typeof fs === 'string') {
    t.skip(fs);
    return undefined;
  }
  steps.push(() => fs.unmount());
  const site = makeSite();
  const gw = enrollGateway(site, 'gw-1');
  const lock = enrollLock(site, 'door-1');
  const path = join(fs.path, 'data', 'ledger');
  const open = async (): Promise<{ store: LedgerStore; chain: Chain }> => {
    const store = await LedgerStore.open(path);
    const chain = await Chain.open({ store, trust: site.trust, gatewayId: 'gw-1', key: gw.key, genesis: gw.statement });
    steps.push(async () => {
      await chain.close().catch(() => undefined);
      await store.close();
    });
    return { store, chain };
  };
  return { site, lock, path, filler: join(fs.path, 'filler'), open };
}

function appendEvents(chain: Chain, lock: TestLock, n: number): Promise<AppendResult>[] {
  return Array.from({ length: n }, () => chain.append({ kind: 'lock-event', cose: signedEvent(lock) }));
}

void test('appends wait while the disk is full, and are written once there is space', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  if (s === undefined) return;
  const { store, chain } = await s.open();
  await chain.append({ kind: 'roster', signed: s.lock.statement });
  await Promise.all(appendEvents(chain, s.lock, 50));
  const full: OtiError[] = [];
  let spaceAgain = 0;
  store.on('disk-full', (e) => full.push(e));
  store.on('disk-space', () => spaceAgain++);

  await fillDisk(s.filler);
  let settled = 0;
  const waiting = appendEvents(chain, s.lock, 20).map((p) => p.finally(() => settled++));
  await waitUntil('the store reports the full disk', () => full.length === 1);
  assert.equal(full[0]!.code, 'ERR_DISK_FULL');
  assert.ok(store.waitingForSpace);
  // More appends while waiting: they queue behind the block that waits.
  const later = appendEvents(chain, s.lock, 10).map((p) => p.finally(() => settled++));
  assert.equal(settled, 0, 'nothing resolves (nothing is acknowledged) while the disk is full');
  assert.equal(chain.size, 52);

  await removeFiller(s.filler);
  const results = await Promise.all([...waiting, ...later]);
  assert.deepEqual(
    results.map((r) => r.index),
    Array.from({ length: 30 }, (_, i) => 52 + i),
  );
  assert.equal(spaceAgain, 1);
  assert.equal(full.length, 1, 'one episode, reported once');
  assert.ok(store.generation >= 1, 'the database was reopened before writing again');
  // The chain goes on as if nothing happened, and everything verifies after a reopen.
  await Promise.all(appendEvents(chain, s.lock, 5));
  await chain.close();
  await store.close();
  const again = await s.open();
  assert.equal(again.chain.size, 87);
  const report = await verifyChain(again.chain, { trust: s.site.trust });
  assert.equal(report.entries, 87);
});

void test('a store told to stop waiting for space fails the waiting appends as not durable (ERR_APPEND_ABORTED) and keeps what was', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  if (s === undefined) return;
  const { store, chain } = await s.open();
  await chain.append({ kind: 'roster', signed: s.lock.statement });
  await Promise.all(appendEvents(chain, s.lock, 10));
  let full = 0;
  store.on('disk-full', () => full++);
  await fillDisk(s.filler);
  const waiting = appendEvents(chain, s.lock, 5).map((p) => p.then(() => 'durable', (e: unknown) => e));
  await waitUntil('the store reports the full disk', () => full === 1);
  store.stopWaiting();
  for (const r of await Promise.all(waiting)) assert.ok(isOtiError(r, 'ERR_APPEND_ABORTED'), `not durable, and retryable for the lock: ${String(r)}`);
  await chain.close();
  await store.close();
  await removeFiller(s.filler);
  const again = await s.open();
  assert.equal(again.chain.size, 12);
  const report = await verifyChain(again.chain, { trust: s.site.trust });
  assert.equal(report.entries, 12);
  // The counters that were given up are free again: the lock sends them again.
  assert.equal(await again.chain.lastCounter('door-1'), 10);
});
