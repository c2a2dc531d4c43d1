/**
 * The roster endpoints of the local API (mounted by gateway/api/server.ts):
 *
 *   POST /roster   body: a site-signed roster statement, CBOR (ledger/roster.ts encodeSigned),
 *                  Content-Type application/cbor, at most ROSTER_POST_MAX_BYTES.
 *                  → 201 { "index": n, "id": "<hex leaf hash>" } once the entry is durable.
 *   GET  /roster   → 200 { "members": [RosterListingMember, ...] }   the roster at the head.
 *
 * The statement is checked by the chain itself (signature by a site key, fit with the current
 * roster) before it is appended; errors keep their codes and rosterStatus() gives the HTTP
 * status for each.
 */
import { fingerprint, toHex } from '../../ledger/crypto.js';
import { OtiError, isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import { appliedBefore, decodeSigned, ROSTER_MAX_BYTES, sameState, type Roster, type RosterStatement } from '../../ledger/roster.js';
import type { Chain } from '../../ledger/chain.js';

/** Largest POST /roster body: one signed statement. */
export const ROSTER_POST_MAX_BYTES = ROSTER_MAX_BYTES + 256;

export interface RosterListingMember {
  readonly role: 'gateway' | 'lock';
  readonly id: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly revoked: boolean;
  readonly unsigned: boolean;
  /** ms since 1970, for members enrolled with an expiry. */
  readonly expires?: number;
  /** Number of signed statements about the member (enrol, rotations, revocation). */
  readonly statements: number;
}

/**
 * Decodes a signed statement, appends it to `chain` as a roster entry and waits until it is
 * durable, or answers `unchanged` without recording it (notRecorded). Throws ERR_ARGUMENT (empty
 * or oversized body), ERR_ENCODING_* (not a signed statement), ERR_ROSTER (not signed by a site
 * key, wrong site, or does not fit the roster: unknown member, wrong current key, revoked member,
 * a key another current member holds; details.rule names the rule), ERR_APPEND_ABORTED (chain
 * closing).
 */
export async function handleRosterPost(chain: Chain, body: Uint8Array): Promise<{ index: number; id: string } | { index: null; id: null; unchanged: true; reason: UnchangedReason }> {
  if (!(body instanceof Uint8Array) || body.length === 0 || body.length > ROSTER_POST_MAX_BYTES) {
    throw new OtiError('ERR_ARGUMENT', `the body must be one CBOR signed statement of 1..${ROSTER_POST_MAX_BYTES} bytes`);
  }
  const signed = decodeSigned(body);
  const reason = notRecorded(chain.roster, signed.statement);
  if (reason !== undefined) return { index: null, id: null, unchanged: true, reason };
  const r = await chain.append({ kind: 'roster', signed });
  return { index: r.index, id: r.id };
}

/** Why a statement the roster would take is not recorded (docs/API.md §POST /roster). */
export type UnchangedReason = 'applied-before' | 'changes-nothing';

/**
 * A statement already in the member's history is answered "unchanged" (a retry after a lost
 * answer, or a statement kept and sent again: the chain would refuse it if it changed anything),
 * as is one that changes nothing (enrolling a member again as it is, revoking a revoked one).
 * Beside the chain's rules, the gateway refuses a key another current member holds: two ids
 * sharing a key is a copied key (a revoked member's key may be enrolled under a new id).
 */
function notRecorded(roster: Roster, s: RosterStatement): UnchangedReason | undefined {
  const cur = roster.get(s.role, s.id);
  if (cur !== undefined && appliedBefore(cur, s)) return 'applied-before';
  const next = roster.check(s);
  if (cur !== undefined && sameState(cur, next)) return 'changes-nothing';
  if (s.op === 'revoke') return undefined;
  const key = toHex(s.key);
  for (const m of roster.members()) {
    if (!m.revoked && toHex(m.key) === key && !(m.role === s.role && m.id === s.id)) {
      throw new OtiError('ERR_ROSTER', `${s.op} of ${s.role} ${s.id} refused: key ${fingerprint(s.key)} is the current key of ${m.role} ${m.id}; a key belongs to one member (revoke that one first if the key moved)`, { rule: 'key-held', role: s.role, id: s.id });
    }
  }
  return undefined;
}

/** The roster for GET /roster and `oti lock list`. */
export function rosterListing(roster: Roster): { members: RosterListingMember[] } {
  const members = [...roster.members()]
    .map((m) => ({
      role: m.role,
      id: m.id,
      key: toHex(m.key),
      fingerprint: fingerprint(m.key),
      revoked: m.revoked,
      unsigned: m.unsigned,
      ...(m.expires !== undefined ? { expires: m.expires } : {}),
      statements: m.history.length,
    }))
    .sort((a, b) => (a.role === b.role ? a.id.localeCompare(b.id) : a.role.localeCompare(b.role)));
  return { members };
}

/** HTTP status for an error from handleRosterPost. */
export function rosterStatus(e: unknown): number {
  if (!isOtiError(e)) return 500;
  const byCode: Partial<Record<ErrorCode, number>> = { ERR_ARGUMENT: 400, ERR_ROSTER: 422, ERR_APPEND_ABORTED: 503, ERR_BUSY: 503 };
  return byCode[e.code] ?? (e.code.startsWith('ERR_ENCODING_') ? 400 : 500);
}
