/**
 * Receipts in the C2SP tlog-proof text form (https://c2sp.org/tlog-proof, `c2sp.org/tlog-proof@v1`),
 * beside the CBOR receipt of ledger/receipt.ts. docs/PROTOCOL.md §Receipts (tlog-proof form).
 *
 *   c2sp.org/tlog-proof@v1\n
 *   extra <base64 of the CBOR receipt extra>\n
 *   index <entry index, decimal>\n
 *   <inclusion proof hash, base64>\n            (zero or more, leaf end first)
 *   \n
 *   <the checkpoint note, verbatim, with every signature and cosignature line it has>
 *
 *   extra = the CBOR receipt without "index", "proof" and "checkpoint" (which have lines of their
 *           own), with "type": "oti-receipt-extra": { "v": 1 / 2, "type", "entry", "gateway",
 *           ? "lock", ? "gatewayAt", ? "lockAt", ? "newer" }, the same values and rules
 *
 * The record is the entry: its leaf hash SHA-256(0x00 || entry) is what the inclusion proof
 * places at `index`. Everything the CBOR receipt has is here, so either form converts to the other
 * without loss and both verify with verifyReceipt (after receiptBytes).
 */
import { decode, encode, type CborValue } from './base/cbor.js';
import { OtiError, isOtiError } from './base/errors.js';
import { asMap, oneOf, version } from './schema.js';
import { MAX_PROOF_HASHES } from './merkle.js';
import { CHECKPOINT_MAX_BYTES } from './checkpoint.js';
import { decodeReceipt, encodeReceipt, RECEIPT_MAX_BYTES, type ReceiptParts } from './receipt.js';

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
/** The text form of a receipt of at most RECEIPT_MAX_BYTES: extra in base64, proof lines, note. */
export const TLOG_PROOF_MAX_BYTES = 96 * 1024;
const EXTRA_TYPE = 'oti-receipt-extra';
const HEADER_BYTES = Buffer.from(`${TLOG_PROOF_HEADER}\n`, 'ascii');

/** Keys of the CBOR receipt that the tlog-proof carries in its own lines rather than in extra. */
const OWN_LINES = new Set(['index', 'proof', 'checkpoint']);

/** The tlog-proof text of a receipt. */
export function encodeTlogProof(r: ReceiptParts): string {
  // extra is the CBOR receipt's map (one encoder for both forms), less what has its own lines.
  const receipt = decode(encodeReceipt(r), RECEIPT_MAX_BYTES) as Record<string, CborValue>;
  const extra: Record<string, CborValue> = {};
  for (const [k, v] of Object.entries(receipt)) if (!OWN_LINES.has(k)) extra[k] = v;
  extra['type'] = EXTRA_TYPE;
  const lines = [TLOG_PROOF_HEADER, `extra ${b64(encode(extra))}`, `index ${r.index}`, ...r.proof.map(b64)];
  return `${lines.join('\n')}\n\n${r.checkpoint}`;
}

/** Whether the bytes are (or claim to be) a tlog-proof rather than a CBOR receipt. */
export function isTlogProof(b: Uint8Array): boolean {
  return b.length >= HEADER_BYTES.length && Buffer.from(b.buffer, b.byteOffset, HEADER_BYTES.length).equals(HEADER_BYTES);
}

/** Strictly parses a tlog-proof made by encodeTlogProof. Throws ERR_RECEIPT_INVALID naming what is wrong. */
export function decodeTlogProof(input: Uint8Array): ReceiptParts {
  if (input.length > TLOG_PROOF_MAX_BYTES) throw invalid(`a tlog-proof is at most ${TLOG_PROOF_MAX_BYTES} bytes, this one ${input.length}`);
  const raw = Buffer.from(input.buffer, input.byteOffset, input.length);
  const text = raw.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(raw)) throw invalid('the tlog-proof is not valid UTF-8');
  const split = text.indexOf('\n\n');
  if (split < 0) throw invalid('the tlog-proof has no empty line before its checkpoint');
  const head = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  if (Buffer.byteLength(checkpoint, 'utf8') > CHECKPOINT_MAX_BYTES) throw invalid(`its checkpoint is larger than ${CHECKPOINT_MAX_BYTES} bytes`);
  if (head[0] !== TLOG_PROOF_HEADER) throw invalid(`the first line must be ${TLOG_PROOF_HEADER}`);
  const extraLine = /^extra ([A-Za-z0-9+/=]+)$/.exec(head[1] ?? '');
  if (extraLine === null) throw invalid('the second line must be "extra <base64>": an OTI receipt carries its entry and statements there');
  const indexLine = /^index (0|[1-9][0-9]{0,15})$/.exec(head[2] ?? '');
  if (indexLine === null || !Number.isSafeInteger(Number(indexLine[1]))) throw invalid('the third line must be "index <decimal>" without leading zeros');
  const hashes = head.slice(3);
  if (hashes.length > MAX_PROOF_HASHES) throw invalid(`the inclusion proof has more than ${MAX_PROOF_HASHES} hashes`);
  const proof = hashes.map((h) => unb64(h, 'an inclusion proof line'));
  const extra = asMap(decode(unb64(extraLine[1]!, 'extra'), RECEIPT_MAX_BYTES), 'tlog-proof extra', ['v', 'type', 'entry', 'gateway', 'lock', 'gatewayAt', 'lockAt', 'newer']);
  if (extra['v'] !== 2) version(extra, 'tlog-proof extra', 1);
  oneOf(extra, 'type', 'tlog-proof extra', [EXTRA_TYPE]);
  // The same strict checks as a CBOR receipt: rebuild it and decode that.
  return decodeReceipt(encode({ ...extra, type: 'oti-receipt', index: Number(indexLine[1]), proof, checkpoint }));
}

/** The CBOR receipt of a file in either form: a tlog-proof is converted, anything else is taken as CBOR. */
export function receiptBytes(file: Uint8Array): Uint8Array {
  if (!isTlogProof(file)) return file;
  try {
    return encodeReceipt(decodeTlogProof(file));
  } catch (e) {
    if (isOtiError(e, 'ERR_RECEIPT_INVALID')) throw e;
    const code = isOtiError(e) ? e.code : 'ERR_ENCODING_MALFORMED';
    throw new OtiError('ERR_RECEIPT_INVALID', `tlog-proof does not verify: ${(e as Error).message}`, { cause: code }, { cause: e });
  }
}

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64');
}

function unb64(s: string, what: string): Uint8Array {
  const b = Buffer.from(s, 'base64');
  if (s.length === 0 || b.toString('base64') !== s) throw invalid(`${what} is not canonical padded base64`);
  return new Uint8Array(b);
}

function invalid(msg: string): OtiError {
  return new OtiError('ERR_RECEIPT_INVALID', msg);
}
