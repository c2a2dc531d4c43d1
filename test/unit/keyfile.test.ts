import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { generateKeyPair, toHex, type KeyPair } from '../../ledger/crypto.js';
import { isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import {
  isKeyFileEncrypted,
  KEY_FILE_MAX_BYTES,
  readKeyFile,
  readPublicKeyFile,
  writeKeyFile,
  writePublicKeyFile,
  type KeyFileCipher,
} from '../../ledger/keyfile.js';

const FAST_N = 2 ** 10;
const PASS = 'correct horse battery staple';
const POSIX = process.platform !== 'win32';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'oti-keyfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

type Json = Record<string, unknown> & { encryption?: Record<string, unknown> };

async function readJson(path: string): Promise<Json> {
  return JSON.parse(await readFile(path, 'utf8')) as Json;
}

/** Rewrites an existing (mode 0600) file; writeFile keeps the mode of an existing file. */
async function writeJson(path: string, doc: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(doc));
}

/** Secrets that must never appear in an error: hex and base64 of the seed, and the passphrase. */
function secretsOf(pair: KeyPair, passphrase = PASS): string[] {
  return [toHex(pair.seed), Buffer.from(pair.seed).toString('base64'), passphrase];
}

function assertNoSecrets(e: unknown, secrets: readonly string[]): void {
  assert.ok(e instanceof Error);
  const seen = [e.message, e.stack ?? '', String(e.cause ?? ''), JSON.stringify(isOtiError(e) ? e.details : {})];
  if (e.cause instanceof Error) seen.push(e.cause.message);
  for (const s of secrets) for (const text of seen) assert.ok(!text.includes(s), `error text contains key material: ${e.message}`);
}

/** Awaits `p`, expects an OtiError with `code` (and `field`), checks it leaks nothing, returns it. */
async function expectCode(p: Promise<unknown>, code: ErrorCode, secrets: readonly string[] = [], field?: string): Promise<Error> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${code}, but it resolved`);
  assert.ok(isOtiError(err), `expected OtiError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (field !== undefined) {
    assert.equal(err.details?.field, field, err.message);
    assert.ok(err.message.includes(field), `message should name ${field}: ${err.message}`);
  }
  assertNoSecrets(err, secrets);
  return err;
}

void test('plain key file: round trip, mode 0600, documented shape', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'site.key');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair, { label: 'site authority' });

  const back = await readKeyFile(path);
  assert.deepEqual(back.publicKey, pair.publicKey);
  assert.deepEqual(back.seed, pair.seed);
  assert.equal(back.label, 'site authority');
  if (POSIX) assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal(await isKeyFileEncrypted(path), false);

  assert.deepEqual(await readJson(path), {
    format: 'oti-ed25519-key',
    version: 1,
    label: 'site authority',
    publicKey: toHex(pair.publicKey),
    seed: toHex(pair.seed),
  });
  assert.deepEqual(await readdir(dir), ['site.key'], 'no temporary files left behind');
});

void test('plain key file without label has no label member', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair);
  const back = await readKeyFile(path);
  assert.equal(back.label, undefined);
  assert.equal('label' in back, false);
  assert.equal('label' in (await readJson(path)), false);
});

for (const cipher of ['aes-256-gcm', 'chacha20-poly1305'] as const satisfies readonly KeyFileCipher[]) {
  void test(`encrypted key file (${cipher}): round trip, mode 0600, no seed in the file`, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'gw.key');
    const pair = generateKeyPair();
    await writeKeyFile(path, pair, { passphrase: PASS, label: 'gateway 1', scryptN: FAST_N, cipher });

    const back = await readKeyFile(path, { passphrase: PASS });
    assert.deepEqual(back.publicKey, pair.publicKey);
    assert.deepEqual(back.seed, pair.seed);
    assert.equal(back.label, 'gateway 1');
    if (POSIX) assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(await isKeyFileEncrypted(path), true);

    const raw = await readFile(path, 'utf8');
    for (const s of secretsOf(pair)) assert.ok(!raw.includes(s), 'file must not contain the seed or passphrase');
    const doc = await readJson(path);
    assert.deepEqual(Object.keys(doc), ['format', 'version', 'label', 'publicKey', 'encryption']);
    assert.equal(doc.publicKey, toHex(pair.publicKey));
    const enc = doc.encryption!;
    assert.deepEqual(Object.keys(enc), ['kdf', 'N', 'r', 'p', 'salt', 'cipher', 'nonce', 'ciphertext']);
    assert.equal(enc.kdf, 'scrypt');
    assert.equal(enc.N, FAST_N);
    assert.equal(enc.r, 8);
    assert.equal(enc.p, 1);
    assert.equal(enc.cipher, cipher);
    assert.equal(Buffer.from(enc.salt as string, 'base64').length, 16);
    assert.equal(Buffer.from(enc.nonce as string, 'base64').length, 12);
    assert.equal(Buffer.from(enc.ciphertext as string, 'base64').length, 48);
  });
}

void test('encrypted key file uses scrypt N = 2^15 by default', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair, { passphrase: PASS });
  assert.equal((await readJson(path)).encryption?.N, 2 ** 15);
  assert.deepEqual((await readKeyFile(path, { passphrase: PASS })).seed, pair.seed);
});

void test('two encryptions of one key differ (fresh salt and nonce)', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  await writeKeyFile(join(dir, 'a'), pair, { passphrase: PASS, scryptN: FAST_N });
  await writeKeyFile(join(dir, 'b'), pair, { passphrase: PASS, scryptN: FAST_N });
  const a = (await readJson(join(dir, 'a'))).encryption!;
  const b = (await readJson(join(dir, 'b'))).encryption!;
  assert.notEqual(a.salt, b.salt);
  assert.notEqual(a.nonce, b.nonce);
  assert.notEqual(a.ciphertext, b.ciphertext);
});

void test('passphrase is NFC-normalised: composed and decomposed forms both open the file', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  const composed = 'Schl\u00fcssel'; // ü as one code point
  const decomposed = 'Schlu\u0308ssel'; // u + combining diaeresis
  await writeKeyFile(path, pair, { passphrase: composed, scryptN: FAST_N });
  assert.deepEqual((await readKeyFile(path, { passphrase: decomposed })).seed, pair.seed);
});

void test('group/other-readable key file -> ERR_KEY_FILE_PERMISSIONS naming the path and chmod 600', { skip: !POSIX }, async (t) => {
  const path = join(await tempDir(t), 'site.key');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair);
  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601, 0o610]) {
    await chmod(path, mode);
    const e = await expectCode(readKeyFile(path), 'ERR_KEY_FILE_PERMISSIONS', secretsOf(pair));
    assert.ok(e.message.includes(`chmod 600 ${path}`), e.message);
    await expectCode(isKeyFileEncrypted(path), 'ERR_KEY_FILE_PERMISSIONS');
  }
  await chmod(path, 0o400);
  assert.deepEqual((await readKeyFile(path)).seed, pair.seed, 'owner-only modes are fine');
});

void test('wrong passphrase -> ERR_KEY_PASSPHRASE', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair, { passphrase: PASS, scryptN: FAST_N });
  await expectCode(readKeyFile(path, { passphrase: 'not it' }), 'ERR_KEY_PASSPHRASE', [...secretsOf(pair), 'not it']);
  await expectCode(readKeyFile(path, { passphrase: PASS + ' ' }), 'ERR_KEY_PASSPHRASE', secretsOf(pair));
});

void test('encrypted file without passphrase -> ERR_KEY_PASSPHRASE_REQUIRED', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair, { passphrase: PASS, scryptN: FAST_N });
  await expectCode(readKeyFile(path), 'ERR_KEY_PASSPHRASE_REQUIRED', secretsOf(pair));
  await expectCode(readKeyFile(path, {}), 'ERR_KEY_PASSPHRASE_REQUIRED', secretsOf(pair));
  await expectCode(readKeyFile(path, { passphrase: '' }), 'ERR_ARGUMENT');
});

void test('plain file opens when a passphrase is given anyway', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  await writeKeyFile(path, pair);
  assert.deepEqual((await readKeyFile(path, { passphrase: PASS })).seed, pair.seed);
});

function flipBase64(value: unknown, byteIndex = 0): string {
  const b = Buffer.from(value as string, 'base64');
  b[byteIndex] = b[byteIndex]! ^ 0x01;
  return b.toString('base64');
}

void test('tampered encrypted file -> ERR_KEY_PASSPHRASE for every bound member', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const other = generateKeyPair();
  const tampers: Record<string, (d: Json) => void> = {
    'ciphertext (first byte)': (d) => (d.encryption!.ciphertext = flipBase64(d.encryption!.ciphertext, 0)),
    'ciphertext (tag)': (d) => (d.encryption!.ciphertext = flipBase64(d.encryption!.ciphertext, 47)),
    nonce: (d) => (d.encryption!.nonce = flipBase64(d.encryption!.nonce, 5)),
    salt: (d) => (d.encryption!.salt = flipBase64(d.encryption!.salt, 3)),
    publicKey: (d) => (d.publicKey = toHex(other.publicKey)),
    label: (d) => (d.label = 'gateway 2'),
    'label removed': (d) => delete d.label,
    N: (d) => (d.encryption!.N = FAST_N * 2),
    cipher: (d) => (d.encryption!.cipher = 'chacha20-poly1305'),
  };
  for (const [what, tamper] of Object.entries(tampers)) {
    const path = join(dir, what.replace(/\W+/g, '_'));
    await writeKeyFile(path, pair, { passphrase: PASS, scryptN: FAST_N, label: 'gateway 1' });
    const doc = await readJson(path);
    tamper(doc);
    await writeJson(path, doc);
    await t.test(what, async () => {
      await expectCode(readKeyFile(path, { passphrase: PASS }), 'ERR_KEY_PASSPHRASE', secretsOf(pair));
    });
  }
});

void test('tampered plain file: seed not matching publicKey -> ERR_KEY_FILE_FORMAT', async (t) => {
  const path = join(await tempDir(t), 'k');
  const pair = generateKeyPair();
  const other = generateKeyPair();
  await writeKeyFile(path, pair);
  const doc = await readJson(path);
  doc.publicKey = toHex(other.publicKey);
  await writeJson(path, doc);
  await expectCode(readKeyFile(path), 'ERR_KEY_FILE_FORMAT', secretsOf(pair), 'publicKey');

  doc.publicKey = toHex(pair.publicKey);
  doc.seed = toHex(other.seed);
  await writeJson(path, doc);
  await expectCode(readKeyFile(path), 'ERR_KEY_FILE_FORMAT', [...secretsOf(pair), ...secretsOf(other)], 'publicKey');
});

void test('malformed key files -> ERR_KEY_FILE_FORMAT naming the member', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const plain = join(dir, 'plain');
  const enc = join(dir, 'enc');
  await writeKeyFile(plain, pair, { label: 'x' });
  await writeKeyFile(enc, pair, { passphrase: PASS, scryptN: FAST_N });
  const plainDoc = await readJson(plain);
  const encDoc = await readJson(enc);
  const secrets = secretsOf(pair);

  const cases: [string, Record<string, unknown>, string][] = [
    ['wrong format', { ...plainDoc, format: 'pem' }, 'format'],
    ['public key file format', { ...plainDoc, format: 'oti-ed25519-public-key' }, 'format'],
    ['missing format', { ...plainDoc, format: undefined }, 'format'],
    ['version 2', { ...plainDoc, version: 2 }, 'version'],
    ['version as string', { ...plainDoc, version: '1' }, 'version'],
    ['unknown member', { ...plainDoc, comment: 'hi' }, 'comment'],
    ['label not a string', { ...plainDoc, label: 7 }, 'label'],
    ['empty label', { ...plainDoc, label: '' }, 'label'],
    ['label with newline', { ...plainDoc, label: 'a\nb' }, 'label'],
    ['missing publicKey', { ...plainDoc, publicKey: undefined }, 'publicKey'],
    ['short publicKey', { ...plainDoc, publicKey: toHex(pair.publicKey).slice(2) }, 'publicKey'],
    ['upper-case publicKey', { ...plainDoc, publicKey: toHex(pair.publicKey).toUpperCase() }, 'publicKey'],
    ['short seed', { ...plainDoc, seed: toHex(pair.seed).slice(2) }, 'seed'],
    ['seed not hex', { ...plainDoc, seed: 'zz' + toHex(pair.seed).slice(2) }, 'seed'],
    ['seed as number', { ...plainDoc, seed: 12 }, 'seed'],
    ['neither seed nor encryption', { ...plainDoc, seed: undefined }, 'seed'],
    ['both seed and encryption', { ...encDoc, seed: toHex(pair.seed) }, 'seed'],
    ['encryption not an object', { ...encDoc, encryption: 'aes' }, 'encryption'],
    ['encryption array', { ...encDoc, encryption: [] }, 'encryption'],
    ['unknown kdf', { ...encDoc, encryption: { ...encDoc.encryption, kdf: 'argon2id' } }, 'encryption.kdf'],
    ['N not a power of two', { ...encDoc, encryption: { ...encDoc.encryption, N: 1000 } }, 'encryption.N'],
    ['N too large', { ...encDoc, encryption: { ...encDoc.encryption, N: 2 ** 30 } }, 'encryption.N'],
    ['N too small', { ...encDoc, encryption: { ...encDoc.encryption, N: 2 } }, 'encryption.N'],
    ['r', { ...encDoc, encryption: { ...encDoc.encryption, r: 16 } }, 'encryption.r'],
    ['p', { ...encDoc, encryption: { ...encDoc.encryption, p: 2 } }, 'encryption.p'],
    ['unknown cipher', { ...encDoc, encryption: { ...encDoc.encryption, cipher: 'aes-256-cbc' } }, 'encryption.cipher'],
    ['salt too short', { ...encDoc, encryption: { ...encDoc.encryption, salt: 'AAAA' } }, 'encryption.salt'],
    ['salt not base64', { ...encDoc, encryption: { ...encDoc.encryption, salt: '!!!!' } }, 'encryption.salt'],
    ['nonce wrong length', { ...encDoc, encryption: { ...encDoc.encryption, nonce: Buffer.alloc(16).toString('base64') } }, 'encryption.nonce'],
    ['nonce unpadded', { ...encDoc, encryption: { ...encDoc.encryption, nonce: 'AAAAAAAAAAAAAAAA'.slice(0, 15) } }, 'encryption.nonce'],
    ['ciphertext truncated', { ...encDoc, encryption: { ...encDoc.encryption, ciphertext: Buffer.alloc(32).toString('base64') } }, 'encryption.ciphertext'],
    ['missing nonce', { ...encDoc, encryption: { ...encDoc.encryption, nonce: undefined } }, 'encryption.nonce'],
    ['unknown encryption member', { ...encDoc, encryption: { ...encDoc.encryption, tag: 'AAAA' } }, 'encryption.tag'],
  ];
  for (const [what, doc, field] of cases) {
    await t.test(what, async () => {
      const path = join(dir, 'case');
      await writeFile(path, JSON.stringify(doc), { mode: 0o600 });
      await expectCode(readKeyFile(path, { passphrase: PASS }), 'ERR_KEY_FILE_FORMAT', secrets, field);
      await rm(path);
    });
  }
});

void test('truncated, garbage, empty, non-object and non-UTF-8 files -> ERR_KEY_FILE_FORMAT', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const good = join(dir, 'good');
  await writeKeyFile(good, pair);
  const text = await readFile(good, 'utf8');
  const seedHex = toHex(pair.seed);
  const cases: [string, string | Buffer][] = [
    ['truncated in the seed', text.slice(0, text.indexOf(seedHex) + 40)],
    ['truncated by one byte', text.trimEnd().slice(0, -1)],
    ['garbage', 'not json at all'],
    ['garbage around a seed', `{"seed": ${seedHex}}`],
    ['empty', ''],
    ['array', '[]'],
    ['null', 'null'],
    ['number', '42'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
  ];
  for (const [what, content] of cases) {
    const path = join(dir, what.replace(/\W+/g, '_'));
    await writeFile(path, content, { mode: 0o600 });
    await t.test(what, async () => {
      await expectCode(readKeyFile(path), 'ERR_KEY_FILE_FORMAT', secretsOf(pair));
      await expectCode(isKeyFileEncrypted(path), 'ERR_KEY_FILE_FORMAT', secretsOf(pair));
    });
  }
});

void test('file over 64 KiB is refused by size, even if it would parse', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const path = join(dir, 'big');
  await writeKeyFile(path, pair);
  const text = await readFile(path, 'utf8');
  await writeFile(path, text + ' '.repeat(KEY_FILE_MAX_BYTES + 1 - Buffer.byteLength(text)));
  assert.equal((await stat(path)).size, KEY_FILE_MAX_BYTES + 1);
  const e = await expectCode(readKeyFile(path), 'ERR_KEY_FILE_FORMAT', secretsOf(pair));
  assert.ok(isOtiError(e) && e.details?.limit === KEY_FILE_MAX_BYTES, e.message);

  // Exactly at the limit is still read.
  await writeFile(path, text + ' '.repeat(KEY_FILE_MAX_BYTES - Buffer.byteLength(text)));
  assert.deepEqual((await readKeyFile(path)).seed, pair.seed);
});

void test('missing file -> ERR_NOT_FOUND; a directory -> ERR_KEY_FILE_FORMAT', async (t) => {
  const dir = await tempDir(t);
  await expectCode(readKeyFile(join(dir, 'nope')), 'ERR_NOT_FOUND');
  await expectCode(readPublicKeyFile(join(dir, 'nope')), 'ERR_NOT_FOUND');
  const sub = join(dir, 'sub');
  await mkdir(sub, { mode: 0o700 });
  await expectCode(readKeyFile(sub), 'ERR_KEY_FILE_FORMAT');
});

void test('refuses to overwrite unless overwrite: true', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'k');
  const first = generateKeyPair();
  const second = generateKeyPair();
  await writeKeyFile(path, first);
  const before = await readFile(path);

  const e = await expectCode(writeKeyFile(path, second, { label: 'new' }), 'ERR_ARGUMENT', [...secretsOf(first), ...secretsOf(second)]);
  assert.ok(isOtiError(e) && e.details?.argument === 'path');
  await expectCode(writeKeyFile(path, second, { passphrase: PASS, scryptN: FAST_N }), 'ERR_ARGUMENT');
  assert.deepEqual(await readFile(path), before, 'existing file untouched');

  await writeKeyFile(path, second, { overwrite: true, passphrase: PASS, scryptN: FAST_N });
  assert.deepEqual((await readKeyFile(path, { passphrase: PASS })).seed, second.seed);
  if (POSIX) assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['k'], 'no temporary files left behind');

  // Public key files follow the same rule.
  const pub = join(dir, 'k.pub');
  await writePublicKeyFile(pub, first.publicKey);
  await expectCode(writePublicKeyFile(pub, second.publicKey), 'ERR_ARGUMENT');
  await writePublicKeyFile(pub, second.publicKey, { overwrite: true });
  assert.deepEqual((await readPublicKeyFile(pub)).publicKey, second.publicKey);
});

void test('writeKeyFile argument checks', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const other = generateKeyPair();
  const path = join(dir, 'k');
  const secrets = [...secretsOf(pair), ...secretsOf(other)];
  await expectCode(writeKeyFile(path, { publicKey: other.publicKey, seed: pair.seed }), 'ERR_KEY_INVALID', secrets);
  const short = await expectCode(writeKeyFile(path, { publicKey: pair.publicKey, seed: pair.seed.subarray(1) }), 'ERR_ARGUMENT', secrets);
  assert.ok(short.message.includes('pair.seed'));
  const shortPub = await expectCode(writeKeyFile(path, { publicKey: pair.publicKey.subarray(1), seed: pair.seed }), 'ERR_ARGUMENT', secrets);
  assert.ok(shortPub.message.includes('pair.publicKey'));
  const checks: [string, Parameters<typeof writeKeyFile>[2]][] = [
    ['passphrase', { passphrase: '' }],
    ['scryptN', { passphrase: PASS, scryptN: 1000 }],
    ['scryptN', { passphrase: PASS, scryptN: 2 ** 9 }],
    ['cipher', { passphrase: PASS, cipher: 'aes-128-gcm' as KeyFileCipher }],
    ['label', { label: '' }],
    ['label', { label: 'x'.repeat(129) }],
    ['label', { label: 'tab\there' }],
  ];
  for (const [argument, opts] of checks) {
    const e = await expectCode(writeKeyFile(path, pair, opts), 'ERR_ARGUMENT', secrets);
    assert.ok(isOtiError(e) && e.details?.argument === argument, e.message);
    assert.ok(e.message.includes(argument), e.message);
  }
  await expectCode(writeKeyFile('', pair), 'ERR_ARGUMENT');
  assert.deepEqual(await readdir(dir), [], 'nothing written by failed calls');
});

void test('public key file: round trip, shape, mode 0644, and not confused with a private key file', async (t) => {
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const pub = join(dir, 'site.pub');
  const priv = join(dir, 'site.key');
  await writePublicKeyFile(pub, pair.publicKey, { label: 'site authority' });
  await writeKeyFile(priv, pair);

  const back = await readPublicKeyFile(pub);
  assert.deepEqual(back.publicKey, pair.publicKey);
  assert.equal(back.label, 'site authority');
  assert.deepEqual(await readJson(pub), {
    format: 'oti-ed25519-public-key',
    version: 1,
    label: 'site authority',
    publicKey: toHex(pair.publicKey),
  });
  if (POSIX) {
    assert.equal((await stat(pub)).mode & 0o777, 0o644 & ~process.umask());
    await chmod(pub, 0o644);
    assert.deepEqual((await readPublicKeyFile(pub)).publicKey, pair.publicKey, 'world-readable public key is fine');
  }

  await expectCode(readPublicKeyFile(priv), 'ERR_KEY_FILE_FORMAT', secretsOf(pair), 'format');
  await chmod(pub, 0o600);
  await expectCode(readKeyFile(pub), 'ERR_KEY_FILE_FORMAT', [], 'format');

  await writeFile(pub, JSON.stringify({ format: 'oti-ed25519-public-key', version: 1, publicKey: 'abcd' }));
  await expectCode(readPublicKeyFile(pub), 'ERR_KEY_FILE_FORMAT', [], 'publicKey');
  await expectCode(writePublicKeyFile(join(dir, 'x.pub'), pair.publicKey.subarray(1)), 'ERR_ARGUMENT');
});

void test('no key material in any error', async (t) => {
  // Gathers the errors of the failure paths above in one place and checks them all again,
  // including error.cause and the stack.
  const dir = await tempDir(t);
  const pair = generateKeyPair();
  const secrets = secretsOf(pair);
  const enc = join(dir, 'enc');
  const plain = join(dir, 'plain');
  await writeKeyFile(enc, pair, { passphrase: PASS, scryptN: FAST_N });
  await writeKeyFile(plain, pair);
  const errors: unknown[] = [];
  const collect = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      errors.push(e);
    }
  };
  await collect(readKeyFile(enc, { passphrase: 'tr0ub4dor&3' }));
  await collect(readKeyFile(enc));
  await collect(writeKeyFile(plain, pair));
  const doc = await readJson(plain);
  await writeFile(plain, JSON.stringify({ ...doc, publicKey: toHex(generateKeyPair().publicKey) }));
  await collect(readKeyFile(plain));
  await writeFile(plain, JSON.stringify(doc).slice(0, -3));
  await collect(readKeyFile(plain));
  await writeFile(plain, `{"seed":"${toHex(pair.seed)}",}`);
  await collect(readKeyFile(plain));
  if (POSIX) {
    await writeFile(plain, JSON.stringify(doc));
    await chmod(plain, 0o644);
    await collect(readKeyFile(plain));
  }
  assert.ok(errors.length >= 6);
  for (const e of errors) {
    assert.ok(isOtiError(e), String(e));
    assertNoSecrets(e, secrets);
    assertNoSecrets(e, ['tr0ub4dor&3']);
  }
});
