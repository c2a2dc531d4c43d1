/**
 * The broker's session store: aedes-persistence's own abstract suite (every persistence must pass
 * it), then the bounds on outgoing queues.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { BoundedPersistence, type StoredPacket } from '../../gateway/broker/persistence.js';

const require = createRequire(import.meta.url);
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: { test: typeof test; persistence: () => unknown; testAsync: boolean }) => void;

abstractPersistence({ test, persistence: () => new BoundedPersistence({ maxMessages: 1000, maxBytes: 1 << 20 }), testAsync: true });

let counter = 0;
const message = (bytes: number): StoredPacket & { qos: number } => ({ cmd: 'publish', brokerId: 'b', brokerCounter: ++counter, topic: 't', payload: Buffer.alloc(bytes), qos: 1 });

async function streamed(p: BoundedPersistence, id: string): Promise<StoredPacket[]> {
  const out: StoredPacket[] = [];
  for await (const x of p.outgoingStream({ id })) out.push(x as StoredPacket);
  return out;
}

void test('a full queue drops its oldest messages and counts them', async () => {
  const p = new BoundedPersistence({ maxMessages: 3, maxBytes: 1 << 20 });
  const sent = Array.from({ length: 5 }, () => message(10));
  for (const m of sent) await p.outgoingEnqueueCombi([{ clientId: 'c1' }, { clientId: 'c2' }], m);
  assert.deepEqual((await streamed(p, 'c1')).map((m) => m.brokerCounter), sent.slice(2).map((m) => m.brokerCounter));
  assert.equal(p.dropped, 4);
  assert.deepEqual(p.queued(), { messages: 6, bytes: 6 * 11 });
});

void test('the byte cap drops the oldest messages too, and a message over it is not kept', async () => {
  const p = new BoundedPersistence({ maxMessages: 100, maxBytes: 250 });
  for (let i = 0; i < 3; i++) await p.outgoingEnqueue({ clientId: 'c' }, message(99));
  assert.equal(p.queueLength('c'), 2);
  assert.equal(p.dropped, 1);
  await p.outgoingEnqueue({ clientId: 'c' }, message(300));
  assert.equal(p.queueLength('c'), 0);
  assert.equal(p.dropped, 4);
  assert.deepEqual(p.queued(), { messages: 0, bytes: 0 });
});

void test('an acknowledgement of a dropped message clears nothing and raises nothing', async () => {
  const p = new BoundedPersistence({ maxMessages: 1, maxBytes: 1 << 20 });
  const first = message(1);
  await p.outgoingEnqueue({ clientId: 'c' }, first);
  await p.outgoingUpdate({ id: 'c' }, { ...first, messageId: 7 });
  await p.outgoingEnqueue({ clientId: 'c' }, message(1));
  await p.outgoingUpdate({ id: 'c' }, { ...first, messageId: 7 });
  assert.equal(await p.outgoingClearMessageId({ id: 'c' }, { cmd: 'puback', messageId: 7 }), undefined);
  assert.equal(p.queueLength('c'), 1);
});

void test('dropSession forgets the queue and the subscriptions of a client id', async () => {
  const p = new BoundedPersistence({ maxMessages: 10, maxBytes: 1 << 20 });
  await p.setup({ id: 'broker-1' });
  await p.addSubscriptions({ id: 'c' }, [{ topic: 'a/#', qos: 1 }]);
  await p.outgoingEnqueue({ clientId: 'c' }, message(1));
  await p.dropSession('c');
  assert.equal(p.queueLength('c'), 0);
  assert.deepEqual(await p.subscriptionsByClient({ id: 'c' }), []);
  assert.deepEqual(await p.subscriptionsByTopic('a/b'), []);
});

/** The retained messages of `pattern`, as the broker reads them for a new subscriber. */
async function retainedOf(p: BoundedPersistence, pattern: string): Promise<StoredPacket[]> {
  const kept: StoredPacket[] = [];
  for await (const x of (p as unknown as { createRetainedStream(pattern: string): AsyncIterable<StoredPacket> }).createRetainedStream(pattern)) kept.push(x);
  return kept;
}

void test('a retained payload is copied out of the buffer it came in, not kept as a view into it', async () => {
  const p = new BoundedPersistence({ maxMessages: 10, maxBytes: 1 << 20 });
  const slab = Buffer.alloc(8192, 7);
  await p.storeRetained({ cmd: 'publish', topic: 'a/b', payload: slab.subarray(100, 1600), qos: 1, retain: true } as StoredPacket);
  slab.fill(0);
  const [kept] = await retainedOf(p, 'a/b');
  assert.deepEqual(kept?.payload, Buffer.alloc(1500, 7));
});

void test('a retained payload handed out stays intact when its topic is replaced or cleared and its buffer reused', async () => {
  const p = new BoundedPersistence({ maxMessages: 10, maxBytes: 1 << 20 });
  const store = (topic: string, payload: Buffer): Promise<void> => p.storeRetained({ cmd: 'publish', topic, payload, qos: 1, retain: true } as StoredPacket);
  await store('s/1', Buffer.alloc(1000, 1));
  const [first] = await retainedOf(p, 's/1');
  await store('s/1', Buffer.alloc(1000, 2));
  await store('s/2', Buffer.alloc(990, 3));
  assert.deepEqual(first?.payload, Buffer.alloc(1000, 1));
  assert.deepEqual((await retainedOf(p, 's/1'))[0]?.payload, Buffer.alloc(1000, 2));
  assert.deepEqual((await retainedOf(p, 's/2'))[0]?.payload, Buffer.alloc(990, 3));
  // Cleared (an empty payload): gone, and its buffer serves the next topic without touching the others.
  await store('s/1', Buffer.alloc(0));
  await store('s/3', Buffer.alloc(1020, 4));
  assert.deepEqual(await retainedOf(p, 's/1'), []);
  assert.deepEqual((await retainedOf(p, 's/2'))[0]?.payload, Buffer.alloc(990, 3));
  assert.deepEqual((await retainedOf(p, 's/3'))[0]?.payload, Buffer.alloc(1020, 4));
  const all = await retainedOf(p, 's/#');
  assert.deepEqual(all.map((x) => x.topic).sort(), ['s/2', 's/3']);
});

void test('a retained stream part-read gives each topic its own payload while topics are cleared and others stored meanwhile', async () => {
  const p = new BoundedPersistence({ maxMessages: 10, maxBytes: 1 << 20 });
  const store = (topic: string, payload: Buffer): Promise<void> => p.storeRetained({ cmd: 'publish', topic, payload, qos: 1, retain: true } as StoredPacket);
  for (let i = 0; i < 40; i++) await store(`s/${i}`, Buffer.alloc(1000, i));
  const stream = (p as unknown as { createRetainedStream(pattern: string): AsyncIterable<StoredPacket> }).createRetainedStream('s/#');
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  // The stream has read a packet ahead. Synchronously, as publishes handled while a subscriber's
  // socket is full: every topic cleared, and new topics stored in buffers of the same size.
  for (let i = 0; i < 40; i++) void store(`s/${i}`, Buffer.alloc(0));
  for (let i = 0; i < 40; i++) void store(`t/${i}`, Buffer.alloc(1000, 200));
  const got = [first.value as StoredPacket];
  for (let r = await it.next(); r.done !== true; r = await it.next()) got.push(r.value as StoredPacket);
  for (const x of got) assert.deepEqual(x.payload, Buffer.alloc(1000, Number(x.topic?.slice(2))), `${x.topic} carries another topic's bytes`);
  // Once the stream is closed, cleared buffers are reused again and the others stay intact.
  await store('u/0', Buffer.alloc(1000, 251));
  await store('t/0', Buffer.alloc(0));
  await store('u/1', Buffer.alloc(1000, 252));
  assert.deepEqual((await retainedOf(p, 't/1'))[0]?.payload, Buffer.alloc(1000, 200));
  assert.deepEqual((await retainedOf(p, 'u/0'))[0]?.payload, Buffer.alloc(1000, 251));
  assert.deepEqual((await retainedOf(p, 'u/1'))[0]?.payload, Buffer.alloc(1000, 252));
});

void test('the MQTT packet writer of aedes and mqtt.js keeps no table of number buffers once the broker is loaded', async () => {
  await import('../../gateway/broker/broker.js');
  const { PACKET_WRITERS } = await import('../../gateway/broker/packet-writer.js');
  assert.equal(PACKET_WRITERS.length, 2);
  for (const w of PACKET_WRITERS) assert.equal(w.writeToStream.cacheNumbers, false);
});
