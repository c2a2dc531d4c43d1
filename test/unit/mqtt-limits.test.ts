import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { FrameLimit, TokenBucket } from '../../gateway/broker/limits.js';
import { isOtiError } from '../../ledger/base/errors.js';

void test('the token bucket allows a burst, then the refill rate', () => {
  let now = 0;
  const b = new TokenBucket(2, 3, () => now);
  assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
  now += 500; // one token back at 2 per second
  assert.deepEqual([b.take(), b.take()], [true, false]);
  now += 10_000; // never more than the burst
  assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
});

/** A FrameLimit over the server side of a loopback connection, and the client socket. */
async function pair(t: TestContext, max: number): Promise<{ guard: FrameLimit; client: Socket }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const addr = server.address();
  const client = connect(typeof addr === 'object' && addr !== null ? addr.port : 0, '127.0.0.1');
  const guard = new FrameLimit(await accepted, max);
  // Sockets first, then the server (whose close waits for its connections).
  t.after(() => {
    client.destroy();
    guard.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  guard.on('error', () => undefined);
  return { guard, client };
}

function outcome(guard: FrameLimit, want: number): Promise<{ bytes: Buffer; error?: unknown }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = (error?: unknown): void => resolve({ bytes: Buffer.concat(chunks), error });
    guard.on('data', (c: Buffer) => {
      chunks.push(c);
      if (Buffer.concat(chunks).length >= want) done();
    });
    guard.once('error', done);
  });
}

void test('packets within the limit pass unchanged, even with headers split across reads', async (t) => {
  const { guard, client } = await pair(t, 300);
  // PINGREQ, then a PUBLISH-like packet with a two-byte remaining length of 200, sent byte by byte.
  const body = Buffer.alloc(200, 7);
  const wire = Buffer.concat([Buffer.from([0xc0, 0x00, 0x30, 0xc8, 0x01]), body]);
  const got = outcome(guard, wire.length);
  for (const byte of wire.subarray(0, 6)) client.write(Buffer.from([byte]));
  client.write(wire.subarray(6));
  const { bytes, error } = await got;
  assert.equal(error, undefined);
  assert.deepEqual(bytes, wire);
});

void test('a header announcing more than the limit closes the connection before the body arrives', async (t) => {
  const { guard, client } = await pair(t, 100);
  const got = outcome(guard, Number.MAX_SAFE_INTEGER);
  client.write(Buffer.from([0x30, 0xe5, 0x00])); // remaining length 101
  const { error } = await got;
  assert.ok(isOtiError(error, 'ERR_FRAME_TOO_LARGE'));
});

void test('a remaining length longer than four bytes is malformed', async (t) => {
  const { guard, client } = await pair(t, 300_000_000);
  const got = outcome(guard, Number.MAX_SAFE_INTEGER);
  client.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]));
  const { error } = await got;
  assert.ok(isOtiError(error, 'ERR_FRAME_MALFORMED'));
});
