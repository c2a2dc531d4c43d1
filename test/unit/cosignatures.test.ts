/**
 * The cosignature lines kept for receipts (gateway/sync/cosignatures.ts): only lines that verify
 * as C2SP cosignature/v1 by the named witness key are kept, they are added only to a note of the
 * same checkpoint text, and the 16-line limit of a note holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CosignatureBook } from '../../gateway/sync/cosignatures.js';
import { cosign, verifyCosignature } from '../../gateway/sync/witness.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { parseCheckpoint, signCheckpoint } from '../../ledger/checkpoint.js';

const gateway = new Signer(generateKeyPair().seed);
const checkpoint = (size: number, root = 1) => signCheckpoint({ origin: 'oti/s/gw-1', size, root: new Uint8Array(32).fill(root), block: size, blockHash: new Uint8Array(32).fill(7) }, gateway, 'oti/s/gw-1');

void test('a verified cosignature line is added to a note of the same checkpoint, and verifies there', () => {
  const book = new CosignatureBook();
  const w = new Signer(generateKeyPair().seed);
  const cp = checkpoint(5);
  book.add(cosign(cp, w, 'oti/s/gw-2', 1_700_000_000), 'oti/s/gw-2', w.publicKey);
  assert.deepEqual(book.witnesses(5), ['oti/s/gw-2']);
  const note = book.attach(cp.note);
  const back = parseCheckpoint(note);
  assert.deepEqual(back.signatures.map((s) => s.name), ['oti/s/gw-1', 'oti/s/gw-2']);
  assert.equal(verifyCosignature(back, 'oti/s/gw-2', w.publicKey, 1_700_000_000), 1_700_000_000);
  // Already there: not added twice. Another checkpoint text of the same size: not added.
  assert.equal(book.attach(note), note);
  const other = checkpoint(5, 2);
  assert.equal(book.attach(other.note), other.note);
  assert.equal(book.attach(checkpoint(6).note), checkpoint(6).note);
});

void test('a line that does not verify under the given key is not kept', () => {
  const book = new CosignatureBook();
  const w = new Signer(generateKeyPair().seed);
  const impostor = new Signer(generateKeyPair().seed);
  const cp = checkpoint(3);
  book.add(cosign(cp, impostor, 'oti/s/gw-2', 1_700_000_000), 'oti/s/gw-2', w.publicKey);
  book.add(cp, 'oti/s/gw-2', w.publicKey);
  assert.deepEqual(book.witnesses(3), []);
  assert.equal(book.attach(cp.note), cp.note);
});

void test('a note gets at most 16 signature lines', () => {
  const book = new CosignatureBook();
  const cp = checkpoint(9);
  for (let i = 0; i < 20; i++) {
    const w = new Signer(generateKeyPair().seed);
    book.add(cosign(cp, w, `w${i}`, 1_700_000_000), `w${i}`, w.publicKey);
  }
  assert.equal(book.witnesses(9).length, 15);
  assert.equal(parseCheckpoint(book.attach(cp.note)).signatures.length, 16);
});
