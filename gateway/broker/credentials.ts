/**
 * Gateway broker credentials: how one gateway logs in to another gateway's embedded broker with
 * nothing shared but the site's public keys. docs/PROTOCOL.md §Sync (Gateway credentials).
 *
 *   username = the gateway id
 *   password = CBOR { "v": 1, "cred": bstr .cbor credential, "sig": bstr(64) }
 *   credential = { "v": 1, "site": text, "gw": text, "time": uint (ms since 1970),
 *                  "nonce": bstr(16), "enrolment": bstr (roster.encodeSigned of the site-signed
 *                  statement enrolling this gateway's key) }
 *   sig = Ed25519 by the gateway key over "OTI-v1 broker credential" || 0x00 || cred
 *
 * A verifier accepts the token when: it decodes strictly within CREDENTIAL_MAX_BYTES; the
 * enrolment is signed by a site authority key of the verifier's site (checkSigned); it is an
 * `enroll` of role gateway with id = username = gw, not expired at `now`; the signature verifies
 * with the enrolled key; |now − time| ≤ 10 minutes; and the verifier's own roster does not
 * list that gateway as revoked (or enrolled under another key, i.e. rotated away).
 */
import { randomBytes } from 'node:crypto';
import { decode, encode } from '../../ledger/base/cbor.js';
import { OtiError } from '../../ledger/base/errors.js';
import { Signer, verifyWithContext, type KeyPair } from '../../ledger/crypto.js';
import { checkSigned, decodeSigned, encodeSigned, ROSTER_MAX_BYTES, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { asMap, bytes, ID_PATTERN, text, uint, version } from '../../ledger/schema.js';
import type { GatewayCredentialVerifier } from './broker.js';

export const CREDENTIAL_MAX_BYTES = 2048;
/** Largest accepted difference between the credential's time and the verifier's clock. */
export const CREDENTIAL_MAX_SKEW_MS = 10 * 60_000;
const NONCE_BYTES = 16;

export interface GatewayLogin {
  readonly username: string;
  readonly password: Buffer;
}

export interface MakeCredentialOptions {
  readonly siteId: string;
  readonly gatewayId: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  readonly now?: number;
}

/** A fresh login for this gateway (a new time and nonce each call). */
export function makeGatewayCredential(o: MakeCredentialOptions): GatewayLogin {
  const s = o.enrolment.statement;
  if (s.op !== 'enroll' || s.role !== 'gateway' || s.id !== o.gatewayId || s.site !== o.siteId) {
    throw new OtiError('ERR_ARGUMENT', 'the enrolment must enrol this gateway in this site', { argument: 'enrolment' });
  }
  const cred = encode({ v: 1, site: o.siteId, gw: o.gatewayId, time: o.now ?? Date.now(), nonce: new Uint8Array(randomBytes(NONCE_BYTES)), enrolment: encodeSigned(o.enrolment) });
  const sig = new Signer(o.key.seed).signWithContext('OTI-v1 broker credential', cred);
  return { username: o.gatewayId, password: Buffer.from(encode({ v: 1, cred, sig })) };
}

export interface VerifyCredentialOptions {
  readonly trust: SiteTrust;
  readonly now?: () => number;
  /**
   * The verifier's view of the roster: true when it knows `gatewayId` as revoked, or enrolled
   * under another key than `key` (a rotation it has seen). Unknown gateways are not refused here.
   */
  readonly isRefused?: (gatewayId: string, key: Uint8Array) => boolean;
}

/** Checks a login; returns the gateway id and key, or throws ERR_MQTT_AUTH (with the cause). */
export function verifyGatewayLogin(username: string, password: Uint8Array, o: VerifyCredentialOptions): { gatewayId: string; key: Uint8Array } {
  const refuse = (why: string, cause?: unknown): OtiError => new OtiError('ERR_MQTT_AUTH', `gateway credential refused: ${why}`, { username }, cause === undefined ? undefined : { cause });
  if (typeof username !== 'string' || !ID_PATTERN.test(username)) throw refuse('the username is not a gateway id');
  let cred: Uint8Array;
  let sig: Uint8Array;
  let enrolment: SignedStatement;
  let site: string;
  let gw: string;
  let time: number;
  try {
    const outer = asMap(decode(password, CREDENTIAL_MAX_BYTES), 'credential token', ['v', 'cred', 'sig']);
    version(outer, 'credential token', 1);
    cred = bytes(outer, 'cred', 'credential token', undefined, CREDENTIAL_MAX_BYTES);
    sig = bytes(outer, 'sig', 'credential token', 64);
    const m = asMap(decode(cred, CREDENTIAL_MAX_BYTES), 'credential', ['v', 'site', 'gw', 'time', 'nonce', 'enrolment']);
    version(m, 'credential', 1);
    bytes(m, 'nonce', 'credential', NONCE_BYTES);
    enrolment = decodeSigned(bytes(m, 'enrolment', 'credential', undefined, ROSTER_MAX_BYTES + 256));
    site = text(m, 'site', 'credential', 64, ID_PATTERN);
    gw = text(m, 'gw', 'credential', 64, ID_PATTERN);
    time = uint(m, 'time', 'credential');
  } catch (e) {
    throw refuse('malformed token', e);
  }
  if (site !== o.trust.siteId) throw refuse(`the credential is for site ${site}`);
  if (gw !== username) throw refuse('the credential names another gateway than the username');
  try {
    checkSigned(enrolment, o.trust);
  } catch (e) {
    throw refuse('the enrolment is not signed by a key of this site', e);
  }
  const s = enrolment.statement;
  if (s.op !== 'enroll' || s.role !== 'gateway' || s.id !== gw) throw refuse('the enrolment does not enrol this gateway');
  const now = (o.now ?? Date.now)();
  if (s.expires !== undefined && s.expires <= now) throw refuse('the enrolment has expired');
  if (!verifyWithContext(s.key, 'OTI-v1 broker credential', cred, sig)) throw refuse('the gateway signature does not verify');
  if (Math.abs(now - time) > CREDENTIAL_MAX_SKEW_MS) throw refuse('the credential is not fresh (more than 10 minutes from this clock)');
  if (o.isRefused?.(gw, s.key) === true) throw refuse('the gateway is revoked (or its key was rotated) in this gateway’s roster');
  return { gatewayId: gw, key: s.key };
}

/** The Broker's `verifyGatewayCredential` hook: undefined (refused) for any bad login. */
export function gatewayCredentialVerifier(o: VerifyCredentialOptions): GatewayCredentialVerifier {
  return (username, password) => {
    try {
      return Promise.resolve({ gatewayId: verifyGatewayLogin(username, password, o).gatewayId });
    } catch (e) {
      return Promise.reject(e as Error);
    }
  };
}
