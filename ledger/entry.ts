/**
 * Chain entries: the leaves of a chain's Merkle tree. docs/PROTOCOL.md §Entry.
 *
 *   entry = { "v": 1, "kind": text, "time": uint (gateway clock, ms since 1970), "body": map }
 *
 * kinds and bodies:
 *   "lock-event": { "prov": "lock-signed", "cose": bstr (COSE_Sign1 over the lock event) }
 *               | { "prov": "unsigned",    "event": bstr (the lock event, bare) }
 *   "roster":     { "signed": bstr (a site-signed roster statement) }
 *   "gap":        { "lock": text, "from": uint, "to": uint }                 missing counters, inclusive
 *               | { "source": text, "start": uint, "end": uint, "reason": text }  a blind interval
 *   "health":     { "source": text, "status": text, ? "detail": text }
 *
 * The entry bytes are what the leaf hash covers, so the lock's own signature is kept verbatim.
 */
import { cborHead, decode, encode, type CborValue } from './encoding.js';
import { OtiError } from './errors.js';
import { parseCoseSign1, COSE_MAX_BYTES, type CoseSign1 } from './cose.js';
import { decodeLockEvent, type LockEvent } from './lockevent.js';
import { decodeSigned, type SignedStatement, ROSTER_MAX_BYTES, encodeSigned } from './roster.js';
import { asMap, bytes, ID_PATTERN, oneOf, text, uint, version, schemaError, type CborMap } from './schema.js';

export const ENTRY_MAX_BYTES = 8192;
export const ENTRY_KINDS = ['lock-event', 'roster', 'gap', 'health'] as const;
export type EntryKind = (typeof ENTRY_KINDS)[number];

export type EntryBody =
  | { kind: 'lock-event'; prov: 'lock-signed'; cose: Uint8Array; parsed: CoseSign1; event: LockEvent }
  | { kind: 'lock-event'; prov: 'unsigned'; eventBytes: Uint8Array; event: LockEvent }
  | { kind: 'roster'; signed: SignedStatement }
  | { kind: 'gap'; lock: string; from: number; to: number }
  | { kind: 'gap'; source: string; start: number; end: number; reason: string }
  | { kind: 'health'; source: string; status: string; detail?: string };

export interface Entry {
  readonly time: number;
  readonly body: EntryBody;
}

/** What a caller hands to Chain.append: an entry before it has bytes. */
export type EntryInput =
  | { kind: 'lock-event'; time?: number; cose: Uint8Array }
  | { kind: 'lock-event'; time?: number; unsignedEvent: Uint8Array }
  | { kind: 'roster'; time?: number; signed: SignedStatement }
  | { kind: 'gap'; time?: number; lock: string; from: number; to: number }
  | { kind: 'gap'; time?: number; source: string; start: number; end: number; reason: string }
  | { kind: 'health'; time?: number; source: string; status: string; detail?: string };

/**
 * Builds and checks an entry. Parts that come from outside (a lock's COSE_Sign1 or event, a
 * roster statement) are decoded strictly here; the envelope is ours. Throws a coded error for
 * any invalid input.
 */
export function encodeEntry(input: EntryInput, now: number): { bytes: Uint8Array; entry: Entry } {
  const time = input.time ?? now;
  let body: CborMap;
  let parsed: EntryBody;
  switch (input.kind) {
    case 'lock-event':
      if ('cose' in input) {
        const cose = checkedBytes(input.cose, COSE_MAX_BYTES, 'cose');
        const p = parseCoseSign1(cose);
        parsed = { kind: 'lock-event', prov: 'lock-signed', cose, parsed: p, event: decodeLockEvent(p.payload) };
        body = { prov: 'lock-signed', cose };
      } else {
        const eventBytes = checkedBytes(input.unsignedEvent, COSE_MAX_BYTES, 'unsignedEvent');
        parsed = { kind: 'lock-event', prov: 'unsigned', eventBytes, event: decodeLockEvent(eventBytes) };
        body = { prov: 'unsigned', event: eventBytes };
      }
      break;
    case 'roster': {
      const signed = encodeSigned(input.signed);
      parsed = { kind: 'roster', signed: decodeSigned(signed) };
      body = { signed };
      break;
    }
    default: {
      // Gap and health entries are small and rare: build them and read them back strictly.
      const b: CborMap = input.kind === 'gap'
        ? 'lock' in input ? { lock: input.lock, from: input.from, to: input.to } : { source: input.source, start: input.start, end: input.end, reason: input.reason }
        : { source: input.source, status: input.status, ...(input.detail !== undefined ? { detail: input.detail } : {}) };
      const bytes = encode({ v: 1, kind: input.kind, time, body: b });
      if (bytes.length > ENTRY_MAX_BYTES) throw new OtiError('ERR_ENCODING_TOO_LARGE', `entry is ${bytes.length} bytes, limit is ${ENTRY_MAX_BYTES}`);
      return { bytes, entry: decodeEntry(bytes) };
    }
  }
  if (!Number.isSafeInteger(time) || time < 0) throw schemaError('entry.time', 'must be a non-negative integer');
  const bytes = parsed.kind === 'lock-event' ? encodeLockEventEntry(parsed, time) : encode({ v: 1, kind: input.kind, time, body });
  if (bytes.length > ENTRY_MAX_BYTES) throw new OtiError('ERR_ENCODING_TOO_LARGE', `entry is ${bytes.length} bytes, limit is ${ENTRY_MAX_BYTES}`);
  return { bytes, entry: { time, body: parsed } };
}

// {"v": 1, "body": ..., "kind": "lock-event", "time": ...} in deterministic key order:
// "v" (61 76) < "body" (64 62..) < "kind" (64 6b..) < "time" (64 74..); and in the body
// "cose" (64 63..) < "prov" (64 70..), "event" (65 ..) > "prov" (64 ..).
const LE_START = Buffer.from('a4617601' + '64626f6479' + 'a2', 'hex');
const LE_SIGNED_BODY_KEY = Buffer.from('64636f7365', 'hex');
const LE_PROV_SIGNED = Buffer.from('6470726f76' + '6b6c6f636b2d7369676e6564', 'hex');
const LE_PROV_UNSIGNED = Buffer.from('6470726f76' + '68756e7369676e6564', 'hex');
const LE_EVENT_KEY = Buffer.from('656576656e74', 'hex');
const LE_KIND_TIME = Buffer.from('646b696e64' + '6a6c6f636b2d6576656e74' + '6474696d65', 'hex');

/** The lock-event entry, built by concatenation; equal to encode() of the same map (tested). */
function encodeLockEventEntry(body: Extract<EntryBody, { kind: 'lock-event' }>, time: number): Uint8Array {
  const inner = body.prov === 'lock-signed'
    ? [LE_SIGNED_BODY_KEY, cborHead(2, body.cose.length), body.cose, LE_PROV_SIGNED]
    : [LE_PROV_UNSIGNED, LE_EVENT_KEY, cborHead(2, body.eventBytes.length), body.eventBytes];
  return Buffer.concat([LE_START, ...inner, LE_KIND_TIME, cborHead(0, time)]);
}

function checkedBytes(v: unknown, max: number, name: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new OtiError('ERR_ARGUMENT', `${name} must be a Uint8Array`);
  if (v.length > max) throw new OtiError('ERR_ENCODING_TOO_LARGE', `${name} is ${v.length} bytes, limit is ${max}`);
  return v;
}

export function decodeEntry(b: Uint8Array): Entry {
  return entryFromCbor(decode(b, ENTRY_MAX_BYTES));
}

export function entryFromCbor(v: CborValue): Entry {
  const m = asMap(v, 'entry', ['v', 'kind', 'time', 'body']);
  version(m, 'entry', 1);
  const kind = oneOf(m, 'kind', 'entry', ENTRY_KINDS);
  const time = uint(m, 'time', 'entry');
  const b = m['body'];
  let body: EntryBody;
  switch (kind) {
    case 'lock-event': {
      const prov = oneOf(asMap(b, 'entry.body', ['prov', 'cose', 'event']), 'prov', 'entry.body', ['lock-signed', 'unsigned'] as const);
      if (prov === 'lock-signed') {
        const bm = asMap(b, 'entry.body', ['prov', 'cose']);
        const cose = bytes(bm, 'cose', 'entry.body', undefined, COSE_MAX_BYTES);
        const parsed = parseCoseSign1(cose);
        body = { kind, prov, cose, parsed, event: decodeLockEvent(parsed.payload) };
      } else {
        const bm = asMap(b, 'entry.body', ['prov', 'event']);
        const eventBytes = bytes(bm, 'event', 'entry.body', undefined, COSE_MAX_BYTES);
        body = { kind, prov, eventBytes, event: decodeLockEvent(eventBytes) };
      }
      break;
    }
    case 'roster': {
      const bm = asMap(b, 'entry.body', ['signed']);
      body = { kind, signed: decodeSigned(bytes(bm, 'signed', 'entry.body', undefined, ROSTER_MAX_BYTES + 256)) };
      break;
    }
    case 'gap': {
      const bm = asMap(b, 'entry.body', ['lock', 'from', 'to', 'source', 'start', 'end', 'reason']);
      if ('lock' in bm) {
        asMap(b, 'entry.body', ['lock', 'from', 'to']);
        const from = uint(bm, 'from', 'entry.body');
        const to = uint(bm, 'to', 'entry.body');
        if (to < from) throw schemaError('entry.body.to', 'must not be less than from');
        body = { kind, lock: text(bm, 'lock', 'entry.body', 64, ID_PATTERN), from, to };
      } else {
        asMap(b, 'entry.body', ['source', 'start', 'end', 'reason']);
        const start = uint(bm, 'start', 'entry.body');
        const end = uint(bm, 'end', 'entry.body');
        if (end < start) throw schemaError('entry.body.end', 'must not be less than start');
        body = { kind, source: text(bm, 'source', 'entry.body', 128), start, end, reason: text(bm, 'reason', 'entry.body', 512) };
      }
      break;
    }
    case 'health': {
      const bm = asMap(b, 'entry.body', ['source', 'status', 'detail']);
      body = { kind, source: text(bm, 'source', 'entry.body', 128), status: text(bm, 'status', 'entry.body', 128) };
      if (bm['detail'] !== undefined) body.detail = text(bm, 'detail', 'entry.body', 2048);
      break;
    }
  }
  return { time, body };
}
