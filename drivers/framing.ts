/**
 * Framing of lock protocol messages on the two transports (docs/PROTOCOL.md §Lock protocol).
 *
 * Serial: frame = COBS(body || CRC-32(body), 4 bytes big-endian) followed by one 0x00 delimiter.
 * COBS is Consistent Overhead Byte Stuffing (Cheshire & Baker, IEEE/ACM Trans. Networking 7(2),
 * 1999): the encoded frame contains no 0x00, so 0x00 only ever delimits. CRC-32 is the IEEE 802.3
 * / zlib polynomial (reflected 0xEDB88320, initial and final XOR 0xFFFFFFFF). A sender may put a
 * 0x00 before a frame too (empty frames are ignored), which resynchronises a receiver that joined
 * mid-stream. The decoder is a stream parser: any byte sequence in, a bounded amount of memory
 * held, frames and coded rejections out; after garbage it resynchronises at the next 0x00.
 *
 * BLE: a message is cut into fragments of at most (ATT MTU − 3) bytes. Fragment = one header byte
 * (bit 7 FIRST, bit 6 LAST, bits 0–5 sequence number mod 64, 0 on the first fragment) and, on the
 * first fragment only, the message length as 2 bytes big-endian, then the message bytes. Every
 * fragment carries at least one message byte.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';
import { OtiError } from '../ledger/base/errors.js';
import type { ErrorCode } from '../ledger/base/errors.js';

export type FrameResult =
  | { readonly ok: true; readonly body: Uint8Array }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string };

/** Bytes of the CRC-32 trailer inside a frame. */
export const CRC_BYTES = 4;
/** Smallest body a frame may carry. */
export const FRAME_MIN_BODY = 1;

/** CRC-32 (IEEE 802.3, as zlib and PNG use it) of `b`, as an unsigned 32-bit number. */
export function crc32(b: Uint8Array): number {
  return zlibCrc32(b) >>> 0;
}

/** The longest COBS encoding of `n` bytes, delimiter not included: one code byte per started 254-byte run. */
export function cobsMaxEncoded(n: number): number {
  return n + Math.floor(n / 254) + 1;
}

/** One serial frame for a message body, delimiter included (a leading 0x00 too if `lead`). */
export function encodeFrame(body: Uint8Array, lead = false): Uint8Array {
  if (!(body instanceof Uint8Array) || body.length < FRAME_MIN_BODY) throw new OtiError('ERR_ARGUMENT', 'a frame body is a non-empty Uint8Array');
  const n = body.length + CRC_BYTES;
  const src = new Uint8Array(n);
  src.set(body, 0);
  new DataView(src.buffer).setUint32(body.length, crc32(body), false);
  const start = lead ? 1 : 0;
  const out = new Uint8Array(start + cobsMaxEncoded(n) + 1);
  // COBS: each group is a code byte c (1..255) then c−1 non-zero bytes; c < 255 means "a zero
  // follows, unless the data ends here", c = 255 means "254 bytes and no zero".
  let codeAt = start;
  let o = start + 1;
  let code = 1;
  for (let i = 0; i < n; i++) {
    const x = src[i] as number;
    if (x === 0) {
      out[codeAt] = code;
      codeAt = o++;
      code = 1;
    } else {
      out[o++] = x;
      if (++code === 0xff) {
        out[codeAt] = code;
        codeAt = o++;
        code = 1;
      }
    }
  }
  out[codeAt] = code;
  out[o++] = 0;
  return out.subarray(0, o);
}

/**
 * Streaming serial frame decoder. It holds at most cobsMaxEncoded(maxBody + CRC_BYTES) bytes of a
 * partial frame (see `buffered`): a frame that grows past that is reported once as
 * ERR_FRAME_TOO_LARGE and the rest of it, up to the next 0x00, is skipped. A completed frame is
 * ERR_FRAME_MALFORMED if it is not valid COBS or holds fewer than FRAME_MIN_BODY + CRC_BYTES
 * bytes, ERR_FRAME_CRC if its CRC-32 does not match, ERR_FRAME_TOO_LARGE if its body exceeds
 * maxBody; otherwise its body comes out in a fresh array that the decoder never touches again.
 */
export class FrameDecoder {
  private readonly limit: number;
  private readonly buf: Uint8Array;
  private len = 0;
  private skipping = false;

  constructor(readonly maxBody: number) {
    if (!Number.isSafeInteger(maxBody) || maxBody < FRAME_MIN_BODY) throw new OtiError('ERR_ARGUMENT', 'maxBody must be a positive integer');
    this.limit = cobsMaxEncoded(maxBody + CRC_BYTES);
    this.buf = new Uint8Array(this.limit);
  }

  /** Bytes of a partial frame held now; never more than cobsMaxEncoded(maxBody + CRC_BYTES). */
  get buffered(): number {
    return this.len;
  }

  /** Feeds bytes as they arrive; returns the frames (and rejections) they completed, in order. */
  push(chunk: Uint8Array): FrameResult[] {
    const out: FrameResult[] = [];
    // A Buffer view (no copy) so that finding the delimiter is a native memchr.
    const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let p = 0;
    while (p < c.length) {
      const z = c.indexOf(0, p);
      const end = z === -1 ? c.length : z;
      if (this.skipping) {
        if (z !== -1) this.skipping = false;
      } else if (this.len + (end - p) > this.limit) {
        out.push({ ok: false, code: 'ERR_FRAME_TOO_LARGE', detail: `frame is longer than ${this.limit} encoded bytes` });
        this.len = 0;
        this.skipping = z === -1;
      } else if (z === -1) {
        this.buf.set(c.subarray(p, end), this.len);
        this.len += end - p;
      } else if (this.len === 0) {
        if (end > p) out.push(this.decode(c, p, end));
      } else {
        this.buf.set(c.subarray(p, end), this.len);
        out.push(this.decode(this.buf, 0, this.len + end - p));
        this.len = 0;
      }
      if (z === -1) break;
      p = z + 1;
    }
    return out;
  }

  /** Forgets a partial frame (the link was closed and reopened). */
  reset(): void {
    this.len = 0;
    this.skipping = false;
  }

  /** Decodes one complete COBS frame src[from, to), which contains no 0x00. */
  private decode(src: Uint8Array, from: number, to: number): FrameResult {
    const dst = new Uint8Array(to - from);
    let o = 0;
    let p = from;
    while (p < to) {
      const code = src[p++] as number;
      const stop = p + code - 1;
      if (stop > to) return { ok: false, code: 'ERR_FRAME_MALFORMED', detail: 'a COBS group runs past the end of the frame' };
      while (p < stop) dst[o++] = src[p++] as number;
      if (code !== 0xff && p < to) dst[o++] = 0;
    }
    if (o < FRAME_MIN_BODY + CRC_BYTES) return { ok: false, code: 'ERR_FRAME_MALFORMED', detail: `frame decodes to ${o} bytes, fewer than a body and its CRC` };
    const n = o - CRC_BYTES;
    if (n > this.maxBody) return { ok: false, code: 'ERR_FRAME_TOO_LARGE', detail: `frame body is ${n} bytes, limit is ${this.maxBody}` };
    const body = dst.subarray(0, n);
    const want = ((dst[n] as number) * 0x1000000 + ((dst[n + 1] as number) << 16) + ((dst[n + 2] as number) << 8) + (dst[n + 3] as number));
    if (crc32(body) !== want) return { ok: false, code: 'ERR_FRAME_CRC', detail: 'CRC-32 does not match the frame body' };
    return { ok: true, body };
  }
}

/** Fragment header bits. */
export const FRAG_FIRST = 0x80;
export const FRAG_LAST = 0x40;
export const FRAG_SEQ_MASK = 0x3f;
/** Largest message a fragment header can announce (2-byte length). */
export const FRAGMENT_MESSAGE_MAX = 0xffff;

/** Cuts a message into BLE fragments of at most `maxFragment` (= ATT MTU − 3, at least 4) bytes. */
export function fragment(message: Uint8Array, maxFragment: number): Uint8Array[] {
  if (!Number.isSafeInteger(maxFragment) || maxFragment < 4) throw new OtiError('ERR_ARGUMENT', 'maxFragment must be an integer of at least 4');
  if (!(message instanceof Uint8Array) || message.length === 0) throw new OtiError('ERR_ARGUMENT', 'a message is a non-empty Uint8Array');
  if (message.length > FRAGMENT_MESSAGE_MAX) throw new OtiError('ERR_FRAME_TOO_LARGE', `message is ${message.length} bytes, a fragmented message holds at most ${FRAGMENT_MESSAGE_MAX}`);
  const out: Uint8Array[] = [];
  let p = 0;
  let seq = 0;
  while (p < message.length) {
    const first = p === 0;
    const headLen = first ? 3 : 1;
    const take = Math.min(maxFragment - headLen, message.length - p);
    const f = new Uint8Array(headLen + take);
    const last = p + take === message.length;
    f[0] = (first ? FRAG_FIRST : 0) | (last ? FRAG_LAST : 0) | seq;
    if (first) {
      f[1] = message.length >> 8;
      f[2] = message.length & 0xff;
    }
    f.set(message.subarray(p, p + take), headLen);
    out.push(f);
    p += take;
    seq = (seq + 1) & FRAG_SEQ_MASK;
  }
  return out;
}

export type ReassemblyResult =
  | { readonly ok: true; readonly message: Uint8Array }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string }
  | undefined;

/**
 * Reassembles BLE fragments into messages of 1..maxMessage bytes, holding at most one partial
 * message (its announced length, so at most maxMessage bytes). Every rejection is ERR_FRAGMENT
 * and drops the partial message: an empty fragment, a first fragment with a sequence number other
 * than 0 or a length of 0 or above maxMessage, a continuation without a first fragment or with the
 * wrong sequence number, a fragment without message bytes, more bytes than announced, or a last
 * fragment that leaves bytes missing. A first fragment while a message is in progress drops the
 * partial one and reports ERR_FRAGMENT for it, then starts the new message; if that new first
 * fragment is itself the whole message, the message is returned instead (one result per push:
 * delivering a complete message loses less than reporting the partial that is lost either way).
 */
export class Reassembler {
  private msg: Uint8Array | undefined;
  private got = 0;
  private seq = 0;

  constructor(readonly maxMessage: number) {
    if (!Number.isSafeInteger(maxMessage) || maxMessage < 1 || maxMessage > FRAGMENT_MESSAGE_MAX) {
      throw new OtiError('ERR_ARGUMENT', `maxMessage must be an integer from 1 to ${FRAGMENT_MESSAGE_MAX}`);
    }
  }

  /** Bytes of the partial message held now (its announced length), 0 when none. */
  get buffered(): number {
    return this.msg?.length ?? 0;
  }

  /** Feeds one fragment; returns a whole message, a rejection, or undefined (need more). */
  push(fragment: Uint8Array): ReassemblyResult {
    const h = fragment[0];
    if (h === undefined) return this.reject('empty fragment');
    if ((h & FRAG_FIRST) !== 0) return this.first(fragment, h);
    const msg = this.msg;
    if (msg === undefined) return this.reject('a continuation fragment without a first fragment');
    if ((h & FRAG_SEQ_MASK) !== this.seq) return this.reject(`sequence number ${h & FRAG_SEQ_MASK}, expected ${this.seq}`);
    const n = fragment.length - 1;
    if (n === 0) return this.reject('a fragment without message bytes');
    if (this.got + n > msg.length) return this.reject(`fragments carry more than the announced ${msg.length} bytes`);
    msg.set(fragment.subarray(1), this.got);
    this.got += n;
    this.seq = (this.seq + 1) & FRAG_SEQ_MASK;
    return this.progress(h);
  }

  reset(): void {
    this.msg = undefined;
    this.got = 0;
    this.seq = 0;
  }

  private first(f: Uint8Array, h: number): ReassemblyResult {
    const dropped = this.msg !== undefined;
    this.reset();
    if ((h & FRAG_SEQ_MASK) !== 0) return this.reject('a first fragment must have sequence number 0');
    if (f.length < 4) return this.reject('a first fragment holds its header, a 2-byte length and at least one byte');
    const total = ((f[1] as number) << 8) | (f[2] as number);
    if (total === 0 || total > this.maxMessage) return this.reject(`announced length ${total} is not within 1..${this.maxMessage}`);
    const n = f.length - 3;
    if (n > total) return this.reject(`a first fragment carries ${n} bytes of a ${total}-byte message`);
    this.msg = new Uint8Array(total);
    this.msg.set(f.subarray(3), 0);
    this.got = n;
    this.seq = 1;
    const r = this.progress(h);
    if (dropped && r === undefined) return { ok: false, code: 'ERR_FRAGMENT', detail: 'a new first fragment arrived; the partial message before it was dropped' };
    return r;
  }

  /** After bytes were added: the message if complete, a rejection if LAST disagrees with the count. */
  private progress(h: number): ReassemblyResult {
    const msg = this.msg as Uint8Array;
    const complete = this.got === msg.length;
    const last = (h & FRAG_LAST) !== 0;
    if (complete !== last) return this.reject(last ? `last fragment leaves ${msg.length - this.got} bytes missing` : 'all announced bytes arrived but the fragment is not marked last');
    if (!last) return undefined;
    this.reset();
    return { ok: true, message: msg };
  }

  private reject(detail: string): ReassemblyResult {
    this.reset();
    return { ok: false, code: 'ERR_FRAGMENT', detail };
  }
}
