/**
 * Framing of lock protocol messages on the two transports (docs/PROTOCOL.md §Lock protocol).
 *
 * Serial: frame = COBS(body || CRC-32(body), 4 bytes big-endian) followed by one 0x00 delimiter.
 * CRC-32 is the IEEE 802.3 / zlib polynomial. A sender may put a 0x00 before a frame too (empty
 * frames are ignored), which resynchronises a receiver that joined mid-stream. The decoder is a
 * stream parser: any byte sequence in, a bounded amount of memory held, frames and coded
 * rejections out; after garbage it resynchronises at the next 0x00.
 *
 * BLE: a message is cut into fragments of at most (ATT MTU − 3) bytes. Fragment = one header byte
 * (bit 7 FIRST, bit 6 LAST, bits 0–5 sequence number mod 64, 0 on the first fragment) and, on the
 * first fragment only, the message length as 2 bytes big-endian, then the message bytes.
 *
 * STUB: signatures fixed, bodies to be implemented (issue 3, codec).
 */
import { OtiError } from '../ledger/errors.js';
import type { ErrorCode } from '../ledger/errors.js';

export type FrameResult =
  | { readonly ok: true; readonly body: Uint8Array }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string };

export function crc32(_b: Uint8Array): number {
  throw new OtiError('ERR_FRAME_MALFORMED', 'not implemented');
}

/** One serial frame for a message body, delimiter included (a leading 0x00 too if `lead`). */
export function encodeFrame(_body: Uint8Array, _lead = false): Uint8Array {
  throw new OtiError('ERR_FRAME_MALFORMED', 'not implemented');
}

export class FrameDecoder {
  constructor(readonly maxBody: number) {}
  /** Feeds bytes as they arrive; returns the frames (and rejections) they completed, in order. */
  push(_chunk: Uint8Array): FrameResult[] {
    throw new OtiError('ERR_FRAME_MALFORMED', 'not implemented');
  }
  /** Forgets a partial frame (the link was closed and reopened). */
  reset(): void {}
}

/** Cuts a message into BLE fragments of at most `maxFragment` (= ATT MTU − 3, at least 4) bytes. */
export function fragment(_message: Uint8Array, _maxFragment: number): Uint8Array[] {
  throw new OtiError('ERR_FRAGMENT', 'not implemented');
}

export type ReassemblyResult =
  | { readonly ok: true; readonly message: Uint8Array }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string }
  | undefined;

export class Reassembler {
  constructor(readonly maxMessage: number) {}
  /** Feeds one fragment; returns a whole message, a rejection, or undefined (need more). */
  push(_fragment: Uint8Array): ReassemblyResult {
    throw new OtiError('ERR_FRAGMENT', 'not implemented');
  }
  reset(): void {}
}
