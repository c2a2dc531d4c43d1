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
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, startTestGateway, freePort, type GatewayProcess } from '../support/gateway-process.js';
import { mosquittoSub, startMosquitto, type MosquittoSub, type TlsMosquitto } from '../support/mosquitto.js';
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
  const configs = (): number => sub.messages().filter((m) => /^homeassistant\/[a-z_]+\/oti_demo-lock-1\/[a-z]+\/config$/.test(m.topic) && m.payload !== '').length;
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

void test('a wrong external broker URL stops start-up with ERR_CONFIG naming the key', async (t) => {
  const dir = await tempDir(t, 'oti-ext-');
  const gw = startGateway(['--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false', '--discovery.enabled', 'false', '--notifications.externalBroker.url', 'http://127.0.0.1:1883'], { OTI_DATA_DIR: join(dir, 'data') });
  assert.notEqual(await gw.exited, 0);
  assert.match(gw.stderr(), /notifications\.externalBroker\.url.*\[ERR_CONFIG\]/);
});
