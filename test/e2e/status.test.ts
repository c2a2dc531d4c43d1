/**
 * Retained MQTT statuses as an integrator sees them (issue 13, items 9 and 10), with the real
 * gateway process, a lock on a kernel pty and Debian's mosquitto_sub:
 * - a committed event's retained status is never overwritten by later copies of it (the same
 *   frame again, a replay with other content, a copy with a flipped signature bit); the refusals
 *   go to `oti/<site>/refused/<lock>/<ctr>`;
 * - after SIGTERM and after SIGKILL, the restarted gateway rebuilds the retained statuses and the
 *   lock state from its ledger.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { ptyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { waitUntil } from '../support/wait.js';
import { mosquittoSub } from '../support/mosquitto.js';

const execFileP = promisify(execFile);
const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');
const rebuilt = (l: { msg: string }): boolean => l.msg.startsWith('retained statuses rebuilt');
const USER = ['-u', 'watcher', '-P', 'watcher-password-123'];

interface Rig {
  readonly site: string;
  readonly brokerPort: number;
  readonly lock: SimLock;
  start(): GatewayProcess;
}

/** A site with lock door-1 enrolled, its line on a pty, and a gateway configuration for it. */
async function rig(t: TestContext): Promise<Rig> {
  const dir = await tempDir(t, 'oti-status-');
  const dataDir = join(dir, 'data');
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const key = generateKeyPair();
  {
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment });
    await chain.append({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op: 'enroll', role: 'lock', id: 'door-1', key: key.publicKey, time: Date.now() }) });
    await chain.close();
    await store.close();
  }
  await addMqttUser(join(dataDir, 'mqtt-users.json'), 'watcher', 'app', 'watcher-password-123');
  const pty = await ptyPair(dir, 'door-1');
  t.after(() => pty.kill());
  const brokerPort = await freePort();
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir,
    broker: { host: '127.0.0.1', port: brokerPort },
    api: { port: 0 },
    serialPorts: [pty.gateway],
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
  });
  const lock = new SimLock({ id: 'door-1', seed: key.seed, resendMs: 500 });
  const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 50 });
  t.after(async () => {
    lock.close();
    await link.close();
  });
  link.start();
  const gateways: GatewayProcess[] = [];
  t.after(() => gateways.forEach((g) => g.proc.kill('SIGKILL')));
  return {
    site: id.trust.siteId,
    brokerPort,
    lock,
    start: () => {
      const gw = startGateway(['--config', config]);
      gateways.push(gw);
      return gw;
    },
  };
}

/** What `mosquitto_sub --retained-only -W 3` prints for these filters, as topic → payload. */
async function retained(r: Rig, filters: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const args = ['-h', '127.0.0.1', '-p', String(r.brokerPort), ...USER, '--retained-only', '-W', '3', '-v', ...filters.flatMap((f) => ['-t', f])];
  // -W ends mosquitto_sub with status 27 when the time is up: that is how this command ends.
  const out = await execFileP('mosquitto_sub', args).catch((e: { stdout?: string; code?: number }) => {
    if (e.code !== 27) throw new Error(`mosquitto_sub failed: ${JSON.stringify(e)}`);
    return { stdout: e.stdout ?? '' };
  });
  const got = new Map<string, Record<string, unknown>>();
  for (const line of out.stdout.split('\n').filter((l) => l !== '')) {
    const space = line.indexOf(' ');
    got.set(line.slice(0, space), JSON.parse(line.slice(space + 1)) as Record<string, unknown>);
  }
  return got;
}

void test('later copies of a committed event (the same frame, a replay, a flipped signature) never overwrite its retained status; refusals go to their own topic', { timeout: 120_000 }, async (t) => {
  const r = await rig(t);
  const gw = r.start();
  await gw.waitForLog('running', running);
  const { lines: seen } = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(r.brokerPort), ...USER, '-t', `oti/${r.site}/refused/#`, '-t', `oti/${r.site}/status/#`, '-v', '-q', '1']);
  // Events keep coming until mosquitto_sub, subscribed meanwhile, has seen one committed.
  r.lock.startAuto(20);
  await waitUntil('an event committed and seen', () => r.lock.acked.size > 0 && seen.some((l) => l.includes('"state":"committed"')));
  r.lock.stopAuto();
  await waitUntil('every event acknowledged', () => r.lock.pending === 0);
  const status = `oti/${r.site}/status/door-1/1`;
  const before = (await retained(r, [status])).get(status);
  assert.equal(before?.['state'], 'committed');

  // The identical frame again (a lock whose ack was lost), answered with the ack again: the
  // gateway counts it as a duplicate.
  const api = String((await gw.waitForLog('the API', (l) => typeof l['url'] === 'string' && l.msg.startsWith('local API'))).url);
  const duplicates = async (): Promise<number> => Number(/^oti_events_duplicate_total (\d+)/m.exec((await execFileP('curl', ['-s', `${api}/metrics`])).stdout)?.[1] ?? NaN);
  const duplicatesBefore = await duplicates();
  assert.ok(r.lock.replay(1));
  await waitUntil('the resent frame is answered as a duplicate', async () => (await duplicates()) > duplicatesBefore);
  // The counter with other content (ERR_REPLAY) and the event with one signature bit flipped.
  // The lock speaks protocol v2, whose answers name the bytes they answer: it sees the nacks of
  // these copies as answers about bytes it never sent ('foreign') and keeps its own event.
  const nacks: string[] = [];
  r.lock.on('nack', (ctr, code) => nacks.push(`${ctr} ${code}`));
  r.lock.on('foreign', (ctr, code) => nacks.push(`${ctr} ${code}`));
  assert.ok(r.lock.forgeReplay(1));
  assert.ok(r.lock.replayFlipped(1));
  await waitUntil('both copies refused', () => nacks.length === 2);
  // Notifications are published in order: once a new event's status is out, so is whatever
  // the copies caused.
  const next = r.lock.record('locked');
  await waitUntil('a new event notified after the copies', () => seen.some((l) => l.startsWith(`oti/${r.site}/status/door-1/${next} `) && l.includes('"committed"')));

  const after = (await retained(r, [status])).get(status);
  assert.deepEqual(after, before, 'the retained status is still the committed one');
  const refused = seen.filter((l) => l.startsWith(`oti/${r.site}/refused/door-1/1 `));
  assert.equal(refused.length, 2, 'both refusals reported on the refused topic');
  const codes = refused.map((l) => (JSON.parse(l.slice(l.indexOf(' ') + 1)) as { code: string }).code);
  for (const code of codes) assert.ok(['ERR_REPLAY', 'ERR_LOCK_SIGNATURE'].includes(code), code);
  const published = seen.filter((l) => l.startsWith(`${status} `)).map((l) => (JSON.parse(l.slice(l.indexOf(' ') + 1)) as { state: string }).state);
  assert.ok(!published.includes('rejected') && published.at(-1) === 'committed', `status history: ${published.join(' → ')}`);
});

void test('after SIGTERM and after SIGKILL the restarted gateway rebuilds the retained statuses and lock state from its ledger', { timeout: 180_000 }, async (t) => {
  const r = await rig(t);
  let gw = r.start();
  await gw.waitForLog('running', running);
  for (const type of ['unlocked', 'locked', 'unlocked', 'locked', 'jammed', 'tamper'] as const) r.lock.record(type);
  await waitUntil('every event acknowledged', () => r.lock.acked.size === 6 && r.lock.pending === 0);
  const filters = [`oti/${r.site}/status/#`, `oti/${r.site}/lockstate/#`];
  await waitUntil('the statuses are published', async () => [...(await retained(r, filters)).values()].filter((m) => m['state'] === 'committed').length === 6);

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    gw.proc.kill(signal);
    await gw.exited;
    gw = r.start();
    await gw.waitForLog('running again', running);
    let got = new Map<string, Record<string, unknown>>();
    await waitUntil(`retained statuses back after ${signal}`, async () => (got = await retained(r, filters)).size >= 7, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${[...got.keys()].join(', ') || 'nothing retained'}`);
    });
    assert.ok(gw.logs.some(rebuilt), 'the rebuild is logged');
    for (let ctr = 1; ctr <= 6; ctr++) {
      const s = got.get(`oti/${r.site}/status/door-1/${ctr}`);
      assert.equal(s?.['state'], 'committed', `door-1:${ctr} after ${signal}`);
      assert.equal(typeof s?.['receipt'], 'string');
    }
    assert.deepEqual({ ...got.get(`oti/${r.site}/lockstate/door-1`), at: 0 }, { state: 'JAMMED', id: 'door-1:5', at: 0 }, `lock state after ${signal}`);
  }
});
