/** Base45 (RFC 9285) against the RFC's examples and as a round trip; terminal QR rendering bounds. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { base45, fromBase45, terminalQr } from '../../provisioning/qr.js';
import { isOtiError } from '../../ledger/base/errors.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

void test('Base45 encodes the examples of RFC 9285 §4.3 and decodes them back', () => {
  const examples: [string, string][] = [
    ['AB', 'BB8'],
    ['Hello!!', '%69 VD92EX0'],
    ['base-45', 'UJCLQE7W581'],
  ];
  for (const [plain, encoded] of examples) {
    assert.equal(base45(utf8(plain)), encoded);
    assert.deepEqual(fromBase45(encoded), utf8(plain));
  }
  // §4.4: "QED8WEX0" decodes to "ietf!".
  assert.deepEqual(fromBase45('QED8WEX0'), utf8('ietf!'));
});

void test('Base45 round-trips any bytes and refuses what is not Base45', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => assert.deepEqual(fromBase45(base45(b)), b)));
  for (const bad of ['A', 'ab', 'GGW', '::', 'BB8 A']) {
    assert.throws(() => fromBase45(bad), (e) => isOtiError(e, 'ERR_ARGUMENT'), bad);
  }
});

void test('the terminal QR code is square, within the width, and absent when it cannot fit', () => {
  const data = new Uint8Array(600).map((_, i) => (i * 37) & 0xff);
  const qr = terminalQr(data, 200);
  assert.ok(qr !== undefined);
  const lines = qr.split('\n');
  const width = [...(lines[0] as string)].length;
  assert.ok(width <= 200);
  assert.ok(lines.every((l) => [...l].length === width));
  // Two module rows per line: about half as many lines as columns.
  assert.equal(lines.length, Math.ceil(width / 2));
  assert.equal(terminalQr(data, 40), undefined, 'too narrow');
  assert.equal(terminalQr(new Uint8Array(4000), 1000), undefined, 'more than a QR code holds');
});
