import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { latin1 } from '../../ledger/entry.js';

void test('bytesEqual compares views at any offset, on both sides of its 64-byte short path', () => {
  for (const n of [0, 1, 31, 32, 63, 64, 65, 100, 1000]) {
    const a = randomBytes(n + 7);
    const b = Buffer.concat([randomBytes(3), a]);
    const x = new Uint8Array(a.buffer, a.byteOffset + 5, n);
    const y = new Uint8Array(b.buffer, b.byteOffset + 8, n);
    assert.equal(bytesEqual(x, y), true, `length ${n}`);
    assert.equal(bytesEqual(x, y.subarray(0, Math.max(0, n - 1))), n === 0, `lengths ${n} and ${n - 1}`);
    for (const at of n === 0 ? [] : [0, n >> 1, n - 1]) {
      const z = Uint8Array.from(y);
      z[at]! ^= 0x40;
      assert.equal(bytesEqual(x, z), false, `length ${n}, differing at ${at}`);
    }
  }
});

void test('latin1 reads the same text as Buffer.latin1Slice, for ids it has seen and ids sharing a slot', () => {
  const ids: Buffer[] = [];
  for (let i = 0; i < 5000; i++) ids.push(Buffer.from(`lock-${i}`, 'latin1'));
  ids.push(Buffer.alloc(0), Buffer.from([0x80, 0xff, 0x00, 0x41]), randomBytes(64), randomBytes(65), randomBytes(200));
  // Twice over, in another order the second time: remembered strings must come back only for the same bytes.
  for (const round of [ids, [...ids].reverse()]) {
    for (const id of round) {
      const framed = Buffer.concat([randomBytes(3), id, randomBytes(2)]);
      assert.equal(latin1(framed, 3, 3 + id.length), id.toString('latin1'));
    }
  }
});
