/**
 * gateway/notify/external-broker.ts on its own: publishing never waits for an external broker
 * that cannot be reached (a real mqtt.js client reconnecting to a port where nothing listens),
 * the cap on notifications waiting for it, beside mode's embedded broker unaffected by it, a
 * refused login tried again (a real Mosquitto), the topic map check, and configuration errors
 * that name their key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExternalBroker, FanOut } from '../../gateway/notify/external-broker.js';
import { TopicMap } from '../../gateway/broker/topics.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { freePort } from '../support/gateway-process.js';
import { tempDir } from '../support/site.js';
import { startMosquitto } from '../support/mosquitto.js';
import { waitUntil } from '../support/wait.js';

const topics = new TopicMap('site-1');
const base = { mode: 'beside' as const, maxPending: 3 };

void test('while the external broker is unreachable, publishing resolves at once; at most maxPending notifications wait; the next is refused with ERR_MQTT_BACKLOG', { timeout: 30_000 }, async (t) => {
  const ext = await ExternalBroker.start({ ...base, url: `mqtt://127.0.0.1:${await freePort()}` }, { topics, gatewayId: 'gw-1' });
  t.after(() => ext.close());
  // Resolved once handed over, not once acknowledged: nothing upstream waits for the broker.
  for (const i of [1, 2, 3]) await ext.publish(topics.event('door'), `{"n":${i}}`, { qos: 1, retain: false });
  assert.equal(ext.pending, 3);
  await assert.rejects(ext.publish(topics.event('door'), '{"n":4}', { qos: 1, retain: false }), (e) => isOtiError(e, 'ERR_MQTT_BACKLOG'));
  assert.equal(ext.dropped, 1);
  assert.equal(ext.connected, false);
  assert.deepEqual(ext.status(), { url: ext.url, connected: false, pending: 3, maxPending: 3, dropped: 1 });
  await assert.rejects(ext.publish('somewhere/else', 'x', { qos: 0, retain: false }), (e) => isOtiError(e, 'ERR_ARGUMENT'), 'only topics of the map');
});

void test('beside an unreachable external broker, every publish reaches the embedded one at once and in order, past the external backlog', { timeout: 30_000 }, async (t) => {
  const ext = await ExternalBroker.start({ ...base, url: `mqtt://127.0.0.1:${await freePort()}` }, { topics, gatewayId: 'gw-1' });
  t.after(() => ext.close());
  const embedded: string[] = [];
  const out = new FanOut({ publish: (_topic, payload) => Promise.resolve(void embedded.push(payload)) }, ext);
  for (let i = 0; i < 20; i++) await out.publish(topics.event('door'), String(i), { qos: 1, retain: false });
  assert.deepEqual(embedded, Array.from({ length: 20 }, (_, i) => String(i)));
  assert.equal(ext.pending, 3);
  assert.equal(ext.dropped, 17, 'the external broker counts what it refused');
});

void test('a refused login (CONNACK not authorized) is tried again every 2 s', { timeout: 60_000 }, async (t) => {
  const mosq = await startMosquitto(t, { gateway: 'right-password-1' });
  const dir = await tempDir(t);
  const passwordFile = join(dir, 'password');
  await writeFile(passwordFile, 'wrong-password-1\n', { mode: 0o600 });
  const ext = await ExternalBroker.start({ ...base, url: mosq.url, username: 'gateway', passwordFile }, { topics, gatewayId: 'gw-1' });
  t.after(() => ext.close());
  const refusals = (): number => mosq.log().match(/not authori[sz]ed/gi)?.length ?? 0;
  await waitUntil('three refused logins', () => refusals() >= 3, 30_000, () => mosq.log());
  assert.equal(ext.connected, false);
});

void test('configuration errors name their key', async (t) => {
  const dir = await tempDir(t);
  const open = join(dir, 'password');
  await writeFile(open, 'secret\n', { mode: 0o644 });
  const cases: [Parameters<typeof ExternalBroker.start>[0], string][] = [
    [{ ...base, url: 'http://broker:1883' }, 'notifications.externalBroker.url'],
    [{ ...base, url: 'mqtt://user:pw@broker:1883' }, 'notifications.externalBroker.url'],
    [{ ...base, url: 'mqtts://broker:8883', cert: open }, 'notifications.externalBroker.key'],
    [{ ...base, url: 'mqtt://broker:1883', username: 'gw', passwordFile: open }, 'notifications.externalBroker.passwordFile'],
    [{ ...base, url: 'mqtt://broker:1883', username: 'gw', passwordFile: join(dir, 'missing') }, 'notifications.externalBroker.passwordFile'],
  ];
  for (const [c, key] of cases) {
    await assert.rejects(ExternalBroker.start(c, { topics, gatewayId: 'gw-1' }), (e) => isOtiError(e, 'ERR_CONFIG') && (e.details as { key: string }).key === key, key);
  }
});
