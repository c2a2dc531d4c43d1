import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import fc from 'fast-check';
import { filterWithin, isValidFilter, parseTopic, HA_ENTITIES, TOPIC_TABLE, TopicMap, type HaEntity, type Role, type TopicDescriptor } from '../../gateway/broker/topics.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';

const SITE = 'site-1';
const map = new TopicMap(SITE);

const idArb = fc.stringMatching(ID_PATTERN);
const ctrArb = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));

const descriptorArb: fc.Arbitrary<TopicDescriptor> = fc.oneof(
  idArb.map((lock) => ({ kind: 'event', site: SITE, lock }) as const),
  fc.tuple(idArb, ctrArb).map(([lock, ctr]) => ({ kind: 'status', site: SITE, lock, ctr }) as const),
  idArb.map((gateway) => ({ kind: 'gatewayState', site: SITE, gateway }) as const),
  idArb.map((lock) => ({ kind: 'unenrolled', site: SITE, lock }) as const),
  idArb.map((lock) => ({ kind: 'lockState', site: SITE, lock }) as const),
  idArb.map((gateway) => ({ kind: 'checkpoint', site: SITE, gateway }) as const),
  fc.tuple(idArb, idArb).map(([gateway, witness]) => ({ kind: 'cosignature', site: SITE, gateway, witness }) as const),
  fc.tuple(idArb, idArb).map(([gateway, requester]) => ({ kind: 'syncRequest', site: SITE, gateway, requester }) as const),
  fc.tuple(idArb, idArb).map(([gateway, requester]) => ({ kind: 'syncRange', site: SITE, gateway, requester }) as const),
  idArb.map((gateway) => ({ kind: 'evidence', site: SITE, gateway }) as const),
  idArb.map((lock) => ({ kind: 'lockInfo', site: SITE, lock }) as const),
  fc.tuple(idArb, fc.constantFrom(...(Object.keys(HA_ENTITIES) as HaEntity[]))).map(([lock, entity]) => ({ kind: 'haDiscovery', prefix: 'homeassistant', lock, entity }) as const),
  fc.constant({ kind: 'haStatus', prefix: 'homeassistant' } as const),
);

void test('every descriptor builds a topic that parses back to it', () => {
  fc.assert(
    fc.property(descriptorArb, (d) => {
      const topic = map.build(d);
      assert.deepEqual(map.parse(topic), d);
      if ('site' in d) assert.deepEqual(parseTopic(topic), d);
    }),
  );
});

void test('the parser accepts nothing outside the map and never throws', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom('oti', SITE, 'events', 'status', 'chain', 'req', '+', '#', '', 'a/b', 'X'), fc.string()), { maxLength: 8 }), (levels) => {
      const topic = levels.join('/');
      const d = map.parse(topic);
      if (d !== undefined) assert.equal(map.build(d), topic);
    }),
  );
  for (const bad of ['oti/site-1/events/+', 'oti/site-1/events/#', 'oti/site-1/events/Lock', 'oti/site-1/events/a/b', 'oti/site-1/status/l/01', 'oti/site-1/status/l/9007199254740992', 'oti/site-1/status/l/-1', 'oti/site-1/events/', 'oti/site-2/events/l', 'oti//events/l', 'homeassistant/lock/l/config', 'homeassistant/lock/oti_+/config', '$SYS/x']) {
    assert.equal(map.parse(bad), undefined, bad);
  }
  // Another site is outside this map but still a well-formed topic of the family.
  assert.deepEqual(parseTopic('oti/site-2/events/l'), { kind: 'event', site: 'site-2', lock: 'l' });
});

void test('builders refuse identifiers that could change the topic structure', () => {
  for (const bad of ['+', '#', 'a/b', '', 'Upper', '-lead', 'x'.repeat(65)]) {
    assert.throws(() => map.event(bad), (e) => isOtiError(e, 'ERR_ARGUMENT'));
    assert.throws(() => map.syncRequest('gw', bad), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  }
  assert.throws(() => map.status('l', -1), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  assert.throws(() => map.status('l', 1.5), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  assert.throws(() => new TopicMap('a/b'), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  assert.throws(() => new TopicMap(SITE, 'oti'), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  assert.throws(() => new TopicMap(SITE, 'ha/#'), (e) => isOtiError(e, 'ERR_ARGUMENT'));
});

void test('publish rules by role', () => {
  const cases: [Role, string, string, boolean][] = [
    ['gateway', 'gw-a', map.checkpoint('gw-a'), true],
    ['gateway', 'gw-a', map.checkpoint('gw-b'), false],
    ['gateway', 'gw-a', map.gatewayState('gw-a'), true],
    ['gateway', 'gw-a', map.gatewayState('gw-b'), false],
    ['gateway', 'gw-a', map.evidence('gw-a'), true],
    ['gateway', 'gw-a', map.evidence('gw-b'), false],
    ['gateway', 'gw-a', map.syncRequest('gw-b', 'gw-a'), true],
    ['gateway', 'gw-a', map.syncRequest('gw-a', 'gw-b'), false],
    ['gateway', 'gw-a', map.syncRange('gw-a', 'gw-b'), true],
    ['gateway', 'gw-a', map.syncRange('gw-b', 'gw-a'), false],
    ['gateway', 'gw-a', map.cosignature('gw-b', 'gw-a'), true],
    ['gateway', 'gw-a', map.cosignature('gw-a', 'gw-b'), false],
    ['gateway', 'gw-a', map.event('l'), false],
    ['gateway', 'gw-a', map.status('l', 1), false],
    ['gateway', 'gw-a', 'oti/site-2/chain/gw-a/checkpoint', false],
    ['gateway', 'gw-a', 'oti/site-1/chain/gw-a/other', false],
    ['app', 'app1', map.event('l'), false],
    ['app', 'app1', map.status('l', 1), false],
    ['app', 'app1', map.checkpoint('app1'), false],
    ['app', 'app1', map.haStatus(), false],
    ['readonly', 'r', map.haStatus(), false],
    ['homeassistant', 'ha', map.haStatus(), true],
    ['homeassistant', 'ha', map.haDiscovery('l', 'event'), false],
    ['homeassistant', 'ha', map.event('l'), false],
    ['local', 'local', map.haStatus(), false],
    ['local', 'local', map.lockInfo('l'), true],
    ['readonly', 'r', map.event('l'), false],
    ['local', 'local', map.event('l'), true],
    ['local', 'local', map.haDiscovery('l', 'battery'), true],
    ['local', 'local', 'oti/site-1/unknown', false],
    ['local', 'local', '$SYS/x', false],
    // A fleet archive (docs/ARCHIVE.md §Pulling from sites): its own range requests, nothing that writes into the site.
    ['archive', 'archive', map.syncRequest('gw-a', 'archive'), true],
    ['archive', 'archive', map.syncRequest('gw-a', 'gw-b'), false],
    ['archive', 'archive', map.syncRange('gw-a', 'archive'), false],
    ['archive', 'archive', map.checkpoint('gw-a'), false],
    ['archive', 'archive', map.cosignature('gw-a', 'archive'), false],
    ['archive', 'archive', map.evidence('archive'), false],
    ['archive', 'archive', map.gatewayState('archive'), false],
    ['archive', 'archive', map.event('l'), false],
    ['archive', 'archive', map.status('l', 1), false],
    ['archive', 'archive', map.lockState('l'), false],
    ['archive', 'archive', map.haStatus(), false],
  ];
  for (const [role, id, topic, want] of cases) assert.equal(map.mayPublish(role, id, topic), want, `${role} ${id} ${topic}`);
});

void test('subscribe rules by role, wildcards included', () => {
  const cases: [Role, string, boolean][] = [
    ['gateway', 'oti/site-1/#', true],
    ['gateway', 'oti/site-1/chain/+/checkpoint', true],
    ['gateway', 'oti/#', false],
    ['gateway', '#', false],
    ['gateway', 'oti/+/chain/#', false],
    ['app', 'oti/site-1/events/#', true],
    ['app', 'oti/site-1/events/+', true],
    ['app', 'oti/site-1/status/+/+', true],
    ['app', 'oti/site-1/locks/unenrolled/#', true],
    ['app', 'oti/site-1/gateways/+/state', true],
    ['app', 'homeassistant/#', false],
    ['app', 'homeassistant/lock/+/config', true],
    ['app', 'homeassistant/status', false],
    // Home Assistant's own subscriptions (its MQTT integration, discovery on), and its state topics.
    ['homeassistant', 'homeassistant/+/+/config', true],
    ['homeassistant', 'homeassistant/+/+/+/config', true],
    ['homeassistant', 'homeassistant/status', true],
    ['homeassistant', 'oti/site-1/lockstate/l', true],
    ['homeassistant', 'oti/site-1/lockinfo/l', true],
    ['homeassistant', 'oti/site-1/events/l', true],
    ['homeassistant', 'oti/site-1/gateways/gw-a/state', true],
    ['homeassistant', 'homeassistant/#', false],
    ['homeassistant', 'oti/site-1/locks/#', false],
    ['homeassistant', 'oti/site-1/chain/#', false],
    ['app', 'oti/site-1/#', false],
    ['app', 'oti/site-1/+/lock-1', false],
    ['app', 'oti/site-1/chain/#', false],
    ['app', 'oti/site-1/evidence/gw-a', false],
    ['app', '$SYS/#', false],
    ['readonly', 'oti/site-1/events/#', true],
    ['readonly', 'oti/site-1/locks/unenrolled/#', false],
    ['readonly', 'oti/site-1/locks/#', false],
    ['readonly', 'oti/site-1/locks/+/lock-1', false],
    ['readonly', 'oti/site-1/lockstate/+', true],
    ['readonly', 'oti/site-1/events/#/x', false],
    ['readonly', 'oti/site-1/events/a+', false],
  ];
  for (const [role, filter, want] of cases) assert.equal(map.maySubscribe(role, 'x', filter), want, `${role} ${filter}`);
  // The archive role reads the heads, the gateways' cosignatures and the answers to its own requests, nothing else.
  const archive: [string, boolean][] = [
    ['oti/site-1/chain/+/checkpoint', true],
    ['oti/site-1/chain/gw-a/checkpoint', true],
    ['oti/site-1/chain/+/cosig/+', true],
    ['oti/site-1/chain/gw-a/cosig/gw-b', true],
    ['oti/site-1/chain/+/cosig/#', false],
    ['oti/site-1/chain/+/+/+', false],
    ['oti/site-1/chain/+/range/archive', true],
    ['oti/site-1/chain/+/range/gw-b', false],
    ['oti/site-1/chain/+/range/+', false],
    ['oti/site-1/chain/+/req/archive', false],
    ['oti/site-1/chain/#', false],
    ['oti/site-1/events/#', false],
    ['oti/site-1/#', false],
    ['oti/site-2/chain/+/checkpoint', false],
  ];
  for (const [filter, want] of archive) assert.equal(map.maySubscribe('archive', 'archive', filter), want, `archive ${filter}`);
});

/** Reference matcher, MQTT 3.1.1 §4.7: does `filter` match `topic`? */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

void test('a filter within an allowed filter never matches a topic the allowed one does not', () => {
  const level = fc.constantFrom('a', 'b', '+', '#');
  const filterArb = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/')).filter(isValidFilter);
  const topicArb = fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 5 }).map((l) => l.join('/'));
  fc.assert(
    fc.property(filterArb, filterArb, fc.array(topicArb, { maxLength: 20 }), (f, allowed, topics) => {
      if (!filterWithin(f, allowed)) return;
      for (const t of topics) if (matches(f, t)) assert.ok(matches(allowed, t), `${f} within ${allowed} but ${t}`);
    }),
  );
});

void test('every topic of the map is documented in docs/MQTT.md', async () => {
  const doc = await readFile(new URL('../../../docs/MQTT.md', import.meta.url), 'utf8');
  for (const row of TOPIC_TABLE) assert.ok(doc.includes(`\`${row.pattern}\``), row.pattern);
});

void test('site and lock ids with dots map one to one onto Home Assistant node and object ids', () => {
  const dotted = new TopicMap('site.1');
  const topic = dotted.haDiscovery('door.2.b', 'tamper');
  assert.equal(topic, 'homeassistant/binary_sensor/oti_siteD1/doorD2Db_tamper/config');
  assert.deepEqual(dotted.parse(topic), { kind: 'haDiscovery', prefix: 'homeassistant', lock: 'door.2.b', entity: 'tamper' });
  assert.equal(map.parse(`homeassistant/sensor/oti_${map.site}/door_tamper/config`), undefined, 'the component must be the entity’s');
  assert.equal(map.parse('homeassistant/sensor/oti_door/tamper/config'), undefined, 'the component must be the entity’s (legacy form)');
});

void test('discovery topics: two sites never share one, and the legacy form parses only as legacy', () => {
  const a = new TopicMap('site-a');
  const b = new TopicMap('site-b');
  assert.notEqual(a.haDiscovery('lock-1', 'event'), b.haDiscovery('lock-1', 'event'));
  assert.equal(b.parse(a.haDiscovery('lock-1', 'event')), undefined, 'another site\'s config is not a topic of this site');
  assert.deepEqual(a.parse(a.haDiscovery('a_b.c', 'battery')), { kind: 'haDiscovery', prefix: 'homeassistant', lock: 'a_b.c', entity: 'battery' });
  assert.deepEqual(a.parse(a.haLegacyDiscovery('a_b.c', 'battery')), { kind: 'haDiscovery', prefix: 'homeassistant', lock: 'a_b.c', entity: 'battery', legacy: true });
  assert.equal(a.build({ kind: 'haDiscovery', prefix: 'homeassistant', lock: 'x', entity: 'link', legacy: true }), a.haLegacyDiscovery('x', 'link'));
  assert.equal(a.parse('homeassistant/sensor/oti_site-a/_bolt/config'), undefined, 'no lock');
  assert.equal(a.parse('homeassistant/sensor/oti_site-a/lock-1_battery/config'), undefined, 'entity of another component');
});
