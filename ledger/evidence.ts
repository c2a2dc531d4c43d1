/**
 * Equivocation evidence: two checkpoints of one chain, both validly signed by the chain's
 * gateway, that cannot both be true. docs/PROTOCOL.md §Equivocation evidence.
 *
 *   evidence = { "v": 1, "type": "oti-equivocation", "origin": text,
 *                "a": text, "b": text,            the two signed notes, a.size <= b.size
 *                ? "root": bstr(32),              root of b's tree at a.size (sizes differ)
 *                ? "proof": [* bstr(32)],         consistency proof from (a.size, root) to b
 *                ? "statement": bstr }            encodeSigned of the site-signed statement that
 *                                                 gives the gateway the key (enroll or rotate)
 *
 * Same size: the roots differ. Different sizes: the proof shows that b commits to `root` at
 * a.size, and `root` differs from a's root. Anyone holding the gateway's key can check it; with
 * `statement`, anyone trusting the site's authority keys can (evidenceKey), even without a copy
 * of the chain.
 */
import { decode, encode } from './base/cbor.js';
import { bytesEqual } from './base/bytes.js';
import { OtiError } from './base/errors.js';
import { verify as nodeVerify, type Ed25519Verify } from './crypto.js';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { verifyConsistency, consistencyProof, rangeHash, MAX_PROOF_HASHES, type NodeReader } from './merkle.js';
import { checkSigned, decodeSigned, encodeSigned, ROSTER_MAX_BYTES, type SignedStatement, type SiteTrust } from './roster.js';
import { asMap, bytes, oneOf, text, version } from './schema.js';
import { parseOrigin } from './verify.js';

export interface Equivocation {
  readonly origin: string;
  readonly a: SignedCheckpoint;
  readonly b: SignedCheckpoint;
  readonly root?: Uint8Array;
  readonly proof?: readonly Uint8Array[];
  /** The site-signed roster statement (enroll, or rotate) that gives the chain's gateway the key that signed a and b. */
  readonly statement?: SignedStatement;
}

export function encodeEvidence(e: Equivocation): Uint8Array {
  return encode({
    v: 1,
    type: 'oti-equivocation',
    origin: e.origin,
    a: e.a.note,
    b: e.b.note,
    ...(e.root !== undefined ? { root: e.root } : {}),
    ...(e.proof !== undefined ? { proof: [...e.proof] } : {}),
    ...(e.statement !== undefined ? { statement: encodeSigned(e.statement) } : {}),
  });
}

export function decodeEvidence(b: Uint8Array): Equivocation {
  const m = asMap(decode(b, 16 * 1024), 'evidence', ['v', 'type', 'origin', 'a', 'b', 'root', 'proof', 'statement']);
  version(m, 'evidence', 1);
  oneOf(m, 'type', 'evidence', ['oti-equivocation']);
  const proof = m['proof'];
  if (proof !== undefined && (!Array.isArray(proof) || proof.length > MAX_PROOF_HASHES || !proof.every((p) => p instanceof Uint8Array && p.length === 32))) {
    throw new OtiError('ERR_ENCODING_SCHEMA', 'evidence.proof must be a list of 32-byte hashes');
  }
  const a = m['a'];
  const bn = m['b'];
  if (typeof a !== 'string' || typeof bn !== 'string') throw new OtiError('ERR_ENCODING_SCHEMA', 'evidence.a and evidence.b must be notes');
  return {
    origin: text(m, 'origin', 'evidence', 255),
    a: parseCheckpoint(a),
    b: parseCheckpoint(bn),
    ...(m['root'] !== undefined ? { root: bytes(m, 'root', 'evidence', 32) } : {}),
    ...(proof !== undefined ? { proof: proof as Uint8Array[] } : {}),
    ...(m['statement'] !== undefined ? { statement: decodeSigned(bytes(m, 'statement', 'evidence', undefined, ROSTER_MAX_BYTES + 256)) } : {}),
  };
}

/**
 * The key the evidence's statement gives the chain's gateway, for a verifier that holds no copy
 * of the chain: the statement must be signed by an authority key of `trust`'s site and be an
 * `enroll` or `rotate` of role gateway naming the origin's gateway. Undefined without a
 * statement; ERR_ROSTER when it is not such a statement. The caller still applies its own
 * rosters (a gateway revoked there, or holding another key there, is not taken on this word).
 */
export function evidenceKey(e: Equivocation, trust: SiteTrust): Uint8Array | undefined {
  const signed = e.statement;
  if (signed === undefined) return undefined;
  checkSigned(signed, trust);
  const s = signed.statement;
  const { gatewayId } = parseOrigin(e.origin);
  if ((s.op !== 'enroll' && s.op !== 'rotate') || s.role !== 'gateway' || s.id !== gatewayId) {
    throw new OtiError('ERR_ROSTER', `the statement carried by evidence against ${e.origin} does not give that gateway a key (${s.op} of ${s.role} ${s.id})`, { origin: e.origin });
  }
  return s.key;
}

/**
 * Compares a checkpoint `other` with a chain we hold (through `reader`, with our own signed
 * checkpoint `ours` at the head). Both must be signed by `key`. Returns evidence when they
 * cannot both be true, undefined when `other` is consistent with our chain.
 * When `other` is larger than our chain we cannot decide alone (the caller asks for a proof
 * and uses findEquivocation).
 */
export async function compareWithChain(reader: NodeReader, ours: SignedCheckpoint, other: SignedCheckpoint, key: Uint8Array): Promise<Equivocation | undefined> {
  verifyCheckpoint(ours, ours.origin, key);
  verifyCheckpoint(other, ours.origin, key);
  if (other.origin !== ours.origin) throw new OtiError('ERR_ARGUMENT', 'the checkpoints are of different chains');
  if (other.size > ours.size) return undefined;
  const root = other.size === ours.size ? ours.root : await rangeHash(reader, 0, other.size);
  if (bytesEqual(root, other.root)) return undefined;
  if (other.size === ours.size) return { origin: ours.origin, a: other, b: ours };
  return { origin: ours.origin, a: other, b: ours, root, proof: await consistencyProof(reader, other.size, ours.size) };
}

/** Checks evidence: true only when it proves that the key signed two inconsistent checkpoints. */
export function verifyEvidence(e: Equivocation, key: Uint8Array, ed25519: Ed25519Verify = nodeVerify): boolean {
  try {
    verifyCheckpoint(e.a, e.origin, key, ed25519);
    verifyCheckpoint(e.b, e.origin, key, ed25519);
  } catch {
    return false;
  }
  if (e.a.origin !== e.origin || e.b.origin !== e.origin || e.a.size > e.b.size) return false;
  if (e.a.size === e.b.size) return !bytesEqual(e.a.root, e.b.root);
  if (e.root === undefined || e.proof === undefined || bytesEqual(e.root, e.a.root)) return false;
  return verifyConsistency(e.a.size, e.b.size, e.root, e.b.root, e.proof);
}
