/**
 * Receipts in the C2SP tlog-proof text form (ledger/tlog-proof.ts, docs/PROTOCOL.md §Receipts):
 * the layout the spec gives, lossless conversion both ways, cosignature lines carried verbatim,
 * verification by the same verifier, and every single-byte change refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, signedEvent, openChain } from '../support/site.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { leafHash } from '../../ledger/merkle.js';
import { receiptFor, verifyReceipt, decodeReceipt, encodeReceipt } from '../../ledger/receipt.js';
import { encodeTlogProof, decodeTlogProof, receiptBytes, isTlogProof, TLOG_PROOF_HEADER } from '../../ledger/tlog-proof.js';
import { cosign, verifyCosignature } from '../../gateway/sync/witness.js';

async function chainWithEvents(t: Parameters<typeof openChain>[0]) {
  const site = makeSite();
  const lock = enrollLock(site, 'door-a');
  const oc = await openChain(t, site, { sealDelayMs: 1 });
  await oc.chain.append({ kind: 'roster', signed: lock.statement });
  for (let i = 0; i < 6; i++) await oc.chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  await oc.chain.flush();
  return { site, oc };
}

void test('a receipt as a tlog-proof: header, extra, index, proof lines, empty line, the checkpoint verbatim', async (t) => {
  const { site, oc } = await chainWithEvents(t);
  const cbor = await receiptFor(oc.chain, 4);
  const parts = decodeReceipt(cbor);
  const text = encodeTlogProof(parts);
  const lines = text.split('\n');
  assert.equal(lines[0], TLOG_PROOF_HEADER);
  assert.match(lines[1]!, /^extra [A-Za-z0-9+/]+=*$/);
  assert.equal(lines[2], 'index 4');
  assert.deepEqual(lines.slice(3, 3 + parts.proof.length), parts.proof.map((h) => Buffer.from(h).toString('base64')));
  assert.equal(lines[3 + parts.proof.length], '');
  assert.ok(text.endsWith(`\n\n${parts.checkpoint}`));
  // The record is the entry: the leaf hash of the bytes in extra is the proven leaf.
  const back = decodeTlogProof(Buffer.from(text));
  assert.deepEqual(leafHash(back.entry), leafHash(parts.entry));
  assert.deepEqual(encodeReceipt(back), cbor, 'converts back to the same CBOR receipt');
  const bytes = Buffer.from(text);
  assert.ok(isTlogProof(bytes) && !isTlogProof(cbor));
  const v = verifyReceipt(receiptBytes(bytes), site.trust);
  assert.equal(v.provenance, 'lock-signed');
  assert.equal(v.index, 4);
  // An older-checkpoint receipt keeps its newer part in extra.
  const older = decodeReceipt(await receiptFor(oc.chain, 1, { size: 2 }));
  assert.ok(older.newer !== undefined);
  assert.equal(verifyReceipt(receiptBytes(Buffer.from(encodeTlogProof(older))), site.trust).newer?.size, oc.chain.size);
});

void test('a tlog-proof carries the checkpoint with the cosignatures it has, and they still verify from the file', async (t) => {
  const { site, oc } = await chainWithEvents(t);
  const parts = decodeReceipt(await receiptFor(oc.chain, 2));
  const witness = new Signer(generateKeyPair().seed);
  const cosigned = cosign(parseCheckpoint(parts.checkpoint), witness, 'oti/site-1/gw-2', 1_700_000_000);
  const text = encodeTlogProof({ ...parts, checkpoint: cosigned.note });
  const back = decodeTlogProof(Buffer.from(text));
  assert.equal(back.checkpoint, cosigned.note);
  assert.equal(verifyCosignature(parseCheckpoint(back.checkpoint), 'oti/site-1/gw-2', witness.publicKey, 1_700_000_000), 1_700_000_000);
  assert.equal(verifyReceipt(receiptBytes(Buffer.from(text)), site.trust).checkpoint.signatures.length, 2);
});

void test('every single-byte change of a tlog-proof is refused with ERR_RECEIPT_INVALID', async (t) => {
  const { site, oc } = await chainWithEvents(t);
  const text = Buffer.from(encodeTlogProof(decodeReceipt(await receiptFor(oc.chain, 5))));
  verifyReceipt(receiptBytes(text), site.trust);
  for (let pos = 0; pos < text.length; pos++) {
    for (const xor of [0x01, 0x20]) {
      const c = Buffer.from(text);
      c[pos] = c[pos]! ^ xor;
      // A changed header is not a tlog-proof: it is then refused as CBOR.
      assert.throws(() => verifyReceipt(receiptBytes(c), site.trust), (e: unknown) => isOtiError(e, 'ERR_RECEIPT_INVALID'), `byte ${pos} ^ ${xor}`);
    }
  }
});

void test('malformed tlog-proofs are refused, naming the line', async (t) => {
  const { oc } = await chainWithEvents(t);
  const text = encodeTlogProof(decodeReceipt(await receiptFor(oc.chain, 3)));
  const [header, extra, index, ...rest] = text.split('\n');
  const bad = (s: string, why: RegExp): void => assert.throws(() => receiptBytes(Buffer.from(s)), (e: unknown) => isOtiError(e, 'ERR_RECEIPT_INVALID') && why.test((e as Error).message), s.slice(0, 80));
  bad([header, index, ...rest].join('\n'), /extra/);
  bad([header, extra, 'index 03', ...rest].join('\n'), /index/);
  bad([header, extra, 'index 3 ', ...rest].join('\n'), /index/);
  bad([header, `${extra}\r`, index, ...rest].join('\n'), /extra/);
  bad([header, extra, index, 'AAAA', ...rest].join('\n'), /proof/);
  // Without the empty line the checkpoint's own lines would be read as proof lines.
  bad([header, extra, index, ...rest].join('\n').replace('\n\n', '\n'), /proof line/);
  bad([header, 'extra ' + Buffer.from('not cbor').toString('base64'), index, ...rest].join('\n'), /./);
});
