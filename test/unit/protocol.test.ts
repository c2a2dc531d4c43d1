import { test } from 'node:test';
import { readFile } from 'node:fs/promises';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { OtiError, ErrorCode } from '../../ledger/base/errors.js';
import { decode, encode } from '../../ledger/base/cbor.js';
import { sha256 } from '../../ledger/crypto.js';
import { decodeLockEvent, encodeLockEvent } from '../../ledger/lockevent.js';
import type { LockPayload } from '../../ledger/entry.js';
import { makeSite, enrollLock, signedEvent } from '../support/site.js';
import {
  decodeGatewayMessage,
  decodeLockMessage,
  decodeMessage,
  decodeMessageStrict,
  encodeAdvertisement,
  encodeMessage,
  parseAdvertisement,
  readUnacceptableEvent,
  MESSAGE_MAX_BYTES,
  WINDOW_MAX,
  type GatewayMessage,
  type MessageInput,
} from '../../drivers/protocol.js';
import { makeLockVectors, lockVectorsJson, LOCK_VECTORS_URL } from '../support/make-lock-vectors.js';
import { crc32, encodeFrame, fragment, FrameDecoder, Reassembler, type FrameResult } from '../../drivers/framing.js';
import { codeOf } from '../support/codes.js';


const site = makeSite();
const lock = enrollLock(site, 'front-door');

const id = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
const hash = fc.uint8Array({ minLength: 32, maxLength: 32 });
const gatewayMessage: fc.Arbitrary<GatewayMessage> = fc.oneof(
  fc.record({ t: fc.constant('hello' as const), gw: id, window: fc.integer({ min: 1, max: WINDOW_MAX }) }, { noNullPrototype: true }),
  fc.record({ t: fc.constant('hello' as const), v: fc.constant(2), gw: id, window: fc.integer({ min: 1, max: WINDOW_MAX }) }, { noNullPrototype: true }),
  fc.record({ t: fc.constant('ack' as const), ev: hash, lock: id, ctr: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), entry: hash }, { noNullPrototype: true, requiredKeys: ['t', 'lock', 'ctr', 'entry'] }),
  fc.record({
    t: fc.constant('nack' as const),
    ev: hash,
    lock: id,
    ctr: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    code: fc.stringMatching(/^ERR_[A-Z0-9_]{1,20}$/),
    retry: fc.boolean(),
  }, { noNullPrototype: true, requiredKeys: ['t', 'lock', 'ctr', 'code', 'retry'] }),
  fc.record({
    t: fc.constant('refuse' as const),
    code: fc.stringMatching(/^ERR_[A-Z0-9_]{1,20}$/),
    retry: fc.boolean(),
    versions: fc.uniqueArray(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 8 }).map((a) => a.sort((x, y) => x - y)),
  }, { noNullPrototype: true }),
);

void test('gateway messages round-trip', () => {
  fc.assert(
    fc.property(gatewayMessage, (m) => {
      const b = encodeMessage(m);
      assert.deepEqual(decodeGatewayMessage(b), m);
      assert.equal(codeOf(() => decodeLockMessage(b)), 'ERR_MESSAGE');
    }),
  );
});

void test('info and event messages round-trip, event lock and ctr come from the payload', () => {
  fc.assert(
    fc.property(id, fc.string({ minLength: 1, maxLength: 64 }), fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }), (l, fw, key) => {
      const info = key === undefined ? { lock: l, fw } : { lock: l, fw, key };
      const b = encodeMessage({ t: 'info', info });
      assert.deepEqual(decodeLockMessage(b), { t: 'info', info });
      assert.equal(codeOf(() => decodeGatewayMessage(b)), 'ERR_MESSAGE');
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 1000 }), fc.boolean(), (ctr, back, signed) => {
      const oldest = Math.max(1, ctr - back);
      if (signed) {
        lock.ctr = ctr - 1;
        const cose = Uint8Array.from(signedEvent(lock));
        const m = decodeLockMessage(encodeMessage({ t: 'event', oldest, cose }));
        assert.ok(m.t === 'event');
        const { decoded, ...rest } = m;
        assert.deepEqual(rest, { t: 'event', oldest, cose, lock: 'front-door', ctr });
        // The payload as decoded on the way: these very bytes, their signature and event.
        assert.equal(decoded.bytes, rest.cose);
        assert.deepEqual({ ...decoded.event }, decodeLockEvent(decoded.parsed!.payload));
        assert.equal(decoded.event.ctr, ctr);
      } else {
        const event = Uint8Array.from(encodeLockEvent({ lock: 'back-door', ctr, time: 1_700_000_000_000, type: 'locked' }));
        const m = decodeLockMessage(encodeMessage({ t: 'event', oldest, event }));
        assert.ok(m.t === 'event');
        const { decoded, ...rest } = m;
        assert.deepEqual(rest, { t: 'event', oldest, event, lock: 'back-door', ctr });
        assert.equal(decoded.bytes, rest.event);
        assert.equal(decoded.parsed, undefined);
        assert.deepEqual({ ...decoded.event }, { lock: 'back-door', ctr, time: 1_700_000_000_000, type: 'locked' });
      }
    }),
    { numRuns: 50 },
  );
});

/** The COSE bytes inside an encoded signed event message. */
function signedEventOf(message: Uint8Array): Uint8Array {
  const m = decodeLockMessage(message);
  assert.ok(m.t === 'event' && 'cose' in m);
  return Uint8Array.from(m.cose);
}

/**
 * A decoded message with its event's `decoded` as the values it gives (the fast decoder's is a
 * ScannedLockPayload, which also says where the parts lie and makes the views of `parsed` when
 * asked; the strict decoder's a plain object).
 */
function asValues(m: unknown): unknown {
  if (m === null || typeof m !== 'object' || !('decoded' in m)) return m;
  const d = (m as { decoded: LockPayload }).decoded;
  return { ...m, decoded: { bytes: d.bytes, parsed: d.parsed, event: d.event } };
}

void test('the fast paths (ack encoding, event decoding) agree with the general encoder and the strict decoder', () => {
  fc.assert(
    fc.property(id, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (l, ctr, entry) => {
      assert.deepEqual(encodeMessage({ t: 'ack', lock: l, ctr, entry }), encode({ t: 'ack', lock: l, ctr, entry }));
    }),
  );
  // Version 2 acks, with `ev` (the hash of the payload answered), take the fixed layout too.
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,63}$/), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (l, ctr, entry, ev) => {
      const b = encodeMessage({ t: 'ack', ev, lock: l, ctr, entry });
      assert.deepEqual(Uint8Array.from(b), Uint8Array.from(encode({ t: 'ack', ev, lock: l, ctr, entry })));
      assert.deepEqual(decodeMessage(b), decodeMessageStrict(b));
    }),
  );
  lock.ctr = 0;
  const signed = Uint8Array.from(encodeMessage({ t: 'event', oldest: 1, cose: signedEvent(lock) }));
  const bare = Uint8Array.from(encodeMessage({ t: 'event', oldest: 1, event: encodeLockEvent({ lock: 'back-door', ctr: 3, time: 7, type: 'jammed', cred: Uint8Array.of(9) }) }));
  const ack = Uint8Array.from(encodeMessage({ t: 'ack', lock: 'back-door', ctr: 300, entry: new Uint8Array(32).fill(5) }));
  const boundAck = Uint8Array.from(encodeMessage({ t: 'ack', ev: new Uint8Array(32).fill(7), lock: 'back-door', ctr: 300, entry: new Uint8Array(32).fill(5) }));
  assert.deepEqual(Uint8Array.from(encodeMessage({ t: 'event', oldest: 1, cose: signedEventOf(signed) })), Uint8Array.from(encode({ t: 'event', oldest: 1, cose: signedEventOf(signed) })));
  fc.assert(
    fc.property(fc.constantFrom(signed, bare, ack, boundAck), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat(8), (base, flips, cut) => {
      const b = Uint8Array.from(base);
      for (const [i, v] of flips) b[i % b.length] = v;
      const m = b.subarray(0, b.length - (cut % 3 === 0 ? cut : 0));
      const fast = ((): unknown => {
        try {
          return decodeMessage(m);
        } catch (e) {
          return (e as OtiError).code;
        }
      })();
      const strict = ((): unknown => {
        try {
          return decodeMessageStrict(m);
        } catch (e) {
          return (e as OtiError).code;
        }
      })();
      assert.deepEqual(asValues(fast), asValues(strict));
    }),
    { numRuns: 3000 },
  );
  assert.equal(codeOf(() => encodeMessage({ t: 'ack', lock: 'Bad Id', ctr: 1, entry: new Uint8Array(32) })), 'ERR_MESSAGE');
  assert.equal(codeOf(() => encodeMessage({ t: 'ack', lock: 'ok', ctr: 0, entry: new Uint8Array(32) })), 'ERR_MESSAGE');
  assert.equal(codeOf(() => encodeMessage({ t: 'ack', lock: 'ok', ctr: 1, entry: new Uint8Array(31) })), 'ERR_MESSAGE');
  assert.equal(codeOf(() => encodeMessage({ t: 'ack', ev: new Uint8Array(31), lock: 'ok', ctr: 1, entry: new Uint8Array(32) })), 'ERR_MESSAGE');
});

void test('message rejections carry codes', () => {
  const event = encodeLockEvent({ lock: 'back-door', ctr: 5, time: 1, type: 'locked' });
  const cases: [MessageInput, ErrorCode][] = [
    [{ t: 'event', oldest: 6, event }, 'ERR_MESSAGE'],
    [{ t: 'event', oldest: 0, event }, 'ERR_MESSAGE'],
    [{ t: 'event', oldest: 1, event: encodeLockEvent({ lock: 'back-door', ctr: 0, time: 1, type: 'locked' }) }, 'ERR_MESSAGE'],
    [{ t: 'event', oldest: 1, cose: event }, 'ERR_ENCODING_SCHEMA'],
    [{ t: 'hello', gw: 'gw-1', window: 0 }, 'ERR_MESSAGE'],
    [{ t: 'hello', gw: 'gw-1', window: WINDOW_MAX + 1 }, 'ERR_MESSAGE'],
    [{ t: 'hello', gw: 'GW', window: 1 }, 'ERR_MESSAGE'],
    [{ t: 'ack', lock: 'a', ctr: 0, entry: new Uint8Array(32) }, 'ERR_MESSAGE'],
    [{ t: 'ack', lock: 'a', ctr: 1, entry: new Uint8Array(31) }, 'ERR_MESSAGE'],
    [{ t: 'nack', lock: 'a', ctr: 1, code: 'BUSY', retry: true }, 'ERR_MESSAGE'],
    [{ t: 'info', info: { lock: 'a', fw: '' } }, 'ERR_MESSAGE'],
    [{ t: 'info', info: { lock: 'a', fw: 'x'.repeat(65) } }, 'ERR_MESSAGE'],
    [{ t: 'info', info: { lock: 'a', fw: '1', key: new Uint8Array(31) } }, 'ERR_MESSAGE'],
  ];
  for (const [m, code] of cases) assert.equal(codeOf(() => encodeMessage(m)), code, JSON.stringify(m));
  // Unknown type, extra field, missing field, two payloads, not a map, oversized.
  const raw = (v: Parameters<typeof encode>[0]): Uint8Array => encode(v);
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'bye' }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'hello', v: 1, gw: 'g', window: 1, x: 1 }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'hello', v: 1, gw: 'g' }))), 'ERR_MESSAGE');
  // Versions: 1 and 2 are spoken; any other is refused before the other fields are read.
  assert.equal(decodeMessage(raw({ t: 'hello', v: 2, gw: 'g', window: 1 })).t, 'hello');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'hello', v: 3, gw: 'g', window: 1 }))), 'ERR_PROTOCOL_VERSION');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'info', v: 3, lock: 'a', other: 'field' }))), 'ERR_PROTOCOL_VERSION');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'info', v: 0, lock: 'a', fw: 'x' }))), 'ERR_PROTOCOL_VERSION');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'ack', ev: new Uint8Array(31), lock: 'a', ctr: 1, entry: new Uint8Array(32) }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'refuse', code: 'ERR_X', retry: false, versions: [] }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'refuse', code: 'ERR_X', retry: false, versions: [2, 1] }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'event', oldest: 1, event, cose: event }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw([1]))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'nack', lock: 'a', ctr: 1, code: 'ERR_X', retry: 1 }))), 'ERR_MESSAGE');
  assert.equal(codeOf(() => decodeMessage(new Uint8Array(MESSAGE_MAX_BYTES + 1))), 'ERR_ENCODING_TOO_LARGE');
  assert.equal(codeOf(() => decodeMessage(raw({ t: 'info', v: 1, lock: 'a', fw: 'x', key: new Uint8Array(600) }))), 'ERR_ENCODING_TOO_LARGE');
});

void test('advertisement manufacturer data', () => {
  assert.deepEqual(parseAdvertisement(encodeAdvertisement(true)), { pending: true });
  assert.deepEqual(parseAdvertisement(encodeAdvertisement(false)), { pending: false });
  assert.deepEqual([...encodeAdvertisement(true)], [0xff, 0xff, 0x4f, 0x54, 0x01]);
  for (const bad of [undefined, new Uint8Array(0), Uint8Array.of(0xff, 0xff, 0x4f, 0x54), Uint8Array.of(0x4c, 0x00, 0x4f, 0x54, 1), Uint8Array.of(0xff, 0xff, 0x4f, 0x55, 1), Uint8Array.of(0xff, 0xff, 0x4f, 0x54, 1, 0)]) {
    assert.equal(parseAdvertisement(bad), undefined);
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 8 }), (b) => void parseAdvertisement(b)));
});

const okBodies = (rs: readonly FrameResult[]): Uint8Array[] => rs.flatMap((r) => (r.ok ? [Uint8Array.from(r.body)] : []));

/** Cuts `b` at random points (given as fractions) and feeds the pieces in order. */
function feed(d: FrameDecoder, b: Uint8Array, cuts: readonly number[]): FrameResult[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * b.length)))].sort((x, y) => x - y);
  const out: FrameResult[] = [];
  let p = 0;
  for (const q of [...points, b.length]) {
    out.push(...d.push(b.subarray(p, q)));
    p = q;
  }
  return out;
}

void test('CRC-32 is the IEEE/zlib one (check value of "123456789")', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

void test('COBS frames round-trip under any chunking, delimiter never inside a frame', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 700 }), { minLength: 1, maxLength: 6 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }), fc.boolean(), (bodies, cuts, lead) => {
      const frames = bodies.map((b) => encodeFrame(b, lead));
      for (const f of frames) assert.equal(f.subarray(lead ? 1 : 0, f.length - 1).indexOf(0), -1);
      const d = new FrameDecoder(700);
      assert.deepEqual(okBodies(feed(d, Buffer.concat(frames), cuts)), bodies.map((b) => Uint8Array.from(b)));
      assert.equal(d.buffered, 0);
    }),
  );
});

void test('the frame decoder recovers every intact frame after garbage', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 1, maxLength: 300 })), { minLength: 1, maxLength: 6 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      (parts, cuts) => {
        // Garbage, then a delimiter (as a sender's lead byte) and a frame: the frame must come out.
        const stream = Buffer.concat(parts.flatMap(([garbage, body]) => [garbage, encodeFrame(body, true)]));
        const d = new FrameDecoder(300);
        const rs = feed(d, stream, cuts);
        const got = okBodies(rs).map((b) => Buffer.from(b).toString('hex'));
        for (const [, body] of parts) assert.ok(got.includes(Buffer.from(body).toString('hex')));
        for (const r of rs) if (!r.ok) assert.ok(['ERR_FRAME_CRC', 'ERR_FRAME_MALFORMED', 'ERR_FRAME_TOO_LARGE'].includes(r.code));
      },
    ),
  );
});

void test('frame rejections: CRC, malformed, too large (once, then resync), empty frames ignored', () => {
  const d = new FrameDecoder(16);
  const good = encodeFrame(Uint8Array.of(1, 2, 3));
  const bad = Uint8Array.from(good);
  bad[2] = (bad[2] as number) ^ 0x10;
  const codes = (b: Uint8Array): string[] => d.push(b).map((r) => (r.ok ? 'ok' : r.code));
  assert.deepEqual(codes(bad), ['ERR_FRAME_CRC']);
  assert.deepEqual(codes(Uint8Array.of(0, 0, 0)), []);
  assert.deepEqual(codes(Uint8Array.of(0x05, 1, 0)), ['ERR_FRAME_MALFORMED']); // group runs past the end
  assert.deepEqual(codes(Uint8Array.of(0x03, 1, 2, 0)), ['ERR_FRAME_MALFORMED']); // too short for a CRC
  const big = encodeFrame(new Uint8Array(100).fill(7));
  assert.deepEqual(codes(big.subarray(0, 50)), ['ERR_FRAME_TOO_LARGE']);
  assert.ok(d.buffered <= 16 + 4 + 1 + 1);
  assert.deepEqual(codes(big.subarray(50)), []);
  assert.deepEqual(codes(good), ['ok']);
  assert.deepEqual(codes(big), ['ERR_FRAME_TOO_LARGE']);
  assert.deepEqual(codes(Buffer.concat([big.subarray(0, 10), Uint8Array.of(0), good])), ['ERR_FRAME_MALFORMED', 'ok']); // truncated, then resync
  d.push(good.subarray(0, 3));
  d.reset();
  assert.equal(d.buffered, 0);
  assert.deepEqual(codes(good), ['ok']);
});

const MTUS = [23, 27, 185, 247, 517];

void test('fragments reassemble at MTUs 23, 27, 185, 247, 517 and random ones', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: MESSAGE_MAX_BYTES }), fc.oneof(fc.constantFrom(...MTUS), fc.integer({ min: 7, max: 600 })), (msg, mtu) => {
      const fs = fragment(msg, mtu - 3);
      const r = new Reassembler(MESSAGE_MAX_BYTES);
      for (const [i, f] of fs.entries()) {
        assert.ok(f.length <= mtu - 3);
        const res = r.push(f);
        if (i < fs.length - 1) assert.equal(res, undefined);
        else assert.deepEqual(res, { ok: true, message: Uint8Array.from(msg) });
      }
      assert.equal(r.buffered, 0);
    }),
    { numRuns: 200 },
  );
});

void test('fragment rejections', () => {
  const msg = Uint8Array.from({ length: 100 }, (_, i) => i + 1);
  const fs = fragment(msg, 20);
  const r = new Reassembler(200);
  const code = (f: Uint8Array): string | undefined => {
    const x = r.push(f);
    return x === undefined ? undefined : x.ok ? 'ok' : x.code;
  };
  const [f0, f1, f2] = fs as [Uint8Array, Uint8Array, Uint8Array];
  assert.equal(code(new Uint8Array(0)), 'ERR_FRAGMENT');
  assert.equal(code(f1), 'ERR_FRAGMENT'); // no start
  code(f0);
  assert.equal(code(f2), 'ERR_FRAGMENT'); // wrong seq
  code(f0);
  assert.equal(code(f0), 'ERR_FRAGMENT'); // FIRST while in progress: partial dropped...
  for (const f of fs.slice(1)) code(f);
  assert.equal(r.buffered, 0); // ...and the new message completed
  assert.equal(code(Uint8Array.of(0xc0, 0, 0, 1)), 'ERR_FRAGMENT'); // length 0
  assert.equal(code(Uint8Array.of(0xc0, 0, 201, 1)), 'ERR_FRAGMENT'); // beyond maxMessage
  assert.equal(code(Uint8Array.of(0xc0, 0, 2, 1)), 'ERR_FRAGMENT'); // LAST but short
  assert.equal(code(Uint8Array.of(0xc0, 0, 1, 1, 2)), 'ERR_FRAGMENT'); // more than announced
  assert.equal(code(Uint8Array.of(0x80, 0, 1, 1)), 'ERR_FRAGMENT'); // complete but not LAST
  assert.equal(code(Uint8Array.of(0xc1, 0, 1, 1)), 'ERR_FRAGMENT'); // first with seq 1
  code(f0);
  assert.equal(code(Uint8Array.of(0x01)), 'ERR_FRAGMENT'); // no bytes
  code(f0);
  assert.equal(code(Uint8Array.of(0x41, ...new Uint8Array(100))), 'ERR_FRAGMENT'); // overflow
  assert.equal(code(Uint8Array.of(0xc0, 0, 1, 9)), 'ok');
  assert.equal(codeOf(() => fragment(msg, 3)), 'ERR_ARGUMENT');
  assert.equal(codeOf(() => fragment(new Uint8Array(0), 20)), 'ERR_ARGUMENT');
});

void test('the generator reproduces test/vectors/lock-protocol.json byte for byte, and the vectors decode', async () => {
  const committed = await readFile(LOCK_VECTORS_URL, 'utf8');
  assert.equal(lockVectorsJson(makeLockVectors()), committed, 'run `node dist/test/support/make-lock-vectors.js --write` and review the diff');
  const v = JSON.parse(committed) as {
    messages: Record<string, string>;
    serialFrame: { body: string; frame: string };
    fragmentsMtu23: { message: string; fragments: string[] };
    invalid: { messages: { input: string; error: string }[]; frames: { input: string; error: string }[]; fragments: { fragments: string[]; error: string }[] };
    refusals: Record<string, { answer: string; code?: string; retry?: boolean; ev?: string; message?: string; decoderError?: string }>;
  };
  const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
  for (const [name, m] of Object.entries(v.messages)) assert.equal(decodeMessage(h(m)).t, name.replace(/[A-Z].*$/, ''));
  assert.deepEqual(okBodies(new FrameDecoder(MESSAGE_MAX_BYTES).push(h(v.serialFrame.frame))), [h(v.serialFrame.body)]);
  const ra = new Reassembler(MESSAGE_MAX_BYTES);
  assert.deepEqual(v.fragmentsMtu23.fragments.map((f) => ra.push(h(f))).at(-1), { ok: true, message: h(v.fragmentsMtu23.message) });
  for (const c of v.invalid.messages) assert.equal(codeOf(() => decodeMessage(h(c.input))), c.error);
  // Refusals: each answer decodes to its code and retry, and a nack's ev is SHA-256 of the payload answered.
  for (const [name, r] of Object.entries(v.refusals)) {
    const m = decodeGatewayMessage(h(r.answer));
    if (m.t === 'ack') {
      assert.deepEqual(m.ev, h(r.ev!), name);
      continue;
    }
    assert.ok(m.t === 'nack' || m.t === 'refuse', name);
    assert.deepEqual([m.code, m.retry], [r.code, r.retry], name);
    if (m.t === 'nack') assert.deepEqual(m.ev, h(r.ev!), name);
  }
  // Events refused for good (eventInvalid, and the payloads outside the CBOR profile): the strict
  // decoder's code, a lock and counter the lenient reading still finds, and ev over the payload.
  const never = Object.entries(v.refusals).filter(([, r]) => r.message !== undefined);
  assert.ok(never.length >= 6);
  for (const [name, bad] of never) {
    assert.equal(codeOf(() => decodeMessage(h(bad.message!))), bad.decoderError, name);
    assert.equal(readUnacceptableEvent(h(bad.message!), undefined)?.lock, 'front-door', name);
    const cose = (decode(h(bad.message!), MESSAGE_MAX_BYTES) as Record<string, Uint8Array>)['cose']!;
    assert.deepEqual(Uint8Array.from(sha256(cose)), h(bad.ev!), name);
  }
  for (const c of v.invalid.frames) assert.deepEqual(new FrameDecoder(MESSAGE_MAX_BYTES).push(h(c.input)).map((r) => (r.ok ? 'ok' : r.code)), [c.error]);
  for (const c of v.invalid.fragments) {
    const r = new Reassembler(MESSAGE_MAX_BYTES);
    const last = c.fragments.map((f) => r.push(h(f))).at(-1);
    assert.equal(last?.ok === false ? last.code : 'accepted', c.error);
  }
});
