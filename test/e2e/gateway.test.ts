/**
 * End to end: the real gateway process (what `npm start` runs) with simulated locks on real
 * kernel ptys, a real MQTT client (Debian's mosquitto_sub) and a webhook receiver. The gateway is
 * killed with SIGKILL mid-stream and restarted: no acknowledged event may be lost, none stored
 * twice, every committed event must reach the webhook receiver, and the MQTT client must see the
 * documented topics and payloads. Then the start-up refusals: bad configuration, a busy port, an
 * unwritable data folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { toHex } from '../../ledger/crypto.js';
import { LedgerStore } from '../../ledger/store.js';
import { decodeEntry } from '../../ledger/entry.js';
import { leafHash } from '../../ledger/merkle.js';
import { waitUntil } from '../support/wait.js';
import { mosquittoSub } from '../support/mosquitto.js';
import { devGateway } from '../support/enrolled-gateway.js';


const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');
const SECRET = 'e2e-webhook-secret-0123456789';

/** A webhook receiver that checks every signature as an integrator would. */
async function receiver(): Promise<{ url: string; ids: Set<string>; badSignatures: number; close(): Promise<void> }> {
  const ids = new Set<string>();
  const state = { badSignatures: 0 };
  const read = async (req: IncomingMessage): Promise<string> => {
    let body = '';
    for await (const c of req) body += String(c);
    return body;
  };
  const srv = createServer((req, res) => {
    void read(req).then((body) => {
      const header = String(req.headers['x-oti-signature'] ?? '');
      const t = /t=(\d+)/.exec(header)?.[1];
      const v1 = /v1=([0-9a-f]{64})/.exec(header)?.[1];
      const expect = t === undefined ? '' : createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
      if (v1 === undefined || !timingSafeEqual(Buffer.from(v1), Buffer.from(expect))) {
        state.badSignatures++;
        res.writeHead(401).end();
        return;
      }
      for (const e of (JSON.parse(body) as { entries: { id: string; kind: string }[] }).entries) if (e.kind === 'lock-event') ids.add(e.id);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    ids,
    get badSignatures() {
      return state.badSignatures;
    },
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}

void test('events from locks on ptys survive a SIGKILL of the gateway: nothing acknowledged is lost, every event is notified', { timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-e2e-');
  const dataDir = join(dir, 'data');
  // An installer's preparation, done offline: the identity, and three locks enrolled in the chain.
  const { id, lockKeys } = await devGateway(dataDir, 3);
  await addMqttUser(join(dataDir, 'mqtt-users.json'), 'watcher', 'app', 'watcher-password-123');
  const hook = await receiver();
  t.after(() => hook.close());
  const ptys: PtyPair[] = [];
  for (let i = 0; i < lockKeys.length; i++) ptys.push(await ptyPair(dir, `door-${i}`));
  t.after(() => Promise.all(ptys.map((p) => p.kill())));
  const brokerPort = await freePort();
  const apiPort = await freePort();
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir,
    broker: { host: '127.0.0.1', port: brokerPort },
    api: { port: apiPort },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
    more: { webhooks: [{ url: hook.url, secret: SECRET, backoffMinMs: 100, backoffMaxMs: 1000 }] },
  });
  let gw: GatewayProcess = startGateway(['--config', config]);
  t.after(() => {
    gw.proc.kill('SIGKILL');
  });
  await gw.waitForLog('running', running);

  // A real MQTT client, started after the gateway, as an integrator's would be.
  const { lines: seen, proc: sub } = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(brokerPort), '-u', 'watcher', '-P', 'watcher-password-123', '-t', `oti/${id.trust.siteId}/events/#`, '-t', `oti/${id.trust.siteId}/status/#`, '-v', '-i', 'e2e-watcher', '-q', '1', '-c']);

  const locks = lockKeys.map((k, i) => new SimLock({ id: `door-${i}`, seed: k.seed, resendMs: 500 }));
  const links = locks.map((l, i) => new SerialSimLink(l, { path: (ptys[i] as PtyPair).lock, reopenMs: 50 }));
  t.after(async () => {
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
  });
  for (const l of links) l.start();
  for (const l of locks) l.startAuto(40);

  await waitUntil('events acknowledged before the crash', () => locks.every((l) => l.acked.size > 40));
  gw.proc.kill('SIGKILL');
  assert.equal(await gw.exited, 'SIGKILL');
  const ackedBeforeCrash = locks.map((l) => new Map(l.acked));
  await sleep(300);
  gw = startGateway(['--config', config]);
  await gw.waitForLog('running again', running);
  await waitUntil('events acknowledged after the restart', () => locks.every((l, i) => l.acked.size > ((ackedBeforeCrash[i] as Map<number, Uint8Array>).size + 40)));
  for (const l of locks) l.stopAuto();
  await waitUntil('every event acknowledged', () => locks.every((l) => l.pending === 0));
  const total = locks.reduce((n, l) => n + l.counter - 1, 0);
  await waitUntil('every event delivered to the webhook', () => hook.ids.size === total);
  await waitUntil('the MQTT client saw committed events', () => seen.some((l) => l.includes('"state":"committed"')));

  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, `a clean stop; stderr: ${gw.stderr()}`);
  sub.kill();

  // The ledger, read after the gateway stopped: every event once, every ack names its entry.
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  t.after(() => store.close());
  const cs = await store.chain(`oti/${id.trust.siteId}/${id.gatewayId}`, 'self');
  const stored = new Map<string, string>();
  for (let i = 0; i < cs.head.size; i++) {
    const bytes = await cs.entry(i);
    const body = decodeEntry(bytes).body;
    if (body.kind !== 'lock-event') continue;
    const key = `${body.event.lock}:${body.event.ctr}`;
    assert.ok(!stored.has(key), `${key} stored twice`);
    stored.set(key, toHex(leafHash(bytes)));
  }
  assert.equal(stored.size, total);
  for (const l of locks) {
    for (let c = 1; c < l.counter; c++) assert.ok(stored.has(`${l.id}:${c}`), `${l.id}:${c} is stored`);
    for (const [ctr, entry] of l.acked) assert.equal(stored.get(`${l.id}:${ctr}`), toHex(entry), `the ack of ${l.id}:${ctr} names its entry`);
  }
  for (const [i, before] of ackedBeforeCrash.entries()) {
    for (const ctr of before.keys()) assert.ok(stored.has(`door-${i}:${ctr}`), 'acknowledged before the crash, still stored after it');
  }
  assert.equal(hook.badSignatures, 0);
  for (const key of stored.keys()) assert.ok(hook.ids.has(key), `webhook got ${key}`);

  // What the MQTT client saw follows the documented topic map and payloads (docs/MQTT.md).
  const events = seen.filter((l) => l.startsWith(`oti/${id.trust.siteId}/events/`));
  assert.ok(events.length > 0);
  for (const line of events) {
    const [topic, json] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)];
    const m = JSON.parse(json) as Record<string, unknown>;
    assert.equal(topic, `oti/${id.trust.siteId}/events/${String(m['lock'])}`);
    assert.deepEqual(Object.keys(m).sort(), ['block', 'chain', 'ctr', 'entry', 'gateway', 'id', 'index', 'lock', 'lockTime', 'provenance', 'type']);
    assert.equal(stored.get(String(m['id'])), m['entry']);
  }
});

void test('start-up refuses a wrong configuration value, naming the key and what is allowed', async (t) => {
  const dir = await tempDir(t, 'oti-e2e-');
  const gw = startGateway(['--broker.port', '70000'], { OTI_DATA_DIR: join(dir, 'data') });
  assert.equal(await gw.exited, 2);
  assert.match(gw.stderr(), /broker\.port/);
  assert.match(gw.stderr(), /ERR_CONFIG/);
});

void test('start-up refuses a busy port with ERR_PORT_IN_USE', async (t) => {
  const dir = await tempDir(t, 'oti-e2e-');
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const port = (srv.address() as { port: number }).port;
  const gw = startGateway(['--broker.host', '127.0.0.1', '--broker.port', String(port), '--ble.enabled', 'false'], { OTI_DATA_DIR: join(dir, 'data') });
  assert.equal(await gw.exited, 1);
  assert.match(gw.stderr(), /ERR_PORT_IN_USE/);
  assert.match(gw.stderr(), new RegExp(String(port)));
  assert.match(gw.stderr(), /--broker\.port N/, 'the message names the flag that changes it');
  assert.equal(existsSync(join(dir, 'data', 'site.json')), false, 'no development site was created');
});

void test('start-up refuses a data folder it cannot write', async (t) => {
  const dir = await tempDir(t, 'oti-e2e-');
  // A path under a regular file cannot be created by anyone, root included.
  await writeFile(join(dir, 'file'), 'not a folder');
  const target = join(dir, 'file', 'data');
  const gw = startGateway(['--ble.enabled', 'false', '--broker.port', '0'], { OTI_DATA_DIR: target });
  assert.equal(await gw.exited, 2);
  assert.match(gw.stderr(), /dataDir/);
  assert.match(gw.stderr(), /ERR_CONFIG/);
});
