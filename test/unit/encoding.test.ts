import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode as cborgEncode, decode as cborgDecode, rfc8949EncodeOptions } from 'cborg';
import { encode, decode, decodeViews, fastEncode, MAX_DEPTH, type CborValue } from '../../ledger/base/cbor.js';
import { encodeEntry, decodeEntry, decodeLockPayload, fastLockPayload } from '../../ledger/entry.js';
import { parseCoseSign1 } from '../../ledger/cose.js';
import { makeSite, enrollLock, signedEvent } from '../support/site.js';
import { decodeLockEvent, encodeLockEvent } from '../../ledger/lockevent.js';
import { codeOf } from '../support/codes.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

const cborValue: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.maxSafeInteger(),
    fc.integer({ min: -1000, max: 1000 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__'), tie('v'), { maxKeys: 5, noNullPrototype: true }),
  ),
})).v;


/** The reference: cborg strict decode, then cborg's own RFC 8949 encoding must give back the input. */
function referenceAccepts(b: Uint8Array): boolean {
  let v: unknown;
  try {
    v = cborgDecode(b, { strict: true, allowIndefinite: false, allowUndefined: false, allowInfinity: false, allowNaN: false, allowBigInt: false, rejectDuplicateMapKeys: true, tags: [] });
  } catch {
    return false;
  }
  const plain = (x: unknown, depth: number): boolean => {
    if (depth > MAX_DEPTH) return false;
    if (typeof x === 'number') return Number.isSafeInteger(x);
    if (typeof x === 'string' || typeof x === 'boolean' || x === null || x instanceof Uint8Array) return true;
    if (Array.isArray(x)) return x.every((y) => plain(y, depth + 1));
    if (typeof x === 'object') return Object.values(x as object).every((y) => plain(y, depth + 1));
    return false;
  };
  if (!plain(v, 0)) return false;
  return Buffer.from(cborgEncode(v, { ...rfc8949EncodeOptions, float64: false })).equals(b);
}

void test('values round-trip through deterministic CBOR', () => {
  fc.assert(
    fc.property(cborValue, (v) => {
      const b = encode(v);
      assert.deepEqual(decode(b, 1 << 20), v);
      assert.deepEqual(encode(decode(b, 1 << 20)), b);
    }),
    { numRuns: 2000 },
  );
});

void test('the deterministic check agrees with cborg on random and mutated input (differential fuzz)', () => {
  let accepted = 0;
  fc.assert(
    fc.property(cborValue, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 0, maxLength: 3 }), fc.boolean(), (v, edits, truncate) => {
      const b = new Uint8Array(encode(v));
      for (const [pos, byte] of edits) if (b.length > 0) b[pos % b.length] = byte;
      const input = truncate && b.length > 1 ? b.subarray(0, b.length - 1) : b;
      const ours = codeOf(() => decode(input, 1 << 20));
      assert.equal(ours === undefined, referenceAccepts(input), `disagreement on ${Buffer.from(input).toString('hex')} (ours: ${ours ?? 'accepted'})`);
      if (ours === undefined) accepted++;
    }),
    { numRuns: 30000 },
  );
  assert.ok(accepted > 1000, 'the fuzz run should also reach accepted inputs');
});

void test('decodeViews gives what decode gives, byte strings as views into the input, and refuses the same inputs with the same codes', () => {
  /** Whether every byte string in `v` lies inside `input`'s memory. */
  const inside = (v: unknown, input: Uint8Array): boolean => {
    if (v instanceof Uint8Array) return v.buffer === input.buffer && v.byteOffset >= input.byteOffset && v.byteOffset + v.length <= input.byteOffset + input.length;
    if (Array.isArray(v)) return v.every((x) => inside(x, input));
    if (v !== null && typeof v === 'object') return Object.values(v).every((x) => inside(x, input));
    return true;
  };
  fc.assert(
    fc.property(cborValue, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 0, maxLength: 2 }), (v, edits) => {
      // Inside a larger buffer, so that a view's offsets are tested too.
      const enc = encode(v);
      const outer = new Uint8Array(enc.length + 6);
      outer.set(enc, 3);
      const input = outer.subarray(3, 3 + enc.length);
      for (const [pos, byte] of edits) if (input.length > 0) input[pos % input.length] = byte;
      const expected = codeOf(() => decode(input, 1 << 20));
      assert.equal(codeOf(() => decodeViews(input, 1 << 20)), expected);
      if (expected !== undefined) return;
      const views = decodeViews(input, 1 << 20);
      assert.deepEqual(views, decode(input, 1 << 20));
      assert.ok(inside(views, input), 'byte strings are views into the input');
    }),
    { numRuns: 10000 },
  );
  assert.equal(codeOf(() => decodeViews(new Uint8Array(8), 4)), 'ERR_ENCODING_TOO_LARGE');
});

void test('random bytes never throw anything but a coded error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const code = codeOf(() => decode(b, 1024));
      if (code !== undefined) assert.match(code, /^ERR_(ENCODING|ARGUMENT)/);
    }),
    { numRuns: 30000 },
  );
});

void test('each non-deterministic or unsupported form has its code', () => {
  const cases: [string, string][] = [
    ['1817', 'ERR_ENCODING_NONCANONICAL'], // 23 in two bytes
    ['190017', 'ERR_ENCODING_NONCANONICAL'],
    ['9f01ff', 'ERR_ENCODING_NONCANONICAL'], // indefinite array
    ['a2616201616101', 'ERR_ENCODING_NONCANONICAL'], // keys b, a: unsorted
    ['a2616101616102', 'ERR_ENCODING_NONCANONICAL'], // duplicate key
    ['f93c00', 'ERR_ENCODING_NONCANONICAL'], // float16 1.0
    ['fb3ff0000000000000', 'ERR_ENCODING_NONCANONICAL'], // float64 1.0
    ['c100', 'ERR_ENCODING_NONCANONICAL'], // tag 1
    ['f7', 'ERR_ENCODING_NONCANONICAL'], // undefined
    ['1b0020000000000000', 'ERR_ENCODING_NONCANONICAL'], // 2^53
    ['62c328', 'ERR_ENCODING_NONCANONICAL'], // invalid UTF-8
    ['0101', 'ERR_ENCODING_TRAILING_BYTES'],
    ['5a00010000', 'ERR_ENCODING_MALFORMED'], // bytes longer than the input
    ['9bffffffffffffffff', 'ERR_ENCODING_NONCANONICAL'], // array claiming 2^64-1 items
    ['1c', 'ERR_ENCODING_MALFORMED'], // reserved
    ['a10101', 'ERR_ENCODING_NONCANONICAL'], // integer map key
    ['a1695f5f70726f746f5f5fa0', 'ERR_ENCODING_NONCANONICAL'], // {"__proto__": {}}
    ['', 'ERR_ENCODING_MALFORMED'],
  ];
  for (const [h, code] of cases) assert.equal(codeOf(() => decode(hex(h), 1024)), code, h);
  assert.equal(codeOf(() => decode(new Uint8Array(2000), 1024)), 'ERR_ENCODING_TOO_LARGE');
  assert.equal(codeOf(() => decode(hex('81'.repeat(MAX_DEPTH + 1) + '00'), 1024)), 'ERR_ENCODING_TOO_LARGE');
  assert.deepEqual(decode(hex('81'.repeat(MAX_DEPTH) + '00'), 1024), JSON.parse('['.repeat(MAX_DEPTH) + '0' + ']'.repeat(MAX_DEPTH)));
  // A hostile 100k-deep nest is refused quickly, not by stack exhaustion.
  assert.equal(codeOf(() => decode(new Uint8Array(100_000).fill(0x81), 1 << 20)), 'ERR_ENCODING_TOO_LARGE');
});

void test('the fast encoders produce exactly what the generic encoder does', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 30 }), fc.string(), fc.maxSafeNat(), (arr, s, n) => {
      assert.deepEqual(Buffer.from(fastEncode.bytesArray(arr)), Buffer.from(encode(arr)));
      assert.deepEqual(Buffer.from(fastEncode.text(s)), Buffer.from(encode(s)));
      assert.deepEqual(Buffer.from(fastEncode.uint(n)), Buffer.from(encode(n)));
    }),
  );
  const site = makeSite();
  const lock = enrollLock(site, 'door', { unsigned: true });
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.boolean(), (time, signed) => {
      const input = signed
        ? { kind: 'lock-event' as const, time, cose: signedEvent(lock) }
        : { kind: 'lock-event' as const, time, unsignedEvent: encodeLockEvent({ lock: 'door', ctr: ++lock.ctr, time: 5, type: 'jammed' }) };
      const { bytes } = encodeEntry(input, 0);
      const body: { [k: string]: CborValue } = signed ? { prov: 'lock-signed', cose: (input as { cose: Uint8Array }).cose } : { prov: 'unsigned', event: (input as { unsignedEvent: Uint8Array }).unsignedEvent };
      assert.deepEqual(Buffer.from(bytes), Buffer.from(encode({ v: 1, kind: 'lock-event', time, body })));
      decodeEntry(bytes);
    }),
    { numRuns: 300 },
  );
});

void test('a lock payload decodes to the same event whether it is read fast or strictly, and keeps its bytes', () => {
  const site = makeSite();
  const lock = enrollLock(site, 'door', { unsigned: true });
  fc.assert(
    fc.property(fc.boolean(), fc.boolean(), fc.nat(3), (signed, withCred, at) => {
      const extra = withCred ? {} : { cred: undefined };
      const b = signed ? signedEvent(lock, 'unlocked', extra) : encodeLockEvent({ lock: 'door', ctr: ++lock.ctr, time: 5, type: 'jammed', ...(withCred ? { cred: Uint8Array.of(9) } : {}) });
      const d = decodeLockPayload(b, signed);
      assert.equal(d.bytes, b);
      const strictEvent = decodeLockEvent(signed ? parseCoseSign1(b).payload : b);
      assert.deepEqual({ ...d.event }, { ...strictEvent });
      if (signed) assert.deepEqual(Buffer.from(d.parsed!.signature), Buffer.from(parseCoseSign1(b).signature));
      else assert.equal(d.parsed, undefined);
      // Inside a larger buffer (as in a received frame), the fast reader gives a view of the payload.
      const frame = new Uint8Array(at + b.length + 2);
      frame.set(b, at);
      const f = fastLockPayload(frame, at, at + b.length, signed)!;
      assert.deepEqual(Buffer.from(f.bytes), Buffer.from(b));
      assert.deepEqual({ ...f.event, cred: f.event.cred && Buffer.from(f.event.cred) }, { ...strictEvent, cred: strictEvent.cred && Buffer.from(strictEvent.cred) });
    }),
    { numRuns: 200 },
  );
  assert.equal(codeOf(() => decodeLockPayload(Uint8Array.of(0xa0), true)), 'ERR_ENCODING_SCHEMA');
});
