import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as ed from '@noble/ed25519';
import fc from 'fast-check';
import { ED25519_VERIFIER, passesEncodingChecks, SMALL_ORDER_ENCODINGS, verifyEd25519, verifyWithOpenssl, verifyWithSodium } from '../../ledger/ed25519.js';
import { Signer, verify } from '../../ledger/crypto.js';
import { L, le, nobleDefault, opensslAlone, ruleVectorsJson, torsionPoints, type RuleVector } from '../support/make-ed25519-vectors.js';

ed.hashes.sha512 = (m: Uint8Array) => new Uint8Array(createHash('sha512').update(m).digest());

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const RULE_TEXT = readFileSync(new URL('../../../test/vectors/ed25519-rule.json', import.meta.url), 'utf8');
const RULE = (JSON.parse(RULE_TEXT) as { vectors: RuleVector[] }).vectors;
const RFC8032 = (JSON.parse(readFileSync(new URL('../../../test/vectors/rfc8032.json', import.meta.url), 'utf8')) as { vectors: { name: string; publicKey: string; message: string; signature: string }[] }).vectors;

/** Both implementations of the rule on this machine (libsodium only where its addon loads). */
const IMPLEMENTATIONS: [string, (k: Uint8Array, m: Uint8Array, s: Uint8Array) => boolean][] = [['node:crypto', verifyWithOpenssl], ...(verifyWithSodium === undefined ? [] : [['libsodium', verifyWithSodium] as [string, typeof verifyWithOpenssl]])];

void test('libsodium is the verifier on the machines sodium-native ships an addon for', () => {
  if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
    assert.equal(ED25519_VERIFIER.name, 'libsodium', `sodium-native did not load: ${ED25519_VERIFIER.sodiumUnavailable}`);
    assert.equal(verifyEd25519, verifyWithSodium);
  } else {
    assert.ok(ED25519_VERIFIER.name === 'libsodium' || ED25519_VERIFIER.sodiumUnavailable !== undefined);
  }
});

void test('test/vectors/ed25519-rule.json is what the generator makes', () => {
  assert.equal(ruleVectorsJson(), RULE_TEXT, 'run `node dist/test/support/make-ed25519-vectors.js --write` and review the diff');
  assert.ok(RULE.some((v) => !v.valid && v.openssl), 'some vectors are accepted by OpenSSL alone and refused by the rule');
  assert.ok(RULE.some((v) => !v.valid && !v.openssl && v.noble), 'some vectors are accepted only by a cofactored verifier');
});

for (const v of RULE) {
  void test(`rule vector "${v.name}": every implementation of the rule says ${v.valid ? 'valid' : 'invalid'}`, () => {
    const [k, m, s] = [hex(v.publicKey), hex(v.message), hex(v.signature)];
    for (const [name, f] of IMPLEMENTATIONS) assert.equal(f(k, m, s), v.valid, name);
    assert.equal(verify(k, m, s), v.valid, 'crypto.verify');
    // What the libraries say on their own is recorded in the file; a change there shows up here.
    assert.equal(opensslAlone(k, m, s), v.openssl, 'OpenSSL without the encoding checks');
    assert.equal(nobleDefault(k, m, s), v.noble, '@noble/ed25519 defaults');
  });
}

for (const v of RFC8032) {
  void test(`RFC 8032 ${v.name} verifies on both implementations`, () => {
    for (const [name, f] of IMPLEMENTATIONS) {
      assert.equal(f(hex(v.publicKey), hex(v.message), hex(v.signature)), true, name);
      const bad = hex(v.signature);
      bad[0]! ^= 1;
      assert.equal(f(hex(v.publicKey), hex(v.message), bad), false, name);
    }
  });
}

void test('the small-order encodings are exactly those of the eight points of small order', () => {
  const P = 2n ** 255n - 19n;
  const expected = new Set<string>();
  const points = torsionPoints();
  assert.equal(new Set(points.map((p) => p.toHex())).size, 8);
  for (const p of points) {
    const b = p.toBytes();
    b[31]! &= 0x7f;
    expected.add(Buffer.from(b).toString('hex'));
    const y = p.y;
    if (y + P < 2n ** 255n) expected.add(Buffer.from(le(y + P)).toString('hex'));
  }
  assert.deepEqual(new Set(SMALL_ORDER_ENCODINGS.map((e) => Buffer.from(e).toString('hex'))), expected);
});

void test('encoding checks: S below L, keys with y below p, neither of small order whatever the sign bit', () => {
  const honest = new Signer(new Uint8Array(32).fill(7));
  const key = honest.publicKey;
  const withS = (s: bigint): Uint8Array => new Uint8Array([...new Uint8Array(32).fill(0x42), ...le(s)]);
  assert.equal(passesEncodingChecks(key, withS(L - 1n)), true);
  assert.equal(passesEncodingChecks(key, withS(L)), false);
  assert.equal(passesEncodingChecks(key, withS(2n ** 256n - 1n)), false);
  const P = 2n ** 255n - 19n;
  assert.equal(passesEncodingChecks(le(P - 2n), withS(1n)), true, 'y = p - 2 is canonical (whether or not it is a point)');
  for (const y of [P + 2n, P + 18n]) assert.equal(passesEncodingChecks(le(y), withS(1n)), false, `y = p + ${y - P}`);
  for (const e of SMALL_ORDER_ENCODINGS) {
    for (const sign of [0, 0x80]) {
      const b = new Uint8Array(e);
      b[31]! |= sign;
      assert.equal(passesEncodingChecks(b, withS(1n)), false, 'key of small order');
      assert.equal(passesEncodingChecks(key, new Uint8Array([...b, ...le(1n)])), false, 'R of small order');
    }
  }
});

void test('property: both implementations agree on honest signatures and on any one-bit change', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.constantFrom('none', 'key', 'signature', 'message'), (seed, message, bit, where) => {
      const signer = new Signer(seed);
      const k = new Uint8Array(signer.publicKey);
      const s = signer.sign(message);
      const m = new Uint8Array(message);
      const flip = (b: Uint8Array): void => {
        if (b.length > 0) b[(bit >> 3) % b.length]! ^= 1 << (bit & 7);
      };
      if (where === 'key') flip(k);
      if (where === 'signature') flip(s);
      if (where === 'message') flip(m);
      const verdicts = IMPLEMENTATIONS.map(([, f]) => f(k, m, s));
      assert.ok(verdicts.every((x) => x === verdicts[0]), `implementations disagree: ${verdicts.join(', ')}`);
      assert.equal(verdicts[0], where === 'none' || (where === 'message' && m.length === 0));
    }),
    { numRuns: 300 },
  );
});

void test('the raw verifiers say false for a key or signature of the wrong length', () => {
  const v = RULE[0]!;
  const [k, m, s] = [hex(v.publicKey), hex(v.message), hex(v.signature)];
  for (const [name, f] of IMPLEMENTATIONS) {
    assert.equal(f(k, m, s), true, name);
    assert.equal(f(new Uint8Array([...k, 0]), m, s), false, `${name}: 33-byte key`);
    assert.equal(f(k.subarray(0, 31), m, s), false, `${name}: 31-byte key`);
    assert.equal(f(k, m, new Uint8Array([...s, 0])), false, `${name}: 65-byte signature`);
    assert.equal(f(k, m, s.subarray(0, 63)), false, `${name}: 63-byte signature`);
  }
});
