import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as ed from '@noble/ed25519';
import fc from 'fast-check';
import {
  fingerprint,
  fromHex,
  generateKeyPair,
  keyPairFromSeed,
  sha256,
  SIGNATURE_CONTEXTS,
  signedMessage,
  Signer,
  toHex,
  verify,
  verifyWithContext,
} from '../../ledger/crypto.js';
import { isOtiError } from '../../ledger/base/errors.js';

// @noble/ed25519 v3 brings no SHA-512; hand it node's.
ed.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash('sha512').update(message).digest());

interface Vector {
  name: string;
  secretKey: string;
  publicKey: string;
  message: string;
  signature: string;
}

// Compiled to dist/test/unit/, so the source tree is three levels up.
const VECTORS = (
  JSON.parse(readFileSync(new URL('../../../test/vectors/rfc8032.json', import.meta.url), 'utf8')) as { vectors: Vector[] }
).vectors;

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const seedArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const messageArb = fc.uint8Array({ minLength: 0, maxLength: 512 });
const nonEmptyMessageArb = fc.uint8Array({ minLength: 1, maxLength: 512 });
const contextArb = fc.constantFrom(...SIGNATURE_CONTEXTS);

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const i = bit % (out.length * 8);
  out[i >> 3] = out[i >> 3]! ^ (1 << (i & 7));
  return out;
}

function assertArgumentError(fn: () => unknown, argument: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isOtiError(e, 'ERR_ARGUMENT'), `expected ERR_ARGUMENT, got ${String(e)}`);
    assert.equal(e.details?.argument, argument);
    assert.ok(e.message.includes(argument), `message should name ${argument}: ${e.message}`);
    return true;
  });
}

void test('RFC 8032 §7.1 vectors are all present', () => {
  assert.deepEqual(
    VECTORS.map((v) => v.name),
    ['TEST 1', 'TEST 2', 'TEST 3', 'TEST 1024', 'TEST SHA(abc)'],
  );
  const byName = new Map(VECTORS.map((v) => [v.name, v]));
  assert.equal(hex(byName.get('TEST 1024')!.message).length, 1023);
  assert.equal(byName.get('TEST SHA(abc)')!.message, createHash('sha512').update('abc').digest('hex'));
});

for (const v of VECTORS) {
  void test(`RFC 8032 ${v.name}: node:crypto Signer and verify`, () => {
    const seed = hex(v.secretKey);
    const message = hex(v.message);
    const signer = new Signer(seed);
    assert.equal(toHex(signer.publicKey), v.publicKey);
    assert.equal(toHex(keyPairFromSeed(seed).publicKey), v.publicKey);
    assert.equal(toHex(signer.sign(message)), v.signature);
    assert.equal(verify(hex(v.publicKey), message, hex(v.signature)), true);
  });

  void test(`RFC 8032 ${v.name}: @noble/ed25519 agrees`, () => {
    const seed = hex(v.secretKey);
    const message = hex(v.message);
    assert.equal(toHex(ed.getPublicKey(seed)), v.publicKey);
    assert.equal(toHex(ed.sign(message, seed)), v.signature);
    assert.equal(ed.verify(hex(v.signature), message, hex(v.publicKey)), true);
    assert.equal(ed.verify(hex(v.signature), message, hex(v.publicKey), { zip215: false }), true);
  });
}

void test('property: node:crypto and @noble/ed25519 agree byte for byte and verify each other', () => {
  fc.assert(
    fc.property(seedArb, messageArb, (seed, message) => {
      const signer = new Signer(seed);
      const nobleKey = ed.getPublicKey(seed);
      assert.deepEqual(signer.publicKey, nobleKey);
      const ours = signer.sign(message);
      const theirs = ed.sign(message, seed);
      assert.deepEqual(ours, theirs);
      assert.equal(verify(nobleKey, message, theirs), true);
      assert.equal(ed.verify(ours, message, signer.publicKey), true);
    }),
  );
});

void test('property: generateKeyPair yields a seed that derives its public key in both implementations', () => {
  for (let i = 0; i < 20; i++) {
    const pair = generateKeyPair();
    assert.equal(pair.seed.length, 32);
    assert.deepEqual(ed.getPublicKey(pair.seed), pair.publicKey);
    assert.deepEqual(keyPairFromSeed(pair.seed).publicKey, pair.publicKey);
  }
});

void test('property: one flipped bit in message, signature or public key -> both reject', () => {
  fc.assert(
    fc.property(seedArb, nonEmptyMessageArb, fc.nat(), fc.constantFrom('message', 'signature', 'publicKey'), (seed, message, bit, where) => {
      const signer = new Signer(seed);
      const signature = signer.sign(message);
      const m = where === 'message' ? flipBit(message, bit) : message;
      const s = where === 'signature' ? flipBit(signature, bit) : signature;
      const k = where === 'publicKey' ? flipBit(signer.publicKey, bit) : signer.publicKey;
      // A bad signature (or a key that does not decode to a point) is false, never a throw.
      assert.equal(verify(k, m, s), false);
      assert.equal(ed.verify(s, m, k), false);
    }),
  );
});

void test('every bit of a fixed signature and key matters (exhaustive flips)', () => {
  const v = VECTORS[1]!;
  const pub = hex(v.publicKey);
  const msg = hex(v.message);
  const sig = hex(v.signature);
  for (let bit = 0; bit < 64 * 8; bit++) {
    assert.equal(verify(pub, msg, flipBit(sig, bit)), false, `signature bit ${bit}`);
    assert.equal(ed.verify(flipBit(sig, bit), msg, pub), false, `noble, signature bit ${bit}`);
  }
  for (let bit = 0; bit < 32 * 8; bit++) {
    assert.equal(verify(flipBit(pub, bit), msg, sig), false, `key bit ${bit}`);
    assert.equal(ed.verify(sig, msg, flipBit(pub, bit)), false, `noble, key bit ${bit}`);
  }
  for (let bit = 0; bit < 8; bit++) assert.equal(verify(pub, flipBit(msg, bit), sig), false, `message bit ${bit}`);
});

void test('wrong-length signatures are false, not errors', () => {
  const v = VECTORS[0]!;
  const sig = hex(v.signature);
  for (const bad of [new Uint8Array(0), sig.subarray(1), new Uint8Array([...sig, 0]), new Uint8Array(128)]) {
    assert.equal(verify(hex(v.publicKey), hex(v.message), bad), false);
  }
});

void test('wrong-length or wrong-type keys are ERR_ARGUMENT naming the argument', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 80 }).filter((b) => b.length !== 32),
      messageArb,
      (bad, message) => {
        assertArgumentError(() => new Signer(bad), 'seed');
        assertArgumentError(() => keyPairFromSeed(bad), 'seed');
        assertArgumentError(() => verify(bad, message, new Uint8Array(64)), 'publicKey');
        assertArgumentError(() => fingerprint(bad), 'publicKey');
      },
    ),
  );
  const pub = generateKeyPair().publicKey;
  assertArgumentError(() => verify(pub, 'hello' as unknown as Uint8Array, new Uint8Array(64)), 'message');
  assertArgumentError(() => verify(pub, new Uint8Array(1), [1, 2] as unknown as Uint8Array), 'signature');
  assertArgumentError(() => verify(Array.from(pub) as unknown as Uint8Array, new Uint8Array(1), new Uint8Array(64)), 'publicKey');
  assertArgumentError(() => new Signer(Buffer.alloc(32).toString('hex') as unknown as Uint8Array), 'seed');
  assertArgumentError(() => fromHex('thing', 'xyz'), 'thing');
  assertArgumentError(() => fromHex('thing', 'abcd', 3), 'thing');
});

void test('property: context signatures are domain-separated', () => {
  fc.assert(
    fc.property(seedArb, messageArb, contextArb, contextArb, (seed, message, ctx, other) => {
      const signer = new Signer(seed);
      const sig = signer.signWithContext(ctx, message);
      assert.equal(verifyWithContext(signer.publicKey, ctx, message, sig), true);
      assert.equal(verifyWithContext(signer.publicKey, other, message, sig), ctx === other);
      assert.equal(verify(signer.publicKey, message, sig), false, 'a context signature is not a raw signature');
      const raw = signer.sign(message);
      assert.equal(verifyWithContext(signer.publicKey, ctx, message, raw), false, 'a raw signature is not a context signature');
      // The signed bytes are exactly context || 0x00 || message, which noble confirms independently.
      const expected = new Uint8Array([...Buffer.from(ctx, 'ascii'), 0, ...message]);
      assert.deepEqual(new Uint8Array(signedMessage(ctx, message)), expected);
      assert.equal(ed.verify(sig, expected, signer.publicKey), true);
      assert.deepEqual(ed.sign(expected, seed), sig);
    }),
  );
});

void test('context strings are distinct and none is a prefix of another', () => {
  for (const a of SIGNATURE_CONTEXTS) {
    for (const b of SIGNATURE_CONTEXTS) {
      if (a !== b) assert.ok(!b.startsWith(a), `${a} / ${b}`);
    }
    assert.ok(/^[\x20-\x7e]+$/.test(a), 'ASCII printable, no NUL');
  }
});

void test('sha256, hex helpers and fingerprint', () => {
  assert.equal(toHex(sha256(Buffer.from('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.deepEqual(sha256(Buffer.from('ab'), Buffer.from('c')), sha256(Buffer.from('abc')));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
      assert.deepEqual(fromHex('b', toHex(b)), b);
      assert.deepEqual(fromHex('b', toHex(b).toUpperCase()), b);
    }),
  );
  const pub = hex(VECTORS[0]!.publicKey);
  const fp = fingerprint(pub);
  assert.match(fp, /^[0-9a-f]{4}(:[0-9a-f]{4}){3}$/);
  assert.equal(fp.replaceAll(':', ''), toHex(sha256(pub)).slice(0, 16));
});

void test('Signer.toJSON shows no key material', () => {
  const v = VECTORS[0]!;
  const signer = new Signer(hex(v.secretKey));
  const json = JSON.stringify(signer);
  assert.deepEqual(JSON.parse(json), { publicKey: v.publicKey });
  assert.ok(!json.includes(v.secretKey));
});
