/**
 * The protocol test vectors (test/vectors/protocol.json) against the code, against a second
 * Ed25519 implementation (@noble/ed25519), and against a minimal receipt verifier written here
 * from the rules of docs/PROTOCOL.md alone (cborg's plain decoder, node:crypto SHA-256, noble),
 * which shows that the document is enough to verify a receipt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as ed from '@noble/ed25519';
import { decode as plainDecode, encode as plainEncode } from 'cborg';
import { makeVectors, vectorsJson } from '../support/make-vectors.js';
import { decode, encode } from '../../ledger/base/cbor.js';
import { isOtiError, ERROR_CODES } from '../../ledger/base/errors.js';
import { SIGNATURE_CONTEXTS, fingerprint } from '../../ledger/crypto.js';
import { decodeLockEvent } from '../../ledger/lockevent.js';
import { parseCoseSign1 } from '../../ledger/cose.js';
import { SMALL_ORDER_ENCODINGS } from '../../ledger/ed25519.js';
import { decodeSigned, decodeStatement } from '../../ledger/roster.js';
import { decodeEntry } from '../../ledger/entry.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { parseCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { verifyInclusion, verifyConsistency } from '../../ledger/merkle.js';
import { decodeReceipt, verifyReceipt } from '../../ledger/receipt.js';
import { decodeEvidence, verifyEvidence } from '../../ledger/evidence.js';
import { receiptBytes } from '../../ledger/tlog-proof.js';

// @noble/ed25519 v3 brings no SHA-512; hand it node's.
ed.hashes.sha512 = (m: Uint8Array) => new Uint8Array(createHash('sha512').update(m).digest());

// Compiled to dist/test/unit/, so the source tree is three levels up.
const VECTORS_URL = new URL('../../../test/vectors/protocol.json', import.meta.url);
const DOC_URL = new URL('../../../docs/PROTOCOL.md', import.meta.url);
const VECTORS_TEXT = readFileSync(VECTORS_URL, 'utf8');
const DOC = readFileSync(DOC_URL, 'utf8');

interface KeyV {
  seed: string;
  publicKey: string;
  fingerprint: string;
}
interface StatementV {
  statement: string;
  signedMessage: string;
  by: string;
  signature: string;
  signed: string;
}
interface EntryV {
  index: number;
  kind: string;
  id: string;
  block: number;
  entry: string;
  leafHash: string;
}
interface BlockV {
  n: number;
  first: number;
  count: number;
  time: number;
  header: string;
  blockHash: string;
  root: string;
  checkpointText: string;
  checkpointSignature: string;
  checkpoint: string;
}
interface Vectors {
  site: string;
  gateway: string;
  origin: string;
  keys: Record<'site' | 'gateway' | 'front-door' | 'side-gate', KeyV>;
  contexts: { context: string; prefix: string }[];
  lockEvent: { event: string; protected: string; sigStructure: string; signature: string; cose: string };
  roster: Record<'gatewayEnroll' | 'lockEnroll' | 'unsignedLockEnroll', StatementV>;
  emptyRoot: string;
  checkpointKey: { name: string; publicKey: string; keyHash: string };
  entries: EntryV[];
  blocks: BlockV[];
  inclusion: { index: number; size: number; leafHash: string; proof: string[]; root: string; walk: { result: string }[] };
  consistency: { oldSize: number; newSize: number; oldRoot: string; newRoot: string; proof: string[] }[];
  receipt: { entryId: string; siteKey: string; receipt: string };
  receiptOlder: { entryId: string; size: number; receipt: string };
  tlogProof: { receipt: string; receiptOlder: string };
  evidence: { a: string; b: string; root: string; proof: string[]; evidence: string };
  rejected: { description: string; cbor: string; error: string }[];
}

const V = JSON.parse(VECTORS_TEXT) as Vectors;

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'ascii'));
const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const eq = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
/** Strict RFC 8032 verification (no ZIP-215 leniency), as a second implementation. */
const nobleVerify = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean => {
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
};

// ---------------------------------------------------------------------------------------------
// Independent helpers, written from docs/PROTOCOL.md.

const leafOf = (entry: Uint8Array): Uint8Array => sha256(Uint8Array.of(0x00), entry);
const nodeOf = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(Uint8Array.of(0x01), l, r);

/** MTH(D[n]) of RFC 9162 §2.1.1, straight from the recursive definition. */
function mth(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeOf(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** RFC 9162 §2.1.3.2. */
function inclusionOk(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeOf(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeOf(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(r, root);
}

/** RFC 9162 §2.1.4.2, for 0 < oldSize < newSize. */
function consistencyOk(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (oldSize === 0 || oldSize >= newSize || proof.length === 0) return false;
  const path = (oldSize & (oldSize - 1)) === 0 ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeOf(c, fr);
      sr = nodeOf(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeOf(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(fr, oldRoot) && eq(sr, newRoot);
}

/** A CBOR head (RFC 8949 §3) in shortest form, for arguments below 2^32. */
function head(major: number, n: number): Uint8Array {
  if (n < 24) return Uint8Array.of((major << 5) | n);
  if (n < 0x100) return Uint8Array.of((major << 5) | 24, n);
  if (n < 0x10000) return Uint8Array.of((major << 5) | 25, n >> 8, n & 0xff);
  return Uint8Array.of((major << 5) | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}
const bstr = (b: Uint8Array): Uint8Array => cat(head(2, b.length), b);
const tstr = (s: string): Uint8Array => cat(head(3, utf8(s).length), utf8(s));

/** Sig_structure of RFC 9052 §4.4 for our profile, assembled byte by byte. */
function sigStructureBytes(payload: Uint8Array): Uint8Array {
  return cat(Uint8Array.of(0x84), tstr('Signature1'), bstr(Uint8Array.of(0xa1, 0x01, 0x27)), bstr(new Uint8Array(0)), bstr(payload));
}

const keyHashOf = (name: string, publicKey: Uint8Array): Uint8Array => sha256(utf8(`${name}\n`), Uint8Array.of(0x01), publicKey).subarray(0, 4);

interface Note {
  text: string;
  origin: string;
  size: number;
  root: Uint8Array;
  block: number;
  blockHash: Uint8Array;
  roster: { size: number; root: Uint8Array } | undefined;
  sigs: { name: string; blob: Uint8Array }[];
}

function parseNote(note: string): Note {
  const split = note.indexOf('\n\n');
  assert.ok(split > 0, 'note has a blank line');
  const text = note.slice(0, split + 1);
  const lines = text.slice(0, -1).split('\n');
  assert.ok(lines.length === 4 || lines.length === 5, 'checkpoint body has 4 or 5 lines');
  const [origin, size, root, ext, rosterExt] = lines as [string, string, string, string, string | undefined];
  const m = /^oti-block (0|[1-9][0-9]*) ([A-Za-z0-9+/=]+)$/.exec(ext);
  assert.ok(m !== null, 'extension line');
  const rm = rosterExt === undefined ? undefined : /^oti-roster ([1-9][0-9]*) ([A-Za-z0-9+/=]+)$/.exec(rosterExt);
  assert.ok(rm !== null, 'roster extension line');
  const roster = rm === undefined ? undefined : { size: Number(rm[1]), root: new Uint8Array(Buffer.from(rm[2]!, 'base64')) };
  const sigs = note
    .slice(split + 2, -1)
    .split('\n')
    .map((line) => {
      const s = /^\u2014 (\S+) (\S+)$/.exec(line);
      assert.ok(s !== null, 'signature line');
      return { name: s[1]!, blob: new Uint8Array(Buffer.from(s[2]!, 'base64')) };
    });
  return { text, origin, size: Number(size), root: new Uint8Array(Buffer.from(root, 'base64')), block: Number(m[1]), blockHash: new Uint8Array(Buffer.from(m[2]!, 'base64')), roster, sigs };
}

function noteSignedBy(note: Note, name: string, publicKey: Uint8Array): boolean {
  const kh = keyHashOf(name, publicKey);
  return note.sigs.some((s) => s.name === name && s.blob.length === 68 && eq(s.blob.subarray(0, 4), kh) && nobleVerify(publicKey, utf8(note.text), s.blob.subarray(4)));
}

type Plain = Record<string, unknown>;
const mapOf = (b: Uint8Array): Plain => {
  const v = plainDecode(b) as unknown;
  assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array), 'a CBOR map');
  return v as Plain;
};
const bytesOf = (v: unknown, what: string): Uint8Array => {
  assert.ok(v instanceof Uint8Array, `${what} is a byte string`);
  return v;
};

/** Keys from a list of site-signed statements about (role, id); docs/PROTOCOL.md §Receipts steps 4 and 8. */
function statementKeys(list: unknown, siteId: string, siteKeys: readonly Uint8Array[], role: string, id: string): Uint8Array[] {
  assert.ok(Array.isArray(list) && list.length >= 1 && list.length <= 16, `${role} statements`);
  return list.map((b) => {
    const signed = mapOf(bytesOf(b, 'signed statement'));
    const stmt = bytesOf(signed['stmt'], 'stmt');
    const by = bytesOf(signed['by'], 'by');
    assert.ok(siteKeys.some((k) => eq(k, by)), 'signed by a trusted site key');
    assert.ok(nobleVerify(by, cat(ascii('OTI-v1 roster statement'), Uint8Array.of(0), stmt), bytesOf(signed['sig'], 'sig')), 'statement signature');
    const s = mapOf(stmt);
    assert.equal(s['v'], 1);
    assert.equal(s['site'], siteId);
    assert.equal(s['role'], role);
    assert.equal(s['id'], id);
    assert.notEqual(s['op'], 'revoke');
    return bytesOf(s['key'], 'key');
  });
}

/** A receipt verifier that knows only docs/PROTOCOL.md §Receipts. Returns the provenance. */
function verifyReceiptFromDocument(receipt: Uint8Array, siteId: string, siteKeys: readonly Uint8Array[]): { provenance: string; lock?: string; ctr?: number } {
  const r = mapOf(receipt);
  const result = verifyReceiptSteps1To9(r, siteId, siteKeys);
  // 10. a newer checkpoint: same origin, signed by a gateway key, extended by the consistency proof
  if (r['newer'] !== undefined) {
    const n = r['newer'] as Plain;
    assert.deepEqual(Object.keys(n).sort(), ['checkpoint', 'proof']);
    const note = parseNote(r['checkpoint'] as string);
    const newer = parseNote(n['checkpoint'] as string);
    assert.equal(newer.origin, note.origin);
    const gatewayKeys = statementKeys(r['gateway'], siteId, siteKeys, 'gateway', note.origin.split('/')[2]!);
    assert.ok(gatewayKeys.some((k) => noteSignedBy(newer, newer.origin, k)), 'newer checkpoint signed by the gateway');
    assert.ok(newer.size > note.size && consistencyOk(note.size, newer.size, note.root, newer.root, n['proof'] as Uint8Array[]), 'newer extends the checkpoint');
  }
  return result;
}

/** §Receipts as C2SP tlog-proof, read from the document: the CBOR receipt it stands for. */
function receiptOfTlogProofFromDocument(text: string): Uint8Array {
  const split = text.indexOf('\n\n');
  const head = text.slice(0, split).split('\n');
  assert.equal(head[0], 'c2sp.org/tlog-proof@v1');
  const extra = mapOf(new Uint8Array(Buffer.from(/^extra (.+)$/.exec(head[1]!)![1]!, 'base64')));
  assert.equal(extra['type'], 'oti-receipt-extra');
  const index = Number(/^index (0|[1-9][0-9]*)$/.exec(head[2]!)![1]);
  const proof = head.slice(3).map((h) => new Uint8Array(Buffer.from(h, 'base64')));
  return plainEncode({ ...extra, type: 'oti-receipt', index, proof, checkpoint: text.slice(split + 2) });
}

function verifyReceiptSteps1To9(r: Plain, siteId: string, siteKeys: readonly Uint8Array[]): { provenance: string; lock?: string; ctr?: number } {
  // 1. the receipt map
  assert.ok(r['v'] === 1 || r['v'] === 2);
  assert.equal(r['type'], 'oti-receipt');
  const entry = bytesOf(r['entry'], 'entry');
  const index = r['index'];
  assert.ok(typeof index === 'number' && Number.isSafeInteger(index) && index >= 0);
  const proof = r['proof'];
  assert.ok(Array.isArray(proof) && proof.every((p) => p instanceof Uint8Array && p.length === 32));
  assert.ok(typeof r['checkpoint'] === 'string');
  // 2-3. the checkpoint and its origin
  const note = parseNote(r['checkpoint']);
  const om = /^oti\/([a-z0-9][a-z0-9._-]{0,63})\/([a-z0-9][a-z0-9._-]{0,63})$/.exec(note.origin);
  assert.ok(om !== null && om[1] === siteId, 'origin names the trusted site');
  const gatewayId = om[2]!;
  // 4-5. the gateway keys and the checkpoint signature
  const gatewayKeys = statementKeys(r['gateway'], siteId, siteKeys, 'gateway', gatewayId);
  assert.ok(gatewayKeys.some((k) => noteSignedBy(note, note.origin, k)), 'checkpoint signed by the gateway');
  // 6. inclusion
  assert.ok(inclusionOk(leafOf(entry), index, note.size, proof as Uint8Array[], note.root), 'inclusion proof');
  // 7-8. the entry and, for a lock event, the lock's own signature
  const e = mapOf(entry);
  assert.equal(e['v'], 1);
  // 9. the roster commitment: version 2 and each member's statements are its leaf in the roster tree
  assert.equal(r['v'], note.roster === undefined ? 1 : 2, 'receipt version follows the checkpoint');
  if (note.roster !== undefined) {
    const lockId = e['kind'] === 'lock-event' ? (mapOf(lockPayloadOf(e['body'] as Plain))['lock'] as string) : undefined;
    assert.ok(memberInRoster(note.roster, 'gateway', gatewayId, r['gateway'], r['gatewayAt']), 'gateway statements complete');
    if (lockId !== undefined) assert.ok(memberInRoster(note.roster, 'lock', lockId, r['lock'], r['lockAt']), 'lock statements complete');
  }
  if (e['kind'] !== 'lock-event') {
    assert.equal(r['lock'], undefined);
    return { provenance: 'gateway' };
  }
  const body = e['body'] as Plain;
  if (body['prov'] === 'lock-signed') {
    const cose = plainDecode(bytesOf(body['cose'], 'cose')) as unknown[];
    assert.ok(Array.isArray(cose) && cose.length === 4);
    assert.deepEqual(cose[0], Uint8Array.of(0xa1, 0x01, 0x27));
    const payload = bytesOf(cose[2], 'payload');
    const event = mapOf(payload);
    const lockKeys = statementKeys(r['lock'], siteId, siteKeys, 'lock', event['lock'] as string);
    assert.ok(lockKeys.some((k) => nobleVerify(k, sigStructureBytes(payload), bytesOf(cose[3], 'signature'))), 'lock signature');
    return { provenance: 'lock-signed', lock: event['lock'] as string, ctr: event['ctr'] as number };
  }
  const event = mapOf(bytesOf(body['event'], 'event'));
  statementKeys(r['lock'], siteId, siteKeys, 'lock', event['lock'] as string);
  return { provenance: 'unsigned', lock: event['lock'] as string, ctr: event['ctr'] as number };
}

/** §Roster commitment from the entries: members' statements in chain order, leaves ordered by (role, id). */
function rosterDigestOf(entries: readonly Uint8Array[]): { size: number; root: Uint8Array } {
  const histories = new Map<string, { role: string; id: string; statements: Uint8Array[] }>();
  for (const bytes of entries) {
    const e = mapOf(bytes);
    if (e['kind'] !== 'roster') continue;
    const signed = bytesOf((e['body'] as Plain)['signed'], 'signed');
    const st = mapOf(bytesOf(mapOf(signed)['stmt'], 'stmt'));
    const key = `${String(st['role'])}\0${String(st['id'])}`;
    const h = histories.get(key) ?? { role: st['role'] as string, id: st['id'] as string, statements: [] };
    h.statements.push(signed);
    histories.set(key, h);
  }
  const keys = [...histories.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const leaves = keys.map((k) => {
    const h = histories.get(k)!;
    return leafOf(plainEncode([h.role, h.id, h.statements]));
  });
  return { size: leaves.length, root: mth(leaves) };
}

/** The event payload of a lock-event body: the COSE payload when lock-signed, else the event. */
function lockPayloadOf(body: Plain): Uint8Array {
  if (body['prov'] !== 'lock-signed') return bytesOf(body['event'], 'event');
  return bytesOf((plainDecode(bytesOf(body['cose'], 'cose')) as unknown[])[2], 'payload');
}

/** §Roster commitment: leaf = SHA-256(0x00 || CBOR [role, id, statements]) at `at[0]` under the committed root. */
function memberInRoster(roster: { size: number; root: Uint8Array }, role: string, id: string, statements: unknown, at: unknown): boolean {
  assert.ok(Array.isArray(statements) && Array.isArray(at) && at.length === 2 && Array.isArray(at[1]), `${role} proof`);
  const leaf = leafOf(plainEncode([role, id, statements]));
  return inclusionOk(leaf, at[0] as number, roster.size, at[1] as Uint8Array[], roster.root);
}

/** Rows `| \`NAME\` | text |` of the table under a level-2 heading of docs/PROTOCOL.md. */
function docTable(heading: string): [string, string][] {
  const start = DOC.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `docs/PROTOCOL.md has a section "${heading}"`);
  const end = DOC.indexOf('\n## ', start + 1);
  const section = DOC.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^\| `([^`]+)` \| (.*?) \|$/gm)].map((m) => [m[1]!, m[2]!.trim()]);
}

// ---------------------------------------------------------------------------------------------

void test('the generator reproduces test/vectors/protocol.json byte for byte', async () => {
  assert.equal(vectorsJson(await makeVectors()), VECTORS_TEXT, 'run `node dist/test/support/make-vectors.js --write` and review the diff');
});

void test('keys: public keys and fingerprints follow from the seeds (noble)', () => {
  for (const k of Object.values(V.keys)) {
    assert.equal(toHex(ed.getPublicKey(hex(k.seed))), k.publicKey);
    const fp = toHex(sha256(hex(k.publicKey))).slice(0, 16);
    assert.equal(k.fingerprint, `${fp.slice(0, 4)}:${fp.slice(4, 8)}:${fp.slice(8, 12)}:${fp.slice(12, 16)}`);
    assert.equal(fingerprint(hex(k.publicKey)), k.fingerprint);
  }
});

void test('signature contexts: the vectors and the document list exactly SIGNATURE_CONTEXTS', () => {
  assert.deepEqual(
    V.contexts.map((c) => c.context),
    [...SIGNATURE_CONTEXTS],
  );
  for (const c of V.contexts) assert.equal(c.prefix, toHex(cat(ascii(c.context), Uint8Array.of(0))));
  assert.deepEqual(
    docTable('Keys and signatures').map(([c]) => c).filter((c) => c.startsWith('OTI-v1 ')),
    [...SIGNATURE_CONTEXTS],
  );
});

void test('every encoding decodes strictly and re-encodes to the same bytes', () => {
  const all: [string, string][] = [
    ['lock event', V.lockEvent.event],
    ['Sig_structure', V.lockEvent.sigStructure],
    ['COSE_Sign1', V.lockEvent.cose],
    ...Object.entries(V.roster).flatMap(([k, s]): [string, string][] => [
      [`${k} statement`, s.statement],
      [`${k} signed`, s.signed],
    ]),
    ...V.entries.map((e): [string, string] => [`entry ${e.index}`, e.entry]),
    ...V.blocks.map((b): [string, string] => [`block ${b.n}`, b.header]),
    ['receipt', V.receipt.receipt],
    ['receipt against an older checkpoint', V.receiptOlder.receipt],
    ['evidence', V.evidence.evidence],
  ];
  for (const [what, h] of all) {
    const b = hex(h);
    assert.equal(toHex(encode(decode(b, 1 << 20))), h, what);
  }
  // The typed decoders accept them too.
  assert.equal(decodeLockEvent(hex(V.lockEvent.event)).ctr, 1);
  assert.deepEqual(parseCoseSign1(hex(V.lockEvent.cose)).payload, hex(V.lockEvent.event));
  for (const s of Object.values(V.roster)) {
    decodeStatement(hex(s.statement));
    assert.deepEqual(decodeSigned(hex(s.signed)).stmt, hex(s.statement));
  }
  for (const e of V.entries) assert.equal(decodeEntry(hex(e.entry)).body.kind, e.kind);
  for (const b of V.blocks) assert.equal(decodeBlockHeader(hex(b.header)).n, b.n);
  assert.equal(decodeReceipt(hex(V.receipt.receipt)).index, V.inclusion.index);
  assert.equal(decodeEvidence(hex(V.evidence.evidence)).a.size, 5);
});

void test('rejected encodings fail with the documented error code', () => {
  for (const r of V.rejected) {
    if (r.cbor.length > 0 && r.cbor.length <= 40) assert.ok(DOC.includes(`| \`${r.cbor}\` | ${r.error} |`), `docs/PROTOCOL.md lists ${r.cbor} as ${r.error}`);
    assert.throws(
      () => decode(hex(r.cbor), 1024),
      (e) => isOtiError(e, r.error as keyof typeof ERROR_CODES),
      r.description,
    );
  }
});

void test('hashes recomputed from the documented rules', () => {
  assert.equal(toHex(sha256()), V.emptyRoot);
  const leaves: Uint8Array[] = [];
  for (const e of V.entries) {
    const leaf = leafOf(hex(e.entry));
    assert.equal(toHex(leaf), e.leafHash, `leaf ${e.index}`);
    leaves.push(leaf);
    const m = mapOf(hex(e.entry));
    if (m['kind'] === 'lock-event') {
      const body = m['body'] as Plain;
      const payload = body['prov'] === 'lock-signed' ? ((plainDecode(body['cose'] as Uint8Array) as unknown[])[2] as Uint8Array) : (body['event'] as Uint8Array);
      const ev = mapOf(payload);
      assert.equal(e.id, `${String(ev['lock'])}:${String(ev['ctr'])}`);
    } else {
      assert.equal(e.id, e.leafHash);
    }
  }
  let prev: Uint8Array = new Uint8Array(32);
  for (const b of V.blocks) {
    const h = mapOf(hex(b.header));
    const size = b.first + b.count;
    assert.equal(h['chain'], V.origin);
    assert.equal(h['n'], b.n);
    assert.deepEqual(h['prev'], prev, `block ${b.n} links to the block before`);
    assert.equal(toHex(mth(leaves.slice(0, size))), b.root, `root of block ${b.n}`);
    assert.deepEqual(h['root'], hex(b.root));
    const hash = sha256(ascii('OTI-v1 block'), Uint8Array.of(0), hex(b.header));
    assert.equal(toHex(hash), b.blockHash);
    const roster = rosterDigestOf(V.entries.slice(0, size).map((e) => hex(e.entry)));
    const text = `${V.origin}\n${size}\n${Buffer.from(hex(b.root)).toString('base64')}\noti-block ${b.n} ${Buffer.from(hash).toString('base64')}\noti-roster ${roster.size} ${Buffer.from(roster.root).toString('base64')}\n`;
    assert.equal(b.checkpointText, text);
    const kh = keyHashOf(V.checkpointKey.name, hex(V.checkpointKey.publicKey));
    assert.equal(toHex(kh), V.checkpointKey.keyHash);
    const line = `\u2014 ${V.origin} ${Buffer.from(cat(kh, hex(b.checkpointSignature))).toString('base64')}\n`;
    assert.equal(b.checkpoint, `${text}\n${line}`);
    prev = hash;
  }
  assert.deepEqual(
    V.inclusion.walk.map((s) => s.result).at(-1),
    V.inclusion.root,
  );
});

void test('signatures verify with @noble/ed25519 and fail when a byte changes', () => {
  const front = hex(V.keys['front-door'].publicKey);
  const sigStructure = sigStructureBytes(hex(V.lockEvent.event));
  assert.equal(toHex(sigStructure), V.lockEvent.sigStructure);
  assert.equal(toHex(cat(Uint8Array.of(0x84), bstr(hex(V.lockEvent.protected)), Uint8Array.of(0xa0), bstr(hex(V.lockEvent.event)), bstr(hex(V.lockEvent.signature)))), V.lockEvent.cose);
  assert.ok(nobleVerify(front, sigStructure, hex(V.lockEvent.signature)));
  for (const e of V.entries) {
    const body = mapOf(hex(e.entry))['body'] as Plain;
    if (body['prov'] !== 'lock-signed') continue;
    const [, , payload, sig] = plainDecode(body['cose'] as Uint8Array) as [Uint8Array, unknown, Uint8Array, Uint8Array];
    assert.ok(nobleVerify(front, sigStructureBytes(payload), sig), `lock signature of entry ${e.index}`);
  }
  const site = hex(V.keys.site.publicKey);
  for (const s of Object.values(V.roster)) {
    const msg = cat(ascii('OTI-v1 roster statement'), Uint8Array.of(0), hex(s.statement));
    assert.equal(toHex(msg), s.signedMessage);
    assert.equal(s.by, V.keys.site.publicKey);
    assert.ok(nobleVerify(site, msg, hex(s.signature)));
    const bad = hex(s.signedMessage);
    bad[bad.length - 1]! ^= 1;
    assert.ok(!nobleVerify(site, bad, hex(s.signature)));
    assert.ok(!nobleVerify(site, hex(s.statement), hex(s.signature)), 'the context is part of the signed bytes');
  }
  const gw = hex(V.keys.gateway.publicKey);
  for (const b of V.blocks) {
    assert.ok(nobleVerify(gw, utf8(b.checkpointText), hex(b.checkpointSignature)), `checkpoint ${b.n}`);
    verifyCheckpoint(parseCheckpoint(b.checkpoint), V.origin, gw, nobleVerify);
    assert.ok(!nobleVerify(gw, utf8(b.checkpointText.slice(0, -1)), hex(b.checkpointSignature)), 'the final newline is signed');
  }
});

void test('proofs verify with the ledger code and with RFC 9162 written out here', () => {
  const inc = V.inclusion;
  const proof = inc.proof.map(hex);
  assert.ok(inclusionOk(hex(inc.leafHash), inc.index, inc.size, proof, hex(inc.root)));
  assert.ok(verifyInclusion(hex(inc.leafHash), inc.index, inc.size, proof, hex(inc.root)));
  assert.ok(!inclusionOk(hex(inc.leafHash), inc.index + 1, inc.size, proof, hex(inc.root)));
  for (const c of V.consistency) {
    const p = c.proof.map(hex);
    assert.ok(consistencyOk(c.oldSize, c.newSize, hex(c.oldRoot), hex(c.newRoot), p), `consistency ${c.oldSize} -> ${c.newSize}`);
    assert.ok(verifyConsistency(c.oldSize, c.newSize, hex(c.oldRoot), hex(c.newRoot), p));
    assert.ok(!consistencyOk(c.oldSize, c.newSize, hex(c.newRoot), hex(c.newRoot), p));
  }
});

void test('the receipt verifies with ledger/receipt.ts, using noble for Ed25519', () => {
  const trust = { siteId: V.site, siteKeys: [hex(V.receipt.siteKey)] };
  const r = verifyReceipt(hex(V.receipt.receipt), trust, { ed25519: nobleVerify });
  assert.equal(r.provenance, 'lock-signed');
  assert.equal(r.index, V.inclusion.index);
  assert.equal(r.gatewayId, V.gateway);
  assert.throws(() => verifyReceipt(hex(V.receipt.receipt), { siteId: V.site, siteKeys: [hex(V.keys.gateway.publicKey)] }, { ed25519: nobleVerify }), (e) => isOtiError(e, 'ERR_RECEIPT_INVALID'));
});

void test('the receipt verifies with a minimal verifier written from docs/PROTOCOL.md alone', () => {
  const siteKeys = [hex(V.receipt.siteKey)];
  const bytes = hex(V.receipt.receipt);
  assert.deepEqual(verifyReceiptFromDocument(bytes, V.site, siteKeys), { provenance: 'lock-signed', lock: 'front-door', ctr: 1 });
  // A flipped bit anywhere in the receipt must make the strict verifier refuse it. (The minimal
  // verifier skips the canonical-form checks, so it is only shown to accept the good receipt
  // and to refuse a wrong site key.)
  const trust = { siteId: V.site, siteKeys };
  for (let i = 0; i < bytes.length; i += 7) {
    const bad = new Uint8Array(bytes);
    bad[i]! ^= 0x01;
    assert.throws(() => verifyReceipt(bad, trust, { ed25519: nobleVerify }), (e) => isOtiError(e, 'ERR_RECEIPT_INVALID'), `flip at byte ${i}`);
  }
  assert.throws(() => verifyReceiptFromDocument(bytes, V.site, [hex(V.keys.gateway.publicKey)]));
});

void test('the receipt against an older checkpoint verifies with the code and from the document (step 10), and ties to the checkpoint of block 3', () => {
  const siteKeys = [hex(V.receipt.siteKey)];
  const bytes = hex(V.receiptOlder.receipt);
  const v = verifyReceipt(bytes, { siteId: V.site, siteKeys }, { ed25519: nobleVerify, held: { checkpoint: V.blocks[3]!.checkpoint } });
  assert.deepEqual([v.checkpoint.size, v.newer?.size, v.held?.size, v.roster], [V.receiptOlder.size, V.blocks[3]!.first + V.blocks[3]!.count, V.blocks[3]!.first + V.blocks[3]!.count, 'committed']);
  assert.equal(decodeReceipt(bytes).checkpoint, V.blocks[2]!.checkpoint);
  assert.deepEqual(verifyReceiptFromDocument(bytes, V.site, siteKeys), { provenance: 'lock-signed', lock: 'front-door', ctr: 1 });
  // The consistency proof it carries is the 7 -> 10 proof of the consistency vector.
  assert.deepEqual(decodeReceipt(bytes).newer!.proof.map(toHex), V.consistency.find((c) => c.oldSize === V.receiptOlder.size)!.proof);
});

void test('the tlog-proof vectors are the receipts in the text form, read from the document alone', () => {
  for (const [text, cbor] of [[V.tlogProof.receipt, V.receipt.receipt], [V.tlogProof.receiptOlder, V.receiptOlder.receipt]] as const) {
    assert.equal(toHex(receiptOfTlogProofFromDocument(text)), cbor);
    assert.equal(toHex(receiptBytes(Buffer.from(text))), cbor);
    assert.ok(text.endsWith(`\n\n${decodeReceipt(hex(cbor)).checkpoint}`), 'the checkpoint note verbatim');
  }
});

void test('the equivocation evidence verifies, with the code and from the document', () => {
  const gw = hex(V.keys.gateway.publicKey);
  const ev = decodeEvidence(hex(V.evidence.evidence));
  assert.ok(verifyEvidence(ev, gw, nobleVerify));
  const m = mapOf(hex(V.evidence.evidence));
  assert.equal(m['type'], 'oti-equivocation');
  const a = parseNote(m['a'] as string);
  const b = parseNote(m['b'] as string);
  assert.ok(noteSignedBy(a, V.origin, gw) && noteSignedBy(b, V.origin, gw));
  assert.ok(a.size < b.size);
  const root = bytesOf(m['root'], 'root');
  assert.ok(!eq(root, a.root), 'b commits to another root at a.size');
  assert.ok(consistencyOk(a.size, b.size, root, b.root, m['proof'] as Uint8Array[]));
  assert.equal(toHex(root), toHex(mth(V.entries.slice(0, a.size).map((e) => hex(e.leafHash)))));
});

void test('the error code table of docs/PROTOCOL.md is ERROR_CODES', () => {
  assert.deepEqual(docTable('Error codes'), Object.entries(ERROR_CODES));
});

void test('every hash and the receipt quoted in docs/PROTOCOL.md come from the vectors', () => {
  const hashes = DOC.match(/\b[0-9a-f]{64}\b/g) ?? [];
  assert.ok(hashes.length > 10);
  const smallOrder = SMALL_ORDER_ENCODINGS.map((e) => toHex(e));
  for (const h of hashes) assert.ok(VECTORS_TEXT.includes(h) || smallOrder.includes(h), `${h} is not in test/vectors/protocol.json`);
});

void test('docs/PROTOCOL.md lists the seven small-order encodings the verifier refuses, exactly', () => {
  const listed = [...DOC.matchAll(/^ {3}\| `([0-9a-f]{64})` \|/gm)].map((m) => m[1]);
  assert.deepEqual(listed, SMALL_ORDER_ENCODINGS.map((e) => toHex(e)));
  const block = /```receipt-hex\n([0-9a-f\n]+)```/.exec(DOC);
  assert.ok(block !== null, 'the worked example quotes the receipt');
  assert.equal(block[1]!.replace(/\n/g, ''), V.receipt.receipt);
});
