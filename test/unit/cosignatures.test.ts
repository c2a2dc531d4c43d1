/**
 * The cosignature lines kept for receipts (gateway/sync/cosignatures.ts): only lines that verify
 * as C2SP cosignature/v1 by the named witness key are kept, they are added only to a note of the
 * same checkpoint text, in the byte order of their names (the archive's order), and the 16-line
 * limit of a note holds; each site witness's newest cosigned note is kept for the uplink.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CosignatureBook } from '../../gateway/sync/cosignatures.js';
import { withCosignatures } from '../../gateway/archive/queries.js';
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

void test('lines go onto the note in the byte order of their names, whatever order they arrived in, as the archive orders them', () => {
  const cp = checkpoint(7);
  // Arrival order gwa, gw-b, gw_a; byte order gw-b ('-' 0x2d), gw_a ('_' 0x5f), gwa ('a' 0x61).
  const arrived = ['gwa', 'gw-b', 'gw_a'].map((name) => ({ name, signer: new Signer(generateKeyPair().seed) }));
  const cosigned = arrived.map((w) => ({ witness: w.name, note: cosign(cp, w.signer, `oti/s/${w.name}`, 1_700_000_000).note }));
  const book = new CosignatureBook();
  for (const [i, w] of arrived.entries()) book.add(parseCheckpoint(cosigned[i]!.note), `oti/s/${w.name}`, w.signer.publicKey);
  const note = book.attach(cp.note);
  assert.deepEqual(parseCheckpoint(note).signatures.map((s) => s.name), ['oti/s/gw-1', 'oti/s/gw-b', 'oti/s/gw_a', 'oti/s/gwa']);
  // The archive, given the lines in arrival order (or any other), makes the same bytes.
  assert.equal(withCosignatures(cp, 's', cosigned), note);
  assert.equal(withCosignatures(cp, 's', [...cosigned].reverse()), note);
  // Two witnesses, the second to arrive first by name: the same note from either side.
  const two = new CosignatureBook();
  for (const i of [0, 1]) two.add(parseCheckpoint(cosigned[i]!.note), `oti/s/${arrived[i]!.name}`, arrived[i]!.signer.publicKey);
  assert.deepEqual(parseCheckpoint(two.attach(cp.note)).signatures.map((s) => s.name), ['oti/s/gw-1', 'oti/s/gw-b', 'oti/s/gwa']);
  assert.equal(two.attach(cp.note), withCosignatures(cp, 's', cosigned.slice(0, 2)));
});

void test('each site witness\'s newest cosigned note is kept for the uplink and handed to listeners when it is newer', () => {
  const book = new CosignatureBook();
  const w = new Signer(generateKeyPair().seed);
  const made = (size: number) => cosign(checkpoint(size), w, 'oti/s/gw-2', 1_700_000_000);
  const at = (size: number) => ({ witness: 'gw-2', size, name: 'oti/s/gw-2', key: w.publicKey, checkpoint: made(size) });
  book.cosigned(at(5));
  assert.deepEqual(book.newest(), [['gw-2', { size: 5, note: made(5).note }]]);
  assert.deepEqual(book.witnesses(5), ['oti/s/gw-2'], 'its line is kept for receipts too');
  const heard: [string, number][] = [];
  const stop = book.listen((witness, c) => heard.push([witness, c.size]));
  book.cosigned(at(4));
  book.cosigned(at(5));
  book.cosigned(at(8));
  assert.deepEqual(heard, [['gw-2', 8]], 'older and equal sizes are not newer');
  assert.deepEqual(book.newest().map(([id, c]) => [id, c.size]), [['gw-2', 8]]);
  stop();
  book.cosigned(at(9));
  assert.deepEqual(heard, [['gw-2', 8]]);
  assert.equal(book.newest()[0]![1].size, 9);
});
