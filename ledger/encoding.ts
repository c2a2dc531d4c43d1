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
 *  - finally the value is re-encoded and must reproduce the input byte for byte, which rejects
 *    any remaining non-deterministic form (such as unsorted map keys) that cborg's decoder does
 *    not check on its own.
 */
import { encode as cborEncode, decode as cborDecode, decodeFirst, rfc8949EncodeOptions } from 'cborg';
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
  if (!(bytes instanceof Uint8Array)) throw new OtiError('ERR_ARGUMENT', 'bytes must be a Uint8Array');
  if (bytes.length > maxBytes) {
    throw new OtiError('ERR_ENCODING_TOO_LARGE', `input is ${bytes.length} bytes, limit is ${maxBytes}`, { length: bytes.length, limit: maxBytes });
  }
  if (bytes.length === 0) throw new OtiError('ERR_ENCODING_MALFORMED', 'input is empty');
  let value: unknown;
  let rest: Uint8Array;
  try {
    [value, rest] = decodeFirst(bytes, decodeOptions) as [unknown, Uint8Array];
  } catch (e) {
    throw new OtiError('ERR_ENCODING_MALFORMED', `malformed CBOR: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (rest.length !== 0) {
    throw new OtiError('ERR_ENCODING_TRAILING_BYTES', `${rest.length} bytes follow the CBOR item`, { trailing: rest.length });
  }
  if (!isPlainCbor(value)) throw new OtiError('ERR_ENCODING_NONCANONICAL', 'input holds a float or other value outside the deterministic profile');
  const again = cborEncode(value, encodeOptions);
  if (!bytesEqual(again, bytes)) throw new OtiError('ERR_ENCODING_NONCANONICAL', 'input is not in deterministic form (map order or number form)');
  return value;
}

/** Like decode, for callers that only need to know it is canonical (e.g. fuzzing). */
export function isCanonical(bytes: Uint8Array, maxBytes: number): boolean {
  try {
    decode(bytes, maxBytes);
    return true;
  } catch {
    return false;
  }
}

function isPlainCbor(v: unknown): v is CborValue {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  if (typeof v === 'string' || typeof v === 'boolean' || v === null || v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every(isPlainCbor);
  if (typeof v === 'object') return Object.values(v).every(isPlainCbor);
  return false;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

// Re-exported for the rare reader that needs cborg's lenient decoding on trusted local data.
export { cborDecode as decodeTrusted };
