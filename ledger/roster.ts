/**
 * Roster statements: who belongs to a site. Each is signed by a site authority key and travels
 * inside the chains as a roster entry, so any gateway or offline verifier can check gateways and
 * locks with nothing but the site's public keys. docs/PROTOCOL.md §Roster statements and roster rules.
 *
 *   statement = { "v": 1, "site": text, "op": "enroll" | "revoke" | "rotate",
 *                 "role": "gateway" | "lock", "id": text, "key": bstr(32), "time": uint,
 *                 ? "unsigned": true        (lock may send unsigned events; enroll only)
 *                 ? "prev": bstr(32)        (the key being replaced; rotate only)
 *                 ? "expires": uint }       (ms since 1970; gateway certificates)
 *   signed    = { "stmt": bstr .cbor statement, "by": bstr(32) site key, "sig": bstr(64) }
 *
 * The signature is Ed25519 over "OTI-v1 roster statement" || 0x00 || stmt.
 */
import { decode, encode, type CborValue } from './base/cbor.js';
import { OtiError } from './base/errors.js';
import type { Signer } from './crypto.js';
import { fingerprint, verify, verifyWithContext, type Ed25519Verify, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, toHex } from './crypto.js';
import { asMap, bool, bytes, ID_PATTERN, oneOf, optional, text, uint, version, schemaError } from './schema.js';

export const ROSTER_MAX_BYTES = 1024;
export type RosterOp = 'enroll' | 'revoke' | 'rotate';
export type RosterRole = 'gateway' | 'lock';

export interface RosterStatement {
  site: string;
  op: RosterOp;
  role: RosterRole;
  id: string;
  key: Uint8Array;
  time: number;
  unsigned?: boolean;
  prev?: Uint8Array;
  expires?: number;
}

export interface SignedStatement {
  readonly stmt: Uint8Array;
  readonly by: Uint8Array;
  readonly sig: Uint8Array;
  readonly statement: RosterStatement;
}

const STMT_FIELDS = ['v', 'site', 'op', 'role', 'id', 'key', 'time', 'unsigned', 'prev', 'expires'];

export function encodeStatement(s: RosterStatement): Uint8Array {
  const m: { [k: string]: CborValue } = { v: 1, site: s.site, op: s.op, role: s.role, id: s.id, key: s.key, time: s.time };
  if (s.unsigned !== undefined) m['unsigned'] = s.unsigned;
  if (s.prev !== undefined) m['prev'] = s.prev;
  if (s.expires !== undefined) m['expires'] = s.expires;
  const b = encode(m);
  decodeStatement(b);
  return b;
}

export function decodeStatement(b: Uint8Array): RosterStatement {
  const m = asMap(decode(b, ROSTER_MAX_BYTES), 'statement', STMT_FIELDS);
  version(m, 'statement', 1);
  const s: RosterStatement = {
    site: text(m, 'site', 'statement', 64, ID_PATTERN),
    op: oneOf(m, 'op', 'statement', ['enroll', 'revoke', 'rotate'] as const),
    role: oneOf(m, 'role', 'statement', ['gateway', 'lock'] as const),
    id: text(m, 'id', 'statement', 64, ID_PATTERN),
    key: bytes(m, 'key', 'statement', PUBLIC_KEY_BYTES),
    time: uint(m, 'time', 'statement'),
  };
  const unsigned = optional(m, 'unsigned', () => bool(m, 'unsigned', 'statement'));
  if (unsigned !== undefined) {
    if (unsigned !== true || s.op !== 'enroll' || s.role !== 'lock') throw schemaError('statement.unsigned', 'is only allowed as true on a lock enrolment');
    s.unsigned = true;
  }
  const prev = optional(m, 'prev', () => bytes(m, 'prev', 'statement', PUBLIC_KEY_BYTES));
  if ((prev !== undefined) !== (s.op === 'rotate')) throw schemaError('statement.prev', 'is required on rotate and not allowed otherwise');
  if (prev !== undefined) s.prev = prev;
  const expires = optional(m, 'expires', () => uint(m, 'expires', 'statement'));
  if (expires !== undefined) s.expires = expires;
  return s;
}

export function signStatement(site: Signer, s: RosterStatement): SignedStatement {
  const stmt = encodeStatement(s);
  return { stmt, by: site.publicKey, sig: site.signWithContext('OTI-v1 roster statement', stmt), statement: s };
}

export function encodeSigned(s: SignedStatement): Uint8Array {
  return encode({ stmt: s.stmt, by: s.by, sig: s.sig });
}

export function signedFromCbor(v: CborValue, what = 'roster'): SignedStatement {
  const m = asMap(v, what, ['stmt', 'by', 'sig']);
  const stmt = bytes(m, 'stmt', what, undefined, ROSTER_MAX_BYTES);
  const by = bytes(m, 'by', what, PUBLIC_KEY_BYTES);
  const sig = bytes(m, 'sig', what, SIGNATURE_BYTES);
  return { stmt, by, sig, statement: decodeStatement(stmt) };
}

export function decodeSigned(b: Uint8Array): SignedStatement {
  return signedFromCbor(decode(b, ROSTER_MAX_BYTES + 256));
}

/** The site a verifier trusts: its id and the authority public keys (more than one across a rotation). */
export interface SiteTrust {
  readonly siteId: string;
  readonly siteKeys: readonly Uint8Array[];
}

/** Checks the signature and that the signer is a trusted key of the statement's site. Throws ERR_ROSTER. */
export function checkSigned(s: SignedStatement, trust: SiteTrust, ed25519: Ed25519Verify = verify): void {
  if (s.statement.site !== trust.siteId) {
    throw new OtiError('ERR_ROSTER', `statement is for site ${s.statement.site}, expected ${trust.siteId}`, { site: s.statement.site });
  }
  const by = toHex(s.by);
  if (!trust.siteKeys.some((k) => toHex(k) === by)) throw new OtiError('ERR_ROSTER', 'statement is signed by a key that is not a site authority key', { by });
  if (!verifyWithContext(s.by, 'OTI-v1 roster statement', s.stmt, s.sig, ed25519)) throw new OtiError('ERR_ROSTER', 'statement signature does not verify', { id: s.statement.id });
}

export interface Member {
  role: RosterRole;
  id: string;
  key: Uint8Array;
  revoked: boolean;
  unsigned: boolean;
  expires?: number;
  /** Every signed statement about this member, oldest first (encoded SignedStatement). */
  history: Uint8Array[];
}

/** Which roster rule a refusal broke (details.rule of its ERR_ROSTER); docs/PROTOCOL.md §Roster rules. */
export type RosterRule = 'unknown' | 'revoked' | 'other-key' | 'not-current' | 'replayed';

function refuse(rule: RosterRule, s: RosterStatement, why: string): OtiError {
  return new OtiError('ERR_ROSTER', `${s.op} of ${s.role} ${s.id} refused: ${why}`, { rule, role: s.role, id: s.id });
}

/** Whether the member's history holds a statement with the same content as `s` (whichever site key signed it). */
export function appliedBefore(m: Member, s: RosterStatement): boolean {
  const stmt = toHex(encodeStatement(s));
  return m.history.some((h) => toHex(encodeStatement(decodeSigned(h).statement)) === stmt);
}

/** Whether two states of a member are the same (key, revocation, provenance, expiry). */
export function sameState(a: Member, b: Member): boolean {
  return toHex(a.key) === toHex(b.key) && a.revoked === b.revoked && a.unsigned === b.unsigned && a.expires === b.expires;
}

/**
 * The roster as seen at one point of a chain: applied statement by statement in chain order.
 * apply() throws ERR_ROSTER (details.rule says which rule) for a statement that does not fit the
 * current state. A statement the member's history already holds may apply again only when it
 * changes nothing (a second revocation, say): a statement kept and submitted again later (a
 * replay) can never change a member back, e.g. make a retired key current again after a
 * rotation back to the first key. No clock is read.
 */
export class Roster {
  readonly #members = new Map<string, Member>();
  #version = 0;

  /** Changes whenever a member is applied or restored: a cache of get() results is good while it stays the same. */
  get version(): number {
    return this.#version;
  }

  static keyOf(role: RosterRole, id: string): string {
    return `${role}/${id}`;
  }

  get(role: RosterRole, id: string): Member | undefined {
    return this.#members.get(Roster.keyOf(role, id));
  }

  members(): IterableIterator<Member> {
    return this.#members.values();
  }

  /** Returns what apply() would do, throwing ERR_ROSTER if the statement does not fit. */
  check(s: RosterStatement): Member {
    const cur = this.get(s.role, s.id);
    const next = this.#next(cur, s);
    if (cur !== undefined && !sameState(cur, next) && appliedBefore(cur, s)) {
      throw refuse('replayed', s, 'this statement was applied to it before, and applying it again would change it back: a statement kept and submitted again is refused');
    }
    return next;
  }

  #next(cur: Member | undefined, s: RosterStatement): Member {
    switch (s.op) {
      case 'enroll':
        if (cur?.revoked === true) throw refuse('revoked', s, `${s.role} ${s.id} was revoked; its id cannot be enrolled again`);
        if (cur !== undefined && toHex(cur.key) !== toHex(s.key)) throw refuse('other-key', s, `${s.role} ${s.id} is enrolled with another key; use rotate`);
        return { role: s.role, id: s.id, key: s.key, revoked: false, unsigned: s.unsigned === true, history: cur?.history ?? [], ...(s.expires !== undefined ? { expires: s.expires } : {}) };
      case 'rotate':
        if (cur === undefined) throw refuse('unknown', s, `${s.role} ${s.id} is not enrolled`);
        if (cur.revoked) throw refuse('revoked', s, `${s.role} ${s.id} was revoked`);
        if (s.prev === undefined || toHex(cur.key) !== toHex(s.prev)) throw refuse('not-current', s, `prev is not its current key ${fingerprint(cur.key)}`);
        return { ...cur, key: s.key, ...(s.expires !== undefined ? { expires: s.expires } : {}) };
      case 'revoke':
        if (cur === undefined) throw refuse('unknown', s, `${s.role} ${s.id} is not enrolled`);
        if (toHex(cur.key) !== toHex(s.key)) throw refuse('not-current', s, `key is not its current key ${fingerprint(cur.key)}`);
        return { ...cur, revoked: true };
    }
  }

  /** Applies a signed statement (already checked with checkSigned) and records it in the member's history. */
  apply(signed: SignedStatement): Member {
    const m = this.check(signed.statement);
    m.history = [...m.history, encodeSigned(signed)];
    this.#members.set(Roster.keyOf(m.role, m.id), m);
    this.#version++;
    return m;
  }

  /** Puts a member as stored (used when loading the roster saved at the head). */
  restore(m: Member): void {
    this.#members.set(Roster.keyOf(m.role, m.id), m);
    this.#version++;
  }

  clone(): Roster {
    const r = new Roster();
    for (const m of this.#members.values()) r.restore({ ...m });
    return r;
  }
}
