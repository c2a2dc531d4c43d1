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
import { connect } from 'mqtt';
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

  // Item 5: a credential made from the gateway's own key retains a cosignature under an invented chain.
  const login = makeGatewayCredential({ siteId: id.trust.siteId, gatewayId: id.gatewayId, key: id.key, enrolment: id.enrolment });
  const attacker = connect(`mqtt://127.0.0.1:${brokerPort}`, { username: login.username, password: login.password, reconnectPeriod: 0, clean: true });
  t.after(() => attacker.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    attacker.once('connect', () => resolve());
    attacker.once('error', reject);
  });
  const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
  attacker.publish(`oti/${id.trust.siteId}/chain/fake-gw-1/cosig/${id.gatewayId}`, Buffer.alloc(100 * 1024, 0x41), { qos: 1, retain: true });
  await closed;
  await waitUntil('the refusal in the metrics', async () => metric(await metrics(), 'oti_mqtt_publishes_refused_total{code="ERR_MQTT_ACL"}') === 1);
  const refusal = await gw.waitForLog('the refusal logged', (l) => l.msg.startsWith('MQTT publish refused') && l['code'] === 'ERR_MQTT_ACL');
  assert.match(refusal.msg, /fake-gw-1 is not on the roster/);
});
