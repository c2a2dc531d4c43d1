/**
 * Chain entries: the leaves of a chain's Merkle tree. docs/PROTOCOL.md §Entries.
 *
 *   entry = { "v": 1, "kind": text, "time": uint (gateway clock, ms since 1970), "body": map }
 *
 * kinds and bodies:
 *   "lock-event": { "prov": "lock-signed", "cose": bstr (COSE_Sign1 over the lock event) }
 *               | { "prov": "unsigned",    "event": bstr (the lock event, bare) }
 *   "roster":     { "signed": bstr (a site-signed roster statement) }
 *   "gap":        { "lock": text, "from": uint, "to": uint, ? "code": text }  missing counters, inclusive;
 *                 with "code": refused by the gateway with that code (retry false), not lost at the lock
 *               | { "source": text, "start": uint, "end": uint, "reason": text }  a blind interval
 *   "health":     { "source": text, "status": text, ? "detail": text }
 *   "privacy":    { "op": "person", "fields": bstr, "person": bstr(16) }   a person's fields, encrypted
 *               | { "op": "shred", "person": bstr(16) }                      that person's key was destroyed
 *                 (docs/PRIVACY.md; the bytes are ciphertext or random ids, never personal data)
 *
 * The entry bytes are what the leaf hash covers, so the lock's own signature is kept verbatim.
 */
import { cborHead, headLength, matchAt, readHead as readCborHead, writeHead, decode, encode, type CborValue } from './base/cbor.js';
import { OtiError } from './base/errors.js';
import { parseCoseSign1, COSE_MAX_BYTES, type CoseSign1 } from './cose.js';
import { CRED_MAX_BYTES, decodeLockEvent, EVENT_TYPES, LOCK_EVENT_MAX_BYTES, type EventType, type LockEvent } from './lockevent.js';
import { decodeSigned, type SignedStatement, ROSTER_MAX_BYTES, encodeSigned } from './roster.js';
import { asMap, bytes, ID_PATTERN, oneOf, text, uint, version, schemaError, type CborMap } from './schema.js';

export const ENTRY_MAX_BYTES = 8192;
/** `code` of a gap of the lock form: an error code name, as in a nack. */
const REFUSAL_CODE_PATTERN = /^ERR_[A-Z0-9_]+$/;

export const ENTRY_KINDS = ['lock-event', 'roster', 'gap', 'health', 'privacy'] as const;
/** Size of a person id in privacy entries (ledger/privacy.ts PERSON_ID_BYTES). */
const PERSON_ID_BYTES = 16;
/** Largest encrypted person fields (ledger/privacy.ts PERSON_FIELDS_MAX_BYTES). */
const PERSON_FIELDS_MAX_BYTES = 1024;
export type EntryKind = (typeof ENTRY_KINDS)[number];

export type EntryBody =
  | { kind: 'lock-event'; prov: 'lock-signed'; cose: Uint8Array; parsed: CoseSign1; event: LockEvent }
  | { kind: 'lock-event'; prov: 'unsigned'; eventBytes: Uint8Array; event: LockEvent }
  | { kind: 'roster'; signed: SignedStatement }
  | { kind: 'gap'; lock: string; from: number; to: number; code?: string }
  | { kind: 'gap'; source: string; start: number; end: number; reason: string }
  | { kind: 'health'; source: string; status: string; detail?: string }
  | PrivacyBody;

/** A privacy entry: a person's encrypted fields, or the record that their key was destroyed. */
export type PrivacyBody = { kind: 'privacy'; op: 'person'; person: Uint8Array; fields: Uint8Array } | { kind: 'privacy'; op: 'shred'; person: Uint8Array };

export interface Entry {
  readonly time: number;
  readonly body: EntryBody;
}

/** What a caller hands to Chain.append: an entry before it has bytes. */
export type EntryInput =
  | { kind: 'lock-event'; time?: number; cose: Uint8Array }
  | { kind: 'lock-event'; time?: number; unsignedEvent: Uint8Array }
  | { kind: 'roster'; time?: number; signed: SignedStatement }
  | { kind: 'gap'; time?: number; lock: string; from: number; to: number; code?: string }
  | { kind: 'gap'; time?: number; source: string; start: number; end: number; reason: string }
  | { kind: 'health'; time?: number; source: string; status: string; detail?: string }
  | ({ time?: number } & PrivacyBody);

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
        if (Number.isSafeInteger(time) && time >= 0) {
          // Common case: build the bytes, then read them back through the exact-match parser
          // (views into our own copy, so the caller cannot change what was checked).
          const built = buildSignedLockEventEntry(cose, time);
          const fast = fastLockEventEntry(built);
          if (fast !== undefined) return { bytes: built, entry: fast };
        }
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
      // Gap, health and privacy entries are small and rare: build them and read them back strictly.
      const b: CborMap = input.kind === 'gap'
        ? 'lock' in input ? { lock: input.lock, from: input.from, to: input.to, ...(input.code !== undefined ? { code: input.code } : {}) } : { source: input.source, start: input.start, end: input.end, reason: input.reason }
        : input.kind === 'privacy'
          ? input.op === 'person' ? { op: 'person', person: input.person, fields: input.fields } : { op: 'shred', person: input.person }
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

/**
 * encodeEntry's common case, a lock-signed event handed over as its COSE_Sign1, without its
 * decoding: the entry's bytes, with where their parts lie in `scan` (Chain.append checks the
 * lock and counter from there, and decodes the entry only when someone asks for it). Undefined
 * for any other input, and for one the fast decoder would not take: encodeEntry then (which
 * accepts it or gives the coded error).
 */
export function encodeSignedLockEvent(input: EntryInput, now: number, scan: LockEventScan): Uint8Array | undefined {
  if (input.kind !== 'lock-event' || !('cose' in input)) return undefined;
  const cose: unknown = input.cose;
  const time = input.time ?? now;
  if (!(cose instanceof Uint8Array) || cose.length > COSE_MAX_BYTES || !Number.isSafeInteger(time) || time < 0) return undefined;
  const bytes = buildSignedLockEventEntry(cose, time);
  return scanLockEventEntry(bytes, scan) ? bytes : undefined;
}

/** The bytes of a lock-signed event's entry, written in place into one buffer of Node's pool. */
function buildSignedLockEventEntry(cose: Uint8Array, time: number): Buffer {
  const fixed = LE_START.length + LE_SIGNED_BODY_KEY.length + LE_PROV_SIGNED.length + LE_KIND_TIME.length;
  const b = Buffer.allocUnsafe(fixed + headLength(cose.length) + cose.length + headLength(time));
  b.set(LE_START, 0);
  let o = LE_START.length;
  b.set(LE_SIGNED_BODY_KEY, o);
  o = writeHead(b, o + LE_SIGNED_BODY_KEY.length, 2, cose.length);
  b.set(cose, o);
  o += cose.length;
  b.set(LE_PROV_SIGNED, o);
  o += LE_PROV_SIGNED.length;
  b.set(LE_KIND_TIME, o);
  writeHead(b, o + LE_KIND_TIME.length, 0, time);
  return b;
}

function checkedBytes(v: unknown, max: number, name: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new OtiError('ERR_ARGUMENT', `${name} must be a Uint8Array`);
  if (v.length > max) throw new OtiError('ERR_ENCODING_TOO_LARGE', `${name} is ${v.length} bytes, limit is ${max}`);
  return v;
}

export function decodeEntry(b: Uint8Array): Entry {
  return fastLockEventEntry(b) ?? entryFromCbor(decode(b, ENTRY_MAX_BYTES));
}

// Fast path for the common case, lock-event entries. Deterministic CBOR gives every valid
// lock-event entry (and its COSE_Sign1 and lock event) exactly one encoding, so bytes that match
// that encoding byte for byte are valid, and decode to exactly what the generic path would give.
// The scanners below accept only such bytes and return false for anything else (including every
// invalid input, and valid but less common shapes such as events with "ext"), which then goes
// through the generic strict decoder and gets its usual coded error. A scanner allocates nothing:
// it records where the parts lie in a LockEventScan; the fast decoders build their results from
// it, with byte strings as views into the input (like the generic decoder's copies, never
// written to).

/**
 * Where the parts of a lock-event entry, a COSE_Sign1 or a bare lock event lie in the bytes a
 * scanner was given (offsets into them). The fields not found by a scanner keep their old values.
 */
export interface LockEventScan {
  /** The lock id, ASCII (ID_PATTERN), at [lockStart, lockEnd). */
  lockStart: number;
  lockEnd: number;
  ctr: number;
  /** The lock's clock. */
  time: number;
  type: EventType;
  /** The credential at [credStart, credEnd); credStart is -1 when there is none. */
  credStart: number;
  credEnd: number;
  /** The lock event's bytes: the COSE payload of a signed one, the bare event of an unsigned one. */
  eventStart: number;
  eventEnd: number;
  /** The 64-byte COSE signature; -1 for an unsigned event. */
  sigStart: number;
  /** Entries only: the COSE_Sign1 [coseStart, coseEnd) of a signed one, and the entry's time. */
  coseStart: number;
  coseEnd: number;
  entryTime: number;
}

/** A LockEventScan to reuse (one per caller: the scanners fill it in place). */
export function lockEventScan(): LockEventScan {
  return { lockStart: 0, lockEnd: 0, ctr: 0, time: 0, type: EVENT_TYPES[0], credStart: -1, credEnd: -1, eventStart: 0, eventEnd: 0, sigStart: -1, coseStart: 0, coseEnd: 0, entryTime: 0 };
}

/** Reads a shortest-form head of `major` at `p`; returns the argument, or -1 if not such a head. Sets headEnd. */
let headEnd = 0;
const headOut = { end: 0 };
function readHead(b: Uint8Array, p: number, major: number): number {
  if (p >= b.length || b[p]! >> 5 !== major) return -1;
  const v = readCborHead(b, p, headOut);
  if (v < 0) return -1;
  headEnd = headOut.end;
  return v;
}

function view(b: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset + start, end - start);
}

const COSE_FIXED = Uint8Array.of(0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0);
const EV_V1 = Uint8Array.of(0x61, 0x76, 0x01);
const EV_CTR = Buffer.from('63637472', 'hex');
const EV_CRED = Buffer.from('6463726564', 'hex');
const EV_LOCK = Buffer.from('646c6f636b', 'hex');
const EV_TIME = Buffer.from('6474696d65', 'hex');
const EV_TYPE = Buffer.from('6474797065', 'hex');

/** An ID_PATTERN identifier as bytes: [a-z0-9] then [a-z0-9._-], 1 to 64 bytes. */
function isIdBytes(b: Uint8Array, s: number, e: number): boolean {
  if (e - s < 1 || e - s > 64) return false;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (i > s && (c === 0x2e || c === 0x5f || c === 0x2d));
    if (!ok) return false;
  }
  return true;
}

/**
 * Strings latin1() made, by a hash of their bytes: the same few lock ids come back with every
 * event, and a new string per event (made a character at a time) was both garbage and, for an
 * event in flight, one more object for every young-generation collection to copy.
 */
const LATIN1_SEEN: Array<string | undefined> = new Array<string | undefined>(4096).fill(undefined);
const LATIN1_SEEN_MAX = 64;

/** The text of ASCII bytes b[s, e) (a lock id found by a scanner); the same string for the same bytes while it is remembered. */
export function latin1(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n > LATIN1_SEEN_MAX) return latin1Text(b, s, e);
  let h = n;
  for (let i = s; i < e; i++) h = (Math.imul(h, 31) + b[i]!) | 0;
  const slot = (h ^ (h >>> 12)) & (LATIN1_SEEN.length - 1);
  const seen = LATIN1_SEEN[slot];
  if (seen?.length === n) {
    let i = 0;
    while (i < n && seen.charCodeAt(i) === b[s + i]) i++;
    if (i === n) return seen;
  }
  const text = latin1Text(b, s, e);
  LATIN1_SEEN[slot] = text;
  return text;
}

function latin1Text(b: Uint8Array, s: number, e: number): string {
  let out = '';
  for (let i = s; i < e; i++) out += String.fromCharCode(b[i]!);
  return out;
}

/** The event type whose UTF-8 bytes are b[s, e), compared in place; undefined if none. */
const EVENT_TYPE_BYTES: ReadonlyArray<readonly [Uint8Array, EventType]> = EVENT_TYPES.map((t) => [Buffer.from(t, 'latin1'), t] as const);
function eventTypeAt(b: Uint8Array, s: number, e: number): EventType | undefined {
  for (const [bytes, t] of EVENT_TYPE_BYTES) if (bytes.length === e - s && matchAt(b, s, bytes)) return t;
  return undefined;
}

/** A lock event without "ext" in its one deterministic encoding at [s, e)? Fills the event's fields of `o`. */
function scanLockEvent(b: Uint8Array, s: number, e: number, o: LockEventScan): boolean {
  if (e - s > LOCK_EVENT_MAX_BYTES || e - s < 1) return false;
  const mh = b[s]!;
  if (mh !== 0xa5 && mh !== 0xa6) return false;
  let p = s + 1;
  if (!matchAt(b, p, EV_V1)) return false;
  p += 3;
  if (!matchAt(b, p, EV_CTR)) return false;
  const ctr = readHead(b, p + 4, 0);
  if (ctr < 0) return false;
  p = headEnd;
  let credStart = -1;
  let credEnd = -1;
  if (mh === 0xa6) {
    if (!matchAt(b, p, EV_CRED)) return false;
    const n = readHead(b, p + 5, 2);
    if (n < 1 || n > CRED_MAX_BYTES || headEnd + n > e) return false;
    credStart = headEnd;
    credEnd = headEnd + n;
    p = credEnd;
  }
  if (!matchAt(b, p, EV_LOCK)) return false;
  const ln = readHead(b, p + 5, 3);
  if (ln < 1 || headEnd + ln > e || !isIdBytes(b, headEnd, headEnd + ln)) return false;
  const lockStart = headEnd;
  p = headEnd + ln;
  if (!matchAt(b, p, EV_TIME)) return false;
  const time = readHead(b, p + 5, 0);
  if (time < 0) return false;
  p = headEnd;
  if (!matchAt(b, p, EV_TYPE)) return false;
  const tn = readHead(b, p + 5, 3);
  if (tn < 1 || tn > 32 || headEnd + tn !== e) return false;
  const type = eventTypeAt(b, headEnd, e);
  if (type === undefined) return false;
  o.lockStart = lockStart;
  o.lockEnd = lockStart + ln;
  o.ctr = ctr;
  o.time = time;
  o.type = type;
  o.credStart = credStart;
  o.credEnd = credEnd;
  o.eventStart = s;
  o.eventEnd = e;
  return true;
}

/** A COSE_Sign1 in our profile ([h'a10127', {}, payload, sig64]) at [s, e) with its lock event? Fills `o` but for the entry's fields. */
function scanCose(b: Uint8Array, s: number, e: number, o: LockEventScan): boolean {
  if (e - s > COSE_MAX_BYTES || !matchAt(b, s, COSE_FIXED)) return false;
  const n = readHead(b, s + 6, 2);
  if (n < 0) return false;
  const ps = headEnd;
  const pe = ps + n;
  if (pe + 66 !== e || b[pe] !== 0x58 || b[pe + 1] !== 0x40) return false;
  if (!scanLockEvent(b, ps, pe, o)) return false;
  o.sigStart = pe + 2;
  return true;
}

/**
 * A lock-event entry (either provenance) in its one deterministic encoding, the whole of `b`?
 * Fills `o` (sigStart -1 for an unsigned event).
 */
export function scanLockEventEntry(b: Uint8Array, o: LockEventScan): boolean {
  return b instanceof Uint8Array && scanLockEventEntryAt(b, 0, b.length, o);
}

/**
 * scanLockEventEntry() for the entry that is b[s, e) (an entry inside a stored chunk): the same
 * answer as for a copy of those bytes, with the offsets of `o` in `b`. A field read past `e`
 * only moves the scan further past it, and the entry must end exactly at `e`.
 */
export function scanLockEventEntryAt(b: Uint8Array, s: number, e: number, o: LockEventScan): boolean {
  if (e - s > ENTRY_MAX_BYTES || e > b.length || !matchAt(b, s, LE_START)) return false;
  let p = s + LE_START.length;
  if (matchAt(b, p, LE_SIGNED_BODY_KEY)) {
    const n = readHead(b, p + LE_SIGNED_BODY_KEY.length, 2);
    if (n < 0 || n > COSE_MAX_BYTES || headEnd + n > e) return false;
    const cs = headEnd;
    const ce = cs + n;
    if (!scanCose(b, cs, ce, o) || !matchAt(b, ce, LE_PROV_SIGNED)) return false;
    o.coseStart = cs;
    o.coseEnd = ce;
    p = ce + LE_PROV_SIGNED.length;
  } else if (matchAt(b, p, LE_PROV_UNSIGNED) && matchAt(b, p + LE_PROV_UNSIGNED.length, LE_EVENT_KEY)) {
    const n = readHead(b, p + LE_PROV_UNSIGNED.length + LE_EVENT_KEY.length, 2);
    if (n < 0 || n > COSE_MAX_BYTES || headEnd + n > e) return false;
    const es = headEnd;
    if (!scanLockEvent(b, es, es + n, o)) return false;
    o.sigStart = -1;
    p = es + n;
  } else {
    return false;
  }
  if (!matchAt(b, p, LE_KIND_TIME)) return false;
  const time = readHead(b, p + LE_KIND_TIME.length, 0);
  if (time < 0 || headEnd !== e) return false;
  o.entryTime = time;
  return true;
}

/** The scan the fast decoders below use (they run to completion: one is enough). */
const SCAN = lockEventScan();

/** The LockEvent a scan found in `b`. */
function eventOf(b: Uint8Array, o: LockEventScan): LockEvent {
  const ev: LockEvent = { lock: latin1(b, o.lockStart, o.lockEnd), ctr: o.ctr, time: o.time, type: o.type };
  if (o.credStart >= 0) ev.cred = view(b, o.credStart, o.credEnd);
  return ev;
}

/**
 * A lock's payload (a COSE_Sign1 or a bare lock event) decoded from exactly `bytes`: the lock
 * protocol decoders make one per event message, and the pipeline checks the signature with it
 * instead of decoding the payload again. (The chain still decodes its own copy of the bytes.)
 */
export interface LockPayload {
  readonly bytes: Uint8Array;
  readonly parsed: CoseSign1 | undefined;
  readonly event: LockEvent;
}

/**
 * A lock's payload found by the fast path: where its COSE payload and signature lie in `source`,
 * and their views (`parsed`) made only when asked for. The ingest pipeline packs the signature
 * check straight from `source` (SignaturePool.checkCoseAt): thousands of events are in flight
 * under load, and each object one holds is copied by the young-generation collections it lives
 * through (two views and an object per event, about 230 bytes, were a fifth of what an event held).
 */
export class ScannedLockPayload implements LockPayload {
  readonly bytes: Uint8Array;
  /** The event's lock and counter (its other fields are read again from `bytes` when `event` is first asked for). */
  readonly lock: string;
  readonly ctr: number;
  /** The buffer the payload was read from, and where its COSE payload and signature lie in it (sigStart -1: unsigned). */
  readonly source: Uint8Array;
  readonly payloadStart: number;
  readonly payloadEnd: number;
  readonly sigStart: number;
  #parsed: CoseSign1 | undefined;
  #event: LockEvent | undefined;

  constructor(bytes: Uint8Array, source: Uint8Array, o: LockEventScan, signed: boolean) {
    this.bytes = bytes;
    this.lock = latin1(source, o.lockStart, o.lockEnd);
    this.ctr = o.ctr;
    this.source = source;
    this.payloadStart = o.eventStart;
    this.payloadEnd = o.eventEnd;
    this.sigStart = signed ? o.sigStart : -1;
    this.#parsed = undefined;
    this.#event = undefined;
  }

  get parsed(): CoseSign1 | undefined {
    if (this.sigStart < 0) return undefined;
    return (this.#parsed ??= { payload: view(this.source, this.payloadStart, this.payloadEnd), signature: view(this.source, this.sigStart, this.sigStart + 64) });
  }

  /**
   * The event, read again from `bytes` when first asked for (the pipeline asks only with a
   * privacy key configured): an object and its time held by every event in flight were for
   * nothing on the common path.
   */
  get event(): LockEvent {
    if (this.#event === undefined) {
      const b = this.bytes;
      if (!(this.sigStart >= 0 ? scanCose(b, 0, b.length, RESCAN) : scanLockEvent(b, 0, b.length, RESCAN))) throw new OtiError('ERR_ARGUMENT', 'the bytes of a scanned payload changed');
      this.#event = eventOf(b, RESCAN);
    }
    return this.#event;
  }
}

/** Where the parts of a scanned payload lie when its event is read again (ScannedLockPayload.event). */
const RESCAN = lockEventScan();

/**
 * The fast path for a lock's payload outside an entry (the lock protocol's event messages): a
 * COSE_Sign1 (`signed`) or a bare event at [s, e) of `b`, in the one deterministic encoding the
 * strict decoders accept, or undefined (then the caller uses the strict decoders, which either
 * accept the same value or throw a coded error). `bytes` of the result is `b` itself when [s, e)
 * is the whole of it, else a view of [s, e).
 */
export function fastLockPayload(b: Uint8Array, s: number, e: number, signed: boolean): ScannedLockPayload | undefined;
/** The same, made as `Kind` (a subclass that is more than the payload: drivers/received.ts). */
export function fastLockPayload<T extends ScannedLockPayload>(b: Uint8Array, s: number, e: number, signed: boolean, Kind: ScannedKind<T>): T | undefined;
export function fastLockPayload(b: Uint8Array, s: number, e: number, signed: boolean, Kind: ScannedKind<ScannedLockPayload> = ScannedLockPayload): ScannedLockPayload | undefined {
  if (signed ? !scanCose(b, s, e, SCAN) : !scanLockEvent(b, s, e, SCAN)) return undefined;
  return new Kind(s === 0 && e === b.length ? b : view(b, s, e), b, SCAN, signed);
}

/** ScannedLockPayload's constructor, or a subclass's with the same arguments. */
export type ScannedKind<T extends ScannedLockPayload> = new (bytes: Uint8Array, source: Uint8Array, o: LockEventScan, signed: boolean) => T;

/** A lock's COSE_Sign1 (`signed`) or bare event `b`, decoded strictly: a coded error if invalid. `bytes` is `b`. */
export function decodeLockPayload(b: Uint8Array, signed: boolean): LockPayload {
  const fast = fastLockPayload(b, 0, b.length, signed);
  if (fast !== undefined) return fast;
  if (!signed) return { bytes: b, parsed: undefined, event: decodeLockEvent(b) };
  const parsed = parseCoseSign1(b);
  return { bytes: b, parsed, event: decodeLockEvent(parsed.payload) };
}

/** A lock-event entry (either provenance) in its one deterministic encoding, or undefined. */
function fastLockEventEntry(b: Uint8Array): Entry | undefined {
  if (!scanLockEventEntry(b, SCAN)) return undefined;
  const event = eventOf(b, SCAN);
  const body: EntryBody = SCAN.sigStart >= 0
    ? { kind: 'lock-event', prov: 'lock-signed', cose: view(b, SCAN.coseStart, SCAN.coseEnd), parsed: { payload: view(b, SCAN.eventStart, SCAN.eventEnd), signature: view(b, SCAN.sigStart, SCAN.sigStart + 64) }, event }
    : { kind: 'lock-event', prov: 'unsigned', eventBytes: view(b, SCAN.eventStart, SCAN.eventEnd), event };
  return { time: SCAN.entryTime, body };
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
      const bm = asMap(b, 'entry.body', ['lock', 'from', 'to', 'code', 'source', 'start', 'end', 'reason']);
      if ('lock' in bm) {
        asMap(b, 'entry.body', ['lock', 'from', 'to', 'code']);
        const from = uint(bm, 'from', 'entry.body');
        const to = uint(bm, 'to', 'entry.body');
        if (to < from) throw schemaError('entry.body.to', 'must not be less than from');
        body = { kind, lock: text(bm, 'lock', 'entry.body', 64, ID_PATTERN), from, to };
        if (bm['code'] !== undefined) body.code = text(bm, 'code', 'entry.body', 64, REFUSAL_CODE_PATTERN);
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
    case 'privacy': {
      const op = oneOf(asMap(b, 'entry.body', ['op', 'person', 'fields']), 'op', 'entry.body', ['person', 'shred'] as const);
      const bm = asMap(b, 'entry.body', op === 'person' ? ['op', 'person', 'fields'] : ['op', 'person']);
      const person = bytes(bm, 'person', 'entry.body', PERSON_ID_BYTES);
      if (op === 'person') {
        const fields = bytes(bm, 'fields', 'entry.body', undefined, PERSON_FIELDS_MAX_BYTES);
        if (fields.length === 0) throw schemaError('entry.body.fields', 'must not be empty');
        body = { kind, op, person, fields };
      } else {
        body = { kind, op, person };
      }
      break;
    }
  }
  return { time, body };
}
