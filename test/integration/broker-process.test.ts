/**
 * The broker of the real gateway process (`node dist/gateway/main.js --demo`, simulated locks on
 * ptys publishing events) attacked as in issue 13 with real clients: Debian's mosquitto_sub with
 * persistent sessions (-c) and mqtt.js with a credential made from the gateway's own key. The
 * outcomes are read from the gateway's own /metrics and from the clients' exit codes, not timed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig } from '../support/gateway-process.js';
import { waitUntil } from '../support/wait.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { makeGatewayCredential } from '../../gateway/broker/credentials.js';

const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');
const READER = { user: 'reader', password: 'reader-password-1' };
const HA = { user: 'ha', password: 'ha-password-1' };

/** Runs mosquitto_sub until it has received one message; resolves with its exit code. */
function subscribeOnce(port: number, who: { user: string; password: string }, clientId: string, topic: string): Promise<number | null> {
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-u', who.user, '-P', who.password, '-i', clientId, '-c', '-q', '1', '-t', topic, '-C', '1'], { stdio: 'ignore' });
  return new Promise((resolve) => sub.once('exit', (code) => resolve(code)));
}

/** The value of one metric series in a Prometheus exposition, NaN when absent. */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

void test('the real gateway: abandoned sessions are capped, a client id is per principal, no retained message under an invented chain', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-broker-process-');
  const dataDir = join(dir, 'data');
  const id = await loadOrCreateIdentity(dataDir);
  const users = join(dataDir, 'mqtt-users.json');
  await addMqttUser(users, READER.user, 'readonly', READER.password);
  await addMqttUser(users, HA.user, 'app', HA.password);
  const brokerPort = await freePort();
  const apiPort = await freePort();
  const broker = { host: '127.0.0.1', port: brokerPort, sessions: { maxPerPrincipal: 2, maxQueuedMessages: 20 } };
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), { dataDir, broker, api: { port: apiPort }, serialPorts: [], more: { demo: { locks: 2, rate: 20 }, log: { level: 'info' } } });
  const gw = startGateway(['--config', config]);
  t.after(async () => {
    gw.proc.kill('SIGTERM');
    await gw.exited;
  });
  await gw.waitForLog('running', running, 90_000);
  const metrics = (): Promise<string> => fetch(`http://127.0.0.1:${apiPort}/metrics`).then((r) => r.text());
  const events = `oti/${id.trust.siteId}/events/#`;

  // Item 2: a read-only user leaves four persistent sessions on events at QoS 1.
  for (let i = 0; i < 4; i++) assert.equal(await subscribeOnce(brokerPort, READER, `abandoned-${i}`, events), 0);
  await waitUntil('the two kept queues to fill and overflow', async () => {
    const m = await metrics();
    return metric(m, 'oti_mqtt_queued_messages') === 40 && metric(m, 'oti_mqtt_queue_dropped_total') > 0;
  });
  const m = await metrics();
  assert.equal(metric(m, 'oti_mqtt_sessions'), 2);
  assert.equal(metric(m, 'oti_mqtt_sessions_discarded_total{reason="cap"}'), 2);

  // Item 3: the read-only user squats the app's client id with a persistent session and leaves;
  // the app user still connects with it and gets its events.
  assert.equal(await subscribeOnce(brokerPort, READER, 'home-assistant', events), 0);
  assert.equal(await subscribeOnce(brokerPort, HA, 'home-assistant', events), 0);

  // Item 5: a credential made from the gateway's own key retains a 100 KB cosignature under an
  // invented chain. Nothing is retained under it; the message only reaches live subscribers (a
  // real peer gateway may cosign a chain before this gateway holds it), and its connection stays.
  const login = makeGatewayCredential({ siteId: id.trust.siteId, gatewayId: id.gatewayId, key: id.key, enrolment: id.enrolment });
  const peer = (clientId: string): Promise<MqttClient> => connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { username: login.username, password: login.password, clientId, reconnectPeriod: 0, clean: true });
  const retainedBefore = metric(await metrics(), 'oti_mqtt_retained_client_messages');
  const attacker = await peer('attacker');
  t.after(() => attacker.endAsync(true));
  const fake = `oti/${id.trust.siteId}/chain/fake-gw-1/cosig/${id.gatewayId}`;
  await attacker.subscribeAsync(fake, { qos: 1 });
  const live = new Promise<Buffer>((resolve) => attacker.once('message', (_topic, payload) => resolve(payload)));
  await attacker.publishAsync(fake, Buffer.alloc(100 * 1024, 0x41), { qos: 1, retain: true });
  assert.equal((await live).length, 100 * 1024);
  assert.equal(attacker.connected, true);
  await waitUntil('the publish counted as not kept', async () => metric(await metrics(), 'oti_mqtt_retained_not_kept_total{reason="not-on-roster"}') === 1);
  const after5 = await metrics();
  assert.equal(metric(after5, 'oti_mqtt_retained_client_messages'), retainedBefore);
  assert.ok(Number.isNaN(metric(after5, 'oti_mqtt_publishes_refused_total{code="ERR_MQTT_ACL"}')));
  // A later subscriber gets the gateway's own retained checkpoint, and nothing under the invented chain.
  const later = await peer('later');
  t.after(() => later.endAsync(true));
  const got: string[] = [];
  later.on('message', (topic) => got.push(topic));
  const own = `oti/${id.trust.siteId}/chain/${id.gatewayId}/checkpoint`;
  await later.subscribeAsync(fake, { qos: 1 });
  await later.subscribeAsync(own, { qos: 1 });
  await waitUntil('the own retained checkpoint', () => Promise.resolve(got.includes(own)));
  assert.ok(!got.includes(fake), `received ${got.join(', ')}`);
});
