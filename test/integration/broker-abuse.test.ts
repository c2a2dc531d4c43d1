/**
 * The embedded broker under abuse (issue 13, items 2 to 5), over real sockets on 127.0.0.1 with
 * mqtt.js clients. Every test counts outcomes (messages kept, dropped, refused), never time.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Broker, BrokerOptions } from '../../gateway/broker/broker.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';
import { waitUntil } from '../support/wait.js';
import { connackFrom, connectPacket } from '../support/mqtt-connect.js';
import { openMqtt, startTestBroker } from '../support/broker.js';
import { DEFAULT_LOGIN_LIMITS } from '../../gateway/broker/limits.js';

const SITE = 'site-1';
const APP = { username: 'ha', password: 'app-secret-1' };
const READER = { username: 'demo', password: 'reader-secret-1' };
const WAIT_MS = 20_000;

async function startBroker(t: TestContext, over: Partial<BrokerOptions> = {}): Promise<Broker> {
  return (await startTestBroker(t, SITE, { app: APP, reader: READER }, over)).broker;
}

/** Connects; resolves with the client and its CONNACK once accepted, rejects with the error (`code` = CONNACK code). */
function open(t: TestContext, broker: Broker, opts: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  return openMqtt(t, `mqtt://127.0.0.1:${broker.port}`, opts, WAIT_MS);
}

async function refusedWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal((e as { code?: unknown }).code, code);
    return true;
  });
}

/** Collects the ctr of every event message a client receives. */
function collect(client: MqttClient): number[] {
  const got: number[] = [];
  client.on('message', (_topic, payload) => got.push((JSON.parse(payload.toString()) as { ctr: number }).ctr));
  return got;
}

const publishEvents = async (broker: Broker, from: number, to: number): Promise<void> => {
  for (let ctr = from; ctr <= to; ctr++) await broker.publish(broker.topics.event('lock-1'), JSON.stringify({ ctr }), { qos: 1, retain: false });
};

const persistent = (clientId: string, who: { username: string; password: string }): IClientOptions => ({ ...who, clientId, clean: false });

void test('abandoned persistent sessions: queues keep their newest messages, a principal keeps its newest sessions', async (t) => {
  const caps = { maxPerPrincipal: 3, expiryS: 3600, maxQueuedMessages: 20, maxQueuedBytes: 1 << 20 };
  const broker = await startBroker(t, { sessions: caps });
  // As in the issue: the read-only user opens persistent sessions on events at QoS 1 and leaves.
  for (let i = 0; i < 5; i++) {
    const { client } = await open(t, broker, persistent(`abandoned-${i}`, READER));
    await client.subscribeAsync(`oti/${SITE}/events/#`, { qos: 1 });
    await client.endAsync();
  }
  await waitUntil('the sessions to go offline', () => broker.stats().clients === 0, WAIT_MS);
  await publishEvents(broker, 1, 100);
  const s = broker.stats();
  assert.equal(s.sessions, 3);
  assert.deepEqual(s.sessionsDiscarded, { cap: 2, expired: 0 });
  assert.deepEqual({ messages: s.queued.messages, dropped: s.queueDropped }, { messages: 3 * 20, dropped: 3 * 80 });
  const metrics = new GatewayMetrics();
  metrics.brokerFrom(() => broker.stats());
  const text = await metrics.registry.metrics();
  assert.match(text, /^oti_mqtt_queue_dropped_total 240$/m);
  assert.match(text, /^oti_mqtt_queued_messages 60$/m);
  assert.match(text, /^oti_mqtt_sessions_discarded_total\{reason="cap"\} 2$/m);
  // A kept session comes back and gets the 20 newest events, nothing older.
  const back = connect(`mqtt://127.0.0.1:${broker.port}`, { reconnectPeriod: 0, ...persistent('abandoned-4', READER) });
  t.after(() => back.endAsync(true));
  const got = collect(back);
  await waitUntil('the queued events', () => got.length >= 20, WAIT_MS);
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => 81 + i));
  // A discarded one starts empty.
  const { sessionPresent } = await open(t, broker, persistent('abandoned-0', READER));
  assert.equal(sessionPresent, false);
});

void test('an offline persistent session expires and its queue is freed', async (t) => {
  const broker = await startBroker(t, { sessions: { maxPerPrincipal: 8, expiryS: 1, maxQueuedMessages: 1000, maxQueuedBytes: 1 << 20 } });
  const { client } = await open(t, broker, persistent('short-lived', READER));
  await client.subscribeAsync(`oti/${SITE}/events/#`, { qos: 1 });
  await client.endAsync();
  await waitUntil('the session to go offline', () => broker.stats().clients === 0, WAIT_MS);
  await publishEvents(broker, 1, 10);
  assert.equal(broker.stats().queued.messages, 10);
  await waitUntil('the session to expire', () => broker.stats().sessionsDiscarded.expired === 1, WAIT_MS);
  assert.deepEqual({ sessions: broker.stats().sessions, queued: broker.stats().queued.messages }, { sessions: 0, queued: 0 });
  const again = await open(t, broker, persistent('short-lived', READER));
  assert.equal(again.sessionPresent, false);
});

void test('at its cap with every session connected, a principal\'s next persistent session is refused with CONNACK 3', async (t) => {
  const broker = await startBroker(t, { sessions: { maxPerPrincipal: 2, expiryS: 3600, maxQueuedMessages: 10, maxQueuedBytes: 1 << 20 } });
  await open(t, broker, persistent('one', READER));
  await open(t, broker, persistent('two', READER));
  await refusedWith(open(t, broker, persistent('three', READER)), 3);
  // Another principal and clean sessions are not affected.
  await open(t, broker, persistent('three', APP));
  await open(t, broker, { ...READER, clientId: 'three', clean: true });
});

void test('client-id squatting: a read-only user cannot lock the app user out of its client id', async (t) => {
  const broker = await startBroker(t);
  const squatter = await open(t, broker, persistent('home-assistant', READER));
  await squatter.client.subscribeAsync(`oti/${SITE}/events/#`, { qos: 1 });
  await squatter.client.endAsync();
  await waitUntil('the squatter to leave', () => broker.stats().clients === 0, WAIT_MS);
  await publishEvents(broker, 1, 3);
  // The app user gets its own, empty session under the same client id, not the squatter's.
  const ha = await open(t, broker, persistent('home-assistant', APP));
  assert.equal(ha.sessionPresent, false);
  // While both are connected, neither takes over the other.
  const again = await open(t, broker, persistent('home-assistant', READER));
  assert.equal(again.sessionPresent, true);
  assert.ok(ha.client.connected && again.client.connected);
  assert.equal(broker.stats().clients, 2);
});

const GW = { username: 'gw:gw-a', password: 'gateway-credential-a' };
const verifyGatewayCredential: BrokerOptions['verifyGatewayCredential'] = (username, password) =>
  Promise.resolve(username === GW.username && password.toString() === GW.password ? { gatewayId: 'gw-a' } : undefined);

/** The topics retained on the broker under `filter`, as a new subscriber sees them. */
async function retainedTopics(t: TestContext, broker: Broker, filter: string): Promise<string[]> {
  const { client } = await open(t, broker, { ...GW, clean: true });
  const got: string[] = [];
  client.on('message', (topic, _payload, packet) => {
    if (packet.retain) got.push(topic);
  });
  // The retained messages are sent before the SUBACK's callback runs; a marker published after
  // the subscription arrives behind them.
  await client.subscribeAsync(filter, { qos: 1 });
  const marker = broker.topics.gatewayState('gw-marker');
  await client.subscribeAsync(marker, { qos: 1 });
  const seen = new Promise<void>((resolve) => client.on('message', (topic) => topic === marker && resolve()));
  await broker.publish(marker, '{}', { qos: 1, retain: false });
  await seen;
  await client.endAsync();
  return got.sort();
}

/** Publishes and resolves true when acknowledged, false when the broker closed the connection instead. */
function accepted(client: MqttClient, topic: string, payload: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    client.once('close', () => resolve(false));
    client.publish(topic, payload, { qos: 1, retain: true }, (err) => resolve(err === undefined || err === null));
  });
}

void test('retained flood: a gateway credential cannot retain under invented chains, and its retained messages are capped', async (t) => {
  const broker = await startBroker(t, {
    verifyGatewayCredential,
    isRosterGateway: (gw) => gw === 'gw-b' || gw === 'gw-c',
    retained: { maxPerPrincipal: 3, maxBytesPerPrincipal: 2048 },
  });
  const login = async (): Promise<MqttClient> => (await open(t, broker, { ...GW, clean: true })).client;
  // As in the issue: cosignatures under invented chain ids. A peer gateway's are passed on to the
  // live subscribers, not retained, and its connection stays (the chain may be on its way here).
  const fakes = await login();
  for (let i = 0; i < 3; i++) assert.equal(await accepted(fakes, broker.topics.cosignature(`fake-gw-${i}`, 'gw-a'), 'x'.repeat(500)), true);
  assert.equal(fakes.connected, true);
  // Its own topics and chains on the roster, up to the count cap.
  const gw = await login();
  assert.equal(await accepted(gw, broker.topics.gatewayState('gw-a'), '{"state":"online","at":1}'), true);
  assert.equal(await accepted(gw, broker.topics.cosignature('gw-b', 'gw-a'), 'x'.repeat(500)), true);
  assert.equal(await accepted(gw, broker.topics.checkpoint('gw-a'), 'x'.repeat(500)), true);
  assert.equal(await accepted(gw, broker.topics.cosignature('gw-c', 'gw-a'), 'x'.repeat(10)), false);
  // Replacing its own message counts the new size only; going over the byte cap is refused.
  const again = await login();
  assert.equal(await accepted(again, broker.topics.checkpoint('gw-a'), 'x'.repeat(1000)), true);
  assert.equal(await accepted(again, broker.topics.checkpoint('gw-a'), 'x'.repeat(1600)), false);
  // Clearing frees a slot.
  const third = await login();
  assert.equal(await accepted(third, broker.topics.cosignature('gw-b', 'gw-a'), ''), true);
  assert.equal(await accepted(third, broker.topics.cosignature('gw-c', 'gw-a'), 'x'.repeat(10)), true);
  const s = broker.stats();
  assert.deepEqual(s.publishesRefused, { ERR_MQTT_RETAINED: 2 });
  assert.deepEqual(s.retainedNotKept, { 'not-on-roster': 3 });
  assert.deepEqual(s.retained, { messages: 3, bytes: 25 + 1000 + 10 });
  assert.deepEqual(await retainedTopics(t, broker, `oti/${SITE}/#`), [broker.topics.checkpoint('gw-a'), broker.topics.cosignature('gw-c', 'gw-a'), broker.topics.gatewayState('gw-a')].sort());
});

function connackFromTo(broker: Broker, localAddress: string, username: string, password: string): Promise<number> {
  return connackFrom(broker.port, localAddress, username, password, WAIT_MS);
}

/** Connection caps out of the way, for the tests of the login budgets. */
const UNCAPPED = { maxConnections: 1000, maxConnectionsPerAddress: 1000 };

const tally = (codes: number[]): Record<number, number> => codes.reduce<Record<number, number>>((t, c) => ({ ...t, [c]: (t[c] ?? 0) + 1 }), {});

void test('failed-login flood: one address is cut off unhashed after its budget, others still log in', async (t) => {
  // 50 connections from one address at once: the connection caps are lifted, the login budgets are tested.
  const broker = await startBroker(t, { ...UNCAPPED, login: { maxConcurrentChecks: 1, maxPendingChecks: 100, failuresPerMinutePerAddress: 5, failuresPerMinute: 1000, trackedAddresses: 16, refusalDelayMs: 0 } });
  const flood = await Promise.all(Array.from({ length: 50 }, () => connackFromTo(broker, '127.0.0.1', APP.username, 'wrong')));
  // Five wrong passwords checked (CONNACK 4), the other 45 refused before any hashing (CONNACK 5).
  assert.deepEqual(tally(flood), { 4: 5, 5: 45 });
  assert.deepEqual(broker.stats().loginsRefused, { ERR_MQTT_AUTH: 5, ERR_MQTT_LOGIN_RATE: 45 });
  // The right password from another address is accepted; successes do not use up the budget.
  for (let i = 0; i < 10; i++) assert.equal(await connackFromTo(broker, '127.0.0.2', APP.username, APP.password), 0);
});

void test('correct logins arriving together spend no failure budget: from one address, from many, and after another address\'s flood', async (t) => {
  // A reconnect storm after a restart, or clients behind one NAT, with the default budgets: the
  // checks wait in line one at a time, and none of them is a failure.
  const broker = await startBroker(t, { ...UNCAPPED, login: { ...DEFAULT_LOGIN_LIMITS, refusalDelayMs: 0 } });
  const oneAddress = await Promise.all(Array.from({ length: 30 }, () => connackFromTo(broker, '127.0.5.1', APP.username, APP.password)));
  assert.deepEqual(tally(oneAddress), { 0: 30 });
  const manyAddresses = await Promise.all(Array.from({ length: 31 }, (_, i) => connackFromTo(broker, `127.0.6.${i + 1}`, READER.username, READER.password)));
  assert.deepEqual(tally(manyAddresses), { 0: 31 });
  // A wrong-password flood from one address spends that address's budget only.
  const flood = await Promise.all(Array.from({ length: 30 }, () => connackFromTo(broker, '127.0.5.2', APP.username, 'wrong')));
  assert.deepEqual(tally(flood), { 4: DEFAULT_LOGIN_LIMITS.failuresPerMinutePerAddress, 5: 30 - DEFAULT_LOGIN_LIMITS.failuresPerMinutePerAddress });
  const after = await Promise.all(Array.from({ length: 30 }, () => connackFromTo(broker, '127.0.5.3', APP.username, APP.password)));
  assert.deepEqual(tally(after), { 0: 30 });
  assert.deepEqual(broker.stats().loginsRefused, { ERR_MQTT_AUTH: 10, ERR_MQTT_LOGIN_RATE: 20 });
});

void test('failed-login flood: the overall budget and the waiting line refuse with CONNACK 3', async (t) => {
  const limits = { maxConcurrentChecks: 1, maxPendingChecks: 100, failuresPerMinutePerAddress: 100, failuresPerMinute: 4, trackedAddresses: 64, refusalDelayMs: 0 };
  const broker = await startBroker(t, { login: limits });
  const spread = await Promise.all(Array.from({ length: 20 }, (_, i) => connackFromTo(broker, `127.0.1.${i + 1}`, READER.username, 'wrong')));
  assert.deepEqual(tally(spread), { 3: 16, 4: 4 });
  const busy = await startBroker(t, { ...UNCAPPED, login: { ...limits, failuresPerMinute: 1000, maxPendingChecks: 3 } });
  const queued = tally(await Promise.all(Array.from({ length: 100 }, () => connackFromTo(busy, '127.0.0.3', READER.username, 'wrong'))));
  // One check runs and three wait; logins arriving while the line is full are told the server is
  // busy. How many arrive while it is full depends on the machine, so only the split is checked.
  assert.ok((queued[3] ?? 0) > 0 && (queued[4] ?? 0) >= 4, JSON.stringify(queued));
  assert.equal((queued[3] ?? 0) + (queued[4] ?? 0), 100);
  assert.deepEqual(busy.stats().loginsRefused, { ERR_MQTT_AUTH: queued[4], ERR_MQTT_BUSY: queued[3] });
});

void test('a refused login waits for its CONNACK (broker.login.refusalDelayMs): a client retrying at once is held to one try per delay', async (t) => {
  const delay = 400;
  const broker = await startBroker(t, { login: { ...DEFAULT_LOGIN_LIMITS, failuresPerMinute: 1000, refusalDelayMs: delay } });
  // One client that logs in again as soon as it is refused, for 2 s: each answer comes after half
  // to one and a half times the delay (timers never fire early), so it gets at most 2000 / 200
  // answers, where without the delay it made hundreds.
  const codes: number[] = [];
  const until = performance.now() + 2000;
  while (performance.now() < until) {
    const sent = performance.now();
    codes.push(await connackFromTo(broker, '127.0.3.1', APP.username, 'wrong'));
    assert.ok(performance.now() - sent >= delay / 2, `answered after ${Math.round(performance.now() - sent)} ms`);
  }
  assert.ok(codes.length >= 2 && codes.length <= 2000 / (delay / 2) + 1, `${codes.length} answers`);
  // The first wrong passwords are checked (4), then the address's budget refuses unchecked (5).
  assert.equal(codes[0], 4);
  assert.ok(codes.every((c) => c === 4 || c === 5), codes.join(' '));
  // Anonymous clients are refused after the delay too; a good login is answered at once (its
  // answer is not held, whatever its timing).
  const anonymous = performance.now();
  await refusedWith(open(t, broker, { clientId: 'anonymous-1', reconnectPeriod: 0 }), 5);
  assert.ok(performance.now() - anonymous >= delay / 2);
  assert.equal(await connackFromTo(broker, '127.0.3.3', APP.username, APP.password), 0);
});

void test('closing the broker answers the refused logins it is holding at once', async (t) => {
  const broker = await startBroker(t, { login: { ...DEFAULT_LOGIN_LIMITS, refusalDelayMs: 10_000 } });
  const pending = Promise.allSettled(Array.from({ length: 5 }, (_, i) => connackFromTo(broker, `127.0.4.${i + 1}`, APP.username, 'wrong')));
  await waitUntil('the refusals to be held', () => (broker.stats().loginsRefused['ERR_MQTT_AUTH'] ?? 0) + (broker.stats().loginsRefused['ERR_MQTT_LOGIN_RATE'] ?? 0) === 5, WAIT_MS);
  const closing = performance.now();
  await broker.close();
  const answers = await pending;
  // Each client has its refusal (or its connection closed) long before the 10 s delay.
  assert.ok(performance.now() - closing < 5000, 'close() waited for the held refusals');
  for (const a of answers) if (a.status === 'fulfilled') assert.ok([4, 5].includes(a.value), String(a.value));
});

/** Opens a raw TCP connection from `localAddress`; resolves once connected, with whether the broker closed it within `ms`. */
async function rawConnection(t: TestContext, broker: Broker, localAddress: string, ms = 300): Promise<{ socket: Socket; closedAtOnce: boolean }> {
  const socket = netConnect({ host: '127.0.0.1', port: broker.port, localAddress });
  t.after(() => socket.destroy());
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const closedAtOnce = await Promise.race([new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
  return { socket, closedAtOnce };
}

void test('connection caps: broker.maxConnectionsPerAddress and broker.maxConnections refuse one more; the own host is not counted; a freed slot is taken again', async (t) => {
  const broker = await startBroker(t, { maxConnections: 4, maxConnectionsPerAddress: 2, login: { ...DEFAULT_LOGIN_LIMITS, refusalDelayMs: 0 } });
  const a1 = await rawConnection(t, broker, '127.0.6.1');
  const a2 = await rawConnection(t, broker, '127.0.6.1');
  // A third from the same address is closed before it could send a CONNECT (with no refusal delay: at once).
  const a3 = await rawConnection(t, broker, '127.0.6.1');
  assert.deepEqual([a1.closedAtOnce, a2.closedAtOnce, a3.closedAtOnce], [false, false, true]);
  // Other addresses fill the rest of the total, then the next is closed too.
  const b1 = await rawConnection(t, broker, '127.0.6.2');
  const b2 = await rawConnection(t, broker, '127.0.6.5');
  assert.deepEqual([b1.closedAtOnce, b2.closedAtOnce], [false, false]);
  const c1 = await rawConnection(t, broker, '127.0.6.3');
  assert.equal(c1.closedAtOnce, true);
  assert.deepEqual(broker.stats().connectionsRefused, { address: 1, total: 1 });
  // The gateway's own host (here 127.0.0.1, where its own sync link comes from) still gets in.
  const { client } = await open(t, broker, { ...APP, clientId: 'from-the-own-host' });
  assert.equal(client.connected, true);
  // Once a connection closes, a new one gets its slot.
  a1.socket.destroy();
  await waitUntil('the freed slot', async () => !(await rawConnection(t, broker, '127.0.6.4', 200)).closedAtOnce, WAIT_MS);
  // Metrics name the cap.
  const metrics = new GatewayMetrics();
  metrics.brokerFrom(() => broker.stats());
  const text = await metrics.registry.metrics();
  assert.match(text, /^oti_mqtt_connections_refused_total\{reason="address"\} 1$/m);
  assert.match(text, /^oti_mqtt_connections_refused_total\{reason="total"\} [1-9]\d*$/m);
});

/** Connects from `localAddress`, sends a CONNECT with the app's credentials, and resolves when the broker closes the connection: after how long, and whether anything came back. */
async function closedAfter(t: TestContext, broker: Broker, localAddress: string): Promise<{ ms: number; answered: boolean }> {
  const sent = performance.now();
  const socket = netConnect({ host: '127.0.0.1', port: broker.port, localAddress }, () => socket.write(connectPacket(`c-${localAddress}`, APP.username, APP.password)));
  t.after(() => socket.destroy());
  socket.on('error', () => undefined);
  let answered = false;
  socket.on('data', () => (answered = true));
  await new Promise((resolve) => socket.once('close', resolve));
  return { ms: performance.now() - sent, answered };
}

void test('a connection over a cap waits unread for about broker.login.refusalDelayMs, then is closed; past as many waiting, and at close, at once', async (t) => {
  const delay = 2000;
  const broker = await startBroker(t, { maxConnections: 1, maxConnectionsPerAddress: 1, login: { ...DEFAULT_LOGIN_LIMITS, refusalDelayMs: delay } });
  await rawConnection(t, broker, '127.0.7.1');
  // The first one over the cap waits at least half the delay (timers never fire early), its
  // CONNECT never read and never answered; meanwhile the next one over it is closed at once
  // (at most broker.maxConnections refused connections wait).
  const held = closedAfter(t, broker, '127.0.7.2');
  await waitUntil('the first refusal', () => broker.stats().connectionsRefused['total'] === 1, WAIT_MS);
  const next = await rawConnection(t, broker, '127.0.7.3');
  assert.equal(next.closedAtOnce, true);
  const first = await held;
  assert.ok(first.ms >= delay / 2, `closed after ${Math.round(first.ms)} ms`);
  assert.equal(first.answered, false);
  assert.deepEqual(broker.stats().connectionsRefused, { total: 2 });
  // Closing the broker closes a waiting one at once.
  const waiting = closedAfter(t, broker, '127.0.7.4');
  await waitUntil('the third refusal', () => broker.stats().connectionsRefused['total'] === 3, WAIT_MS);
  const closing = performance.now();
  await broker.close();
  await waiting;
  assert.ok(performance.now() - closing < delay / 2, 'close() left a refused connection waiting');
});
