/**
 * Home Assistant's bridge (gateway/notify/homeassistant.ts) on a real embedded broker, seen by a
 * real mqtt.js client, across a restart: the battery and tamper facts are read back from the
 * chain and their lockinfo is retained again before the lock is heard; discovery topics carry the
 * site, and the configs under the topics of earlier releases (without the site) are cleared first.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { makeSite, enrollLock, openChain, tempDir, type TestSite } from '../support/site.js';
import { Broker } from '../../gateway/broker/broker.js';
import { TopicMap, HA_ENTITIES, type HaEntity } from '../../gateway/broker/topics.js';
import { HomeAssistantBridge } from '../../gateway/notify/homeassistant.js';
import { Ingest } from '../../gateway/ingest.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { attachInProcessDriver } from '../support/ingest-link.js';
import { SimLock } from '../../drivers/simlock.js';
import type { Chain } from '../../ledger/chain.js';
import { waitUntil } from '../support/wait.js';

interface Msg {
  readonly topic: string;
  readonly payload: string;
  readonly retain: boolean;
}

/** A fresh embedded broker (as after a restart: it keeps nothing) with an app subscribed to `filters`. */
async function brokerWithApp(t: TestContext, s: TestSite, filters: string[]): Promise<{ broker: Broker; got: Msg[] }> {
  const usersFile = join(await tempDir(t), 'users.json');
  await addMqttUser(usersFile, 'app', 'app', 'app-password-1234');
  const broker = await Broker.start({ site: s.siteId, host: '127.0.0.1', port: 0, allowAnonymous: false, maxMessageBytes: 262_144, rateLimit: { messagesPerSecond: 1000, burst: 2000 }, usersFile });
  t.after(() => broker.close());
  const client = connect(`mqtt://127.0.0.1:${broker.port}`, { username: 'app', password: 'app-password-1234', reconnectPeriod: 0 });
  t.after(() => client.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const got: Msg[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString('utf8'), retain: packet.retain }));
  await client.subscribeAsync(filters, { qos: 1 });
  return { broker, got };
}

function bridge(t: TestContext, broker: Broker, topics: TopicMap, chain: Chain, ingest: Ingest): HomeAssistantBridge {
  const b = new HomeAssistantBridge({ out: broker, topics, chain, ingest, gatewayId: 'gw-1' });
  t.after(() => b.stop());
  return b;
}

void test('after a restart, battery and tamper are read back from the chain and retained on lockinfo before the lock is heard', async (t) => {
  const s = makeSite('ha-site');
  const { chain } = await openChain(t, s, { sealDelayMs: 1 });
  const topics = new TopicMap(s.siteId);
  const l = enrollLock(s, 'front.door');
  await chain.append({ kind: 'roster', signed: l.statement });
  await chain.append({ kind: 'roster', signed: enrollLock(s, 'back-door').statement });

  // Before the restart: the lock reports a low battery and tamper among other events.
  const ingest = new Ingest({ chain });
  const driver = await attachInProcessDriver(t, ingest, 4);
  const lock = new SimLock({ id: 'front.door', seed: l.key.seed, resendMs: 500 });
  t.after(() => lock.close());
  driver.connect(lock);
  const types = ['unlocked', 'battery-low', 'locked', 'tamper', 'unlocked', 'jammed', 'locked'] as const;
  for (const type of types) lock.record(type);
  await waitUntil('all acked', () => lock.acked.size === types.length);

  // The restart: a new broker that knows nothing, a new bridge on the same chain, the lock silent.
  const { broker, got } = await brokerWithApp(t, s, [`oti/${s.siteId}/lockinfo/#`, 'homeassistant/+/+/config', 'homeassistant/+/+/+/config']);
  const ha = bridge(t, broker, topics, chain, new Ingest({ chain }));
  await ha.start();
  await ha.idle();
  const info = (lock: string): Record<string, unknown> | undefined => {
    const m = got.filter((x) => x.topic === topics.lockInfo(lock)).at(-1);
    return m === undefined ? undefined : (JSON.parse(m.payload) as Record<string, unknown>);
  };
  await waitUntil('lockinfo of both locks', () => info('front.door') !== undefined && info('back-door') !== undefined);
  assert.deepEqual({ ...info('front.door'), at: 0 }, { lock: 'front.door', battery: 'low', tamper: true, link: null, fw: null, at: 0 });
  assert.deepEqual({ ...info('back-door'), at: 0 }, { lock: 'back-door', battery: null, tamper: null, link: null, fw: null, at: 0 });

  // Discovery topics carry the site; each old topic (without the site) is cleared before the new one is published.
  for (const entity of Object.keys(HA_ENTITIES) as HaEntity[]) {
    const now = topics.haDiscovery('front.door', entity);
    const old = topics.haLegacyDiscovery('front.door', entity);
    assert.equal(now, `homeassistant/${HA_ENTITIES[entity]}/oti_ha-site/frontDdoor_${entity}/config`);
    assert.equal(old, `homeassistant/${HA_ENTITIES[entity]}/oti_frontDdoor/${entity}/config`);
    const cleared = got.findIndex((m) => m.topic === old && m.payload === '');
    const published = got.findIndex((m) => m.topic === now && m.payload !== '');
    assert.ok(cleared >= 0 && published > cleared, `${old} cleared before ${now} is published`);
  }
});
