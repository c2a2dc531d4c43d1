/**
 * Gateway broker credentials: a fresh credential verifies with only the site keys; every part
 * that can be wrong is refused with ERR_MQTT_AUTH: another site, a foreign enrolment, another
 * gateway's name, an expired enrolment, a bad signature, a stale or future time, a revoked or
 * rotated gateway, truncated and oversized tokens.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { decode, encode } from '../../ledger/base/cbor.js';
import { signStatement } from '../../ledger/roster.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { CREDENTIAL_MAX_BYTES, gatewayCredentialVerifier, makeGatewayCredential, verifyGatewayLogin } from '../../gateway/broker/credentials.js';
import { enrollGateway, makeSite } from '../support/site.js';

const site = makeSite('site-1');
const NOW = 1_800_000_000_000;
const gw = enrollGateway(site, 'gw-1');
const fresh = (over: Partial<Parameters<typeof makeGatewayCredential>[0]> = {}): Buffer =>
  makeGatewayCredential({ siteId: 'site-1', gatewayId: 'gw-1', key: gw.key, enrolment: gw.statement, now: NOW, ...over }).password;
const refused = (e: unknown): boolean => isOtiError(e, 'ERR_MQTT_AUTH');
const opts = { trust: site.trust, now: () => NOW };

void test('a fresh credential verifies with the site keys alone', async () => {
  const login = makeGatewayCredential({ siteId: 'site-1', gatewayId: 'gw-1', key: gw.key, enrolment: gw.statement, now: NOW });
  assert.equal(login.username, 'gw-1');
  const v = verifyGatewayLogin(login.username, login.password, opts);
  assert.equal(v.gatewayId, 'gw-1');
  assert.deepEqual(Buffer.from(v.key), Buffer.from(gw.key.publicKey));
  assert.deepEqual(await gatewayCredentialVerifier(opts)('gw-1', login.password), { gatewayId: 'gw-1' });
  // Two credentials differ (nonce), both verify.
  assert.notDeepEqual(fresh(), fresh());
});

void test('time: within 10 minutes either way is fresh, beyond is refused', () => {
  assert.equal(verifyGatewayLogin('gw-1', fresh({ now: NOW - 9 * 60_000 }), opts).gatewayId, 'gw-1');
  assert.equal(verifyGatewayLogin('gw-1', fresh({ now: NOW + 9 * 60_000 }), opts).gatewayId, 'gw-1');
  assert.throws(() => verifyGatewayLogin('gw-1', fresh({ now: NOW - 11 * 60_000 }), opts), refused);
  assert.throws(() => verifyGatewayLogin('gw-1', fresh({ now: NOW + 11 * 60_000 }), opts), refused);
});

void test('wrong site, foreign enrolment, other name, expired enrolment and wrong key are refused', async () => {
  assert.throws(() => verifyGatewayLogin('gw-1', fresh(), { ...opts, trust: makeSite('site-1').trust }), refused);
  const foreign = enrollGateway(makeSite('site-1'), 'gw-1');
  assert.throws(() => verifyGatewayLogin('gw-1', fresh({ key: foreign.key, enrolment: foreign.statement }), opts), refused);
  assert.throws(() => verifyGatewayLogin('gw-2', fresh(), opts), refused);
  const expiring = signStatement(site.site, { site: 'site-1', op: 'enroll', role: 'gateway', id: 'gw-1', key: gw.key.publicKey, time: 1, expires: NOW - 1 });
  assert.throws(() => verifyGatewayLogin('gw-1', fresh({ enrolment: expiring }), opts), refused);
  // Signed by another key than the enrolled one.
  assert.throws(() => verifyGatewayLogin('gw-1', fresh({ key: generateKeyPair() }), opts), refused);
  assert.equal(await gatewayCredentialVerifier(opts)('gw-2', fresh()).catch(() => undefined), undefined);
});

void test('a gateway revoked (or rotated) in the verifier’s roster is refused', () => {
  const isRefused = (id: string, key: Uint8Array): boolean => id === 'gw-1' && Buffer.from(key).equals(Buffer.from(gw.key.publicKey));
  assert.throws(() => verifyGatewayLogin('gw-1', fresh(), { ...opts, isRefused }), refused);
});

void test('tampered, truncated and oversized tokens are refused', () => {
  const p = fresh();
  const m = decode(p, CREDENTIAL_MAX_BYTES) as { cred: Uint8Array; sig: Uint8Array; v: number };
  const sig = Uint8Array.from(m.sig);
  sig[0]! ^= 1;
  assert.throws(() => verifyGatewayLogin('gw-1', Buffer.from(encode({ v: 1, cred: m.cred, sig })), opts), refused);
  assert.throws(() => verifyGatewayLogin('gw-1', p.subarray(0, p.length - 1), opts), refused);
  assert.throws(() => verifyGatewayLogin('gw-1', Buffer.alloc(CREDENTIAL_MAX_BYTES + 1), opts), refused);
  assert.throws(() => verifyGatewayLogin('gw-1', Buffer.from('password'), opts), refused);
  assert.throws(() => verifyGatewayLogin('GW/1', p, opts), refused);
  // A signature made for another purpose (the roster context) does not pass.
  const other = new Signer(gw.key.seed).signWithContext('OTI-v1 roster statement', m.cred);
  assert.throws(() => verifyGatewayLogin('gw-1', Buffer.from(encode({ v: 1, cred: m.cred, sig: other })), opts), refused);
});
