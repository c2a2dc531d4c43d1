/**
 * gateway/notify/external-broker.ts on its own: the cap on notifications waiting for an external broker that
 * cannot be reached (a real mqtt.js client reconnecting to a port where nothing listens), the
 * topic map check, and configuration errors that name their key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExternalBroker } from '../../gateway/notify/external-broker.js';
import { TopicMap } from '../../gateway/broker/topics.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { freePort } from '../support/gateway-process.js';
import { tempDir } from '../support/site.js';

const topics = new TopicMap('site-1');
const base = { mode: 'beside' as const, maxPending: 3 };

void test('while the external broker is unreachable, at most maxPending notifications wait; the next is refused with ERR_MQTT_BACKLOG', { timeout: 30_000 }, async (t) => {
  const ext = await ExternalBroker.start({ ...base, url: `mqtt://127.0.0.1:${await freePort()}` }, { topics, gatewayId: 'gw-1' });
  t.after(() => ext.close());
  const waiting = [1, 2, 3].map((i) => ext.publish(topics.event('door'), `{"n":${i}}`, { qos: 1, retain: false }));
  for (const p of waiting) p.catch(() => undefined);
  assert.equal(ext.pending, 3);
  await assert.rejects(ext.publish(topics.event('door'), '{"n":4}', { qos: 1, retain: false }), (e) => isOtiError(e, 'ERR_MQTT_BACKLOG'));
  assert.equal(ext.dropped, 1);
  assert.equal(ext.connected, false);
  await assert.rejects(ext.publish('somewhere/else', 'x', { qos: 0, retain: false }), (e) => isOtiError(e, 'ERR_ARGUMENT'), 'only topics of the map');
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
