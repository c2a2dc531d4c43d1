/**
 * Deterministic CBOR (RFC 8949 §4.2.1, "core deterministic encoding") for everything that is
 * hashed or signed, through cborg.
 *
 * Encoding: preferred (shortest) argument forms, definite lengths, map keys sorted bytewise by
 * their encoded form (cborg's rfc8949EncodeOptions). Our schemas use no floats and no tags, so
 * the float rules of §4.2.1 never apply.
 *
 * Decoding is strict and bounded:
 *  - the input length is checked against the caller's limit before anything is parsed, so no
 *    allocation can exceed the input size;
 *  - indefinite lengths, undefined, non-minimal integers and lengths, duplicate map keys, tags
 *    and floats are rejected;
 *  - exactly one item: trailing bytes are an error;
 *  - map keys must be in bytewise order, which cborg's decoder does not check on its own, so
 *    checkDeterministic() walks the bytes first (one pass, no allocation).
 */
import { isUtf8 } from 'node:buffer';
import { encode as cborEncode, decode as cborDecode, rfc8949EncodeOptions } from 'cborg';
import { OtiError } from './errors.js';

export type CborValue =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | CborValue[]
  | { [key: string]: CborValue };

const encodeOptions = { ...rfc8949EncodeOptions, float64: false };

const decodeOptions = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false,
  rejectDuplicateMapKeys: true,
  useMaps: false,
  // No tags are decoded: an empty tag table makes any tag an error.
  tags: [] as never[],
};

/** Encodes a value in deterministic CBOR. Throws ERR_ENCODING_SCHEMA for values CBOR cannot carry here. */
export function encode(value: CborValue): Uint8Array {
  try {
    return cborEncode(value, encodeOptions);
  } catch (e) {
    throw new OtiError('ERR_ENCODING_SCHEMA', `cannot encode value: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/**
 * Decodes exactly one deterministic CBOR item of at most `maxBytes` bytes.
 * Every failure is an OtiError with an ERR_ENCODING_* code.
 */
export function decode(bytes: Uint8Array, maxBytes: number): CborValue {
  checkDeterministic(bytes, maxBytes);
  try {
    return cborDecode(bytes, decodeOptions) as CborValue;
  } catch (e) {
    // checkDeterministic accepted it, so cborg should too; keep the error coded if it does not.
    throw new OtiError('ERR_ENCODING_MALFORMED', `malformed CBOR: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/**
 * decode(), except that every byte string is a view into `bytes`, not a copy: for messages whose
 * byte strings are many and short-lived (a sync range's entries: cborg copies each into an
 * ArrayBuffer of its own, which the garbage collector then tracks and sweeps). The same checks
 * (checkDeterministic) and the same value otherwise. A view keeps all of `bytes` alive: copy what
 * is kept for long.
 */
export function decodeViews(bytes: Uint8Array, maxBytes: number): CborValue {
  checkDeterministic(bytes, maxBytes);
  const at = { p: 0 };
  return checkedItem(bytes, at);
}

/** The item at `at.p` of bytes checkDeterministic() accepted; moves `at.p` past it. */
function checkedItem(b: Uint8Array, at: { p: number }): CborValue {
  const ib = b[at.p]!;
  const major = ib >> 5;
  if (major === 7) {
    at.p++;
    return ib === 0xf4 ? false : ib === 0xf5 ? true : null;
  }
  const val = readHead(b, at.p, headOut);
  const p = headOut.end;
  switch (major) {
    case 0:
      at.p = p;
      return val;
    case 1:
      at.p = p;
      return -1 - val;
    case 2:
      at.p = p + val;
      return new Uint8Array(b.buffer, b.byteOffset + p, val);
    case 3:
      at.p = p + val;
      return Buffer.from(b.buffer, b.byteOffset + p, val).toString('utf8');
    case 4: {
      at.p = p;
      const out: CborValue[] = [];
      for (let i = 0; i < val; i++) out.push(checkedItem(b, at));
      return out;
    }
    default: {
      // A map: its keys are text, in strictly increasing order, never "__proto__" (checked).
      at.p = p;
      const out: { [key: string]: CborValue } = {};
      for (let i = 0; i < val; i++) {
        const k = checkedItem(b, at) as string;
        out[k] = checkedItem(b, at);
      }
      return out;
    }
  }
}

/** Deepest nesting accepted; our formats nest at most 5 levels. */
export const MAX_DEPTH = 16;

/**
 * Checks, in one pass over the bytes and without allocating, that `bytes` is exactly one CBOR
 * item in the deterministic profile: shortest-form heads (RFC 8949 §4.2.1), definite lengths,
 * map keys strictly increasing in bytewise order of their encodings (so no duplicates), text
 * that is valid UTF-8, integers within ±(2^53-1), no floats, tags, undefined or other simple
 * values than false, true and null, nesting at most MAX_DEPTH. Lengths are checked against the
 * bytes that remain before anything is read, so a hostile length costs nothing.
 *
 * cborg decodes strictly but cannot check map order (its README says so); this fills that gap,
 * and a differential test compares it with cborg's own encoder over random and mutated input.
 */
export function checkDeterministic(bytes: Uint8Array, maxBytes: number): void {
  if (!(bytes instanceof Uint8Array)) throw new OtiError('ERR_ARGUMENT', 'bytes must be a Uint8Array');
  if (bytes.length > maxBytes) {
    throw new OtiError('ERR_ENCODING_TOO_LARGE', `input is ${bytes.length} bytes, limit is ${maxBytes}`, { length: bytes.length, limit: maxBytes });
  }
  if (bytes.length === 0) throw new OtiError('ERR_ENCODING_MALFORMED', 'input is empty');
  const end = checkItem(bytes, 0, 0);
  if (end !== bytes.length) {
    throw new OtiError('ERR_ENCODING_TRAILING_BYTES', `${bytes.length - end} bytes follow the CBOR item`, { trailing: bytes.length - end });
  }
}

function malformed(msg: string, offset: number): OtiError {
  return new OtiError('ERR_ENCODING_MALFORMED', `${msg} at byte ${offset}`, { offset });
}

function noncanonical(msg: string, offset: number): OtiError {
  return new OtiError('ERR_ENCODING_NONCANONICAL', `${msg} at byte ${offset}`, { offset });
}

/** readHead's problems; an argument is never negative, so these cannot be mistaken for one. */
export const HEAD_TRUNCATED = -1;
export const HEAD_NOT_SHORTEST = -2;
export const HEAD_BEYOND_SAFE = -3;
export const HEAD_INDEFINITE = -4;
export const HEAD_RESERVED = -5;

/**
 * Reads the CBOR head (initial byte and argument) at `p`, whatever its major type: returns the
 * argument and sets `out.end` to the offset after the head, or returns one of the HEAD_*
 * problems when the head is cut short, not in shortest form (RFC 8949 §4.2.1), beyond 2^53-1,
 * indefinite, or reserved. No allocation: callers pass the same `out` object every time.
 */
export function readHead(b: Uint8Array, p: number, out: { end: number }): number {
  const len = b.length;
  if (p >= len) return HEAD_TRUNCATED;
  const ai = b[p]! & 31;
  if (ai < 24) {
    out.end = p + 1;
    return ai;
  }
  if (ai === 24) {
    if (p + 2 > len) return HEAD_TRUNCATED;
    const v = b[p + 1]!;
    if (v < 24) return HEAD_NOT_SHORTEST;
    out.end = p + 2;
    return v;
  }
  if (ai === 25) {
    if (p + 3 > len) return HEAD_TRUNCATED;
    const v = (b[p + 1]! << 8) | b[p + 2]!;
    if (v < 0x100) return HEAD_NOT_SHORTEST;
    out.end = p + 3;
    return v;
  }
  if (ai === 26) {
    if (p + 5 > len) return HEAD_TRUNCATED;
    const v = b[p + 1]! * 0x1000000 + ((b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!);
    if (v < 0x10000) return HEAD_NOT_SHORTEST;
    out.end = p + 5;
    return v;
  }
  if (ai === 27) {
    if (p + 9 > len) return HEAD_TRUNCATED;
    const hi = b[p + 1]! * 0x1000000 + ((b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!);
    const lo = b[p + 5]! * 0x1000000 + ((b[p + 6]! << 16) | (b[p + 7]! << 8) | b[p + 8]!);
    if (hi === 0) return HEAD_NOT_SHORTEST;
    if (hi > 0x1fffff) return HEAD_BEYOND_SAFE;
    out.end = p + 9;
    return hi * 0x100000000 + lo;
  }
  return ai === 31 ? HEAD_INDEFINITE : HEAD_RESERVED;
}

const headOut = { end: 0 };

function headProblem(problem: number, pos: number): OtiError {
  switch (problem) {
    case HEAD_TRUNCATED:
      return malformed('input ends inside a head', pos);
    case HEAD_NOT_SHORTEST:
      return noncanonical('integer or length not in shortest form', pos);
    case HEAD_BEYOND_SAFE:
      return noncanonical('integers beyond 2^53-1 are not allowed', pos);
    case HEAD_INDEFINITE:
      return noncanonical('indefinite lengths are not allowed', pos);
    default:
      return malformed('reserved additional information', pos);
  }
}

/** Returns the offset just past the item starting at `pos`. */
function checkItem(b: Uint8Array, pos: number, depth: number): number {
  if (depth > MAX_DEPTH) throw new OtiError('ERR_ENCODING_TOO_LARGE', `nesting deeper than ${MAX_DEPTH}`, { offset: pos });
  const len = b.length;
  if (pos >= len) throw malformed('input ends inside an item', pos);
  const ib = b[pos]!;
  const major = ib >> 5;
  const ai = ib & 31;
  if (major === 7) {
    if (ai === 20 || ai === 21 || ai === 22) return pos + 1;
    if (ai === 31) throw noncanonical('unexpected break', pos);
    throw noncanonical(ai >= 25 && ai <= 27 ? 'floats are not allowed' : 'simple values other than false, true and null are not allowed', pos);
  }
  const val = readHead(b, pos, headOut);
  if (val < 0) throw headProblem(val, pos);
  let p = headOut.end;
  switch (major) {
    case 0:
      return p;
    case 1:
      if (val === Number.MAX_SAFE_INTEGER) throw noncanonical('integers beyond -(2^53-1) are not allowed', pos);
      return p;
    case 2:
    case 3:
      if (val > len - p) throw malformed('string runs past the end of the input', pos);
      if (major === 3 && !isUtf8Range(b, p, p + val)) throw noncanonical('text is not valid UTF-8', pos);
      return p + val;
    case 4:
      if (val > len - p) throw malformed('array is longer than the input', pos);
      for (let i = 0; i < val; i++) p = checkItem(b, p, depth + 1);
      return p;
    case 5: {
      if (val * 2 > len - p) throw malformed('map is longer than the input', pos);
      let prevStart = -1;
      let prevEnd = -1;
      for (let i = 0; i < val; i++) {
        const kStart = p;
        // Our profile: map keys are text, and never "__proto__" (a JavaScript decoder would turn
        // that key into the object's prototype and hide it from every later check).
        if (p < len && b[p]! >> 5 !== 3) throw noncanonical('map keys must be text strings', p);
        p = checkItem(b, p, depth + 1);
        if (p - kStart === 10 && Buffer.from(b.buffer, b.byteOffset + kStart + 1, 9).toString('latin1') === '__proto__') {
          throw noncanonical('the map key "__proto__" is not allowed', kStart);
        }
        if (prevStart >= 0 && compareRanges(b, prevStart, prevEnd, kStart, p) >= 0) {
          throw noncanonical('map keys are not in strictly increasing bytewise order', kStart);
        }
        prevStart = kStart;
        prevEnd = p;
        p = checkItem(b, p, depth + 1);
      }
      return p;
    }
    default:
      throw noncanonical('tags are not allowed', pos);
  }
}

/** Bytewise comparison of b[as, ae) with b[bs, be), like Buffer.compare but without views. */
function compareRanges(b: Uint8Array, as: number, ae: number, bs: number, be: number): number {
  const n = Math.min(ae - as, be - bs);
  for (let i = 0; i < n; i++) {
    const d = b[as + i]! - b[bs + i]!;
    if (d !== 0) return d;
  }
  return (ae - as) - (be - bs);
}

/** UTF-8 validity of b[s, e): ASCII is checked inline, anything else by isUtf8 on a view. */
function isUtf8Range(b: Uint8Array, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i]! >= 0x80) return isUtf8(b.subarray(i, e));
  return true;
}

/** The shortest-form CBOR head for a major type and argument (RFC 8949 §3, §4.2.1). */
export function cborHead(major: number, n: number): Uint8Array {
  const b = new Uint8Array(headLength(n));
  writeHead(b, 0, major, n);
  return b;
}

/** The length of the shortest-form head for argument `n` (a non-negative safe integer). */
export function headLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9;
}

/** Writes the shortest-form head of `major` and `n` into `b` at `o`; returns the offset after it. */
export function writeHead(b: Uint8Array, o: number, major: number, n: number): number {
  const m = major << 5;
  if (n < 24) {
    b[o] = m | n;
    return o + 1;
  }
  if (n < 0x100) {
    b[o] = m | 24;
    b[o + 1] = n;
    return o + 2;
  }
  if (n < 0x10000) {
    b[o] = m | 25;
    b[o + 1] = n >> 8;
    b[o + 2] = n & 0xff;
    return o + 3;
  }
  if (n < 0x100000000) {
    b[o] = m | 26;
    b[o + 1] = n >>> 24;
    b[o + 2] = (n >> 16) & 0xff;
    b[o + 3] = (n >> 8) & 0xff;
    b[o + 4] = n & 0xff;
    return o + 5;
  }
  const hi = Math.floor(n / 0x100000000);
  b[o] = m | 27;
  b[o + 1] = hi >>> 24;
  b[o + 2] = (hi >> 16) & 0xff;
  b[o + 3] = (hi >> 8) & 0xff;
  b[o + 4] = hi & 0xff;
  b[o + 5] = n >>> 24;
  b[o + 6] = (n >> 16) & 0xff;
  b[o + 7] = (n >> 8) & 0xff;
  b[o + 8] = n & 0xff;
  return o + 9;
}

/**
 * Deterministic CBOR for a few fixed shapes on hot paths, built by concatenation instead of
 * through the generic encoder. Each is tested to equal encode() of the same value.
 */
export const fastEncode = {
  /** An array of byte strings (one buffer of Node's pool, written in place). */
  bytesArray(items: readonly Uint8Array[]): Uint8Array {
    let n = headLength(items.length);
    for (const it of items) n += headLength(it.length) + it.length;
    const out = Buffer.allocUnsafe(n);
    let o = writeHead(out, 0, 4, items.length);
    for (const it of items) {
      o = writeHead(out, o, 2, it.length);
      out.set(it, o);
      o += it.length;
    }
    return out;
  },
  /** A text string. */
  text(s: string): Uint8Array {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([cborHead(3, b.length), b]);
  },
  /** An unsigned integer. */
  uint(n: number): Uint8Array {
    return cborHead(0, n);
  },
};

/** Whether `b` holds the bytes of `lit` at position `p` (the fast paths' fixed-layout checks). */
export function matchAt(b: Uint8Array, p: number, lit: Uint8Array): boolean {
  if (p + lit.length > b.length) return false;
  for (let i = 0; i < lit.length; i++) if (b[p + i] !== lit[i]) return false;
  return true;
}

/**
 * Decodes CBOR that this process wrote itself (store records) without the deterministic check.
 * Never use it on bytes that came from outside or that are hashed or signed.
 */
export function decodeTrusted(bytes: Uint8Array): unknown {
  return cborDecode(bytes, decodeOptions);
}
