/**
 * The signed mDNS announcement of a gateway: what it puts in the TXT record of its `_oti._tcp`
 * service instance, and the checks a browsing gateway makes before it believes any of it.
 * docs/PROTOCOL.md §Discovery announcement has the exact bytes; docs/DISCOVERY.md the why.
 *
 * TXT strings (RFC 6763 §6: `key=value`, each string at most 255 bytes, keys case-insensitive,
 * only the first occurrence of a key counts, unknown keys are ignored):
 *
 *   v=1  site=<site id>  gw=<gateway id>  key=<base64url, 32 bytes>  port=<broker port>
 *   ts=<ms since 1970>  enr0=… enrN=<base64url of the site-signed enrolment, in ≤ 250-char chunks>
 *   sig=<base64url, 64 bytes>  [bye=1 in a goodbye]
 *
 * sig = Ed25519(gateway key, "OTI-v1 mdns announcement" || 0x00 || message), where message is the
 * deterministic CBOR map { "v": 1, "site", "gw", "key", "port", "ts", "enr" [, "bye": true] }.
 * "bye" is signed, so an announcement cannot be turned into a goodbye by changing its TTL.
 */
import { encode, type CborValue } from '../../ledger/base/cbor.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, sha256, toHex, verifyWithContext, type Signer } from '../../ledger/crypto.js';
import { checkSigned, decodeSigned, ROSTER_MAX_BYTES, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { ID_PATTERN } from '../../ledger/schema.js';

/** The DNS-SD service type (RFC 6763 §7) in the `.local` domain (RFC 6762 §3). */
export const SERVICE_TYPE = '_oti._tcp.local';
export const ANNOUNCEMENT_CONTEXT = 'OTI-v1 mdns announcement';
/** RFC 6763 §6.1: each TXT string carries a one-byte length. */
export const TXT_STRING_MAX_BYTES = 255;
/** "enrN=" plus a chunk stays within one TXT string. */
const ENR_CHUNK_CHARS = 250;
/** An encoded SignedStatement is at most ROSTER_MAX_BYTES + 256 bytes: 1,707 base64url chars, 7 chunks. */
const ENROLMENT_MAX_BYTES = ROSTER_MAX_BYTES + 256;
const ENR_CHUNKS_MAX = Math.ceil(Math.ceil((ENROLMENT_MAX_BYTES * 4) / 3) / ENR_CHUNK_CHARS);
/** Our record has 8 + ENR_CHUNKS_MAX strings; more than this is not ours. */
const TXT_STRINGS_MAX = 32;

export interface Announcement {
  readonly site: string;
  readonly gatewayId: string;
  readonly key: Uint8Array;
  readonly port: number;
  readonly ts: number;
  /** The encoded SignedStatement (encodeSigned) that enrols this gateway and key. */
  readonly enrolment: Uint8Array;
  /** True in the goodbye a gateway sends when it stops (RFC 6762 §10.1, TTL 0). */
  readonly bye: boolean;
}

export interface SignedAnnouncement extends Announcement {
  readonly sig: Uint8Array;
}

/** The CBOR message under the signature. */
export function announcementMessage(a: Announcement): Uint8Array {
  const m: { [k: string]: CborValue } = { v: 1, site: a.site, gw: a.gatewayId, key: a.key, port: a.port, ts: a.ts, enr: a.enrolment };
  if (a.bye) m['bye'] = true;
  return encode(m);
}

/** Signs an announcement and lays it out as TXT strings. Throws ERR_ARGUMENT if a string would not fit. */
export function encodeAnnouncement(a: Announcement, signer: Signer): Buffer[] {
  const sig = signer.signWithContext(ANNOUNCEMENT_CONTEXT, announcementMessage(a));
  const enr = b64(a.enrolment);
  const strings = ['v=1', `site=${a.site}`, `gw=${a.gatewayId}`, `key=${b64(a.key)}`, `port=${a.port}`, `ts=${a.ts}`];
  for (let i = 0; i * ENR_CHUNK_CHARS < enr.length; i++) strings.push(`enr${i}=${enr.slice(i * ENR_CHUNK_CHARS, (i + 1) * ENR_CHUNK_CHARS)}`);
  strings.push(`sig=${b64(sig)}`);
  if (a.bye) strings.push('bye=1');
  return strings.map((s) => {
    const b = Buffer.from(s, 'utf8');
    if (b.length > TXT_STRING_MAX_BYTES) throw new OtiError('ERR_ARGUMENT', `TXT string ${s.slice(0, s.indexOf('='))} is ${b.length} bytes, over ${TXT_STRING_MAX_BYTES}`, { argument: 'announcement' });
    return b;
  });
}

/** Parses TXT strings into a signed announcement; every problem is ERR_DISCOVERY_ANNOUNCEMENT. Checks nothing cryptographic. */
export function decodeAnnouncement(txt: readonly Uint8Array[]): SignedAnnouncement {
  if (txt.length > TXT_STRINGS_MAX) throw malformed(`${txt.length} TXT strings`);
  const fields = new Map<string, string>();
  for (const raw of txt) {
    if (raw.length > TXT_STRING_MAX_BYTES) throw malformed('a TXT string is over 255 bytes');
    const s = Buffer.from(raw).toString('latin1');
    const eq = s.indexOf('=');
    const key = (eq < 0 ? s : s.slice(0, eq)).toLowerCase();
    if (key.length === 0 || fields.has(key)) continue; // RFC 6763 §6.4: empty keys are invalid, only the first occurrence counts
    fields.set(key, eq < 0 ? '' : s.slice(eq + 1));
  }
  const get = (k: string): string => {
    const v = fields.get(k);
    if (v === undefined || v.length === 0) throw malformed(`TXT key ${k} is missing`);
    return v;
  };
  if (get('v') !== '1') throw malformed(`version ${get('v')} is not 1`);
  const site = id(get('site'), 'site');
  const gatewayId = id(get('gw'), 'gw');
  const key = unb64(get('key'), 'key', PUBLIC_KEY_BYTES);
  const port = decimal(get('port'), 'port');
  if (port < 1 || port > 65535) throw malformed(`port ${port} is out of range`);
  const ts = decimal(get('ts'), 'ts');
  let enr = '';
  for (let i = 0; fields.has(`enr${i}`); i++) {
    if (i >= ENR_CHUNKS_MAX) throw malformed('enrolment has too many chunks');
    enr += get(`enr${i}`);
  }
  if (enr.length === 0) throw malformed('TXT key enr0 is missing');
  const enrolment = unb64(enr, 'enr');
  if (enrolment.length > ENROLMENT_MAX_BYTES) throw malformed('enrolment is too large');
  const sig = unb64(get('sig'), 'sig', SIGNATURE_BYTES);
  const byeText = fields.get('bye');
  if (byeText !== undefined && byeText !== '1') throw malformed('bye must be 1');
  return { site, gatewayId, key, port, ts, enrolment, bye: byeText === '1', sig };
}

/** A digest that identifies exactly what was signed and the signature, for caching a verification. */
export function announcementDigest(a: SignedAnnouncement): string {
  return toHex(sha256(announcementMessage(a), a.sig));
}

export interface VerifyContext {
  readonly trust: SiteTrust;
  readonly now: number;
  /** Largest accepted |now − ts|. */
  readonly staleMs: number;
  /** True when the roster says this gateway is revoked or `key` is no longer its key. */
  readonly isRevoked?: ((gatewayId: string, key: Uint8Array) => boolean) | undefined;
  /** Set when these exact bytes were verified before (announcementDigest): the signatures are not checked again. */
  readonly signaturesVerified?: boolean;
}

/**
 * Everything a browsing gateway checks, cheapest first. Throws OtiError with:
 *  ERR_DISCOVERY_SITE        the announcement names another site;
 *  ERR_DISCOVERY_STALE       |now − ts| > staleMs (a replay of an old announcement, or a wrong clock);
 *  ERR_DISCOVERY_SIGNATURE   sig does not verify with the advertised key;
 *  ERR_DISCOVERY_ENROLMENT   the enrolment is not signed by a site authority key of this site, or
 *                            does not enrol (enroll or rotate, role gateway) exactly this gateway id
 *                            and key, or has expired;
 *  ERR_DISCOVERY_REVOKED     isRevoked says so.
 * Returns the verified enrolment.
 */
export function verifyAnnouncement(a: SignedAnnouncement, ctx: VerifyContext): SignedStatement {
  if (a.site !== ctx.trust.siteId) throw new OtiError('ERR_DISCOVERY_SITE', `announcement for site ${a.site}, this is ${ctx.trust.siteId}`, { site: a.site });
  if (Math.abs(ctx.now - a.ts) > ctx.staleMs) {
    throw new OtiError('ERR_DISCOVERY_STALE', `announcement time ${new Date(a.ts).toISOString()} is more than ${ctx.staleMs} ms from now`, { ts: a.ts, now: ctx.now });
  }
  const enrolment = enrolmentOf(a);
  if (ctx.signaturesVerified !== true) {
    if (!signatureVerifies(a)) {
      throw new OtiError('ERR_DISCOVERY_SIGNATURE', `announcement of ${a.gatewayId} is not signed by the key it advertises`, { gateway: a.gatewayId });
    }
    try {
      checkSigned(enrolment, ctx.trust);
    } catch (e) {
      if (!isOtiError(e, 'ERR_ROSTER')) throw e;
      throw new OtiError('ERR_DISCOVERY_ENROLMENT', `enrolment of ${a.gatewayId}: ${e.message}`, { gateway: a.gatewayId }, { cause: e });
    }
  }
  const s = enrolment.statement;
  const problem =
    s.role !== 'gateway' ? `it enrols a ${s.role}`
    : s.op === 'revoke' ? 'it is a revocation'
    : s.id !== a.gatewayId ? `it enrols gateway ${s.id}`
    : toHex(s.key) !== toHex(a.key) ? 'it enrols another key'
    : s.expires !== undefined && s.expires <= ctx.now ? `it expired at ${new Date(s.expires).toISOString()}`
    : undefined;
  if (problem !== undefined) throw new OtiError('ERR_DISCOVERY_ENROLMENT', `enrolment of ${a.gatewayId} does not fit: ${problem}`, { gateway: a.gatewayId });
  if (ctx.isRevoked?.(a.gatewayId, a.key) === true) throw new OtiError('ERR_DISCOVERY_REVOKED', `gateway ${a.gatewayId} is revoked or its key was replaced`, { gateway: a.gatewayId });
  return enrolment;
}

function signatureVerifies(a: SignedAnnouncement): boolean {
  return verifyWithContext(a.key, ANNOUNCEMENT_CONTEXT, announcementMessage(a), a.sig);
}

function enrolmentOf(a: SignedAnnouncement): SignedStatement {
  try {
    return decodeSigned(a.enrolment);
  } catch (e) {
    throw new OtiError('ERR_DISCOVERY_ENROLMENT', `enrolment of ${a.gatewayId} is not a signed roster statement: ${(e as Error).message}`, { gateway: a.gatewayId }, { cause: e });
  }
}

/**
 * The instance label (one DNS label, RFC 6763 §4.1): the gateway id with dots replaced, then the
 * first 8 hex digits of SHA-256(key), so two gateways never share a name and no probing for a
 * unique name is needed. The label identifies nothing by itself: the TXT record does.
 */
export function instanceLabel(gatewayId: string, key: Uint8Array): string {
  return `${gatewayId.replace(/\./g, '-').slice(0, 48)}-${toHex(sha256(key)).slice(0, 8)}`;
}

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
}

function unb64(s: string, field: string, length?: number): Uint8Array {
  const b = Buffer.from(s, 'base64url');
  // Buffer.from skips characters outside the alphabet; only the canonical form is accepted.
  if (!/^[A-Za-z0-9_-]*$/.test(s) || b.toString('base64url') !== s) throw malformed(`${field} is not canonical base64url`);
  if (length !== undefined && b.length !== length) throw malformed(`${field} is ${b.length} bytes, expected ${length}`);
  return new Uint8Array(b);
}

function decimal(s: string, field: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(s) || !Number.isSafeInteger(Number(s))) throw malformed(`${field} is not a decimal integer`);
  return Number(s);
}

function id(s: string, field: string): string {
  if (!ID_PATTERN.test(s)) throw malformed(`${field} is not a valid identifier`);
  return s;
}

function malformed(problem: string): OtiError {
  return new OtiError('ERR_DISCOVERY_ANNOUNCEMENT', `malformed announcement: ${problem}`);
}
