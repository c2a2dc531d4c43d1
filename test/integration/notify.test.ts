/**
 * MQTT notifications (gateway/notify/notifier.ts) on a real embedded broker, seen by a real mqtt.js app
 * client: each event's lifecycle (received → committed with a receipt that verifies offline →
 * replicated → confirmed, or rejected), the events topic, the bolt state, unenrolled locks, the gateway's online/offline state, and the bounded retention of
 * per-event statuses.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type MqttClient } from 'mqtt';
import { makeSite, enrollLock, openChain, tempDir } from '../support/site.js';
import { Broker } from '../../gateway/broker/broker.js';
import { TopicMap } from '../../gateway/broker/topics.js';
import { MqttNotifier } from '../../gateway/notify/notifier.js';
import { Ingest } from '../../gateway/ingest.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { attachInProcessDriver } from '../support/ingest-link.js';
import { SimLock } from '../../drivers/simlock.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import { waitUntil } from '../support/wait.js';


async function rig(t: TestContext, opts: { retainMax?: number } = {}) {
  const s = makeSite('notify-site');
  const { chain } = await openChain(t, s, { sealDelayMs: 1 });
  const dir = await tempDir(t);
  const usersFile = join(dir, 'users.json');
  await addMqttUser(usersFile, 'app', 'app', 'app-password-1234');
  const broker = await Broker.start({ site: s.siteId, host: '127.0.0.1', port: 0, allowAnonymous: false, maxMessageBytes: 262_144, rateLimit: { messagesPerSecond: 1000, burst: 2000 }, usersFile });
  t.after(() => broker.close());
  const topics = new TopicMap(s.siteId);
  const ingest = new Ingest({ chain });
  const driver = await attachInProcessDriver(t, ingest, 4);
  const notifier = new MqttNotifier({ broker, topics, chain, ingest, gatewayId: 'gw-1', retentionS: 3600, ...(opts.retainMax !== undefined ? { retainMax: opts.retainMax } : {}) });
  await notifier.start();
  t.after(() => notifier.stop());
  const lockOf = async (id: string): Promise<SimLock> => {
    const l = enrollLock(s, id);
    await chain.append({ kind: 'roster', signed: l.statement });
    const sim = new SimLock({ id, seed: l.key.seed, resendMs: 500 });
    t.after(() => sim.close());
    return sim;
  };
  return { s, chain, broker, topics, driver, notifier, lockOf };
}

/** An app client that records every message it receives, retained ones included. */
async function app(t: TestContext, port: number, filters: string[]): Promise<{ client: MqttClient; got: { topic: string; payload: string; retain: boolean }[] }> {
  const client = connect(`mqtt://127.0.0.1:${port}`, { username: 'app', password: 'app-password-1234', reconnectPeriod: 0 });
  t.after(() => client.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const got: { topic: string; payload: string; retain: boolean }[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString('utf8'), retain: packet.retain }));
  await client.subscribeAsync(filters, { qos: 1 });
  return { client, got };
}

void test('an event goes received → committed (with a receipt that verifies) → replicated → confirmed, and a late client can still ask', async (t) => {
  const r = await rig(t);
  const early = await app(t, r.broker.port, ['oti/notify-site/events/#', 'oti/notify-site/status/#', 'oti/notify-site/gateways/#', 'oti/notify-site/locks/#', 'oti/notify-site/lockstate/#']);
  const lock = await r.lockOf('front-door');
  r.driver.connect(lock);
  lock.record('locked');
  await waitUntil('acked', () => lock.acked.size === 1);
  const status = r.topics.status('front-door', 1);
  await waitUntil('committed status', () => early.got.some((m) => m.topic === status && m.payload.includes('"committed"')));
  const states = early.got.filter((m) => m.topic === status).map((m) => (JSON.parse(m.payload) as { state: string }).state);
  assert.deepEqual(states, ['received', 'committed']);
  const committed = JSON.parse(early.got.find((m) => m.topic === status && m.payload.includes('"committed"'))!.payload) as { receipt: string; entry: string };
  const v = verifyReceipt(Buffer.from(committed.receipt, 'base64'), r.s.trust);
  assert.equal(v.entry.body.kind, 'lock-event');
  const ev = early.got.find((m) => m.topic === r.topics.event('front-door'));
  assert.ok(ev !== undefined && !ev.retain);
  assert.equal((JSON.parse(ev.payload) as { entry: string }).entry, committed.entry);
  await waitUntil('bolt state for Home Assistant', () => early.got.some((m) => m.topic === r.topics.lockState('front-door') && m.payload.includes('"LOCKED"')));
  assert.ok(early.got.some((m) => m.topic === r.topics.gatewayState('gw-1') && m.payload.includes('"online"')));

  // Sync's coverage reports: replicated to one peer, then confirmed by a quorum of two.
  const size = r.chain.size;
  r.notifier.coverage({ state: 'replicated', from: 0, to: size, peers: 1, quorum: 2, cosigners: ['gw-2'] });
  r.notifier.coverage({ state: 'confirmed', from: 0, to: size, peers: 1, quorum: 2, cosigners: ['gw-1', 'gw-2'] });
  await waitUntil('confirmed', () => early.got.some((m) => m.topic === status && m.payload.includes('"confirmed"')));

  // A client that connects now still gets the event's latest state, retained.
  const late = await app(t, r.broker.port, [`oti/notify-site/status/#`]);
  await waitUntil('retained status for the late client', () => late.got.some((m) => m.topic === status));
  const last = late.got.find((m) => m.topic === status)!;
  assert.ok(last.retain);
  assert.deepEqual((JSON.parse(last.payload) as { state: string; cosigners: string[] }).cosigners, ['gw-1', 'gw-2']);
});

void test('a final refusal is the status of an event the chain does not hold; a refused later copy of a committed event goes to its own topic; an unenrolled lock is reported with its key', async (t) => {
  const r = await rig(t);
  const watcher = await app(t, r.broker.port, ['oti/notify-site/status/#', 'oti/notify-site/locks/#', 'oti/notify-site/refused/#']);
  const lock = await r.lockOf('vault');
  r.driver.connect(lock);
  lock.record();
  await waitUntil('acked', () => lock.acked.size === 1);
  // Counters 2 to 4 never reach the gateway; 5 is committed after them.
  lock.skip(3);
  lock.record();
  await waitUntil('acked', () => lock.acked.size === 2);
  lock.forgeReplay(3);
  await waitUntil('rejected status of an event never committed', () => watcher.got.some((m) => m.topic === r.topics.status('vault', 3) && m.payload.includes('"rejected"')));
  lock.forgeReplay(1);
  await waitUntil('refused copy reported', () => watcher.got.some((m) => m.topic === r.topics.refused('vault', 1)));
  const refused = watcher.got.find((m) => m.topic === r.topics.refused('vault', 1))!;
  assert.equal(refused.retain, false);
  assert.deepEqual({ ...(JSON.parse(refused.payload) as object), at: 0 }, { id: 'vault:1', at: 0, code: 'ERR_REPLAY', index: (await r.chain.indexOf('vault:1'))! });
  const states = watcher.got.filter((m) => m.topic === r.topics.status('vault', 1)).map((m) => (JSON.parse(m.payload) as { state: string }).state);
  assert.deepEqual(states, ['received', 'committed'], 'the committed status is not overwritten');
  assert.equal(r.notifier.refusedCopies, 1);
  const stranger = new SimLock({ id: 'stranger', seed: new Uint8Array(32).fill(3) });
  t.after(() => stranger.close());
  r.driver.connect(stranger);
  stranger.record();
  await waitUntil('unenrolled report', () => watcher.got.some((m) => m.topic === r.topics.unenrolled('stranger')));
  const report = JSON.parse(watcher.got.find((m) => m.topic === r.topics.unenrolled('stranger'))!.payload) as { key: string };
  assert.equal(report.key, Buffer.from(stranger.publicKey!).toString('hex'));
});

void test('retained statuses are bounded: beyond statusRetainMax the oldest are cleared', async (t) => {
  const r = await rig(t, { retainMax: 10 });
  const lock = await r.lockOf('busy-door');
  r.driver.connect(lock);
  for (let i = 0; i < 30; i++) lock.record();
  await waitUntil('all acked', () => lock.acked.size === 30);
  await waitUntil('notifications published', () => r.notifier.pending === 0);
  await sleep(200);
  const late = await app(t, r.broker.port, ['oti/notify-site/status/#']);
  await sleep(500);
  const kept = new Set(late.got.filter((m) => m.retain && m.payload !== '').map((m) => m.topic));
  assert.ok(kept.size <= 10, `at most 10 retained statuses, saw ${kept.size}`);
  assert.ok(kept.has(r.topics.status('busy-door', 30)), 'the newest is kept');
  assert.ok(!kept.has(r.topics.status('busy-door', 1)), 'the oldest was cleared');
});

void test('at start the notifier rebuilds, from the chain, the newest statusRetainMax committed statuses and each lock\'s bolt state', async (t) => {
  const r = await rig(t, { retainMax: 10 });
  const lock = await r.lockOf('side-door');
  r.driver.connect(lock);
  for (let i = 0; i < 30; i++) lock.record(i === 27 ? 'jammed' : i % 2 === 0 ? 'unlocked' : 'locked');
  await waitUntil('all acked', () => lock.acked.size === 30);
  // A new broker knows nothing, as after a restart; a new notifier on the same chain fills it.
  const dir = await tempDir(t);
  const usersFile = join(dir, 'users.json');
  await addMqttUser(usersFile, 'app', 'app', 'app-password-1234');
  const broker = await Broker.start({ site: r.s.siteId, host: '127.0.0.1', port: 0, allowAnonymous: false, maxMessageBytes: 262_144, rateLimit: { messagesPerSecond: 1000, burst: 2000 }, usersFile });
  t.after(() => broker.close());
  const ingest = new Ingest({ chain: r.chain });
  const notifier = new MqttNotifier({ broker, topics: r.topics, chain: r.chain, ingest, gatewayId: 'gw-1', retentionS: 3600, retainMax: 10 });
  await notifier.start();
  t.after(() => notifier.stop());
  await waitUntil('the rebuild published', () => notifier.pending === 0 && notifier.published > 0);
  const late = await app(t, broker.port, ['oti/notify-site/status/#', 'oti/notify-site/lockstate/#']);
  await waitUntil('retained messages received', () => late.got.length >= 11);
  await sleep(300);
  const statuses = late.got.filter((m) => m.topic.startsWith('oti/notify-site/status/'));
  assert.deepEqual(statuses.map((m) => m.topic).sort(), Array.from({ length: 10 }, (_, i) => r.topics.status('side-door', 21 + i)).sort(), 'the newest 10, no more');
  for (const m of statuses) {
    assert.ok(m.retain);
    const s = JSON.parse(m.payload) as { state: string; receipt: string };
    assert.equal(s.state, 'committed');
    assert.equal(verifyReceipt(Buffer.from(s.receipt, 'base64'), r.s.trust).entry.body.kind, 'lock-event');
  }
  const bolt = late.got.find((m) => m.topic === r.topics.lockState('side-door'));
  assert.equal((JSON.parse(bolt!.payload) as { id: string }).id, 'side-door:30', 'the last bolt event (30 locked, after 28 jammed)');
});
