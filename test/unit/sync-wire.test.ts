/** The sync range message (gateway/sync/wire.ts): its direct encoder against the generic one, and the decoder's views. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode, type CborValue } from '../../ledger/base/cbor.js';
import { decodeRange, encodeRange, type RangeMessage } from '../../gateway/sync/wire.js';

/** The map encode() was given for a range message before it was written directly. */
function generic(r: RangeMessage): Uint8Array {
  const m: { [k: string]: CborValue } = { v: 1, id: r.id, chain: r.chain, first: r.first, entries: [...r.entries], blocks: r.blocks.map((b) => ({ h: b.h, cp: b.cp })), end: r.end };
  if (r.head !== undefined) m['head'] = r.head;
  if (r.root !== undefined) m['root'] = r.root;
  if (r.proof !== undefined) m['proof'] = [...r.proof];
  return encode(m);
}

const hash = fc.uint8Array({ minLength: 32, maxLength: 32 });
const range: fc.Arbitrary<RangeMessage> = fc
  .record({
    id: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 0xffffffff })),
    chain: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }),
    first: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeInteger().map(Math.abs)),
    entries: fc.array(fc.uint8Array({ minLength: 1, maxLength: 400 }), { maxLength: 40 }),
    blocks: fc.array(fc.record({ h: fc.uint8Array({ minLength: 1, maxLength: 300 }), cp: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }) }, { noNullPrototype: true }), { maxLength: 4 }),
    end: fc.boolean(),
    head: fc.option(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }), { nil: undefined }),
    proof: fc.option(fc.tuple(hash, fc.array(hash, { maxLength: 5 })), { nil: undefined }),
  })
  .map(({ proof, head, ...r }) => ({ ...r, ...(head !== undefined ? { head } : {}), ...(proof !== undefined ? { root: proof[0], proof: proof[1] } : {}) }));

void test('a range message written directly is byte for byte what the generic encoder makes of it, and decodes back', () => {
  fc.assert(
    fc.property(range, (r) => {
      const bytes = encodeRange(r);
      assert.deepEqual(Buffer.from(bytes), Buffer.from(generic(r)));
      const back = decodeRange(bytes, 1 << 24);
      assert.deepEqual({ ...back, entries: back.entries.map((e) => Buffer.from(e)) }, { ...r, entries: r.entries.map((e) => Buffer.from(e)) });
    }),
    { numRuns: 500 },
  );
});

void test('a decoded range message\'s entries are views into the message, not copies', () => {
  const r: RangeMessage = { id: 7, chain: 'oti/site-1/gw-a', first: 3, entries: [Uint8Array.of(1, 2, 3), new Uint8Array(300).fill(9)], blocks: [], end: true };
  const bytes = encodeRange(r);
  const m = decodeRange(bytes, 1 << 20);
  assert.deepEqual(m.entries.map((e) => [...e]), r.entries.map((e) => [...e]));
  for (const e of m.entries) assert.equal(e.buffer, bytes.buffer);
});
