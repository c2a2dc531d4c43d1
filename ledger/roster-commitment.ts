/**
 * The roster commitment: a Merkle tree over a chain's roster members, whose size and root a
 * checkpoint names in its `oti-roster` line. docs/PROTOCOL.md §Roster commitment.
 *
 *   member leaf data = CBOR [role, id, [+ signed statement]]   (the member's whole history, oldest first)
 *   leaves are ordered by (role, id), bytewise; the tree is RFC 9162's (ledger/merkle.ts)
 *
 * A receipt carries a member's statements and its leaf's inclusion proof, so a verifier learns
 * that the statements it was given are all the chain held about that member at the checkpoint:
 * a revocation left out changes the leaf and the proof fails.
 */
import { encode } from './base/cbor.js';
import { OtiError } from './base/errors.js';
import { leafHash, nodeHash, rangeHash, inclusionProof, verifyInclusion, EMPTY_ROOT, type NodeReader } from './merkle.js';
import type { Member, Roster, RosterRole } from './roster.js';

export interface RosterDigest {
  /** Number of members (leaves). */
  readonly size: number;
  readonly root: Uint8Array;
}

export interface MemberProof {
  readonly index: number;
  readonly proof: readonly Uint8Array[];
}

/** The leaf data of one member: CBOR [role, id, [statements...]]. */
export function memberLeafData(role: RosterRole, id: string, history: readonly Uint8Array[]): Uint8Array {
  return encode([role, id, [...history]]);
}

function compareMembers(a: Member, b: Member): number {
  const ka = Buffer.from(`${a.role}\0${a.id}`, 'utf8');
  const kb = Buffer.from(`${b.role}\0${b.id}`, 'utf8');
  return Buffer.compare(ka, kb);
}

/**
 * The members of a roster in commitment order, with the levels of their perfect subtrees. A
 * snapshot: later changes to the roster do not reach it, so proofs can be made from it after
 * the roster moved on.
 */
export class RosterTree implements NodeReader {
  readonly #order: string[];
  readonly #histories = new Map<string, readonly Uint8Array[]>();
  readonly #levels: Uint8Array[][];

  constructor(roster: Roster) {
    const members = [...roster.members()].sort(compareMembers);
    this.#order = members.map((m) => `${m.role}/${m.id}`);
    for (const m of members) this.#histories.set(`${m.role}/${m.id}`, [...m.history]);
    const levels: Uint8Array[][] = [members.map((m) => leafHash(memberLeafData(m.role, m.id, m.history)))];
    for (let below = levels[0]!; below.length >= 2; below = levels[levels.length - 1]!) {
      const up: Uint8Array[] = [];
      for (let i = 0; i + 1 < below.length; i += 2) up.push(nodeHash(below[i]!, below[i + 1]!));
      levels.push(up);
    }
    this.#levels = levels;
  }

  get size(): number {
    return this.#order.length;
  }

  /** A member's statements as of the snapshot, oldest first. */
  member(role: RosterRole, id: string): { readonly history: readonly Uint8Array[] } | undefined {
    const history = this.#histories.get(`${role}/${id}`);
    return history === undefined ? undefined : { history };
  }

  node(level: number, index: number): Promise<Uint8Array> {
    const h = this.#levels[level]?.[index];
    if (h === undefined) return Promise.reject(new OtiError('ERR_ARGUMENT', `no roster tree node ${level}/${index}`));
    return Promise.resolve(h);
  }

  async digest(): Promise<RosterDigest> {
    return { size: this.size, root: this.size === 0 ? new Uint8Array(EMPTY_ROOT) : await rangeHash(this, 0, this.size) };
  }

  /** The inclusion proof of a member's leaf; ERR_NOT_FOUND when the roster has no such member. */
  async proof(role: RosterRole, id: string): Promise<MemberProof> {
    const index = this.#order.indexOf(`${role}/${id}`);
    if (index < 0) throw new OtiError('ERR_NOT_FOUND', `${role} ${id} is not in the roster`);
    return { index, proof: await inclusionProof(this, index, this.size) };
  }
}

/**
 * Checks that `history` is the whole history of member (role, id) in the roster the checkpoint
 * commits to. Throws ERR_ROSTER_COMMITMENT when it is not (a statement left out, added or changed).
 */
export function verifyMember(role: RosterRole, id: string, history: readonly Uint8Array[], at: MemberProof, digest: RosterDigest): void {
  const leaf = leafHash(memberLeafData(role, id, history));
  if (!verifyInclusion(leaf, at.index, digest.size, at.proof, digest.root)) {
    throw new OtiError('ERR_ROSTER_COMMITMENT', `the statements of ${role} ${id} are not those of the roster the checkpoint commits to (one left out, added or changed)`, { role, id });
  }
}
