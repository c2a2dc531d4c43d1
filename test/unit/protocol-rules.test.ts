/**
 * Rules docs/PROTOCOL.md states exactly where an independent reader found it ambiguous (issue 19):
 * control characters and signature lines in checkpoints, the roster statement inside a roster
 * entry of a receipt, and the CBOR profile of a lock event's `ext`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, openChain } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint, signCheckpoint } from '../../ledger/checkpoint.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { encodeLockEvent, decodeLockEvent } from '../../ledger/lockevent.js';

const isFormat = (e: unknown): boolean => isOtiError(e, 'ERR_CHECKPOINT_FORMAT');

function note(keyName = 'oti/s/g'): string {
  const signer = new Signer(generateKeyPair().seed);
  return signCheckpoint({ origin: 'oti/s/g', size: 3, root: new Uint8Array(32), block: 1, blockHash: new Uint8Array(32).fill(7) }, signer, keyName).note;
}

void test('a checkpoint with a C1 control character (U+0080..U+009F) anywhere is refused, as C0 and DEL are', () => {
  const n = note();
  assert.equal(parseCheckpoint(n).size, 3);
  const sigAt = n.indexOf('\u2014');
  for (const c of ['\u0085', '\u009f', '\u0080', '\u0007', '\u007f']) {
    // In a signature line's name, and in an unknown signature line's place.
    assert.throws(() => parseCheckpoint(n.slice(0, sigAt + 2) + c + n.slice(sigAt + 2)), isFormat, `U+${c.charCodeAt(0).toString(16)}`);
    assert.throws(() => parseCheckpoint(`${n}\u2014 w${c} AAAAAAAA\n`), isFormat);
  }
});

void test('signature lines: the key name is 1..255 bytes of 0x21..0x7e except "+", separated by exactly one ASCII space', () => {
  const n = note();
  const extra = (line: string): string => `${n}${line}\n`;
  assert.equal(parseCheckpoint(extra('\u2014 witness.example/w1 AAAAAAAA')).signatures.length, 2);
  assert.equal(parseCheckpoint(extra(`\u2014 ${'x'.repeat(255)} AAAAAAAA`)).signatures.length, 2);
  for (const bad of [
    '\u2014 w\ufeff AAAAAAAA', // U+FEFF is not whitespace to JavaScript's \S but is not ASCII
    '\u2014 w\u00a0 AAAAAAAA', // no-break space
    '\u2014 w\u2028 AAAAAAAA', // line separator
    '\u2014 caf\u00e9 AAAAAAAA', // non-ASCII letter
    '\u2014 a+b AAAAAAAA', // '+' is not allowed in a key name (C2SP signed-note)
    '\u2014  w AAAAAAAA', // two spaces
    `\u2014 ${'x'.repeat(256)} AAAAAAAA`,
    '\u2014 w AAAA\u00a0AAAA',
  ]) {
    assert.throws(() => parseCheckpoint(extra(bad)), isFormat, JSON.stringify(bad));
  }
  assert.throws(() => note('a+b'), (e: unknown) => isOtiError(e, 'ERR_ARGUMENT'));
});

void test('a receipt of a roster entry checks the site signature of the statement inside it (§Receipts step 7)', async (t) => {
  const site = makeSite();
  const second = generateKeyPair();
  // The chain trusts two site keys (a rotation); the lock is enrolled by the second one.
  const trustBoth = { siteId: site.siteId, siteKeys: [site.siteKey.publicKey, second.publicKey] };
  const oc = await openChain(t, site, { trust: trustBoth });
  const lock = enrollLock(site, 'door-a');
  const bySecond = signStatement(new Signer(second.seed), { ...lock.statement.statement });
  const { index } = await oc.chain.append({ kind: 'roster', signed: bySecond });
  await oc.chain.flush();
  const r = await receiptFor(oc.chain, index);
  assert.equal(verifyReceipt(r, trustBoth).provenance, 'gateway');
  // With only the first key trusted the gateway statement still verifies but the entry's does not.
  assert.throws(() => verifyReceipt(r, site.trust), (e: unknown) => isOtiError(e, 'ERR_RECEIPT_INVALID') && e.details?.['cause'] === 'ERR_ROSTER');
});

void test('a lock event ext is held to the CBOR profile: no floats, no tags, no non-text map keys, nesting counted from the event', () => {
  const base = encodeLockEvent({ lock: 'door-a', ctr: 1, time: 1, type: 'unlocked', ext: { fw: 1 } });
  assert.deepEqual(decodeLockEvent(base).ext, { fw: 1 });
  const value = Buffer.from([0x62, 0x66, 0x77, 0x01]); // "fw": 1
  const at = Buffer.from(base).indexOf(value);
  assert.ok(at > 0);
  const withValue = (v: number[]): Uint8Array => Buffer.concat([Buffer.from(base).subarray(0, at + 3), Buffer.from(v), Buffer.from(base).subarray(at + 4)]);
  assert.deepEqual(decodeLockEvent(withValue([0x02])).ext, { fw: 2 });
  for (const [name, v] of [
    ['half float 1.0', [0xf9, 0x3c, 0x00]],
    ['double 1.5', [0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]],
    ['tag 1', [0xc1, 0x01]],
    ['integer map key', [0xa1, 0x01, 0x01]],
    ['undefined', [0xf7]],
  ] as const) {
    assert.throws(() => decodeLockEvent(withValue([...v])), (e: unknown) => isOtiError(e, 'ERR_ENCODING_NONCANONICAL'), name);
  }
  // 15 nested arrays inside ext (ext at level 1, "fw" value at level 2) reach level 16: allowed; one more is not.
  const nested = (n: number): number[] => [...Array<number>(n).fill(0x81), 0x00];
  assert.doesNotThrow(() => decodeLockEvent(withValue(nested(14))));
  assert.throws(() => decodeLockEvent(withValue(nested(15))), (e: unknown) => isOtiError(e, 'ERR_ENCODING_TOO_LARGE'));
});
