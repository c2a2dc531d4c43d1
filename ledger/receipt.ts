/**
 * Receipts: one self-contained file that proves an entry is in a gateway's chain, checkable
 * offline with nothing but the site's public keys. docs/PROTOCOL.md §Receipts.
 *
 *   receipt = { "v": 1, "type": "oti-receipt",
 *               "entry": bstr,            the entry bytes (the leaf)
 *               "index": uint,            its position in the chain
 *               "proof": [* bstr(32)],    RFC 9162 inclusion proof in the checkpoint's tree
 *               "checkpoint": text,       the signed checkpoint note
 *               "gateway": [+ bstr],      the site-signed statements of the gateway, oldest first
 *               ? "lock": [+ bstr],       for lock events: the lock's site-signed statements
 *               ? "newer": { "checkpoint": text, "proof": [* bstr(32)] } }
 *                                         against an older checkpoint: the latest one when the
 *                                         receipt was made and the consistency proof to it
 *
 * Version 2 is for checkpoints that carry the roster commitment (`oti-roster` line) and adds
 *               "gatewayAt": [uint, [* bstr(32)]]   the gateway member's leaf index and inclusion proof
 *               ? "lockAt": [uint, [* bstr(32)]]    the same for the lock (lock events)
 * so the statements are shown to be all the chain held about gateway and lock at the checkpoint:
 * a revocation cannot be left out (ERR_ROSTER_COMMITMENT).
 *
 * Verification: the gateway statements are site-signed and for the checkpoint's gateway; the
 * checkpoint carries a valid signature by one of the gateway's keys; the inclusion proof places
 * the entry's leaf hash at `index` under the checkpoint's root; the entry decodes strictly; a
 * lock-signed event's COSE signature verifies under one of the lock's registered keys; the
 * statements are the members' histories in the checkpoint's roster commitment; a newer checkpoint
 * (in the receipt, or one the verifier holds) is signed by the gateway and extends the receipt's
 * checkpoint by a consistency proof (ledger/history.ts).
 */
import { decode, encode } from './base/cbor.js';
import { OtiError, isOtiError } from './base/errors.js';
import { verify as nodeVerify, type Ed25519Verify } from './crypto.js';
import { decodeEntry, type Entry } from './entry.js';
import { leafHash, inclusionProof, verifyInclusion, MAX_PROOF_HASHES } from './merkle.js';
import { parseCheckpoint, verifyCheckpoint, CHECKPOINT_MAX_BYTES, type SignedCheckpoint } from './checkpoint.js';
import { verifyCoseSign1 } from './cose.js';
import { checkSigned, decodeSigned, type SiteTrust } from './roster.js';
import { parseOrigin } from './verify.js';
import { asMap, uint, oneOf, version } from './schema.js';
import type { Chain } from './chain.js';
import { verifyMember, type MemberProof, type RosterDigest } from './roster-commitment.js';
import { checkpointOfSize, consistencyBetween, checkExtends, rosterTreeAt } from './history.js';

export const RECEIPT_MAX_BYTES = 64 * 1024;

export interface ReceiptParts {
  readonly entry: Uint8Array;
  readonly index: number;
  readonly proof: readonly Uint8Array[];
  readonly checkpoint: string;
  readonly gateway: readonly Uint8Array[];
  readonly lock?: readonly Uint8Array[];
  /** Version 2: where the gateway's and the lock's statements sit in the checkpoint's roster commitment. */
  readonly gatewayAt?: MemberProof;
  readonly lockAt?: MemberProof;
  /** For a receipt against an older checkpoint: a newer signed checkpoint and the consistency proof to it. */
  readonly newer?: NewerCheckpoint;
}

export interface NewerCheckpoint {
  readonly checkpoint: string;
  readonly proof: readonly Uint8Array[];
}

export interface VerifiedReceipt {
  readonly entry: Entry;
  readonly index: number;
  readonly checkpoint: SignedCheckpoint;
  readonly gatewayId: string;
  /** 'lock-signed' when the lock's own signature was checked, 'unsigned' for an unsigned lock, 'gateway' otherwise. */
  readonly provenance: 'lock-signed' | 'unsigned' | 'gateway';
  /**
   * 'committed' when the checkpoint commits to the roster and the statements were shown complete
   * (no revocation of gateway or lock at or before the checkpoint); 'uncommitted' for a checkpoint
   * signed before the roster commitment existed: a revocation could then have been left out.
   */
  readonly roster: 'committed' | 'uncommitted';
  /** The newer checkpoint the receipt carries, checked to extend the receipt's checkpoint. */
  readonly newer?: SignedCheckpoint;
  /** The checkpoint the verifier holds (VerifyReceiptOptions.held), checked likewise. */
  readonly held?: SignedCheckpoint;
}

export interface VerifyReceiptOptions {
  readonly ed25519?: Ed25519Verify;
  /**
   * A checkpoint note the verifier holds, newer than (or as new as) the receipt's: it must be
   * signed by the receipt's gateway and extend the receipt's checkpoint, by `proof` or, when its
   * size is the receipt's or the size of the receipt's newer checkpoint, by what the receipt has.
   */
  readonly held?: { readonly checkpoint: string; readonly proof?: readonly Uint8Array[] };
}

export function encodeReceipt(r: ReceiptParts): Uint8Array {
  const m: Record<string, Uint8Array | number | string | Uint8Array[] | (number | Uint8Array[])[] | Record<string, string | Uint8Array[]>> = {
    v: r.gatewayAt !== undefined ? 2 : 1,
    type: 'oti-receipt',
    entry: r.entry,
    index: r.index,
    proof: [...r.proof],
    checkpoint: r.checkpoint,
    gateway: [...r.gateway],
  };
  if (r.lock !== undefined) m['lock'] = [...r.lock];
  if (r.gatewayAt !== undefined) m['gatewayAt'] = [r.gatewayAt.index, [...r.gatewayAt.proof]];
  if (r.lockAt !== undefined) m['lockAt'] = [r.lockAt.index, [...r.lockAt.proof]];
  if (r.newer !== undefined) m['newer'] = { checkpoint: r.newer.checkpoint, proof: [...r.newer.proof] };
  return encode(m);
}

export function decodeReceipt(b: Uint8Array): ReceiptParts {
  const m = asMap(decode(b, RECEIPT_MAX_BYTES), 'receipt', ['v', 'type', 'entry', 'index', 'proof', 'checkpoint', 'gateway', 'lock', 'gatewayAt', 'lockAt', 'newer']);
  const v2 = m['v'] === 2;
  if (!v2) version(m, 'receipt', 1);
  oneOf(m, 'type', 'receipt', ['oti-receipt']);
  const entry = m['entry'];
  const proof = m['proof'];
  const checkpoint = m['checkpoint'];
  if (!(entry instanceof Uint8Array)) throw invalid('entry must be a byte string');
  if (!isProof(proof)) throw invalid('proof must be a list of 32-byte hashes');
  if (!isNote(checkpoint)) throw invalid('checkpoint must be a signed note');
  const list = (k: string): Uint8Array[] | undefined => {
    const v = m[k];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length === 0 || v.length > 16 || !v.every((x) => x instanceof Uint8Array)) throw invalid(`${k} must be a list of 1 to 16 signed statements`);
    return v as Uint8Array[];
  };
  const gateway = list('gateway');
  if (gateway === undefined) throw invalid('gateway statements are missing');
  const lock = list('lock');
  const gatewayAt = memberProof(m['gatewayAt'], 'gatewayAt');
  const lockAt = memberProof(m['lockAt'], 'lockAt');
  if (v2 !== (gatewayAt !== undefined)) throw invalid(v2 ? 'a version 2 receipt must carry gatewayAt' : 'gatewayAt and lockAt are only in version 2 receipts');
  if ((lockAt !== undefined) !== (v2 && lock !== undefined)) throw invalid('lockAt goes with the lock statements of a version 2 receipt');
  const newer = m['newer'] === undefined ? undefined : decodeNewer(m['newer']);
  return {
    entry, index: uint(m, 'index', 'receipt'), proof, checkpoint, gateway,
    ...(lock !== undefined ? { lock } : {}),
    ...(gatewayAt !== undefined ? { gatewayAt } : {}),
    ...(lockAt !== undefined ? { lockAt } : {}),
    ...(newer !== undefined ? { newer } : {}),
  };
}

function decodeNewer(v: unknown): NewerCheckpoint {
  const n = asMap(v as Parameters<typeof asMap>[0], 'receipt.newer', ['checkpoint', 'proof']);
  const checkpoint = n['checkpoint'];
  const proof = n['proof'];
  if (!isNote(checkpoint)) throw invalid('newer.checkpoint must be a signed note');
  if (!isProof(proof)) throw invalid('newer.proof must be a list of 32-byte hashes');
  return { checkpoint, proof };
}

function isProof(p: unknown): p is Uint8Array[] {
  return Array.isArray(p) && p.length <= MAX_PROOF_HASHES && p.every((h) => h instanceof Uint8Array && h.length === 32);
}

function isNote(c: unknown): c is string {
  return typeof c === 'string' && Buffer.byteLength(c, 'utf8') <= CHECKPOINT_MAX_BYTES;
}

function memberProof(v: unknown, what: string): MemberProof | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !Number.isSafeInteger(v[0]) || (v[0] as number) < 0) throw invalid(`${what} must be [index, proof]`);
  const proof: unknown = v[1];
  if (!isProof(proof)) throw invalid(`${what} proof must be a list of 32-byte hashes`);
  return { index: v[0] as number, proof };
}

/**
 * The statements carried must be the members' whole histories in the roster the checkpoint
 * commits to; a checkpoint without the commitment leaves that unproven ('uncommitted').
 */
function checkRoster(r: ReceiptParts, digest: RosterDigest | undefined, gatewayId: string, lockId: string | undefined): VerifiedReceipt['roster'] {
  if (digest === undefined) {
    if (r.gatewayAt !== undefined) throw invalid('the receipt carries roster proofs but its checkpoint commits to no roster');
    return 'uncommitted';
  }
  if (r.gatewayAt === undefined) throw new OtiError('ERR_ROSTER_COMMITMENT', 'the checkpoint commits to a roster but the receipt does not show where its statements are in it');
  verifyMember('gateway', gatewayId, r.gateway, r.gatewayAt, digest);
  if (lockId !== undefined && r.lock !== undefined && r.lockAt !== undefined) verifyMember('lock', lockId, r.lock, r.lockAt, digest);
  return 'committed';
}

/** Verifies a receipt offline. Every failure is ERR_RECEIPT_INVALID with the underlying code in details. */
export function verifyReceipt(bytes: Uint8Array, trust: SiteTrust, opts: VerifyReceiptOptions = {}): VerifiedReceipt {
  const ed = opts.ed25519 ?? nodeVerify;
  try {
    const r = decodeReceipt(bytes);
    const checkpoint = parseCheckpoint(r.checkpoint);
    const { siteId, gatewayId } = parseOrigin(checkpoint.origin);
    if (siteId !== trust.siteId) throw invalid(`the checkpoint is of site ${siteId}, not ${trust.siteId}`);
    const gatewayKeys = statementKeys(r.gateway, trust, ed, 'gateway', gatewayId);
    if (!gatewayKeys.some((k) => trySig(() => verifyCheckpoint(checkpoint, checkpoint.origin, k, ed)))) {
      throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `the checkpoint is not signed by a key of gateway ${gatewayId}`);
    }
    if (r.index >= checkpoint.size || !verifyInclusion(leafHash(r.entry), r.index, checkpoint.size, r.proof, checkpoint.root)) {
      throw new OtiError('ERR_PROOF_INVALID', `the entry is not at position ${r.index} of the checkpoint's tree`);
    }
    const entry = decodeEntry(r.entry);
    const roster = checkRoster(r, checkpoint.roster, gatewayId, entry.body.kind === 'lock-event' ? entry.body.event.lock : undefined);
    let provenance: VerifiedReceipt['provenance'] = 'gateway';
    if (entry.body.kind === 'lock-event') {
      if (r.lock === undefined) throw invalid('a lock event receipt must carry the lock statements');
      const body = entry.body;
      const lockKeys = statementKeys(r.lock, trust, ed, 'lock', body.event.lock);
      if (body.prov === 'lock-signed') {
        if (!lockKeys.some((k) => verifyCoseSign1(k, body.parsed, ed))) throw new OtiError('ERR_LOCK_SIGNATURE', `the event is not signed by a registered key of lock ${body.event.lock}`);
        provenance = 'lock-signed';
      } else {
        const allowed = r.lock.some((b) => decodeSigned(b).statement.unsigned === true);
        if (!allowed) throw new OtiError('ERR_LOCK_SIGNATURE', `lock ${body.event.lock} is not registered as a lock that may send unsigned events`);
        provenance = 'unsigned';
      }
    } else if (r.lock !== undefined) {
      throw invalid('lock statements are only for lock events');
    }
    if (entry.body.kind === 'roster') checkSigned(entry.body.signed, trust, ed);
    const newer = r.newer === undefined ? undefined : parseCheckpoint(r.newer.checkpoint);
    if (newer !== undefined) checkExtends(checkpoint, newer, r.newer!.proof, gatewayKeys, ed);
    const held = opts.held === undefined ? undefined : checkHeld(checkpoint, newer, r.newer?.proof, opts.held, gatewayKeys, ed);
    return { entry, index: r.index, checkpoint, gatewayId, provenance, roster, ...(newer !== undefined ? { newer } : {}), ...(held !== undefined ? { held } : {}) };
  } catch (e) {
    if (isOtiError(e, 'ERR_RECEIPT_INVALID')) throw e;
    const code = isOtiError(e) ? e.code : 'ERR_ENCODING_MALFORMED';
    throw new OtiError('ERR_RECEIPT_INVALID', `receipt does not verify: ${(e as Error).message} (${code})`, { cause: code }, { cause: e });
  }
}

/** The held checkpoint extends the receipt's: by the proof given with it, or by what the receipt carries. */
function checkHeld(cp: SignedCheckpoint, newer: SignedCheckpoint | undefined, newerProof: readonly Uint8Array[] | undefined, held: NonNullable<VerifyReceiptOptions['held']>, keys: readonly Uint8Array[], ed: Ed25519Verify): SignedCheckpoint {
  const h = parseCheckpoint(held.checkpoint);
  if (held.proof !== undefined) checkExtends(cp, h, held.proof, keys, ed);
  else if (h.size === cp.size) checkExtends(cp, h, [], keys, ed);
  else if (newer !== undefined && h.size === newer.size) checkExtends(cp, h, newerProof!, keys, ed);
  else throw new OtiError('ERR_PROOF_INVALID', `no consistency proof from size ${cp.size} to the held checkpoint's size ${h.size}: give one (oti proof consistency)`);
  return h;
}

/**
 * Builds the receipt of entry `index` against the chain's latest checkpoint, or against the
 * stored checkpoint of tree size `size` with the latest checkpoint and a consistency proof to it.
 * Either way the statements and roster proofs are those of the roster as of the checkpoint the
 * receipt is against, so they verify against its `oti-roster` line.
 */
export async function receiptFor(chain: Chain, index: number, opts: { size?: number } = {}): Promise<Uint8Array> {
  const sealed = chain.sealed;
  const latest = sealed.checkpoint;
  const older = opts.size !== undefined && opts.size !== latest?.size;
  // A block stored but not yet sealed (its checkpoint is not the latest yet) is not offered.
  const cp = older && (latest === undefined || opts.size! < latest.size) ? await checkpointOfSize(chain, opts.size!) : older ? undefined : latest;
  if (cp === undefined && older) throw new OtiError('ERR_NOT_FOUND', `there is no signed checkpoint of size ${opts.size} (a checkpoint exists where a block ends)`, { size: opts.size });
  if (cp === undefined || index >= cp.size) throw new OtiError('ERR_NOT_FOUND', `entry ${index} is not covered by ${opts.size === undefined ? 'a checkpoint yet' : `the checkpoint of size ${opts.size}`}`);
  const rosterTree = older ? await rosterTreeAt(chain, cp, sealed.rosterTree) : sealed.rosterTree;
  const newer = older && latest !== undefined ? { checkpoint: latest.note, proof: await consistencyBetween(chain, cp.size, latest.size) } : undefined;
  const entryBytes = await chain.entry(index);
  const entry = decodeEntry(entryBytes);
  const gatewayId = parseOrigin(chain.origin).gatewayId;
  const gw = rosterTree.member('gateway', gatewayId);
  if (gw === undefined) throw new OtiError('ERR_STORE_CORRUPT', 'the gateway is not in its own roster');
  let lock: readonly Uint8Array[] | undefined;
  if (entry.body.kind === 'lock-event') {
    const m = rosterTree.member('lock', entry.body.event.lock);
    if (m === undefined) throw new OtiError('ERR_STORE_CORRUPT', `lock ${entry.body.event.lock} is not in the roster`);
    lock = m.history;
  }
  return encodeReceipt({
    entry: entryBytes,
    index,
    proof: await inclusionProof(chain, index, cp.size),
    checkpoint: cp.note,
    gateway: gw.history,
    ...(lock !== undefined ? { lock } : {}),
    ...(cp.roster !== undefined ? { gatewayAt: await rosterTree.proof('gateway', gatewayId) } : {}),
    ...(cp.roster !== undefined && entry.body.kind === 'lock-event' ? { lockAt: await rosterTree.proof('lock', entry.body.event.lock) } : {}),
    ...(newer !== undefined ? { newer } : {}),
  });
}

function statementKeys(list: readonly Uint8Array[], trust: SiteTrust, ed: Ed25519Verify, role: 'gateway' | 'lock', id: string): Uint8Array[] {
  return list.map((b) => {
    const s = decodeSigned(b);
    checkSigned(s, trust, ed);
    if (s.statement.role !== role || s.statement.id !== id) throw invalid(`a ${role} statement is about ${s.statement.role} ${s.statement.id}, not ${id}`);
    if (s.statement.op === 'revoke') throw new OtiError(role === 'lock' ? 'ERR_LOCK_REVOKED' : 'ERR_ROSTER', `${role} ${id} was revoked at or before the checkpoint`, { role, id });
    return s.statement.key;
  });
}

function trySig(f: () => void): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

function invalid(msg: string): OtiError {
  return new OtiError('ERR_RECEIPT_INVALID', msg);
}
