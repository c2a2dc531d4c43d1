/**
 * The lenient reading of refused event payloads (drivers/lenient.ts, docs/PROTOCOL.md §Messages):
 * correctly signed events outside the CBOR profile still name their lock and counter, so the
 * gateway answers them ERR_EVENT_INVALID; what is not well-formed, ambiguous or out of bounds is
 * not named. Random and mutated payloads are in test/unit/fuzz-drivers.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { keyPairFromSeed, Signer } from '../../ledger/crypto.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { coseSign1 } from '../../ledger/cose.js';
import { decodeMessage, layoutEventMessage, MESSAGE_MAX_BYTES, readUnacceptableEvent } from '../../drivers/protocol.js';
import { LENIENT_MAX_DEPTH, nameLeniently } from '../../drivers/lenient.js';
import { nonProfileEvents, wideHead } from '../support/nonprofile.js';

const signer = new Signer(keyPairFromSeed(new Uint8Array(32).fill(3)).seed);
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

void test('events outside the CBOR profile still name their lock and counter, and are answered as never acceptable', () => {
  for (const e of nonProfileEvents(signer, 'front-door', 62)) {
    const message = layoutEventMessage(e.cose, true, 62);
    let error: unknown;
    assert.throws(() => decodeMessage(message), (x: unknown) => {
      error = x;
      return isOtiError(x) && x.code.startsWith('ERR_ENCODING_');
    }, e.name);
    const u = readUnacceptableEvent(message, error);
    assert.ok(u !== undefined, `${e.name}: named`);
    assert.deepEqual([u.lock, u.ctr, u.oldest, u.code], ['front-door', 62, 62, (error as { code: string }).code], e.name);
    assert.deepEqual(u.payload, { cose: e.cose });
    // Unsigned, the bare event reads the same.
    assert.deepEqual(nameLeniently(e.event, false, MESSAGE_MAX_BYTES), { lock: 'front-door', ctr: 62 }, e.name);
    // A counter below `oldest` names no event the lock holds: not answered.
    assert.equal(readUnacceptableEvent(layoutEventMessage(e.cose, true, 63), error), undefined);
  }
});

void test('every payload the strict decoder accepts is named the same by the lenient reading', () => {
  const id = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,63}$/);
  fc.assert(
    fc.property(id, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }).filter((x) => !JSON.stringify(x).includes('.')), { maxKeys: 4 }), { nil: undefined }), (lock, ctr, ext) => {
      let event: Uint8Array;
      try {
        event = encodeLockEvent({ lock, ctr, time: 1, type: 'locked', ...(ext === undefined ? {} : { ext: ext as never }) });
      } catch {
        return; // an ext the profile cannot carry (a float, "__proto__", too large)
      }
      assert.deepEqual(nameLeniently(event, false, MESSAGE_MAX_BYTES), { lock, ctr });
      assert.deepEqual(nameLeniently(coseSign1(signer, event), true, MESSAGE_MAX_BYTES), { lock, ctr });
    }),
    { numRuns: 300 },
  );
});

void test('well-formed CBOR of every kind is read: indefinite lengths, chunked strings, simple values, tags anywhere', () => {
  // {_ "lock": (_ "fro" "nt"), 1.5: undefined, "ctr": 1(24(0x1b 00..3e)), "x": [_ h'', simple(32)] }
  const event = hex(`bf 64 6c6f636b 7f 63 66726f 62 6e74 ff  f9 3e00 f7  63 637472 c1 d8 18 1b 000000000000003e  61 78 9f 40 f8 20 ff ff`);
  assert.deepEqual(nameLeniently(event, false, MESSAGE_MAX_BYTES), { lock: 'front', ctr: 62 });
  // A COSE_Sign1 as an indefinite array, tagged twice, whose payload is a chunked byte string.
  const cose = Uint8Array.from([0xd2, 0xd8, 0x62, 0x9f, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x5f, 0x58, 0x10, ...event.subarray(0, 16), 0x58, event.length - 16, ...event.subarray(16), 0xff, 0x40, 0xff]);
  assert.deepEqual(nameLeniently(cose, true, MESSAGE_MAX_BYTES), { lock: 'front', ctr: 62 });
});

void test('not named: not well-formed, trailing bytes, ambiguous or wrong-typed fields, too deep or too large', () => {
  const named = (b: Uint8Array, signed = false): unknown => nameLeniently(b, signed, MESSAGE_MAX_BYTES);
  const ok = hex('a2 63 637472 01 64 6c6f636b 61 61');
  assert.deepEqual(named(ok), { lock: 'a', ctr: 1 });
  for (const [why, b] of [
    ['empty', new Uint8Array(0)],
    ['trailing byte', Uint8Array.from([...ok, 0x00])],
    ['cut short', ok.subarray(0, ok.length - 1)],
    ['reserved additional information', hex('a2 63 637472 1c 64 6c6f636b 61 61')],
    ['a stray break', hex('a2 63 637472 ff 64 6c6f636b 61 61')],
    ['an indefinite map with an odd number of items', hex('bf 63 637472 01 64 6c6f636b ff')],
    ['a chunk of another type in an indefinite text', hex('a2 63 637472 01 64 6c6f636b 7f 41 61 ff')],
    ['a two-byte simple value below 32', hex('a3 63 637472 01 64 6c6f636b 61 61 61 78 f8 10')],
    ['a length beyond the input', hex('a2 63 637472 01 64 6c6f636b 7b 00000000ffffffff')],
    ['ctr twice', hex('a3 63 637472 01 63 637472 02 64 6c6f636b 61 61')],
    ['ctr 0', hex('a2 63 637472 00 64 6c6f636b 61 61')],
    ['ctr negative', hex('a2 63 637472 20 64 6c6f636b 61 61')],
    ['ctr 2^53', hex('a2 63 637472 1b 0020000000000000 64 6c6f636b 61 61')],
    ['ctr a float', hex('a2 63 637472 f9 3c00 64 6c6f636b 61 61')],
    ['lock not an id', hex('a2 63 637472 01 64 6c6f636b 61 41')],
    ['lock a byte string', hex('a2 63 637472 01 64 6c6f636b 41 61')],
    ['no lock', hex('a1 63 637472 01')],
    ['not a map', hex('82 01 02')],
  ] as const) {
    assert.equal(named(b), undefined, why);
  }
  // Signed: the COSE_Sign1 must be an array of four whose third element is a byte string.
  assert.equal(named(hex('83 43a10127 a0 40'), true), undefined, 'three elements');
  assert.equal(named(Uint8Array.from([0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x40 + ok.length, ...ok, 0x40]), true) !== undefined, true);
  assert.equal(named(Uint8Array.from([0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x60 + ok.length, ...ok, 0x40]), true), undefined, 'payload as text');
  // Depth: LENIENT_MAX_DEPTH levels are followed, one more is not.
  const nested = (levels: number): Uint8Array => Uint8Array.from([0xa3, ...ok.subarray(1), 0x61, 0x78, ...new Array<number>(levels - 1).fill(0x81), 0x00]);
  assert.deepEqual(named(nested(LENIENT_MAX_DEPTH)), { lock: 'a', ctr: 1 });
  assert.equal(named(nested(LENIENT_MAX_DEPTH + 1)), undefined);
  // Size: the caller's limit holds before anything is read.
  const big = Uint8Array.from([...wideHead(5, 2, 1), ...ok.subarray(1)]);
  assert.deepEqual(nameLeniently(big, false, big.length), { lock: 'a', ctr: 1 });
  assert.equal(nameLeniently(big, false, big.length - 1), undefined);
});
