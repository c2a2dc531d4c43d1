/**
 * The lock protocol's messages (docs/PROTOCOL.md §Lock protocol). Every message is one
 * deterministic CBOR map with text keys and a type field "t"; the same messages travel over
 * serial (framing.ts: COBS + CRC-32) and BLE (framing.ts: fragments over GATT).
 *
 *   lock → gateway
 *     info   { t: "info", v: 1, lock: id, fw: text(1..64), ? key: bstr(32) }
 *     event  { t: "event", oldest: uint, cose: bstr }     a lock-signed event (COSE_Sign1)
 *     event  { t: "event", oldest: uint, event: bstr }    an unsigned lock's bare event
 *   gateway → lock
 *     hello  { t: "hello", v: 1, gw: id, window: uint(1..64) }
 *     ack    { t: "ack", lock: id, ctr: uint, entry: bstr(32) }
 *     nack   { t: "nack", lock: id, ctr: uint, code: text(1..64), retry: bool }
 *
 * STUB: signatures fixed, bodies to be implemented (issue 3, codec).
 */
import { OtiError } from '../ledger/errors.js';

export const PROTOCOL_VERSION = 1;
/** Largest encoded message of any type. */
export const MESSAGE_MAX_BYTES = 4352;
/** Largest encoded info message (it must fit one GATT attribute value, 512 bytes). */
export const INFO_MAX_BYTES = 512;
export const WINDOW_MAX = 64;

/** GATT: 128-bit UUIDs, in noble's form (lower case hex, no dashes). */
export const SERVICE_UUID = '0f7e00015d1c4b8a9a3e6f7469676174';
export const INFO_CHAR_UUID = '0f7e00025d1c4b8a9a3e6f7469676174';
export const EVENTS_CHAR_UUID = '0f7e00035d1c4b8a9a3e6f7469676174';
export const ACK_CHAR_UUID = '0f7e00045d1c4b8a9a3e6f7469676174';
/** Advertisement manufacturer data: company id 0xFFFF (test/unassigned, little-endian), "OT", flags. */
export const ADV_COMPANY_ID = 0xffff;
export const ADV_FLAG_PENDING = 0x01;

export interface LockInfo {
  readonly lock: string;
  readonly fw: string;
  /** The lock's Ed25519 public key; absent for a lock that cannot sign. */
  readonly key?: Uint8Array;
}

export type EventMessage =
  | { readonly t: 'event'; readonly oldest: number; readonly cose: Uint8Array; readonly lock: string; readonly ctr: number }
  | { readonly t: 'event'; readonly oldest: number; readonly event: Uint8Array; readonly lock: string; readonly ctr: number };

/** `lock` and `ctr` of an event message are read from its payload when decoding, not sent twice. */
export type LockMessage = { readonly t: 'info'; readonly info: LockInfo } | EventMessage;

export type GatewayMessage =
  | { readonly t: 'hello'; readonly gw: string; readonly window: number }
  | { readonly t: 'ack'; readonly lock: string; readonly ctr: number; readonly entry: Uint8Array }
  | { readonly t: 'nack'; readonly lock: string; readonly ctr: number; readonly code: string; readonly retry: boolean };

export type Message = LockMessage | GatewayMessage;

/** What encodeMessage takes for an event: lock and ctr are not on the wire. */
export type MessageInput =
  | Exclude<Message, EventMessage>
  | { readonly t: 'event'; readonly oldest: number; readonly cose: Uint8Array }
  | { readonly t: 'event'; readonly oldest: number; readonly event: Uint8Array };

export function encodeMessage(_m: MessageInput): Uint8Array {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}

/** Strict, bounded decode of any message; an event's payload is decoded to find lock and ctr. */
export function decodeMessage(_b: Uint8Array): Message {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}

/** decodeMessage, refusing gateway → lock messages (ERR_MESSAGE). */
export function decodeLockMessage(_b: Uint8Array): LockMessage {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}

/** decodeMessage, refusing lock → gateway messages (ERR_MESSAGE). */
export function decodeGatewayMessage(_b: Uint8Array): GatewayMessage {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}

/** Manufacturer data for a lock's advertisement. */
export function encodeAdvertisement(_pending: boolean): Uint8Array {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}

/** Reads an advertisement's manufacturer data; undefined when it is not an OTI lock's. */
export function parseAdvertisement(_manufacturerData: Uint8Array | undefined): { readonly pending: boolean } | undefined {
  throw new OtiError('ERR_MESSAGE', 'not implemented');
}
