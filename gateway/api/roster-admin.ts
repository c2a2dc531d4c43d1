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
import { decodeSigned, ROSTER_MAX_BYTES, type Roster, type RosterStatement } from '../../ledger/roster.js';
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
 * durable. Throws ERR_ARGUMENT (empty or oversized body), ERR_ENCODING_* (not a signed
 * statement), ERR_ROSTER (not signed by a site key, wrong site, or does not fit the roster:
 * unknown member, wrong current key, a key held before, revoked member, a statement applied
 * before; details.rule names the rule), ERR_APPEND_ABORTED (chain closing).
 */
export async function handleRosterPost(chain: Chain, body: Uint8Array): Promise<{ index: number; id: string } | { index: null; id: null; unchanged: true }> {
  if (!(body instanceof Uint8Array) || body.length === 0 || body.length > ROSTER_POST_MAX_BYTES) {
    throw new OtiError('ERR_ARGUMENT', `the body must be one CBOR signed statement of 1..${ROSTER_POST_MAX_BYTES} bytes`);
  }
  const signed = decodeSigned(body);
  // Enrolling a member again exactly as it is enrolled changes nothing: nothing is recorded.
  if (changesNothing(chain.roster, signed.statement)) return { index: null, id: null, unchanged: true };
  const r = await chain.append({ kind: 'roster', signed });
  return { index: r.index, id: r.id };
}

/** An enrol statement for a current member with the same key, provenance and expiry. */
function changesNothing(roster: Roster, s: RosterStatement): boolean {
  if (s.op !== 'enroll') return false;
  const m = roster.get(s.role, s.id);
  return m !== undefined && !m.revoked && toHex(m.key) === toHex(s.key) && m.unsigned === (s.unsigned === true) && m.expires === s.expires;
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
