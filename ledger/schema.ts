/**
 * Small structural checks for decoded CBOR. Each failure is ERR_ENCODING_SCHEMA and names the
 * field, so a technician reading a log knows what was wrong with which item.
 */
import type { CborValue } from './base/cbor.js';
import { OtiError } from './base/errors.js';

export type CborMap = { [key: string]: CborValue };

export function asMap(v: CborValue | undefined, what: string, allowed: readonly string[]): CborMap {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
    throw schemaError(what, 'must be a map');
  }
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw schemaError(`${what}.${k}`, 'is not a known field');
  return v;
}

export function uint(m: CborMap, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const v = m[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw schemaError(`${what}.${key}`, `must be an integer from 0 to ${max}`);
  return v;
}

export function text(m: CborMap, key: string, what: string, maxLength = 256, pattern?: RegExp): string {
  const v = m[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLength) throw schemaError(`${what}.${key}`, `must be a text string of 1 to ${maxLength} characters`);
  if (pattern !== undefined && !pattern.test(v)) throw schemaError(`${what}.${key}`, `must match ${pattern.source}`);
  return v;
}

export function bytes(m: CborMap, key: string, what: string, length?: number, maxLength = 65536): Uint8Array {
  const v = m[key];
  if (!(v instanceof Uint8Array)) throw schemaError(`${what}.${key}`, 'must be a byte string');
  if (length !== undefined && v.length !== length) throw schemaError(`${what}.${key}`, `must be ${length} bytes`);
  if (v.length > maxLength) throw schemaError(`${what}.${key}`, `must be at most ${maxLength} bytes`);
  return v;
}

export function bool(m: CborMap, key: string, what: string): boolean {
  const v = m[key];
  if (typeof v !== 'boolean') throw schemaError(`${what}.${key}`, 'must be true or false');
  return v;
}

export function optional<T>(m: CborMap, key: string, read: () => T): T | undefined {
  return m[key] === undefined ? undefined : read();
}

export function oneOf<T extends string>(m: CborMap, key: string, what: string, values: readonly T[]): T {
  const v = m[key];
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw schemaError(`${what}.${key}`, `must be one of ${values.join(', ')}`);
  return v as T;
}

export function version(m: CborMap, what: string, supported: number): void {
  const v = m['v'];
  if (v !== supported) throw new OtiError('ERR_ENCODING_VERSION', `${what}.v is ${String(v)}, this implementation reads version ${supported}`, { field: `${what}.v` });
}

export function schemaError(field: string, problem: string): OtiError {
  return new OtiError('ERR_ENCODING_SCHEMA', `${field} ${problem}`, { field });
}

/** Identifiers of sites, gateways and locks: printable, short, safe in topics, paths and note lines. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
