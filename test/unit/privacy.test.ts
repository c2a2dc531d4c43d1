/**
 * Privacy primitives (ledger/privacy.ts), the privacy entry kind (ledger/entry.ts) and the
 * person-key store (gateway/api/persons.ts): pseudonym stability, seal/open round trips, tamper
 * rejection, rotation without re-encryption, keyring files, erasure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PrivacyKeyring,
  SEALED_CRED_BYTES,
  decryptPersonFields,
  encryptPersonFields,
  isSealedCredential,
  newPersonId,
  newPersonKey,
  readKeyringFile,
  readPublicPrivacyFile,
  sealCredential,
  wrapPersonKey,
  writeKeyringFile,
  writePublicPrivacyFile,
} from '../../ledger/privacy.js';
import { decodeEntry, encodeEntry } from '../../ledger/entry.js';
import { decodeLockEvent, encodeLockEvent } from '../../ledger/lockevent.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { MIN_SCRYPT_N } from '../../ledger/keyfile.js';
import { PersonKeyStore, PrivacyReader } from '../../gateway/api/persons.js';
import { tempDir } from '../support/site.js';

const RAW = Buffer.from('04a1b2c3d4e5f6', 'hex');

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isOtiError(e) ? e.code : 'not an OtiError';
  }
  return undefined;
}

void test('a pseudonym is stable under one keyring and different under another', () => {
  const a = PrivacyKeyring.generate('site-1');
  const b = PrivacyKeyring.generate('site-1');
  assert.equal(a.pseudonym(RAW), a.pseudonym(Uint8Array.from(RAW)));
  assert.match(a.pseudonym(RAW), /^[0-9a-f]{32}$/);
  assert.notEqual(a.pseudonym(RAW), b.pseudonym(RAW));
  assert.notEqual(a.pseudonym(RAW), a.pseudonym(Buffer.from('04a1b2c3d4e5f7', 'hex')));
  // A rotation keeps pseudonyms: one person links across the rotation for key holders.
  assert.equal(a.rotate().pseudonym(RAW), a.pseudonym(RAW));
});

void test('sealed credentials open to the raw id, are fixed-size and unlinkable', () => {
  const k = PrivacyKeyring.generate('site-1');
  const s1 = sealCredential(k.current, 'front-door', RAW);
  const s2 = sealCredential(k.current, 'front-door', RAW);
  assert.equal(s1.length, SEALED_CRED_BYTES);
  assert.equal(sealCredential(k.current, 'front-door', Uint8Array.of(1)).length, SEALED_CRED_BYTES);
  assert.notDeepEqual(s1, s2, 'a fresh ephemeral key per event');
  assert.ok(!Buffer.from(s1).includes(RAW));
  assert.deepEqual(Buffer.from(k.openCredential('front-door', s1)), RAW);
  assert.deepEqual(Buffer.from(k.openCredential('front-door', s2)), RAW);
  assert.ok(isSealedCredential(s1, [k.current.id]));
  assert.ok(!isSealedCredential(RAW, [k.current.id]));
  // It fits a lock event, and the event round-trips.
  const ev = decodeLockEvent(encodeLockEvent({ lock: 'front-door', ctr: 1, time: 1, type: 'unlocked', cred: s1 }));
  assert.deepEqual(ev.cred, s1);
});

void test('tampered, misbound or foreign sealed credentials are refused with ERR_PRIVACY_OPEN', () => {
  const k = PrivacyKeyring.generate('site-1');
  const other = PrivacyKeyring.generate('site-1');
  const s = sealCredential(k.current, 'front-door', RAW);
  for (const i of [0, 1, 5, 40, SEALED_CRED_BYTES - 1]) {
    const t = Uint8Array.from(s);
    t[i]! ^= 0x01;
    assert.equal(code(() => k.openCredential('front-door', t)), 'ERR_PRIVACY_OPEN', `byte ${i}`);
  }
  assert.equal(code(() => k.openCredential('side-gate', s)), 'ERR_PRIVACY_OPEN', 'bound to its lock');
  assert.equal(code(() => other.openCredential('front-door', s)), 'ERR_PRIVACY_OPEN', 'another keyring');
  assert.equal(code(() => k.openCredential('front-door', s.subarray(0, 60))), 'ERR_PRIVACY_OPEN');
  assert.equal(code(() => sealCredential(k.current, 'front-door', new Uint8Array(32))), 'ERR_ARGUMENT');
  assert.equal(code(() => sealCredential(k.current, 'front-door', new Uint8Array(0))), 'ERR_ARGUMENT');
});

void test('rotation: history opens with the old key, new items use the new key', () => {
  const k1 = PrivacyKeyring.generate('site-1');
  const old = sealCredential(k1.current, 'front-door', RAW);
  const k2 = k1.rotate();
  assert.notDeepEqual(k2.current.id, k1.current.id);
  assert.equal(k2.publicKeys.length, 2);
  const fresh = sealCredential(k2.current, 'front-door', RAW);
  assert.deepEqual(Buffer.from(k2.openCredential('front-door', old)), RAW);
  assert.deepEqual(Buffer.from(k2.openCredential('front-door', fresh)), RAW);
  assert.equal(code(() => k1.openCredential('front-door', fresh)), 'ERR_PRIVACY_OPEN');
});

void test('person fields: round trip under the person key, bound to site and person, refused otherwise', () => {
  const k = PrivacyKeyring.generate('site-1');
  const person = newPersonId();
  const key = newPersonKey();
  const sealed = encryptPersonFields(key, 'site-1', person, { name: 'Alice Example', badge: 'B-1234' });
  assert.ok(!Buffer.from(sealed).includes(Buffer.from('Alice')));
  assert.deepEqual(decryptPersonFields(key, 'site-1', person, sealed), { name: 'Alice Example', badge: 'B-1234' });
  assert.equal(code(() => decryptPersonFields(newPersonKey(), 'site-1', person, sealed)), 'ERR_PRIVACY_OPEN');
  assert.equal(code(() => decryptPersonFields(key, 'site-2', person, sealed)), 'ERR_PRIVACY_OPEN');
  assert.equal(code(() => decryptPersonFields(key, 'site-1', newPersonId(), sealed)), 'ERR_PRIVACY_OPEN');
  const wrapped = wrapPersonKey(k.current, 'site-1', person, key);
  assert.deepEqual(k.unwrapPersonKey(person, wrapped), key);
  assert.equal(code(() => k.unwrapPersonKey(newPersonId(), wrapped)), 'ERR_PRIVACY_OPEN');
});

void test('privacy entries encode, decode strictly and carry only ids and ciphertext', () => {
  const person = newPersonId();
  const fields = encryptPersonFields(newPersonKey(), 'site-1', person, { name: 'Bob' });
  const p = encodeEntry({ kind: 'privacy', op: 'person', person, fields }, 5);
  const d = decodeEntry(p.bytes);
  assert.equal(d.body.kind, 'privacy');
  assert.ok(d.body.kind === 'privacy' && d.body.op === 'person' && Buffer.from(d.body.fields).equals(fields));
  const s = encodeEntry({ kind: 'privacy', op: 'shred', person }, 6);
  assert.deepEqual(decodeEntry(s.bytes).body, { kind: 'privacy', op: 'shred', person });
  assert.equal(code(() => encodeEntry({ kind: 'privacy', op: 'shred', person: person.subarray(0, 8) }, 6)), 'ERR_ENCODING_SCHEMA');
  assert.equal(code(() => encodeEntry({ kind: 'privacy', op: 'person', person, fields: new Uint8Array(0) }, 6)), 'ERR_ENCODING_SCHEMA');
});

void test('keyring files: encrypted, 0600, wrong passphrase refused; public file round-trips', async (t) => {
  const dir = await tempDir(t);
  const k = PrivacyKeyring.generate('site-1').rotate();
  await writeKeyringFile(join(dir, 'privacy.key'), k, 'correct horse', { scryptN: MIN_SCRYPT_N });
  await writePublicPrivacyFile(join(dir, 'privacy.json'), k);
  assert.equal((await stat(join(dir, 'privacy.key'))).mode & 0o777, 0o600);
  const text = await readFile(join(dir, 'privacy.key'), 'utf8');
  assert.ok(!text.includes('pseudonym'));
  const back = await readKeyringFile(join(dir, 'privacy.key'), 'correct horse');
  assert.equal(back.pseudonym(RAW), k.pseudonym(RAW));
  assert.deepEqual(back.current, k.current);
  await assert.rejects(readKeyringFile(join(dir, 'privacy.key'), 'wrong'), (e) => isOtiError(e, 'ERR_KEY_PASSPHRASE'));
  const pub = await readPublicPrivacyFile(join(dir, 'privacy.json'));
  assert.deepEqual(pub.current, k.current);
  assert.equal(pub.keys.length, 2);
});

void test('person-key store: keys wrapped at rest, erasure destroys them, rotation re-wraps', async (t) => {
  const dir = await tempDir(t);
  const k1 = PrivacyKeyring.generate('site-1');
  const store = await PersonKeyStore.open(dir);
  assert.equal((await stat(store.dir)).mode & 0o777, 0o700);
  const person = newPersonId();
  const key = newPersonKey();
  const fields = encryptPersonFields(key, 'site-1', person, { name: 'Carol' });
  await store.put(person, wrapPersonKey(k1.current, 'site-1', person, key));
  const file = join(store.dir, `${Buffer.from(person).toString('hex')}.key`);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.ok(!(await readFile(file)).includes(Buffer.from(key)));
  const k2 = k1.rotate();
  assert.equal(await store.rewrap(k2, (to, p, pk) => wrapPersonKey(to, 'site-1', p, pk)), 1);
  const reader = new PrivacyReader(k2, store);
  assert.deepEqual(await reader.fields(person, fields), { name: 'Carol' });
  assert.equal(await store.destroy(person), true);
  assert.equal(await store.destroy(person), false, 'idempotent');
  await assert.rejects(stat(file));
  // A missing key is "no key held here" until an erasure is recorded: then it is "erased".
  assert.equal(await store.state(person), 'absent');
  await assert.rejects(reader.fields(person, fields), (e) => isOtiError(e, 'ERR_PRIVACY_NO_KEY'));
  await store.markErased(person);
  assert.equal(await store.state(person), 'erased');
  await assert.rejects(reader.fields(person, fields), (e) => isOtiError(e, 'ERR_PRIVACY_ERASED'));
  assert.deepEqual(await store.list(), [], 'an erasure marker is not a key');
});
