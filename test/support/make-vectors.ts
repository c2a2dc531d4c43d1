/**
 * Deterministic generator of the protocol test vectors (test/vectors/protocol.json), built with
 * the project's own ledger code. Every key comes from a fixed seed and every clock is fixed, and
 * Ed25519 is deterministic, so the output is byte-identical on every run; the vectors test
 * regenerates it and compares with the committed file.
 *
 *   node dist/test/support/make-vectors.js           prints the JSON
 *   node dist/test/support/make-vectors.js --write   writes test/vectors/protocol.json
 *
 * The chain is built for real (LedgerStore + Chain in a temporary folder). Block boundaries are
 * made deterministic by appending one block at a time and awaiting it: block 0 is the genesis
 * entry alone, every later block is exactly `maxBlockEntries` (3) concurrent appends, which
 * seals the block by count rather than by timer.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fingerprint, keyPairFromSeed, sha256, signedMessage, Signer, SIGNATURE_CONTEXTS, toHex, type KeyPair } from '../../ledger/crypto.js';
import { decode, encode } from '../../ledger/base/cbor.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { encodeLockEvent, type LockEvent } from '../../ledger/lockevent.js';
import { coseSign1, sigStructure, COSE_PROTECTED_EDDSA } from '../../ledger/cose.js';
import { encodeSigned, signStatement, type RosterStatement, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { decodeEntry, type EntryInput } from '../../ledger/entry.js';
import { leafHash, nodeHash, inclusionProof, consistencyProof, EMPTY_ROOT, verifyInclusion, verifyConsistency } from '../../ledger/merkle.js';
import { blockHash } from '../../ledger/block.js';
import { keyHash, signCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain, chainOrigin, type AppendResult } from '../../ledger/chain.js';
import { decodeReceipt, receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { encodeTlogProof, receiptBytes } from '../../ledger/tlog-proof.js';
import { memberLeafData } from '../../ledger/roster-commitment.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { compareWithChain, encodeEvidence, verifyEvidence } from '../../ledger/evidence.js';
import { verifyChain } from '../../ledger/verify.js';

export const SITE_ID = 'demo-site';
export const GATEWAY_ID = 'gw-1';
/** Base of every clock in the vectors: 2023-11-14T22:13:20Z, in ms since 1970. */
export const T0 = 1_700_000_000_000;

const seed = (byte: number): Uint8Array => new Uint8Array(32).fill(byte);
const hex = toHex;

function keyVector(description: string, k: KeyPair): { description: string; seed: string; publicKey: string; fingerprint: string } {
  return { description, seed: hex(k.seed), publicKey: hex(k.publicKey), fingerprint: fingerprint(k.publicKey) };
}

function statementVector(description: string, s: SignedStatement): Record<string, string> {
  return {
    description,
    statement: hex(s.stmt),
    signedMessage: hex(signedMessage('OTI-v1 roster statement', s.stmt)),
    by: hex(s.by),
    signature: hex(s.sig),
    signed: hex(encodeSigned(s)),
  };
}

/** The RFC 9162 §2.1.3.2 walk, step by step, for the worked example in docs/PROTOCOL.md. */
function inclusionWalk(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): { step: number; fn: number; sn: number; sibling: string; side: 'left' | 'right'; result: string }[] {
  const steps = [];
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const [i, p] of proof.entries()) {
    const before = { fn, sn };
    let side: 'left' | 'right';
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      side = 'left';
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
      side = 'right';
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
    steps.push({ step: i + 1, fn: before.fn, sn: before.sn, sibling: hex(p), side, result: hex(r) });
  }
  return steps;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`vector self-check failed: ${what}`);
}

export async function makeVectors(): Promise<Record<string, unknown>> {
  const siteKey = keyPairFromSeed(seed(0x01));
  const gatewayKey = keyPairFromSeed(seed(0x02));
  const frontKey = keyPairFromSeed(seed(0x03));
  const sideKey = keyPairFromSeed(seed(0x04));
  const site = new Signer(siteKey.seed);
  const gateway = new Signer(gatewayKey.seed);
  const front = new Signer(frontKey.seed);
  const trust: SiteTrust = { siteId: SITE_ID, siteKeys: [siteKey.publicKey] };
  const origin = chainOrigin(SITE_ID, GATEWAY_ID);

  // Roster statements.
  const gwStmt: RosterStatement = { site: SITE_ID, op: 'enroll', role: 'gateway', id: GATEWAY_ID, key: gatewayKey.publicKey, time: T0, expires: T0 + 365 * 86_400_000 };
  const frontStmt: RosterStatement = { site: SITE_ID, op: 'enroll', role: 'lock', id: 'front-door', key: frontKey.publicKey, time: T0 };
  const sideStmt: RosterStatement = { site: SITE_ID, op: 'enroll', role: 'lock', id: 'side-gate', key: sideKey.publicKey, time: T0, unsigned: true };
  const gwSigned = signStatement(site, gwStmt);
  const frontSigned = signStatement(site, frontStmt);
  const sideSigned = signStatement(site, sideStmt);

  // Lock events.
  const ev1: LockEvent = { lock: 'front-door', ctr: 1, time: T0 + 61_000, type: 'unlocked', cred: Uint8Array.of(0xca, 0xfe, 0x00, 0x01), ext: { fw: '1.4.2' } };
  const ev2: LockEvent = { lock: 'front-door', ctr: 2, time: T0 + 62_000, type: 'locked' };
  const ev5: LockEvent = { lock: 'front-door', ctr: 5, time: T0 + 125_000, type: 'door-ajar' };
  const evSide: LockEvent = { lock: 'side-gate', ctr: 1, time: T0 + 63_000, type: 'failed-attempt' };
  const ev1Bytes = encodeLockEvent(ev1);
  const ev1Cose = coseSign1(front, ev1Bytes);

  // The chain, built for real.
  const dir = await mkdtemp(join(tmpdir(), 'oti-vectors-'));
  let clock = T0;
  const store = await LedgerStore.open(join(dir, 'ledger'));
  const out: Record<string, unknown> = {};
  try {
    const chain = await Chain.open({ store, trust, gatewayId: GATEWAY_ID, key: gatewayKey, genesis: gwSigned, now: () => clock, sealDelayMs: 0, maxBlockEntries: 3 });
    const results: AppendResult[] = [];
    const block = async (time: number, inputs: EntryInput[]): Promise<void> => {
      // Load the per-lock counters first: with them cached, every append of the block is
      // admitted within the same turn of the event loop, before the seal timer can fire.
      for (const lock of ['front-door', 'side-gate']) await chain.lastCounter(lock);
      clock = time;
      results.push(...(await Promise.all(inputs.map((i) => chain.append(i)))));
    };
    await block(T0 + 60_000, [
      { kind: 'roster', signed: frontSigned },
      { kind: 'roster', signed: sideSigned },
      { kind: 'health', source: 'gateway', status: 'ok', detail: 'ble scanner up' },
    ]);
    await block(T0 + 64_000, [
      { kind: 'lock-event', cose: ev1Cose },
      { kind: 'lock-event', cose: coseSign1(front, encodeLockEvent(ev2)) },
      { kind: 'lock-event', unsignedEvent: encodeLockEvent(evSide) },
    ]);
    await block(T0 + 126_000, [
      { kind: 'gap', lock: 'front-door', from: 3, to: 4 },
      { kind: 'gap', source: 'ble', start: T0 + 90_000, end: T0 + 120_000, reason: 'radio restart' },
      { kind: 'lock-event', cose: coseSign1(front, encodeLockEvent(ev5)) },
    ]);
    const cs = chain;
    const size = cs.head.size;
    check(size === 10 && cs.head.n === 3, 'chain shape');
    check(results.every((r, i) => r.index === i + 1 && r.block === Math.floor(i / 3) + 1), 'block boundaries');

    const entries = [];
    const descriptions = [
      'roster: site-signed enrolment of gateway gw-1 (genesis entry; must be first)',
      'roster: site-signed enrolment of lock front-door',
      'roster: site-signed enrolment of lock side-gate, allowed to send unsigned events',
      'health: gateway status report with detail',
      'lock-event, prov lock-signed: front-door counter 1 (COSE_Sign1 of the lockEvent vector)',
      'lock-event, prov lock-signed: front-door counter 2',
      'lock-event, prov unsigned: side-gate counter 1 (bare lock event)',
      'gap, lock form: counters 3..4 of front-door never arrived',
      'gap, source form: the BLE source was blind for 30 s',
      'lock-event, prov lock-signed: front-door counter 5',
    ];
    for (let i = 0; i < size; i++) {
      const bytes = await cs.entry(i);
      const leaf = leafHash(bytes);
      const e = decodeEntry(bytes);
      const id = e.body.kind === 'lock-event' ? `${e.body.event.lock}:${e.body.event.ctr}` : hex(leaf);
      check((await chain.indexOf(id)) === i, `entry id ${id}`);
      entries.push({ index: i, description: descriptions[i]!, kind: e.body.kind, id, block: (await cs.blockOf(i)).header.n, entry: hex(bytes), leafHash: hex(leaf) });
    }

    const blocks = [];
    for (let n = 0; n <= cs.head.n; n++) {
      const b = await cs.block(n);
      verifyCheckpoint(b.checkpoint, origin, gatewayKey.publicKey);
      blocks.push({
        n,
        first: b.header.first,
        count: b.header.count,
        time: b.header.time,
        header: hex(b.headerBytes),
        blockHash: hex(blockHash(b.headerBytes)),
        root: hex(b.header.root),
        checkpointText: b.checkpoint.text,
        checkpointSignature: hex(b.checkpoint.signatures[0]!.signature),
        checkpoint: b.checkpoint.note,
      });
    }
    const report = await verifyChain(cs, { trust });
    check(report.size === size && report.lockSignatures === 3 && report.unsignedEvents === 1, 'verifyChain');

    // Proofs.
    const final = chain.checkpoint!;
    const incIndex = 4;
    const incProof = await inclusionProof(cs, incIndex, size);
    const incLeaf = leafHash(await cs.entry(incIndex));
    check(verifyInclusion(incLeaf, incIndex, size, incProof, final.root), 'inclusion proof');
    const consistency = [];
    for (const n of [1, 2]) {
      const old = (await cs.block(n)).header;
      const oldSize = old.first + old.count;
      const proof = await consistencyProof(cs, oldSize, size);
      check(verifyConsistency(oldSize, size, old.root, final.root, proof), `consistency proof from ${oldSize}`);
      consistency.push({ oldSize, newSize: size, oldRoot: hex(old.root), newRoot: hex(final.root), proof: proof.map(hex) });
    }

    // Receipt of front-door:1.
    const receipt = await receiptFor(chain, incIndex);
    const verified = verifyReceipt(receipt, trust);
    check(verified.provenance === 'lock-signed' && verified.roster === 'committed', 'receipt');
    // The same entry against the older checkpoint of block 2, with block 3's and the consistency proof.
    const olderSize = (await chain.block(2)).checkpoint.size;
    const receiptOlder = await receiptFor(chain, incIndex, { size: olderSize });
    const verifiedOlder = verifyReceipt(receiptOlder, trust);
    check(verifiedOlder.checkpoint.size === olderSize && verifiedOlder.newer?.size === size && verifiedOlder.roster === 'committed', 'receipt against an older checkpoint');
    const tlogProof = encodeTlogProof(decodeReceipt(receipt));
    const tlogProofOlder = encodeTlogProof(decodeReceipt(receiptOlder));
    check(bytesEqual(receiptBytes(Buffer.from(tlogProof)), receipt) && bytesEqual(receiptBytes(Buffer.from(tlogProofOlder)), receiptOlder), 'tlog-proof round trip');
    const rosterTree = chain.sealed.rosterTree;
    const rosterDigest = await rosterTree.digest();
    check(final.roster !== undefined && bytesEqual(final.roster.root, rosterDigest.root), 'roster commitment');
    const rosterMembers = [...chain.roster.members()].map((m) => ({ role: m.role, id: m.id, leafData: memberLeafData(m.role, m.id, m.history) }));
    rosterMembers.sort((a, b) => Buffer.compare(Buffer.from(`${a.role}\0${a.id}`), Buffer.from(`${b.role}\0${b.id}`)));

    // Equivocation: the gateway key also signed a checkpoint of size 5 whose root is not the
    // root of the first 5 entries of its chain.
    const forged = signCheckpoint({ origin, size: 5, root: sha256(Buffer.from('a different history', 'ascii')), block: 2, blockHash: sha256(Buffer.from('a different block', 'ascii')) }, gateway, origin);
    const evidence = await compareWithChain(cs, final, forged, gatewayKey.publicKey);
    if (evidence === undefined || !verifyEvidence(evidence, gatewayKey.publicKey)) throw new Error('vector self-check failed: evidence');
    await chain.close();

    out['description'] =
      'OTI Gateway protocol test vectors (docs/PROTOCOL.md). Generated by test/support/make-vectors.ts from fixed seeds and fixed clocks; byte-identical on every run. Byte strings are lower-case hex; notes are UTF-8 text; times are ms since 1970.';
    out['site'] = SITE_ID;
    out['gateway'] = GATEWAY_ID;
    out['origin'] = origin;
    out['keys'] = {
      site: keyVector('site authority key, seed 32 x 0x01', siteKey),
      gateway: keyVector('gateway gw-1 key, seed 32 x 0x02', gatewayKey),
      'front-door': keyVector('lock front-door key, seed 32 x 0x03', frontKey),
      'side-gate': keyVector('lock side-gate key, seed 32 x 0x04 (enrolled as unsigned; never signs)', sideKey),
    };
    out['contexts'] = SIGNATURE_CONTEXTS.map((c) => ({ context: c, prefix: hex(signedMessage(c, new Uint8Array(0))) }));
    out['lockEvent'] = {
      description: 'front-door counter 1, signed by the front-door key in COSE_Sign1',
      value: { v: 1, lock: ev1.lock, ctr: ev1.ctr, time: ev1.time, type: ev1.type, cred: hex(ev1.cred!), ext: ev1.ext },
      event: hex(ev1Bytes),
      protected: hex(COSE_PROTECTED_EDDSA),
      sigStructure: hex(sigStructure(ev1Bytes)),
      signature: hex(ev1Cose.subarray(ev1Cose.length - 64)),
      cose: hex(ev1Cose),
    };
    out['roster'] = {
      gatewayEnroll: statementVector('enrol gateway gw-1 with an expiry', gwSigned),
      lockEnroll: statementVector('enrol lock front-door', frontSigned),
      unsignedLockEnroll: statementVector('enrol lock side-gate, which may send unsigned events', sideSigned),
    };
    out['emptyRoot'] = hex(EMPTY_ROOT);
    out['checkpointKey'] = {
      description: 'signed-note key of the gateway: name = origin, key hash = SHA-256(name || 0x0a || 0x01 || public key)[0:4]',
      name: origin,
      publicKey: hex(gatewayKey.publicKey),
      keyHash: hex(keyHash(origin, gatewayKey.publicKey)),
    };
    out['entries'] = entries;
    out['blocks'] = blocks;
    out['inclusion'] = {
      description: 'RFC 9162 inclusion proof of entry 4 in the tree of the last checkpoint',
      index: incIndex,
      size,
      leafHash: hex(incLeaf),
      proof: incProof.map(hex),
      root: hex(final.root),
      walk: inclusionWalk(incLeaf, incIndex, size, incProof),
    };
    out['consistency'] = consistency;
    out['receipt'] = {
      description: 'receipt of entry front-door:1 (index 4) against the checkpoint of block 3; verifies with the site key only',
      entryId: 'front-door:1',
      siteKey: hex(siteKey.publicKey),
      receipt: hex(receipt),
    };
    out['receiptOlder'] = {
      description: `receipt of entry front-door:1 (index 4) against the older checkpoint of block 2 (size ${olderSize}), carrying "newer": the checkpoint of block 3 and the consistency proof from ${olderSize} to ${size}`,
      entryId: 'front-door:1',
      size: olderSize,
      receipt: hex(receiptOlder),
    };
    out['tlogProof'] = {
      description: 'the receipt and receiptOlder as C2SP tlog-proofs (c2sp.org/tlog-proof@v1, text); extra is the CBOR receipt map less index, proof and checkpoint, with type oti-receipt-extra',
      receipt: tlogProof,
      receiptOlder: tlogProofOlder,
    };
    out['rosterCommitment'] = {
      description: 'the roster commitment of the last checkpoint: its members in (role, id) order, each leaf data = CBOR [role, id, [signed statements]], leaf hash = SHA-256(0x00 || leaf data), RFC 9162 root',
      members: rosterMembers.map((m) => ({ role: m.role, id: m.id, leafData: hex(m.leafData), leafHash: hex(leafHash(m.leafData)) })),
      size: rosterDigest.size,
      root: hex(rosterDigest.root),
      gatewayProof: (await rosterTree.proof('gateway', GATEWAY_ID)).proof.map(hex),
    };
    out['evidence'] = {
      description: 'equivocation: checkpoint a (size 5) and checkpoint b (block 3, size 10) are both signed by gw-1, but b commits to another root at size 5',
      a: forged.note,
      b: final.note,
      root: hex(evidence.root!),
      proof: evidence.proof!.map(hex),
      evidence: hex(encodeEvidence(evidence)),
    };
    out['rejected'] = rejectedEncodings();
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

/** Inputs the strict decoder must refuse; the error code recorded is the one ledger/base/cbor.ts gives. */
function rejectedEncodings(): { description: string; cbor: string; error: string }[] {
  const ok = hex(encode({ a: 1 }));
  const cases: [string, string][] = [
    ['integer 1 with a 1-byte argument (not shortest form)', '1801'],
    ['integer 255 with a 2-byte argument (not shortest form)', '1900ff'],
    ['byte string length in a 1-byte argument (not shortest form)', '5801ff'],
    ['indefinite-length array', '9f01ff'],
    ['indefinite-length byte string', '5f4101ff'],
    ['a lone break byte', 'ff'],
    ['undefined (simple value 23)', 'f7'],
    ['unassigned simple value 0', 'e0'],
    ['tag 1 around an integer', 'c101'],
    ['float 1.0 (half float), although integral', 'f93c00'],
    ['float 1.0 (double)', 'fb3ff0000000000000'],
    ['NaN (half float)', 'f97e00'],
    ['integer 2^53 (beyond 2^53 - 1)', '1b0020000000000000'],
    ['integer -(2^53) (beyond -(2^53 - 1))', '3b001fffffffffffff'],
    ['map with a repeated key "a"', 'a2616101616102'],
    ['map keys "b" before "a" (not in bytewise order)', 'a2616201616102'],
    ['map keys "aa" before "b" (the shorter encoding sorts first)', 'a262616101616202'],
    ['map with an integer key', 'a10101'],
    ['text string with invalid UTF-8', '62fffe'],
    ['reserved additional information 28', '1c'],
    ['truncated text string', '6261'],
    ['byte string length beyond the input', '5a ffffffff 00'.replace(/ /g, '')],
    ['a valid map followed by one more byte', `${ok}00`],
    ['17 nested arrays (deeper than 16)', `${'81'.repeat(17)}00`],
    ['empty input', ''],
  ];
  return cases.map(([description, cbor]) => {
    try {
      decode(Buffer.from(cbor, 'hex'), 1024);
    } catch (e) {
      if (isOtiError(e)) return { description, cbor, error: e.code };
      throw e;
    }
    throw new Error(`vector self-check failed: ${description} was accepted`);
  });
}

export function vectorsJson(v: Record<string, unknown>): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

export const VECTORS_URL = new URL('../../../test/vectors/protocol.json', import.meta.url);

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = vectorsJson(await makeVectors());
  if (process.argv.includes('--write')) {
    await writeFile(VECTORS_URL, text, 'utf8');
    console.log(`wrote ${fileURLToPath(VECTORS_URL)} (${text.length} bytes)`);
  } else {
    process.stdout.write(text);
  }
}
