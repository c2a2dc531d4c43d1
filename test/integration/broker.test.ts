/**
 * The embedded broker over real sockets on 127.0.0.1: mqtt.js clients, Debian's mosquitto_sub,
 * and a TLS listener with a certificate made by the openssl CLI. Nothing here waits for a fixed
 * time: each test waits for an outcome (a message, a close, an exit) with a generous timeout.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { promisify } from 'node:util';
import { test, type TestContext } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { Broker, type BrokerOptions } from '../../gateway/broker/broker.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import type { StatusMessage } from '../../gateway/broker/topics.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { tempDir } from '../support/site.js';
import { openMqtt, startTestBroker } from '../support/broker.js';

const run = promisify(execFile);
const SITE = 'site-1';
const APP = { username: 'app1', password: 'app-secret-1' };
const READER = { username: 'reader1', password: 'reader-secret-1' };
const GATEWAY = { username: 'gw:gw-a', password: 'gateway-credential-a' };
const WAIT_MS = 20_000;

interface Setup {
  broker: Broker;
  dir: string;
}

function startBroker(t: TestContext, over: Partial<BrokerOptions> = {}): Promise<Setup> {
  return startTestBroker(t, SITE, { app: APP, reader: READER }, {
    // The seam issue 5 fills with signed credentials; here one fixed credential for gw-a.
    verifyGatewayCredential: (username, password) =>
      Promise.resolve(username === GATEWAY.username && password.toString() === GATEWAY.password ? { gatewayId: 'gw-a' } : undefined),
    ...over,
  });
}

/** Connects and resolves once CONNACK accepted; rejects with the client error (its `code` is the CONNACK code). */
async function open(t: TestContext, url: string, opts: IClientOptions): Promise<MqttClient> {
  return (await openMqtt(t, url, opts, WAIT_MS)).client;
}

function openOn(t: TestContext, broker: Broker, opts: IClientOptions): Promise<MqttClient> {
  return open(t, `mqtt://127.0.0.1:${broker.port}`, opts);
}

/** Resolves with the next `n` messages the client receives. */
function nextMessages(client: MqttClient, n: number): Promise<{ topic: string; payload: Buffer; retain: boolean }[]> {
  return new Promise((resolve, reject) => {
    const got: { topic: string; payload: Buffer; retain: boolean }[] = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages arrived`)), WAIT_MS);
    client.on('message', (topic, payload, packet) => {
      got.push({ topic, payload, retain: packet.retain });
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected) return resolve();
    const timer = setTimeout(() => reject(new Error('the broker did not close the connection')), WAIT_MS);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function refusedWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal((e as { code?: unknown }).code, code);
    return true;
  });
}

/** MQTT 3.1.1 §3.9.3: a refused filter gets return code 0x80 in its SUBACK. */
async function subscribeRefused(client: MqttClient, filter: string): Promise<void> {
  await assert.rejects(client.subscribeAsync(filter), (e: unknown) => {
    assert.deepEqual((e as { packet?: { granted?: unknown } }).packet?.granted, [0x80]);
    return true;
  });
}

const committed = (ctr: number): StatusMessage => ({ id: `lock-1:${ctr}`, state: 'committed', at: 1_700_000_000_000, index: ctr, entry: 'ab'.repeat(32), receipt: 'AAEC' });

void test('an app that connects late gets the retained status of an event', async (t) => {
  const { broker } = await startBroker(t);
  const topic = broker.topics.status('lock-1', 7);
  await broker.publish(topic, JSON.stringify(committed(7)), { qos: 1, retain: true });
  const app = await openOn(t, broker, APP);
  const msgs = nextMessages(app, 1);
  await app.subscribeAsync(`oti/${SITE}/status/#`, { qos: 1 });
  const [m] = await msgs;
  assert.equal(m?.topic, topic);
  assert.equal(m?.retain, true);
  assert.deepEqual(JSON.parse(m?.payload.toString() ?? ''), committed(7));
});

void test('clients without credentials or with a wrong password are refused at CONNACK', async (t) => {
  const { broker } = await startBroker(t);
  await refusedWith(openOn(t, broker, {}), 5);
  await refusedWith(openOn(t, broker, { username: APP.username, password: 'wrong' }), 4);
  await refusedWith(openOn(t, broker, { username: 'nobody', password: 'x' }), 4);
  await refusedWith(openOn(t, broker, { username: GATEWAY.username, password: 'wrong' }), 4);
  assert.equal(broker.stats().refused, 4);
  assert.equal(broker.stats().clients, 0);
});

void test('a user of the users file with a wrong password is refused without asking the gateway verifier', async (t) => {
  const asked: string[] = [];
  const { broker } = await startBroker(t, {
    verifyGatewayCredential: (username) => {
      asked.push(username);
      return Promise.resolve(undefined);
    },
  });
  await refusedWith(openOn(t, broker, { username: APP.username, password: 'wrong' }), 4);
  await refusedWith(openOn(t, broker, { username: 'nobody', password: 'x' }), 4);
  assert.deepEqual(asked, ['nobody'], 'only a name missing from the users file goes to the gateway verifier (MQTT.md §Authentication)');
});

void test('anonymous clients get the read-only role when allowed', async (t) => {
  const { broker } = await startBroker(t, { allowAnonymous: true });
  const anon = await openOn(t, broker, {});
  await anon.subscribeAsync(`oti/${SITE}/events/#`);
  await subscribeRefused(anon, `oti/${SITE}/locks/unenrolled/#`);
});

void test('without a gateway verifier no gateway can log in', async (t) => {
  const { broker } = await startBroker(t, { verifyGatewayCredential: undefined });
  await refusedWith(openOn(t, broker, GATEWAY), 4);
});

void test('an app publishing an event is disconnected and the message reaches no subscriber', async (t) => {
  const { broker } = await startBroker(t);
  const watcher = await openOn(t, broker, { ...READER, clientId: 'watcher' });
  const topic = broker.topics.event('lock-1');
  await watcher.subscribeAsync(topic, { qos: 1 });
  const first = nextMessages(watcher, 1);
  const app = await openOn(t, broker, { ...APP, clientId: 'forger' });
  const gone = closed(app);
  app.publish(topic, '{"forged":true}', { qos: 1 });
  await gone;
  // The refused publish was handled before the connection closed; anything the gateway
  // publishes now is routed after it, so the watcher's first message tells what got through.
  await broker.publish(topic, '{"genuine":true}', { qos: 1, retain: false });
  const [m] = await first;
  assert.deepEqual(JSON.parse(m?.payload.toString() ?? ''), { genuine: true });
  assert.ok(broker.stats().refused >= 1);
});

void test('a gateway may publish its own chain topics but not another gateway\'s', async (t) => {
  const { broker } = await startBroker(t);
  const watcher = await openOn(t, broker, APP);
  await watcher.subscribeAsync(`oti/${SITE}/gateways/#`, { qos: 1 });
  const got = nextMessages(watcher, 1);
  const gw = await openOn(t, broker, GATEWAY);
  await gw.publishAsync(broker.topics.gatewayState('gw-a'), '{"state":"online","at":1}', { qos: 1, retain: true });
  const [m] = await got;
  assert.equal(m?.topic, broker.topics.gatewayState('gw-a'));
  const gone = closed(gw);
  gw.publish(broker.topics.gatewayState('gw-b'), '{"state":"offline","at":1}', { qos: 1, retain: true });
  await gone;
  assert.equal(broker.stats().messagesIn, 1);
});

void test('read-only clients cannot subscribe to unenrolled locks, and no role reaches past its read set with a wildcard', async (t) => {
  const { broker } = await startBroker(t);
  const reader = await openOn(t, broker, READER);
  await subscribeRefused(reader, `oti/${SITE}/locks/unenrolled/#`);
  await subscribeRefused(reader, 'oti/#');
  await subscribeRefused(reader, '#');
  await reader.subscribeAsync(`oti/${SITE}/status/+/7`);
  const app = await openOn(t, broker, APP);
  await app.subscribeAsync(`oti/${SITE}/locks/unenrolled/#`);
  await subscribeRefused(app, `oti/${SITE}/chain/#`);
});

void test('an archive user sends range requests and reads heads, cosignatures and its answers, and is disconnected for anything that writes into the site (ERR_MQTT_ACL)', async (t) => {
  const { broker, dir } = await startBroker(t, { isRosterGateway: (gw) => gw === 'gw-a' || gw === 'gw-b' });
  const ARCHIVE = { username: 'archive', password: 'archive-secret-1' };
  await addMqttUser(join(dir, 'mqtt-users.json'), ARCHIVE.username, 'archive', ARCHIVE.password);
  // What a gateway gets from it: the request, on the topic gw-a answers.
  const gw = await openOn(t, broker, GATEWAY);
  await gw.subscribeAsync(`oti/${SITE}/chain/gw-a/req/+`, { qos: 1 });
  const got = nextMessages(gw, 1);
  const arch = await openOn(t, broker, { ...ARCHIVE, clientId: 'oti-archive-pull-site-1' });
  const cosigs = nextMessages(arch, 1);
  await arch.subscribeAsync([`oti/${SITE}/chain/+/checkpoint`, `oti/${SITE}/chain/+/cosig/+`, `oti/${SITE}/chain/+/range/archive`], { qos: 1 });
  for (const filter of [`oti/${SITE}/chain/+/range/+`, `oti/${SITE}/chain/+/req/archive`, `oti/${SITE}/chain/+/cosig/#`, `oti/${SITE}/chain/+/+/+`, `oti/${SITE}/events/#`, `oti/${SITE}/#`]) await subscribeRefused(arch, filter);
  // A gateway's cosignature reaches it (it reads them, it never writes one: below).
  await gw.publishAsync(broker.topics.cosignature('gw-b', 'gw-a'), 'cosigned note', { qos: 1, retain: true });
  const [cm] = await cosigs;
  assert.deepEqual([cm?.topic, cm?.payload.toString()], [broker.topics.cosignature('gw-b', 'gw-a'), 'cosigned note']);
  await arch.publishAsync(broker.topics.syncRequest('gw-a', 'archive'), Buffer.from([0xa0]), { qos: 1 });
  const [m] = await got;
  assert.equal(m?.topic, broker.topics.syncRequest('gw-a', 'archive'));
  // Each publish that would write into the site (or speak for someone else) closes the connection, counted by code.
  const forbidden: [string, boolean][] = [
    [broker.topics.checkpoint('gw-a'), true],
    [broker.topics.cosignature('gw-a', 'archive'), true],
    [broker.topics.cosignature('gw-a', 'gw-b'), true], // it reads cosignatures, it cannot make one in a gateway's name
    [broker.topics.evidence('archive'), true],
    [broker.topics.gatewayState('archive'), true],
    [broker.topics.syncRange('gw-a', 'archive'), false],
    [broker.topics.syncRequest('gw-a', 'gw-b'), false],
    [broker.topics.syncRequest('gw-a', 'archive'), true], // retained: a request is never retained
    [broker.topics.event('lock-1'), false],
    [broker.topics.status('lock-1', 1), true],
  ];
  for (const [i, [topic, retain]] of forbidden.entries()) {
    const c = await openOn(t, broker, { ...ARCHIVE, clientId: `forger-${i}` });
    const gone = closed(c);
    c.publish(topic, 'x', { qos: 1, retain });
    await gone;
  }
  assert.equal(broker.stats().publishesRefused['ERR_MQTT_ACL'], forbidden.length);
  // An archive user may not carry the name of a gateway of the site (its requests and answers would be that gateway's).
  await addMqttUser(join(dir, 'mqtt-users.json'), 'gw-b', 'archive', 'archive-secret-2');
  await refusedWith(openOn(t, broker, { username: 'gw-b', password: 'archive-secret-2' }), 5);
  assert.equal(broker.stats().loginsRefused['ERR_MQTT_AUTH'], 1);
});

void test('a client id in use by another principal is that principal\'s own: both stay connected', async (t) => {
  const { broker } = await startBroker(t);
  const app = await openOn(t, broker, { ...APP, clientId: 'shared-id' });
  const reader = await openOn(t, broker, { ...READER, clientId: 'shared-id' });
  assert.ok(app.connected && reader.connected);
  assert.equal(broker.stats().clients, 2);
});

void test('a packet over maxMessageBytes closes the connection and is not delivered', async (t) => {
  const { broker } = await startBroker(t, { maxMessageBytes: 1024 });
  const watcher = await openOn(t, broker, APP);
  const topic = broker.topics.gatewayState('gw-a');
  await watcher.subscribeAsync(topic, { qos: 1 });
  const first = nextMessages(watcher, 1);
  const gw = await openOn(t, broker, GATEWAY);
  const gone = closed(gw);
  gw.publish(topic, Buffer.alloc(2000, 0x61), { qos: 1, retain: true });
  await gone;
  await broker.publish(topic, '{"state":"offline","at":2}', { qos: 1, retain: true });
  const [m] = await first;
  assert.equal(m?.payload.length, '{"state":"offline","at":2}'.length);
  assert.ok(broker.stats().refused >= 1);
  await assert.rejects(broker.publish(topic, Buffer.alloc(2000), { qos: 0, retain: false }), (e) => isOtiError(e, 'ERR_FRAME_TOO_LARGE'));
});

void test('a topic filter or topic name holding U+0000 closes the connection (MQTT 3.1.1 §1.5.3, ERR_FRAME_MALFORMED)', async (t) => {
  const { broker } = await startBroker(t);
  const app = await openOn(t, broker, APP);
  const gone = closed(app);
  app.subscribe(`${broker.topics.event('a')}\u0000b`, { qos: 1 }, () => undefined);
  await gone;
  assert.equal(broker.stats().refused, 1);
  // The same filter without it is granted, on a new connection.
  const again = await openOn(t, broker, APP);
  assert.deepEqual((await again.subscribeAsync(broker.topics.event('a'), { qos: 1 })).map((g) => g.qos), [1]);
  const gw = await openOn(t, broker, GATEWAY);
  const gwGone = closed(gw);
  gw.publish(`${broker.topics.gatewayState('gw-a')}\u0000`, '{"state":"online","at":1}', { qos: 1 });
  await gwGone;
  assert.deepEqual(broker.stats().publishesRefused, { ERR_FRAME_MALFORMED: 1 });
});

void test('a client publishing faster than its rate limit is cut off', async (t) => {
  const { broker } = await startBroker(t, { rateLimit: { messagesPerSecond: 1, burst: 5 } });
  const gw = await openOn(t, broker, GATEWAY);
  const gone = closed(gw);
  for (let i = 0; i < 50; i++) gw.publish(broker.topics.checkpoint('gw-a'), `checkpoint ${i}`, { qos: 0, retain: true });
  await gone;
  const { messagesIn, refused } = broker.stats();
  assert.ok(messagesIn >= 5 && messagesIn < 50, `accepted ${messagesIn}`);
  assert.ok(refused >= 1);
});

void test('a port in use is ERR_PORT_IN_USE', async (t) => {
  const { broker } = await startBroker(t);
  await assert.rejects(startBroker(t, { port: broker.port }), (e: unknown) => {
    assert.ok(isOtiError(e, 'ERR_PORT_IN_USE'));
    assert.deepEqual(e.details, { host: '127.0.0.1', port: broker.port });
    return true;
  });
});

void test('bad options are ERR_ARGUMENT naming the key', async () => {
  const base: BrokerOptions = { site: SITE, host: '127.0.0.1', port: 0, allowAnonymous: false, maxMessageBytes: 4096, rateLimit: { messagesPerSecond: 1, burst: 1 } };
  for (const [bad, key] of [
    [{ port: 70000 }, 'port'],
    [{ maxMessageBytes: 0 }, 'maxMessageBytes'],
    [{ rateLimit: { messagesPerSecond: 0, burst: 1 } }, 'rateLimit.messagesPerSecond'],
    [{ rateLimit: { messagesPerSecond: 1, burst: 0 } }, 'rateLimit.burst'],
    [{ site: 'Bad/Site' }, 'site'],
  ] as const) {
    await assert.rejects(Broker.start({ ...base, ...bad }), (e: unknown) => isOtiError(e, 'ERR_ARGUMENT') && e.details?.['argument'] === key);
  }
});

void test('mosquitto_sub (Debian) sees a documented topic and payload', async (t) => {
  const { broker } = await startBroker(t);
  const topic = broker.topics.status('lock-1', 3);
  await broker.publish(topic, JSON.stringify(committed(3)), { qos: 1, retain: true });
  const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-u', APP.username, '-P', APP.password, '-t', `oti/${SITE}/status/#`, '-C', '1', '-W', '30', '-v', '-q', '1']);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  const space = out.indexOf(' ');
  assert.equal(out.slice(0, space), topic);
  assert.deepEqual(JSON.parse(out.slice(space + 1)), committed(3));
});

void test('mosquitto_sub with a wrong password is refused', async (t) => {
  const { broker } = await startBroker(t);
  const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-u', APP.username, '-P', 'wrong', '-t', `oti/${SITE}/status/#`, '-C', '1', '-W', '30']);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.notEqual(code, 0);
});

/** A self-signed certificate for 127.0.0.1 made by the openssl CLI; the test is skipped without one. */
async function selfSigned(t: TestContext): Promise<{ cert: string; key: string } | undefined> {
  const dir = await tempDir(t);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  try {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1']);
  } catch (e) {
    t.skip(`the openssl CLI could not make a certificate: ${(e as Error).message}`);
    return undefined;
  }
  return { cert, key };
}

void test('MQTT over TLS with a self-signed certificate', async (t) => {
  const pem = await selfSigned(t);
  if (pem === undefined) return;
  const { cert, key } = pem;
  const { broker } = await startBroker(t, { tls: { port: 0, cert, key } });
  assert.ok(broker.tlsPort !== undefined && broker.tlsPort > 0);
  const topic = broker.topics.status('lock-1', 1);
  await broker.publish(topic, JSON.stringify(committed(1)), { qos: 1, retain: true });
  const app = await open(t, `mqtts://127.0.0.1:${broker.tlsPort}`, { ...APP, ca: await readFile(cert), rejectUnauthorized: true });
  const msgs = nextMessages(app, 1);
  await app.subscribeAsync(topic, { qos: 1 });
  const [m] = await msgs;
  assert.deepEqual(JSON.parse(m?.payload.toString() ?? ''), committed(1));
  // A client that does not trust the certificate does not get in.
  await assert.rejects(open(t, `mqtts://127.0.0.1:${broker.tlsPort}`, { ...APP, rejectUnauthorized: true }));
});

void test('a TLS client that never finishes its handshake, and a plain one that never sends CONNECT, are closed after the connect timeout', async (t) => {
  const pem = await selfSigned(t);
  if (pem === undefined) return;
  const { cert, key } = pem;
  // Node's own TLS handshake timeout only reports: the socket stayed open, holding a slot under the connection caps.
  const { broker } = await startBroker(t, { tls: { port: 0, cert, key }, connectTimeoutMs: 300, maxConnections: 2 });
  const silent = (port: number, localAddress: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port, localAddress });
      t.after(() => socket.destroy());
      socket.on('error', () => undefined);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`a silent connection to ${port} was still open after 10 s`));
      }, 10_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  await Promise.all([silent(broker.tlsPort as number, '127.0.8.1'), silent(broker.port, '127.0.8.2')]);
  // Their slots are free again: two more fill the cap without being refused.
  await Promise.all([silent(broker.tlsPort as number, '127.0.8.3'), silent(broker.port, '127.0.8.4')]);
  assert.deepEqual(broker.stats().connectionsRefused, {});
});

void test('close disconnects clients and refuses further publishes', async (t) => {
  const { broker } = await startBroker(t);
  const app = await openOn(t, broker, APP);
  const gone = closed(app);
  await broker.close();
  await gone;
  await assert.rejects(broker.publish(broker.topics.event('lock-1'), '{}', { qos: 0, retain: false }));
  await broker.close();
});
