/**
 * The lock event: what a lock says happened. This is the payload locks sign (inside COSE_Sign1)
 * or send bare when their registration allows unsigned events. docs/PROTOCOL.md §Lock event.
 *
 *   { "v": 1, "lock": text, "ctr": uint, "time": uint (lock clock, ms since 1970),
 *     "type": text (one of EVENT_TYPES), ? "cred": bstr (1..128, an opaque credential reference;
 *     at a site with a privacy key, a sealed credential of 85 bytes, docs/PRIVACY.md),
 *     ? "ext": { text => any } (extensions, at most 1 KiB encoded) }
 *
 * (lock, ctr) identifies an event: the counter is per lock and strictly increasing.
 */
import { encode, decode, type CborValue } from './base/cbor.js';
import { asMap, bytes, ID_PATTERN, oneOf, optional, text, uint, version, schemaError, type CborMap } from './schema.js';

export const EVENT_TYPES = [
  'unlocked',
  'locked',
  'failed-attempt',
  'tamper',
  'door-ajar',
  'jammed',
  'battery-low',
  'credential-added',
  'credential-removed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const LOCK_EVENT_MAX_BYTES = 2048;
const EXT_MAX_BYTES = 1024;
/**
 * Longest `cred`. Version 1 allowed 64 bytes; raised to 128 so that a sealed credential
 * (ledger/privacy.ts, 85 bytes) fits. Every event valid before is still valid.
 */
export const CRED_MAX_BYTES = 128;
const FIELDS = ['v', 'lock', 'ctr', 'time', 'type', 'cred', 'ext'] as const;

export interface LockEvent {
  lock: string;
  ctr: number;
  time: number;
  type: EventType;
  cred?: Uint8Array;
  ext?: CborMap;
}

export function encodeLockEvent(ev: LockEvent): Uint8Array {
  const m: CborMap = { v: 1, lock: ev.lock, ctr: ev.ctr, time: ev.time, type: ev.type };
  if (ev.cred !== undefined) m['cred'] = ev.cred;
  if (ev.ext !== undefined) m['ext'] = ev.ext;
  const bytes = encode(m);
  // Round trip through the strict decoder so that an encoder bug or a bad field can never
  // produce an event that the verifier would later refuse.
  decodeLockEvent(bytes);
  return bytes;
}

export function decodeLockEvent(b: Uint8Array): LockEvent {
  return lockEventFromCbor(decode(b, LOCK_EVENT_MAX_BYTES));
}

export function lockEventFromCbor(v: CborValue): LockEvent {
  const m = asMap(v, 'event', FIELDS);
  version(m, 'event', 1);
  const ev: LockEvent = {
    lock: text(m, 'lock', 'event', 64, ID_PATTERN),
    ctr: uint(m, 'ctr', 'event'),
    time: uint(m, 'time', 'event'),
    type: oneOf(m, 'type', 'event', EVENT_TYPES),
  };
  const cred = optional(m, 'cred', () => bytes(m, 'cred', 'event', undefined, CRED_MAX_BYTES));
  if (cred !== undefined) {
    if (cred.length === 0) throw schemaError('event.cred', 'must not be empty');
    ev.cred = cred;
  }
  const ext = m['ext'];
  if (ext !== undefined) {
    const em = asMap(ext, 'event.ext', Object.keys(ext as object));
    if (encode(em).length > EXT_MAX_BYTES) throw schemaError('event.ext', `must encode to at most ${EXT_MAX_BYTES} bytes`);
    ev.ext = em;
  }
  return ev;
}
