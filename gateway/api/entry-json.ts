/**
 * The one JSON form of a chain entry, shared by the local API (docs/API.md §Entry) and the
 * webhooks (docs/WEBHOOKS.md): position, identity, leaf hash and the decoded body, byte strings as
 * lower-case hex.
 */
import { decodeEntry, type EntryKind } from '../../ledger/entry.js';
import { leafHash } from '../../ledger/merkle.js';
import { toHex } from '../../ledger/crypto.js';
import type { CborValue } from '../../ledger/base/cbor.js';

export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [k: string]: JsonValue | undefined };

/** One chain entry as JSON (docs/API.md §Entry). Kind-specific fields are present for their kind. */
export type EntryJson = { readonly index: number; readonly id: string; readonly leafHash: string; readonly kind: EntryKind; readonly time: number } & Record<string, JsonValue>;

/** An entry as JSON: its position, identity and decoded body (docs/API.md §Entry). */
export function entryJson(index: number, bytes: Uint8Array): EntryJson {
  const entry = decodeEntry(bytes);
  const leaf = toHex(leafHash(bytes));
  const b = entry.body;
  const base = { index, leafHash: leaf, kind: b.kind, time: entry.time };
  switch (b.kind) {
    case 'lock-event': {
      const ev = b.event;
      return {
        ...base,
        id: `${ev.lock}:${ev.ctr}`,
        provenance: b.prov,
        lock: ev.lock,
        ctr: ev.ctr,
        type: ev.type,
        lockTime: ev.time,
        ...(ev.cred !== undefined ? { cred: toHex(ev.cred) } : {}),
        ...(ev.ext !== undefined ? { ext: cborJson(ev.ext) } : {}),
      };
    }
    case 'roster': {
      const s = b.signed.statement;
      return {
        ...base,
        id: leaf,
        op: s.op,
        role: s.role,
        member: s.id,
        key: toHex(s.key),
        statementTime: s.time,
        ...(s.unsigned !== undefined ? { unsigned: s.unsigned } : {}),
        ...(s.expires !== undefined ? { expires: s.expires } : {}),
      };
    }
    case 'gap':
      return 'lock' in b ? { ...base, id: leaf, lock: b.lock, from: b.from, to: b.to, ...(b.code !== undefined ? { code: b.code } : {}) } : { ...base, id: leaf, source: b.source, start: b.start, end: b.end, reason: b.reason };
    case 'health':
      return { ...base, id: leaf, source: b.source, status: b.status, ...(b.detail !== undefined ? { detail: b.detail } : {}) };
    case 'privacy':
      // A random person id and ciphertext only (docs/PRIVACY.md); readers decrypt with the person key.
      return { ...base, id: leaf, op: b.op, person: toHex(b.person), ...(b.op === 'person' ? { fields: toHex(b.fields) } : {}) };
  }
}

/** A decoded CBOR value as JSON: byte strings become hex text (the decoder bounds the depth). */
function cborJson(v: CborValue): JsonValue {
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(cborJson);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cborJson(x)]));
  return v;
}

