/**
 * The lock protocol's messages (docs/PROTOCOL.md §Lock protocol). Every message is one
 * deterministic CBOR map with text keys and a type field "t"; the same messages travel over
 * serial (framing.ts: COBS + CRC-32) and BLE (framing.ts: fragments over GATT).
 *
 *   lock → gateway
 *     info   { t: "info", v: 1 | 2, lock: id, fw: text(1..64), ? key: bstr(32) }
 *     event  { t: "event", oldest: uint, cose: bstr }     a lock-signed event (COSE_Sign1)
 *     event  { t: "event", oldest: uint, event: bstr }    an unsigned lock's bare event
 *   gateway → lock
 *     hello  { t: "hello", v: 1 | 2, gw: id, window: uint(1..64) }
 *     ack    { t: "ack", ? ev: bstr(32), lock: id, ctr: uint, entry: bstr(32) }
 *     nack   { t: "nack", ? ev: bstr(32), lock: id, ctr: uint, code: text(1..64), retry: bool }
 *     refuse { t: "refuse", code: text(1..64), retry: bool, versions: [+ uint] }
 *
 * Version 2 of the lock protocol adds `ev` (SHA-256 of the event payload answered) to acks and
 * nacks, sent only to a lock whose info announced v 2, and the refuse message (an answer to info).
 *
 * Decoding is strict and bounded: the CBOR profile of ledger/base/cbor.ts, exactly the fields
 * listed (no more, no fewer), sizes checked before use. Failures are OtiErrors: ERR_ENCODING_*
 * from the CBOR layer (including ERR_ENCODING_TOO_LARGE for an oversized message and
 * ERR_ENCODING_VERSION for an unknown "v"), ERR_MESSAGE for an unknown type, a message sent in
 * the wrong direction, or fields that are missing, extra or out of range, and the ledger's own
 * codes for an event payload that is not a valid COSE_Sign1 or lock event. Event signatures are
 * NOT verified here: the gateway does that against the roster before storing.
 */
import { encode, decode, headLength, matchAt, readHead, writeHead, type CborValue } from '../ledger/base/cbor.js';
import { decodeLockPayload, fastLockPayload, latin1, type LockPayload } from '../ledger/entry.js';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import { asMap, bool, bytes, ID_PATTERN, text, uint, type CborMap } from '../ledger/schema.js';
import { COSE_MAX_BYTES } from '../ledger/cose.js';
import { LOCK_EVENT_MAX_BYTES } from '../ledger/lockevent.js';
import { PUBLIC_KEY_BYTES, sha256Slab } from '../ledger/crypto.js';
import { ScannedEvent, type LockInfo } from './received.js';
import { nameLeniently } from './lenient.js';

export type { LockInfo } from './received.js';

/** The lock protocol version a lock speaks unless it announces another (the first one). */
export const PROTOCOL_VERSION = 1;
/** The lock protocol versions this implementation speaks, oldest first; the last is the newest. */
export const PROTOCOL_VERSIONS: readonly number[] = [1, 2];
/** The version that binds answers to the event payload (`ev`) and knows `refuse`. */
export const BOUND_ANSWERS_VERSION = 2;
/** The gateway answers every event message it has read within this time (docs/PROTOCOL.md §Flow, answers). */
export const ANSWER_DEADLINE_MS = 10_000;
/** Largest encoded message of any type. */
export const MESSAGE_MAX_BYTES = 4352;
/** Largest encoded info message (it must fit one GATT attribute value, 512 bytes). */
export const INFO_MAX_BYTES = 512;
export const WINDOW_MAX = 64;
/** Longest firmware text of an info message and longest code text of a nack, in characters. */
export const TEXT_MAX = 64;
/** What a nack's code must look like: an error code name (ledger/base/errors.ts), known or not. */
export const CODE_PATTERN = /^ERR_[A-Z0-9_]+$/;
/** Length of the `ev` of an ack or nack: SHA-256 of the event payload it answers. */
export const EVENT_HASH_BYTES = 32;
/** Length of an ack's entry hash (SHA-256, an RFC 9162 leaf hash). */
export const ENTRY_HASH_BYTES = 32;

/** GATT: 128-bit UUIDs, in noble's form (lower case hex, no dashes). */
export const SERVICE_UUID = '0f7e00015d1c4b8a9a3e6f7469676174';
export const INFO_CHAR_UUID = '0f7e00025d1c4b8a9a3e6f7469676174';
export const EVENTS_CHAR_UUID = '0f7e00035d1c4b8a9a3e6f7469676174';
export const ACK_CHAR_UUID = '0f7e00045d1c4b8a9a3e6f7469676174';
/** Advertisement manufacturer data: company id 0xFFFF (test/unassigned, little-endian), "OT", flags. */
export const ADV_COMPANY_ID = 0xffff;
export const ADV_FLAG_PENDING = 0x01;
/** "OT", the two bytes after the company id that mark an OTI lock's manufacturer data. */
const ADV_MAGIC = [0x4f, 0x54] as const;
const ADV_LENGTH = 5;

/** `decoded`: the payload as decoded to find lock and ctr, for the pipeline to use rather than decode it again. */
export type EventMessage =
  | { readonly t: 'event'; readonly oldest: number; readonly cose: Uint8Array; readonly lock: string; readonly ctr: number; readonly decoded: LockPayload }
  | { readonly t: 'event'; readonly oldest: number; readonly event: Uint8Array; readonly lock: string; readonly ctr: number; readonly decoded: LockPayload };

/** `lock` and `ctr` of an event message are read from its payload when decoding, not sent twice. */
export type LockMessage = { readonly t: 'info'; readonly info: LockInfo } | EventMessage;

/** `v` of hello: absent means 1. `ev` of ack and nack (version 2): SHA-256 of the payload answered. */
export type GatewayMessage =
  | { readonly t: 'hello'; readonly v?: number; readonly gw: string; readonly window: number }
  | { readonly t: 'ack'; readonly ev?: Uint8Array; readonly lock: string; readonly ctr: number; readonly entry: Uint8Array }
  | { readonly t: 'nack'; readonly ev?: Uint8Array; readonly lock: string; readonly ctr: number; readonly code: string; readonly retry: boolean }
  | { readonly t: 'refuse'; readonly code: string; readonly retry: boolean; readonly versions: readonly number[] };

export type Message = LockMessage | GatewayMessage;

/** What encodeMessage takes for an event: lock and ctr are not on the wire. */
export type MessageInput =
  | Exclude<Message, EventMessage>
  | { readonly t: 'event'; readonly oldest: number; readonly cose: Uint8Array }
  | { readonly t: 'event'; readonly oldest: number; readonly event: Uint8Array };

const LOCK_TYPES: readonly string[] = ['info', 'event'];
const GATEWAY_TYPES: readonly string[] = ['hello', 'ack', 'nack', 'refuse'];

/**
 * Encodes a message. The result is decoded again before it is returned, so a bad field (or an
 * event payload the gateway would refuse to parse) fails here, at the sender, with the same code
 * a receiver would give, and no sender built on this can put an invalid message on the wire.
 * Acks, the gateway's one message per event, take a fixed-layout path whose fields are checked
 * directly (a property test keeps it byte-identical to the general encoder).
 */
export function encodeMessage(m: MessageInput): Uint8Array {
  if (m.t === 'ack') return encodeAck(m.lock, m.ctr, m.entry, m.ev);
  if (m.t === 'event') {
    // Laid out directly; checked by the same fast decoder a receiver uses (else the strict one).
    const out = layoutEventMessage('cose' in m ? m.cose : m.event, 'cose' in m, m.oldest);
    if (fastEvent(out) === undefined) decodeMessageStrict(out);
    return out;
  }
  const b = encode(toCbor(m));
  decodeMessage(b);
  return b;
}

/**
 * The bytes of an event message, laid out without checking the payload. encodeMessage checks
 * them; a sender whose payloads come from encodeLockEvent/coseSign1 (which check what they
 * make), like the simulated lock, may use this directly.
 */
export function layoutEventMessage(payload: Uint8Array, signed: boolean, oldest: number): Uint8Array {
  // Written in place into one buffer from Node's pool (no head buffers, no list of parts).
  const key = signed ? EV_COSE : EV_EVENT;
  const b = Buffer.allocUnsafe(EV_HEAD.length + key.length + headLength(payload.length) + payload.length + EV_OLDEST.length + headLength(oldest));
  b.set(EV_HEAD, 0);
  b.set(key, EV_HEAD.length);
  let o = writeHead(b, EV_HEAD.length + key.length, 2, payload.length);
  b.set(payload, o);
  o += payload.length;
  b.set(EV_OLDEST, o);
  writeHead(b, o + EV_OLDEST.length, 0, oldest);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

// { "t": "ack", ["ev": bstr(32),] "ctr": uint, "lock": text, "entry": bstr(32) } in deterministic
// key order (shorter keys first: "ev" sorts between "t" and "ctr").
const ACK_HEAD = Uint8Array.of(0xa4, 0x61, 0x74, 0x63, 0x61, 0x63, 0x6b, 0x63, 0x63, 0x74, 0x72);
const ACK_EV_HEAD = Uint8Array.of(0xa5, 0x61, 0x74, 0x63, 0x61, 0x63, 0x6b, 0x62, 0x65, 0x76, 0x58, EVENT_HASH_BYTES);
const ACK_CTR = Uint8Array.of(0x63, 0x63, 0x74, 0x72);
const ACK_LOCK = Uint8Array.of(0x64, 0x6c, 0x6f, 0x63, 0x6b);
const ACK_ENTRY = Uint8Array.of(0x65, 0x65, 0x6e, 0x74, 0x72, 0x79, 0x58, ENTRY_HASH_BYTES);

/**
 * An ack laid out in one buffer, its fields checked as the strict decoder would (with and without
 * `ev`): encodeMessage of the same ack, without a message object to build first.
 */
export function encodeAck(lock: string, ctr: number, entry: Uint8Array, ev: Uint8Array | undefined): Uint8Array {
  if (!ID_PATTERN.test(lock)) throw new OtiError('ERR_MESSAGE', 'ack.lock must be a lock id', { field: 'ack.lock' });
  if (!Number.isSafeInteger(ctr) || ctr < 1) throw new OtiError('ERR_MESSAGE', 'ack.ctr must be an integer from 1', { field: 'ack.ctr' });
  if (!(entry instanceof Uint8Array) || entry.length !== ENTRY_HASH_BYTES) throw new OtiError('ERR_MESSAGE', `ack.entry must be ${ENTRY_HASH_BYTES} bytes`, { field: 'ack.entry' });
  if (ev !== undefined && (!(ev instanceof Uint8Array) || ev.length !== EVENT_HASH_BYTES)) throw new OtiError('ERR_MESSAGE', `ack.ev must be ${EVENT_HASH_BYTES} bytes`, { field: 'ack.ev' });
  const head = ev === undefined ? ACK_HEAD.length : ACK_EV_HEAD.length + EVENT_HASH_BYTES + ACK_CTR.length;
  // Every byte written below, in a slice of Node's pool: a buffer of its own (past 64 bytes) is a
  // malloc, an ArrayBuffer and a free on V8's helper thread per ack.
  const pooled = Buffer.allocUnsafe(head + headLength(ctr) + ACK_LOCK.length + headLength(lock.length) + lock.length + ACK_ENTRY.length + ENTRY_HASH_BYTES);
  const b = new Uint8Array(pooled.buffer, pooled.byteOffset, pooled.length);
  let o: number;
  if (ev === undefined) {
    b.set(ACK_HEAD, 0);
    o = ACK_HEAD.length;
  } else {
    b.set(ACK_EV_HEAD, 0);
    b.set(ev, ACK_EV_HEAD.length);
    b.set(ACK_CTR, ACK_EV_HEAD.length + EVENT_HASH_BYTES);
    o = head;
  }
  o = writeHead(b, o, 0, ctr);
  b.set(ACK_LOCK, o);
  // A lock id is ASCII (ID_PATTERN): one byte per character.
  o = writeHead(b, o + ACK_LOCK.length, 3, lock.length);
  for (let i = 0; i < lock.length; i++) b[o + i] = lock.charCodeAt(i);
  o += lock.length;
  b.set(ACK_ENTRY, o);
  b.set(entry, o + ACK_ENTRY.length);
  return b;
}

// { "t": "event", "cose" | "event": bstr, "oldest": uint }: the key before the payload, and after.
const EV_HEAD = Uint8Array.of(0xa3, 0x61, 0x74, 0x65, 0x65, 0x76, 0x65, 0x6e, 0x74);
const EV_COSE = Uint8Array.of(0x64, 0x63, 0x6f, 0x73, 0x65);
const EV_EVENT = Uint8Array.of(0x65, 0x65, 0x76, 0x65, 0x6e, 0x74);
const EV_OLDEST = Uint8Array.of(0x66, 0x6f, 0x6c, 0x64, 0x65, 0x73, 0x74);

/** Where the CBOR head readHead() just read ends, for the fast decoders below (they run to completion, one at a time). */
const HEAD_END = { end: 0 };

/**
 * Event messages in their one deterministic encoding, decoded without building CBOR values;
 * undefined for anything else, which then goes through the strict decoder (same result or a
 * coded error). A property test keeps the two equal.
 */
function fastEvent(b: Uint8Array): EventMessage | undefined {
  if (!matchAt(b, 0, EV_HEAD)) return undefined;
  const signed = matchAt(b, EV_HEAD.length, EV_COSE);
  if (!signed && !matchAt(b, EV_HEAD.length, EV_EVENT)) return undefined;
  const out = HEAD_END;
  const n = readHead(b, EV_HEAD.length + (signed ? EV_COSE.length : EV_EVENT.length), out);
  if (n < 0 || b[EV_HEAD.length + (signed ? EV_COSE.length : EV_EVENT.length)]! >> 5 !== 2) return undefined;
  const ps = out.end;
  const pe = ps + n;
  if (pe > b.length || !matchAt(b, pe, EV_OLDEST)) return undefined;
  if (b[pe + EV_OLDEST.length]! >> 5 !== 0) return undefined;
  const oldest = readHead(b, pe + EV_OLDEST.length, out);
  if (oldest < 1 || out.end !== b.length) return undefined;
  // Made as the ReceivedEvent the driver hands on (drivers/received.ts): one object per event.
  const decoded = fastLockPayload(b, ps, pe, signed, ScannedEvent);
  if (decoded === undefined || decoded.ctr < 1 || oldest > decoded.ctr) return undefined;
  const { lock, ctr } = decoded;
  return signed ? { t: 'event', oldest, cose: decoded.bytes, lock, ctr, decoded } : { t: 'event', oldest, event: decoded.bytes, lock, ctr, decoded };
}

function toCbor(m: MessageInput): CborMap {
  switch (m.t) {
    case 'info': {
      const out: CborMap = { t: 'info', v: m.info.v ?? PROTOCOL_VERSION, lock: m.info.lock, fw: m.info.fw };
      if (m.info.key !== undefined) out['key'] = m.info.key;
      return out;
    }
    case 'event':
      return 'cose' in m ? { t: 'event', oldest: m.oldest, cose: m.cose } : { t: 'event', oldest: m.oldest, event: m.event };
    case 'hello':
      return { t: 'hello', v: m.v ?? PROTOCOL_VERSION, gw: m.gw, window: m.window };
    case 'ack':
      return { t: 'ack', lock: m.lock, ctr: m.ctr, entry: m.entry, ...(m.ev === undefined ? {} : { ev: m.ev }) };
    case 'nack':
      return { t: 'nack', lock: m.lock, ctr: m.ctr, code: m.code, retry: m.retry, ...(m.ev === undefined ? {} : { ev: m.ev }) };
    case 'refuse':
      return { t: 'refuse', code: m.code, retry: m.retry, versions: [...m.versions] };
  }
}

/** Acks in their one deterministic encoding (with or without `ev`), or undefined (then the strict decoder decides). */
function fastAck(b: Uint8Array): GatewayMessage | undefined {
  let at: number;
  let ev: Uint8Array | undefined;
  if (matchAt(b, 0, ACK_HEAD)) at = ACK_HEAD.length;
  else if (matchAt(b, 0, ACK_EV_HEAD) && matchAt(b, ACK_EV_HEAD.length + EVENT_HASH_BYTES, ACK_CTR)) {
    ev = new Uint8Array(b.buffer, b.byteOffset + ACK_EV_HEAD.length, EVENT_HASH_BYTES);
    at = ACK_EV_HEAD.length + EVENT_HASH_BYTES + ACK_CTR.length;
  } else return undefined;
  if (at >= b.length || b[at]! >> 5 !== 0) return undefined;
  const out = HEAD_END;
  const ctr = readHead(b, at, out);
  if (ctr < 1 || !matchAt(b, out.end, ACK_LOCK) || b[out.end + ACK_LOCK.length]! >> 5 !== 3) return undefined;
  const n = readHead(b, out.end + ACK_LOCK.length, out);
  if (n < 1 || n > 64 || out.end + n > b.length) return undefined;
  const lock = latin1(b, out.end, out.end + n);
  if (!ID_PATTERN.test(lock)) return undefined;
  const e = out.end + n;
  if (!matchAt(b, e, ACK_ENTRY) || e + ACK_ENTRY.length + ENTRY_HASH_BYTES !== b.length) return undefined;
  const entry = new Uint8Array(b.buffer, b.byteOffset + e + ACK_ENTRY.length, ENTRY_HASH_BYTES);
  return ev === undefined ? { t: 'ack', lock, ctr, entry } : { t: 'ack', ev, lock, ctr, entry };
}

/** Strict, bounded decode of any message; an event's payload is decoded to find lock and ctr. */
export function decodeMessage(b: Uint8Array): Message {
  if (b.length <= MESSAGE_MAX_BYTES) {
    const fast = fastEvent(b) ?? fastAck(b);
    if (fast !== undefined) return fast;
  }
  return decodeMessageStrict(b);
}

/** decodeMessage without the event fast path (exported for the test that keeps them equal). */
export function decodeMessageStrict(b: Uint8Array): Message {
  const v = decode(b, MESSAGE_MAX_BYTES);
  const t = messageType(v);
  switch (t) {
    case 'info':
      if (b.length > INFO_MAX_BYTES) {
        throw new OtiError('ERR_ENCODING_TOO_LARGE', `info message is ${b.length} bytes, limit is ${INFO_MAX_BYTES}`, { length: b.length, limit: INFO_MAX_BYTES });
      }
      return decodeInfo(v);
    case 'event':
      return decodeEvent(v);
    case 'hello': {
      const hv = spokenVersion(v, 'hello');
      return fields(() => {
        const m = asMap(v, 'hello', ['t', 'v', 'gw', 'window']);
        return { t: 'hello', ...(hv === PROTOCOL_VERSION ? {} : { v: hv }), gw: text(m, 'gw', 'hello', 64, ID_PATTERN), window: counted(m, 'window', 'hello', WINDOW_MAX) };
      });
    }
    case 'ack':
      return fields(() => {
        const m = asMap(v, 'ack', ['t', 'ev', 'lock', 'ctr', 'entry']);
        const ev = m['ev'] === undefined ? {} : { ev: bytes(m, 'ev', 'ack', EVENT_HASH_BYTES) };
        return { t: 'ack', ...ev, lock: text(m, 'lock', 'ack', 64, ID_PATTERN), ctr: counted(m, 'ctr', 'ack'), entry: bytes(m, 'entry', 'ack', ENTRY_HASH_BYTES) };
      });
    case 'nack':
      return fields(() => {
        const m = asMap(v, 'nack', ['t', 'ev', 'lock', 'ctr', 'code', 'retry']);
        return {
          t: 'nack',
          ...(m['ev'] === undefined ? {} : { ev: bytes(m, 'ev', 'nack', EVENT_HASH_BYTES) }),
          lock: text(m, 'lock', 'nack', 64, ID_PATTERN),
          ctr: counted(m, 'ctr', 'nack'),
          code: text(m, 'code', 'nack', TEXT_MAX, CODE_PATTERN),
          retry: bool(m, 'retry', 'nack'),
        };
      });
    case 'refuse':
      return fields(() => {
        const m = asMap(v, 'refuse', ['t', 'code', 'retry', 'versions']);
        return { t: 'refuse', code: text(m, 'code', 'refuse', TEXT_MAX, CODE_PATTERN), retry: bool(m, 'retry', 'refuse'), versions: versionList(m) };
      });
  }
}

/** decodeMessage, refusing gateway → lock messages (ERR_MESSAGE). */
export function decodeLockMessage(b: Uint8Array): LockMessage {
  const m = decodeMessage(b);
  if (m.t === 'info' || m.t === 'event') return m;
  throw new OtiError('ERR_MESSAGE', `a "${m.t}" message goes from gateway to lock, not from a lock`, { t: m.t });
}

/** decodeMessage, refusing lock → gateway messages (ERR_MESSAGE). */
export function decodeGatewayMessage(b: Uint8Array): GatewayMessage {
  const m = decodeMessage(b);
  if (m.t === 'hello' || m.t === 'ack' || m.t === 'nack' || m.t === 'refuse') return m;
  throw new OtiError('ERR_MESSAGE', `an "${m.t}" message goes from lock to gateway, not from a gateway`, { t: m.t });
}

/**
 * `ev` of a version 2 ack or nack: SHA-256 of the payload bytes (the value of "cose" or "event").
 * One per event answered (and one per answer a simulated lock checks): a slice of a shared slab
 * (sha256Slab), not a buffer of its own.
 */
export function eventHash(payload: Uint8Array): Uint8Array {
  return sha256Slab(payload);
}

/** An event message the gateway can never accept, read only as far as needed to refuse it. */
export interface UnacceptableEvent {
  readonly lock: string;
  readonly ctr: number;
  readonly oldest: number;
  readonly payload: { readonly cose: Uint8Array } | { readonly event: Uint8Array };
  /** Why the strict decoder refused it (its code and message). */
  readonly code: string;
  readonly detail: string;
}

/**
 * For a message the strict decoder refused with `error`: when it is an event message whose
 * envelope is sound (a map of "t": "event", "oldest" ≥ 1 and exactly one of "cose"/"event" as a
 * byte string) and whose payload, read leniently (drivers/lenient.ts: any well-formed CBOR, tags,
 * floats, any head widths and key order), still names a lock (a valid id) and a counter ≥
 * `oldest`, the event is one the gateway can never accept and answers with ERR_EVENT_INVALID.
 * Undefined when the message cannot be read that far (then nobody can be answered). The envelope
 * itself is read strictly. Never throws.
 */
export function readUnacceptableEvent(b: Uint8Array, error: unknown): UnacceptableEvent | undefined {
  try {
    const v = decode(b, MESSAGE_MAX_BYTES);
    if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || v['t'] !== 'event') return undefined;
    const keys = Object.keys(v).sort().join(',');
    const oldest = v['oldest'];
    const bytesOf = (x: CborValue | undefined): Uint8Array | undefined => (x instanceof Uint8Array && x.length > 0 ? x : undefined);
    const cose = bytesOf(v['cose']);
    const event = bytesOf(v['event']);
    if (typeof oldest !== 'number' || oldest < 1 || (keys !== 'cose,oldest,t' && keys !== 'event,oldest,t')) return undefined;
    const named = nameLeniently(cose ?? event!, cose !== undefined, MESSAGE_MAX_BYTES);
    if (named === undefined || named.ctr < oldest) return undefined;
    const e = error as { code?: unknown; message?: unknown };
    return {
      ...named,
      oldest,
      payload: cose !== undefined ? { cose } : { event: event! },
      code: typeof e?.code === 'string' ? e.code : 'ERR_MESSAGE',
      detail: typeof e?.message === 'string' ? e.message.slice(0, 512) : 'invalid event payload',
    };
  } catch {
    return undefined;
  }
}

/** Manufacturer data for a lock's advertisement. */
export function encodeAdvertisement(pending: boolean): Uint8Array {
  return Uint8Array.of(ADV_COMPANY_ID & 0xff, ADV_COMPANY_ID >> 8, ADV_MAGIC[0], ADV_MAGIC[1], pending ? ADV_FLAG_PENDING : 0);
}

/**
 * Reads an advertisement's manufacturer data; undefined when it is not an OTI lock's (wrong
 * length, company id or magic). Flag bits other than ADV_FLAG_PENDING are reserved and ignored.
 * Never throws.
 */
export function parseAdvertisement(manufacturerData: Uint8Array | undefined): { readonly pending: boolean } | undefined {
  const d = manufacturerData;
  if (!(d instanceof Uint8Array) || d.length !== ADV_LENGTH) return undefined;
  if (d[0] !== (ADV_COMPANY_ID & 0xff) || d[1] !== ADV_COMPANY_ID >> 8 || d[2] !== ADV_MAGIC[0] || d[3] !== ADV_MAGIC[1]) return undefined;
  return { pending: ((d[4] ?? 0) & ADV_FLAG_PENDING) !== 0 };
}

function messageType(v: CborValue): 'info' | 'event' | 'hello' | 'ack' | 'nack' | 'refuse' {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new OtiError('ERR_MESSAGE', 'a message must be a CBOR map', { field: 't' });
  const t = v['t'];
  if (typeof t !== 'string' || !(LOCK_TYPES.includes(t) || GATEWAY_TYPES.includes(t))) {
    throw new OtiError('ERR_MESSAGE', `unknown message type ${typeof t === 'string' ? JSON.stringify(t.slice(0, 16)) : typeof t}`, { field: 't' });
  }
  return t as 'info' | 'event' | 'hello' | 'ack' | 'nack' | 'refuse';
}

function decodeInfo(v: CborValue): LockMessage {
  // The version first: another version may have other fields.
  const iv = spokenVersion(v, 'info');
  return fields(() => {
    const m = asMap(v, 'info', ['t', 'v', 'lock', 'fw', 'key']);
    const lock = text(m, 'lock', 'info', 64, ID_PATTERN);
    const fw = text(m, 'fw', 'info', TEXT_MAX);
    const base = iv === PROTOCOL_VERSION ? { lock, fw } : { v: iv, lock, fw };
    const info: LockInfo = m['key'] === undefined ? base : { ...base, key: bytes(m, 'key', 'info', PUBLIC_KEY_BYTES) };
    return { t: 'info', info };
  });
}

/**
 * The "v" of an info or hello: a version this implementation speaks, else ERR_PROTOCOL_VERSION
 * (with the version in the details when it is an integer) before any other field is read.
 */
function spokenVersion(v: CborValue, what: string): number {
  const n = (v as CborMap)['v'];
  if (typeof n === 'number' && PROTOCOL_VERSIONS.includes(n)) return n;
  throw new OtiError('ERR_PROTOCOL_VERSION', `${what}.v is ${String(n)}; this implementation speaks lock protocol versions ${PROTOCOL_VERSIONS.join(', ')}`, {
    field: `${what}.v`,
    ...(typeof n === 'number' ? { v: n } : {}),
  });
}

/** refuse.versions: 1 to 8 distinct versions, each 1..255, in increasing order. */
function versionList(m: CborMap): number[] {
  const a = m['versions'];
  if (!Array.isArray(a) || a.length < 1 || a.length > 8) throw new OtiError('ERR_MESSAGE', 'refuse.versions must list 1 to 8 versions', { field: 'refuse.versions' });
  const out: number[] = [];
  for (const x of a) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1 || x > 255 || (out.length > 0 && x <= out.at(-1)!)) {
      throw new OtiError('ERR_MESSAGE', 'refuse.versions must be increasing integers from 1 to 255', { field: 'refuse.versions' });
    }
    out.push(x);
  }
  return out;
}

function decodeEvent(v: CborValue): EventMessage {
  const { oldest, cose, event } = fields(() => {
    const m = asMap(v, 'event', ['t', 'oldest', 'cose', 'event']);
    const oldest = counted(m, 'oldest', 'event');
    if ((m['cose'] === undefined) === (m['event'] === undefined)) {
      throw new OtiError('ERR_MESSAGE', 'an event message carries exactly one of "cose" and "event"', { field: 'event.cose' });
    }
    return m['cose'] !== undefined ? { oldest, cose: bytes(m, 'cose', 'event', undefined, COSE_MAX_BYTES) } : { oldest, event: bytes(m, 'event', 'event', undefined, LOCK_EVENT_MAX_BYTES) };
  });
  const decoded = decodeLockPayload(cose ?? (event as Uint8Array), cose !== undefined);
  const { lock, ctr } = decoded.event;
  if (ctr < 1) throw new OtiError('ERR_MESSAGE', 'event counters start at 1', { field: 'event.ctr', ctr });
  if (oldest > ctr) throw new OtiError('ERR_MESSAGE', `oldest (${oldest}) is after the event's own counter (${ctr})`, { field: 'event.oldest', oldest, ctr });
  return cose !== undefined ? { t: 'event', oldest, cose, lock, ctr, decoded } : { t: 'event', oldest, event: event as Uint8Array, lock, ctr, decoded };
}

/** A counter-like field: an integer from 1 to `max`. */
function counted(m: CborMap, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = uint(m, key, what, max);
  if (n < 1) throw new OtiError('ERR_MESSAGE', `${what}.${key} must be an integer from 1 to ${max}`, { field: `${what}.${key}` });
  return n;
}

/** Runs the field checks of one message; a structural failure there is ERR_MESSAGE (same details). */
function fields<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isOtiError(e, 'ERR_ENCODING_SCHEMA')) throw new OtiError('ERR_MESSAGE', e.message, e.details, { cause: e });
    throw e;
  }
}
