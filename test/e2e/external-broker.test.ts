/**
 * Notifications to an external broker: a real Mosquitto started here, TLS only, with its own
 * password file, and the real gateway process (`--demo`: simulated locks on kernel ptys)
 * configured with `notifications.externalBroker` (URL, user name, password file, CA). What a
 * site's integrator sees on their broker is read with Debian's mosquitto_sub over TLS, and Home
 * Assistant's birth message is sent with mosquitto_pub.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, startTestGateway, freePort, type GatewayProcess } from '../support/gateway-process.js';
import { mosquittoSub, startMosquitto, type Mosquitto, type MosquittoSub, type TlsMosquitto } from '../support/mosquitto.js';
import { waitUntil } from '../support/wait.js';
import { connect } from 'mqtt';

interface Seen {
  readonly topic: string;
  readonly payload: string;
}

/** mosquitto_sub over TLS printing `topic payload` lines, collected as they come. */
function subscribe(t: TestContext, b: { port: number; caFile: string }, user: string, password: string, filters: string[]): MosquittoSub {
  return mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(b.port), '--cafile', b.caFile, '-u', user, '-P', password, '-q', '1', '-v', ...filters.flatMap((f) => ['-t', f])]);
}

/** An app on the gateway's embedded broker (mqtt.js), whose subscriptions must be granted. */
async function embeddedApp(t: TestContext, port: number, user: string, password: string, filters: string[]): Promise<Seen[]> {
  const client = connect(`mqtt://127.0.0.1:${port}`, { username: user, password, reconnectPeriod: 0 });
  t.after(() => client.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const seen: Seen[] = [];
  client.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString('utf8') }));
  const granted = await client.subscribeAsync(filters, { qos: 1 });
  assert.ok(granted.every((g) => g.qos === 1), `subscriptions granted: ${JSON.stringify(granted)}`);
  return seen;
}

async function gatewayWith(t: TestContext, broker: TlsMosquitto, more: string[]): Promise<{ gw: GatewayProcess; data: string; port: number; site: string }> {
  const dir = await tempDir(t, 'oti-ext-');
  const data = join(dir, 'data');
  const passwordFile = join(dir, 'broker-password');
  await writeFile(passwordFile, 'gateway-password-1\n', { mode: 0o600 });
  const gw = startTestGateway(
    t,
    [
      ...['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', String(await freePort()), '--ble.enabled', 'false', '--discovery.enabled', 'false'],
      ...['--demo.locks', '1', '--demo.rate', '20'],
      ...['--notifications.externalBroker.url', broker.url, '--notifications.externalBroker.username', 'gateway', '--notifications.externalBroker.passwordFile', passwordFile, '--notifications.externalBroker.ca', broker.caFile],
      ...more,
    ],
    { OTI_DATA_DIR: data },
  );
  const port = (await gw.waitForLog('broker', (l) => l.msg.startsWith('MQTT broker listening'))).port as number;
  const site = (await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'))).site as string;
  return { gw, data, port, site };
}

const USERS = { gateway: 'gateway-password-1', integrator: 'integrator-password-1', homeassistant: 'ha-password-1' };

void test('beside the embedded broker: events, statuses, lock state, lock info, Home Assistant discovery and availability reach an external Mosquitto over TLS', { timeout: 120_000 }, async (t) => {
  const broker = await startMosquitto(t, USERS, { tls: true });
  const sub = subscribe(t, broker, 'integrator', USERS.integrator, ['oti/#', 'homeassistant/#']);
  const { gw, data, port, site } = await gatewayWith(t, broker, ['--notifications.homeAssistant.enabled', 'true']);
  const has = (re: RegExp, payload?: RegExp): boolean => sub.messages().some((m) => re.test(m.topic) && (payload === undefined || payload.test(m.payload)));
  await waitUntil('an event on the external broker', () => has(/^oti\/[^/]+\/events\/demo-lock-1$/));
  await waitUntil('a committed status with its receipt', () => has(/^oti\/[^/]+\/status\/demo-lock-1\/\d+$/, /"state":"committed".*"receipt":"/));
  await waitUntil('the bolt state', () => has(/^oti\/[^/]+\/lockstate\/demo-lock-1$/, /"state":"(LOCKED|UNLOCKED)"/));
  await waitUntil('the lock info', () => has(/^oti\/[^/]+\/lockinfo\/demo-lock-1$/, /"link":"online"/));
  await waitUntil('the gateway online', () => has(/^oti\/[^/]+\/gateways\/[^/]+\/state$/, /"online"/));
  const configs = (): number => sub.messages().filter((m) => m.topic.startsWith(`homeassistant/`) && m.topic.includes(`/oti_${site}/demo-lock-1_`) && m.payload !== '').length;
  await waitUntil('five discovery configs', () => configs() >= 5);

  // The same notifications still reach the embedded broker (mode beside).
  const demoPassword = (await readFile(join(data, 'demo', 'mqtt-demo-password'), 'utf8')).trim();
  const local = await embeddedApp(t, port, 'demo', demoPassword, [`oti/${site}/events/#`]);
  await waitUntil('events on the embedded broker too', () => local.length > 0);

  // Home Assistant's birth message on the external broker brings the configs again.
  const before = configs();
  const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', broker.caFile, '-u', 'homeassistant', '-P', USERS.homeassistant, '-t', 'homeassistant/status', '-m', 'online']);
  assert.equal(await new Promise((resolve) => pub.on('close', resolve)), 0);
  await waitUntil('configs again after the birth message', () => configs() >= before + 5);

  // A clean stop says offline on the external broker.
  const mark = sub.lines.length;
  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, gw.stderr());
  await waitUntil('offline on the external broker', () => sub.messages().slice(mark).some((m) => /\/gateways\/[^/]+\/state$/.test(m.topic) && /"offline"/.test(m.payload)));
});

void test('instead of the embedded broker: notifications go only to the external one, and a killed gateway is marked offline by its last will', { timeout: 120_000 }, async (t) => {
  const broker = await startMosquitto(t, USERS, { tls: true });
  const sub = subscribe(t, broker, 'integrator', USERS.integrator, ['oti/#']);
  const { gw, data, port, site } = await gatewayWith(t, broker, ['--notifications.externalBroker.mode', 'instead']);
  const demoPassword = (await readFile(join(data, 'demo', 'mqtt-demo-password'), 'utf8')).trim();
  // The embedded broker still runs (for sync) and takes the app's subscriptions.
  const local = await embeddedApp(t, port, 'demo', demoPassword, [`oti/${site}/events/#`, `oti/${site}/status/#`]);
  await waitUntil('ten events on the external broker', () => sub.messages().filter((m) => /\/events\//.test(m.topic)).length >= 10);
  assert.deepEqual(local, [], 'no event or status on the embedded broker');
  const mark = sub.lines.length;
  gw.proc.kill('SIGKILL');
  await gw.exited;
  await waitUntil('offline from the last will', () => sub.messages().slice(mark).some((m) => /\/gateways\/[^/]+\/state$/.test(m.topic) && /"offline"/.test(m.payload)));
});

/** A gateway (demo lock, 20 events/s) whose external broker is plain MQTT at `port`, up or not; its API's base URL. */
async function plainGateway(t: TestContext, port: number, password: string): Promise<{ gw: GatewayProcess; api: string; data: string; brokerPort: number; site: string }> {
  const dir = await tempDir(t, 'oti-ext-');
  const data = join(dir, 'data');
  const passwordFile = join(dir, 'broker-password');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  const apiPort = await freePort();
  const gw = startTestGateway(
    t,
    [
      ...['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', String(apiPort), '--ble.enabled', 'false', '--discovery.enabled', 'false', '--demo.locks', '1', '--demo.rate', '20'],
      ...['--notifications.externalBroker.url', `mqtt://127.0.0.1:${port}`, '--notifications.externalBroker.username', 'gateway', '--notifications.externalBroker.passwordFile', passwordFile],
    ],
    { OTI_DATA_DIR: data },
  );
  const brokerPort = (await gw.waitForLog('broker', (l) => l.msg.startsWith('MQTT broker listening'))).port as number;
  const site = (await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 15_000)).site as string;
  return { gw, api: `http://127.0.0.1:${apiPort}`, data, brokerPort, site };
}

interface ExtStatus {
  chain: { size: number };
  notifications: { externalBroker: { connected: boolean; pending: number; dropped: number } };
}

async function status(api: string): Promise<ExtStatus> {
  return (await (await fetch(`${api}/status`)).json()) as ExtStatus;
}

void test('the gateway starts and takes events while the external broker is down, and publishes there once it is up', { timeout: 120_000 }, async (t) => {
  const port = await freePort();
  const { api } = await plainGateway(t, port, USERS.gateway);
  assert.equal((await fetch(`${api}/health`)).status, 200);
  const first = await status(api);
  assert.equal(first.notifications.externalBroker.connected, false);
  await waitUntil('events committed while the external broker is down', async () => (await status(api)).chain.size > first.chain.size + 20);
  const broker = await startMosquitto(t, USERS, { port });
  const sub = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(port), '-u', 'integrator', '-P', USERS.integrator, '-q', '1', '-v', '-t', 'oti/#']);
  await waitUntil('events on the external broker once it is up', () => sub.messages().some((m) => /\/events\/demo-lock-1$/.test(m.topic)), 30_000, () => broker.log());
  await waitUntil('connected in /status', async () => (await status(api)).notifications.externalBroker.connected);
});

void test('an external broker that refuses the login: the gateway runs, and tries again every 2 s', { timeout: 120_000 }, async (t) => {
  const broker = await startMosquitto(t, USERS);
  const { gw, api } = await plainGateway(t, broker.port, 'not-the-password');
  assert.equal((await fetch(`${api}/health`)).status, 200);
  const refusals = (): number => broker.log().match(/not authori[sz]ed/gi)?.length ?? 0;
  await waitUntil('three refused logins', () => refusals() >= 3, 30_000, () => broker.log());
  // Logged once, not once per attempt.
  const lines = gw.logs.filter((l) => typeof l.msg === 'string' && /external MQTT broker .*Not authorized/.test(l.msg));
  assert.equal(lines.length, 1, JSON.stringify(lines));
});

void test('beside: while the external broker is down the embedded broker still gets every event live, and the external one gets them again once back', { timeout: 120_000 }, async (t) => {
  let broker: Mosquitto = await startMosquitto(t, USERS);
  const { api, data, brokerPort, site } = await plainGateway(t, broker.port, USERS.gateway);
  await waitUntil('connected', async () => (await status(api)).notifications.externalBroker.connected);
  const demoPassword = (await readFile(join(data, 'demo', 'mqtt-demo-password'), 'utf8')).trim();
  const local = await embeddedApp(t, brokerPort, 'demo', demoPassword, [`oti/${site}/events/#`]);
  await broker.kill();
  await waitUntil('disconnected in /status', async () => !(await status(api)).notifications.externalBroker.connected);
  const mark = local.length;
  await waitUntil('events live on the embedded broker during the outage', () => local.length >= mark + 20);
  assert.ok((await status(api)).notifications.externalBroker.pending > 0, 'the external broker\'s notifications wait');
  broker = await startMosquitto(t, USERS, { port: broker.port });
  const sub = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(broker.port), '-u', 'integrator', '-P', USERS.integrator, '-q', '1', '-v', '-t', 'oti/#']);
  await waitUntil('events on the external broker again', () => sub.messages().some((m) => /\/events\/demo-lock-1$/.test(m.topic)));
});

void test('a wrong external broker setting stops start-up with ERR_CONFIG naming the key, before anything is written', async (t) => {
  const dir = await tempDir(t, 'oti-ext-');
  const cases: [string[], string][] = [
    [['--notifications.externalBroker.url', 'http://127.0.0.1:1883'], 'notifications.externalBroker.url'],
    [['--notifications.externalBroker.url', 'mqtts://127.0.0.1:8883', '--notifications.externalBroker.ca', join(dir, 'missing-ca.pem')], 'notifications.externalBroker.ca'],
  ];
  for (const [more, key] of cases) {
    const data = join(dir, `data-${key}`);
    const gw = startGateway(['--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false', '--discovery.enabled', 'false', ...more], { OTI_DATA_DIR: data });
    assert.equal(await gw.exited, 2);
    assert.match(gw.stderr(), new RegExp(`${key.replaceAll('.', '\\.')}.*\\[ERR_CONFIG\\]`));
    assert.equal(existsSync(data), false, `${key}: nothing written`);
  }
});
