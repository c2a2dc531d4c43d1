/**
 * How the archive picks the checkpoint of a receipt and adds the cosignature lines it holds
 * (gateway/archive/queries.ts, docs/ARCHIVE.md §Receipts): the size most kept cosignatures are of
 * (the larger on a tie), and each witness's line added only to a note of the very checkpoint it
 * cosigned, in the byte order of the names, never twice, within a note's 16 lines; the result is what the
 * gateway's CosignatureBook makes of the same lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bestCosignedSize, withCosignatures } from '../../gateway/archive/queries.js';
import { CosignatureBook } from '../../gateway/sync/cosignatures.js';
import { cosign, verifyCosignature } from '../../gateway/sync/witness.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { parseCheckpoint, signCheckpoint } from '../../ledger/checkpoint.js';

const gateway = new Signer(generateKeyPair().seed);
const checkpoint = (size: number, root = 1) => signCheckpoint({ origin: 'oti/s/gw-1', size, root: new Uint8Array(32).fill(root), block: size, blockHash: new Uint8Array(32).fill(7) }, gateway, 'oti/s/gw-1');
const witnesses = Array.from({ length: 17 }, (_, i) => ({ name: `gw-${String(i + 2).padStart(2, '0')}`, signer: new Signer(generateKeyPair().seed) }));

void test('the checkpoint of a receipt: the size most witnesses cosigned, the larger on a tie, none without cosignatures', () => {
  assert.equal(bestCosignedSize([]), undefined);
  assert.equal(bestCosignedSize([{ size: 10 }]), 10);
  assert.equal(bestCosignedSize([{ size: 10 }, { size: 20 }, { size: 10 }]), 10);
  assert.equal(bestCosignedSize([{ size: 10 }, { size: 20 }]), 20);
  assert.equal(bestCosignedSize([{ size: 30 }, { size: 20 }, { size: 20 }, { size: 30 }]), 30);
});

void test('cosignature lines go onto the note of the checkpoint they cosigned, as the gateway adds them', () => {
  const cp = checkpoint(5);
  const [w1, w2] = witnesses as [(typeof witnesses)[0], (typeof witnesses)[0]];
  const kept = [w1, w2].map((w) => ({ witness: w.name, note: cosign(cp, w.signer, `oti/s/${w.name}`, 1_700_000_000).note }));
  const note = withCosignatures(cp, 's', kept);
  const back = parseCheckpoint(note);
  assert.deepEqual(back.signatures.map((s) => s.name), ['oti/s/gw-1', `oti/s/${w1.name}`, `oti/s/${w2.name}`]);
  for (const w of [w1, w2]) assert.equal(verifyCosignature(back, `oti/s/${w.name}`, w.signer.publicKey, 1_700_000_000), 1_700_000_000);
  // The gateway's book, given the same lines (in any order), makes the same note.
  const book = new CosignatureBook();
  for (const w of [w2, w1]) book.add(parseCheckpoint(kept.find((k) => k.witness === w.name)!.note), `oti/s/${w.name}`, w.signer.publicKey);
  assert.equal(book.attach(cp.note), note);
  // Not twice; not onto another checkpoint (another text of the size, another size); not from a note without the witness's line.
  assert.equal(withCosignatures(parseCheckpoint(note), 's', kept), note);
  const other = checkpoint(5, 2);
  assert.equal(withCosignatures(other, 's', kept), other.note);
  assert.equal(withCosignatures(cp, 's', [{ witness: 'gw-09', note: kept[0]!.note }]), cp.note);
  assert.equal(withCosignatures(cp, 's', [{ witness: w1.name, note: 'not a note' }]), cp.note);
});

void test('at most 16 signature lines in a note', () => {
  const cp = checkpoint(9);
  const kept = witnesses.map((w) => ({ witness: w.name, note: cosign(cp, w.signer, `oti/s/${w.name}`, 1_700_000_000).note }));
  const back = parseCheckpoint(withCosignatures(cp, 's', kept));
  assert.equal(back.signatures.length, 16);
  assert.deepEqual(back.signatures.slice(1).map((s) => s.name), witnesses.slice(0, 15).map((w) => `oti/s/${w.name}`));
});
