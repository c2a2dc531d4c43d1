/**
 * The lenient reading of an event payload that the strict decoder refused (docs/PROTOCOL.md
 * §Messages, "still reads as CBOR"): just far enough to find the `lock` and `ctr` it names, so
 * that the gateway can answer it `nack` ERR_EVENT_INVALID (retry false) instead of leaving the lock
 * to resend it for ever. Nothing read here is stored, verified or trusted; it only names the event
 * the refusal is about.
 *
 * The payload must be exactly one well-formed CBOR data item (RFC 8949 §3 and Appendix C), with
 * none of the profile's restrictions: heads of any width, indefinite lengths, floats, simple
 * values, tags, map keys of any type in any order. Tags are skipped (the tagged item is read in
 * their place), so a COSE_Sign1 tagged 18 is read as the array inside. Bounded: the payload is at
 * most a message's size (the caller's limit), every head's length or count is checked against the
 * bytes left before anything is read, each byte is looked at a bounded number of times, and items
 * nest at most LENIENT_MAX_DEPTH levels (arrays, maps, tags and indefinite strings each count), so
 * the recursion stays shallow. Never throws.
 */
import { ID_PATTERN } from '../ledger/schema.js';

/** Deepest nesting the lenient reading follows (the profile allows 16; an event's `ext` may go deeper). */
export const LENIENT_MAX_DEPTH = 64;

/** A head's argument and where the head ends; `arg` is exact up to 2^53 − 1 and at least 2^53 beyond. */
interface Head {
  major: number;
  ai: number;
  arg: number;
  end: number;
}

/** Not well-formed, or beyond a bound: the whole reading gives up. */
const BAD = -1;
/** Major 7, additional information 31: the break that ends an indefinite item. */
const BREAK = -2;

/** The head at `p`, or undefined when it is cut short or uses reserved additional information (28..30). */
function head(b: Uint8Array, p: number): Head | undefined {
  if (p < 0 || p >= b.length) return undefined;
  const major = b[p]! >> 5;
  const ai = b[p]! & 31;
  if (ai < 24 || ai === 31) return { major, ai, arg: ai === 31 ? 0 : ai, end: p + 1 };
  if (ai > 27) return undefined;
  const n = 1 << (ai - 24);
  if (p + 1 + n > b.length) return undefined;
  let arg = 0;
  for (let i = 1; i <= n; i++) arg = arg * 256 + b[p + i]!;
  return { major, ai, arg, end: p + 1 + n };
}

/**
 * The offset after the well-formed item at `p` (BREAK for a break byte, which only an indefinite
 * item's reader accepts), or BAD. `depth` counts the levels above it.
 */
function skip(b: Uint8Array, p: number, depth: number): number {
  const h = head(b, p);
  if (h === undefined || depth > LENIENT_MAX_DEPTH) return BAD;
  const left = b.length - h.end;
  switch (h.major) {
    case 0:
    case 1:
      return h.ai === 31 ? BAD : h.end;
    case 2:
    case 3: {
      if (h.ai !== 31) return h.arg > left ? BAD : h.end + h.arg;
      // Indefinite: definite chunks of the same major type up to the break.
      for (let q = h.end; ; ) {
        if (q < b.length && b[q] === 0xff) return q + 1;
        const c = head(b, q);
        if (c === undefined || c.major !== h.major || c.ai === 31 || c.arg > b.length - c.end) return BAD;
        q = c.end + c.arg;
      }
    }
    case 4:
    case 5: {
      const items = h.major === 5 ? 2 : 1;
      if (h.ai !== 31) {
        // Every item takes at least one byte: a count beyond the bytes left is not well-formed.
        if (h.arg * items > left) return BAD;
        let q = h.end;
        for (let i = 0; i < h.arg * items && q >= 0; i++) q = skip(b, q, depth + 1);
        return q < 0 ? BAD : q;
      }
      for (let q = h.end, i = 0; ; i++) {
        const next = skip(b, q, depth + 1);
        if (next === BREAK) return i % items === 0 ? q + 1 : BAD;
        if (next === BAD) return BAD;
        q = next;
      }
    }
    case 6:
      return h.ai === 31 ? BAD : skipItem(b, h.end, depth + 1);
    default:
      if (h.ai === 31) return BREAK;
      // A simple value of one extra byte is well-formed from 32 on (RFC 8949 §3.3).
      if (h.ai === 24 && h.arg < 32) return BAD;
      return h.end;
  }
}

/** skip(), where a break is not allowed. */
function skipItem(b: Uint8Array, p: number, depth: number): number {
  const q = skip(b, p, depth);
  return q === BREAK ? BAD : q;
}

/** Past the tags at `p`: the offset of the item they tag, or BAD. */
function untag(b: Uint8Array, p: number): number {
  for (let depth = 0; depth <= LENIENT_MAX_DEPTH; depth++) {
    const h = head(b, p);
    if (h === undefined) return BAD;
    if (h.major !== 6) return p;
    if (h.ai === 31) return BAD;
    p = h.end;
  }
  return BAD;
}

/** The bytes of the (well-formed) string of major type `major` at `p`, definite or in chunks; undefined if it is not one. */
function stringAt(b: Uint8Array, p: number, major: number): Uint8Array | undefined {
  const h = head(b, p);
  if (h === undefined || h.major !== major) return undefined;
  if (h.ai !== 31) return b.subarray(h.end, h.end + h.arg);
  const parts: Uint8Array[] = [];
  for (let q = h.end; b[q] !== 0xff; ) {
    const c = head(b, q)!;
    parts.push(b.subarray(c.end, c.end + c.arg));
    q = c.end + c.arg;
  }
  return Uint8Array.from(Buffer.concat(parts));
}

/** The items of the (well-formed) array or map at `p`: their offsets (a map's keys and values alternate). */
function itemsAt(b: Uint8Array, p: number, major: number): number[] | undefined {
  const h = head(b, p);
  if (h === undefined || h.major !== major) return undefined;
  const out: number[] = [];
  const count = h.ai === 31 ? Infinity : h.arg * (major === 5 ? 2 : 1);
  for (let q = h.end; out.length < count && b[q] !== 0xff; q = skipItem(b, q, 0)) out.push(q);
  return out;
}

/**
 * The `lock` and `ctr` a refused event payload names, read leniently (above): for a signed event,
 * the third element of the four-element array (tags skipped) is a byte string holding the lock
 * event; the lock event (tags skipped) is a map with exactly one key "lock" (a text string), whose
 * value is a text string matching `id`, and exactly one key "ctr", whose value is an unsigned
 * integer from 1 to 2^53 − 1 (tags on the values skipped too). Undefined otherwise, and for
 * anything not well-formed, larger than `maxBytes` or nested deeper than LENIENT_MAX_DEPTH.
 */
export function nameLeniently(payload: Uint8Array, signed: boolean, maxBytes: number): { lock: string; ctr: number } | undefined {
  if (!(payload instanceof Uint8Array) || payload.length === 0 || payload.length > maxBytes) return undefined;
  if (skipItem(payload, 0, 0) !== payload.length) return undefined;
  let event = payload;
  if (signed) {
    const items = itemsAt(payload, untag(payload, 0), 4);
    if (items?.length !== 4) return undefined;
    const inner = stringAt(payload, untag(payload, items[2]!), 2);
    if (inner === undefined || inner.length === 0 || skipItem(inner, 0, 0) !== inner.length) return undefined;
    event = inner;
  }
  const pairs = itemsAt(event, untag(event, 0), 5);
  if (pairs === undefined) return undefined;
  let lock: string | undefined;
  let ctr: number | undefined;
  let seen = 0;
  for (let i = 0; i < pairs.length; i += 2) {
    const key = stringAt(event, pairs[i]!, 3);
    const name = key === undefined || key.length > 4 ? undefined : Buffer.from(key).toString('latin1');
    if (name !== 'lock' && name !== 'ctr') continue;
    const bit = name === 'lock' ? 1 : 2;
    if ((seen & bit) !== 0) return undefined;
    seen |= bit;
    const at = untag(event, pairs[i + 1]!);
    if (name === 'lock') {
      const text = stringAt(event, at, 3);
      lock = text === undefined || text.length > 64 ? undefined : Buffer.from(text).toString('latin1');
    } else {
      const h = head(event, at);
      ctr = h !== undefined && h.major === 0 && h.ai !== 31 ? h.arg : undefined;
    }
  }
  if (lock === undefined || !ID_PATTERN.test(lock) || ctr === undefined || !Number.isSafeInteger(ctr) || ctr < 1) return undefined;
  return { lock, ctr };
}
