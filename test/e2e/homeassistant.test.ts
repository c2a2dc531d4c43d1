/**
 * Home Assistant against the real gateway process (`--demo`: simulated locks on kernel ptys),
 * played by an mqtt.js client that does what Home Assistant's MQTT integration does: it logs in
 * as a user added with the real `oti mqtt user add --role homeassistant` while the gateway runs,
 * sets its last will on `homeassistant/status`, subscribes to `homeassistant/+/+/config` and
 * `homeassistant/+/+/+/config` (QoS 0), publishes its birth message (`online`, QoS 0, not
 * retained), and subscribes to the state and availability topics of every discovered entity
 * with the entity's QoS. Every discovery payload is checked against Home Assistant's documented
 * fields (test/support/ha-discovery.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { connect } from 'mqtt';
import { tempDir } from '../support/site.js';
import { startTestGateway, freePort } from '../support/gateway-process.js';
import { oti } from '../support/oti-cli.js';
import { checkDiscovery, discoveryTopicParts } from '../support/ha-discovery.js';
import { waitUntil } from '../support/wait.js';

interface Msg {
  readonly topic: string;
  readonly payload: string;
  readonly retain: boolean;
}

void test('Home Assistant discovers each demo lock as a device with event, bolt, battery, tamper and link entities, and rediscovers on its birth message', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-ha-');
  const data = join(dir, 'data');
  const apiPort = await freePort();
  const gw = startTestGateway(
    t,
    ['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', String(apiPort), '--ble.enabled', 'false', '--discovery.enabled', 'false', '--demo.locks', '1', '--demo.rate', '20', '--notifications.homeAssistant.enabled', 'true'],
    { OTI_DATA_DIR: data },
  );
  const port = (await gw.waitForLog('broker', (l) => l.msg.startsWith('MQTT broker listening'))).port as number;
  await gw.waitForLog('API', (l) => l.msg.startsWith('local API on'));
  const site = (await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'))).site as string;

  // The technician adds Home Assistant's user while the gateway runs; no restart.
  const added = await oti(['mqtt', 'user', 'add', 'home-assistant', '--role', 'homeassistant', '--file', join(data, 'mqtt-users.json'), '--json'], { env: { OTI_MQTT_PASSWORD: 'ha-password-1' } });
  assert.equal(added.code, 0, added.stderr);

  const ha = connect(`mqtt://127.0.0.1:${port}`, {
    username: 'home-assistant',
    password: 'ha-password-1',
    clientId: 'homeassistant-test',
    protocolVersion: 4,
    reconnectPeriod: 0,
    will: { topic: 'homeassistant/status', payload: Buffer.from('offline'), qos: 0, retain: false },
  });
  t.after(() => ha.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    ha.once('connect', () => resolve());
    ha.once('error', reject);
  });
  let closed = false;
  ha.on('close', () => (closed = true));
  const got: Msg[] = [];
  ha.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString('utf8'), retain: packet.retain }));

  const granted = await ha.subscribeAsync(['homeassistant/+/+/config', 'homeassistant/+/+/+/config'], { qos: 0 });
  assert.deepEqual(granted.map((g) => g.qos), [0, 0], 'Home Assistant’s discovery subscriptions are accepted');

  // The demo lock's five entities, their firmware once the lock has identified itself.
  const configsOf = (msgs: Msg[]): Map<string, Record<string, unknown>> => new Map(msgs.filter((m) => m.topic.startsWith('homeassistant/') && m.payload !== '').map((m) => [m.topic, JSON.parse(m.payload) as Record<string, unknown>]));
  await waitUntil('five discovery configs with the lock firmware', () => {
    const c = configsOf(got);
    return c.size === 5 && [...c.values()].every((x) => (x.device as { sw_version?: string }).sw_version === 'demo-1.0');
  });
  const configs = configsOf(got);
  const byEntity = new Map<string, Record<string, unknown>>();
  for (const [topic, config] of configs) {
    const parts = discoveryTopicParts('homeassistant', topic);
    assert.ok(parts !== undefined, `${topic} is a discovery topic Home Assistant matches`);
    assert.deepEqual(checkDiscovery(parts.component, config), [], `${topic}: ${JSON.stringify(config)}`);
    assert.equal(parts.node, `oti_${site}`, 'the node id is the site');
    assert.ok(parts.object.startsWith('demo-lock-1_'), 'the object id names the lock');
    byEntity.set(`${parts.component}/${parts.object.slice('demo-lock-1_'.length)}`, config);
  }
  assert.deepEqual([...byEntity.keys()].sort(), ['binary_sensor/battery', 'binary_sensor/link', 'binary_sensor/tamper', 'event/event', 'sensor/bolt']);
  assert.equal(byEntity.get('binary_sensor/battery')?.device_class, 'battery');
  assert.equal(byEntity.get('binary_sensor/tamper')?.device_class, 'tamper');
  assert.equal(byEntity.get('binary_sensor/link')?.device_class, 'connectivity');
  const ids = new Set([...configs.values()].map((c) => JSON.stringify((c.device as { identifiers: string[] }).identifiers)));
  assert.equal(ids.size, 1, 'one device for the lock');

  // Home Assistant subscribes to each entity's state and availability topics with its QoS.
  const stateTopics = new Set<string>();
  for (const c of configs.values()) {
    stateTopics.add(c.state_topic as string);
    for (const a of c.availability as { topic: string }[]) stateTopics.add(a.topic);
  }
  const grantedStates = await ha.subscribeAsync([...stateTopics], { qos: 1 });
  assert.ok(grantedStates.every((g) => g.qos === 1), `state subscriptions accepted: ${JSON.stringify(grantedStates)}`);

  const info = (byEntity.get('binary_sensor/battery') as { state_topic: string }).state_topic;
  await waitUntil('battery low and link online from the demo lock', () => got.some((m) => m.topic === info && /"battery":"low"/.test(m.payload) && /"link":"online"/.test(m.payload) && /"fw":"demo-1.0"/.test(m.payload)));
  const event = byEntity.get('event/event') as { state_topic: string; event_types: string[] };
  await waitUntil('an event', () => got.some((m) => m.topic === event.state_topic));
  const types = got.filter((m) => m.topic === event.state_topic).map((m) => (JSON.parse(m.payload) as { type: string }).type);
  assert.ok(types.every((x) => event.event_types.includes(x)), `every event type is one of event_types: ${types.join(', ')}`);
  const bolt = byEntity.get('sensor/bolt') as { state_topic: string; options: string[] };
  await waitUntil('a bolt state', () => got.some((m) => m.topic === bolt.state_topic));
  for (const m of got.filter((x) => x.topic === bolt.state_topic)) assert.ok(bolt.options.includes((JSON.parse(m.payload) as { state: string }).state.toLowerCase()));
  const availability = (byEntity.get('event/event') as { availability: { topic: string }[] }).availability[0]!.topic;
  await waitUntil('the gateway is available', () => got.some((m) => m.topic === availability && /"online"/.test(m.payload)));

  // Home Assistant restarts: its birth message brings every config again, live (not retained).
  const before = got.length;
  await ha.publishAsync('homeassistant/status', 'online', { qos: 0, retain: false });
  await waitUntil('configs published again after the birth message', () => configsOf(got.slice(before).filter((m) => !m.retain)).size === 5);
  assert.equal(closed, false, 'the birth message does not cost Home Assistant its connection');

  // The gateway stops: every entity becomes unavailable.
  const mark = got.length;
  gw.proc.kill('SIGTERM');
  await waitUntil('the gateway is unavailable', () => got.slice(mark).some((m) => m.topic === availability && /"offline"/.test(m.payload)));
});

void test('a restart keeps the lock\'s battery in its retained lockinfo: read back from the chain before the lock is heard', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-ha-');
  const data = join(dir, 'data');
  const args = ['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', String(await freePort()), '--ble.enabled', 'false', '--discovery.enabled', 'false', '--notifications.homeAssistant.enabled', 'true'];
  const lockinfo = async (gw: ReturnType<typeof startTestGateway>, match: RegExp): Promise<string> => {
    const port = (await gw.waitForLog('broker', (l) => l.msg.startsWith('MQTT broker listening'))).port as number;
    const site = (await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'))).site as string;
    const password = (await readFile(join(data, 'demo', 'mqtt-demo-password'), 'utf8')).trim();
    const app = connect(`mqtt://127.0.0.1:${port}`, { username: 'demo', password, reconnectPeriod: 0 });
    t.after(() => app.endAsync(true));
    let last = '';
    app.on('message', (_topic, payload) => (last = payload.toString('utf8')));
    await new Promise<void>((resolve, reject) => {
      app.once('connect', () => resolve());
      app.once('error', reject);
    });
    await app.subscribeAsync(`oti/${site}/lockinfo/demo-lock-1`, { qos: 1 });
    await waitUntil(`lockinfo matching ${match}`, () => match.test(last), undefined, () => last);
    await app.endAsync(true);
    return last;
  };
  // Heard: the demo lock reports battery-low every tenth event.
  const first = startTestGateway(t, [...args, '--demo.locks', '1', '--demo.rate', '20'], { OTI_DATA_DIR: data });
  await lockinfo(first, /"battery":"low".*"link":"online"/);
  first.proc.kill('SIGTERM');
  assert.equal(await first.exited, 0, first.stderr());
  // Restarted without the demo: the lock is enrolled but silent; its battery is still known.
  const again = startTestGateway(t, args, { OTI_DATA_DIR: data });
  const info = JSON.parse(await lockinfo(again, /"battery":"low"/)) as Record<string, unknown>;
  assert.equal(info.link, null, 'not heard since the restart');
});
