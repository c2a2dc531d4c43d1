/**
 * The privacy role of the local API, end to end (docs/PRIVACY.md §Roles, docs/API.md §Privacy):
 * the real gateway process (`node dist/gateway/main.js --config FILE`) on a data folder prepared
 * with the real `oti` binary (site init, gateway enroll, apply-bundle, privacy init), simulated
 * locks on real kernel ptys, and plain HTTP requests.
 *
 * - With api.token, events show the sealed credential only: no pseudonym (a PIN oracle for whoever
 *   holds a lock's key) and no raw id. With api.privacyToken they show the pseudonym, person
 *   entries the decrypted fields, the key holder and the pseudonym of the person's credential; no
 *   raw id on events, so after erasure nothing yields the person's credential or fields.
 * - /privacy/... refuses api.token and no token (ERR_UNAUTHORIZED) and serves the privacy token.
 * - A person added with `oti privacy person add` is readable by the privacy role, then erased
 *   (ERR_PRIVACY_ERASED afterwards), and `oti verify` still passes on the data folder.
 * - A lock that sends a clear credential is refused with ERR_PRIVACY_CLEAR_CREDENTIAL.
 * - The runtime's loading of privacy.key: no passphrase or a wrong one stops the start; without
 *   privacy.key the gateway enforces sealing but can show no plaintext.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { ptyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { generateKeyPair, toHex } from '../../ledger/crypto.js';
import { encryptPersonFields, newPersonKey, readPublicPrivacyFile, SEALED_CRED_BYTES, wrapPersonKey } from '../../ledger/privacy.js';
import { otiIn as oti, otiSite } from '../support/oti-cli.js';
import { encode } from '../../ledger/base/cbor.js';
import { waitUntil } from '../support/wait.js';

const SITE_PASS = 'site passphrase for privacy api tests';
const PRIVACY_PASS = 'privacy keyring passphrase 0001';
const TOKEN = 'reader-token-0123456789abcdef';
const PRIVACY_TOKEN = 'privacy-token-0123456789abcdef';
const ALICE = Buffer.from('ALICE-CARD-0001');
const BOB = Buffer.from('BOB-CARD-000002');
const NAME = 'Alice Privacy-Example';

interface Answer {
  readonly status: number;
  readonly text: string;
  readonly body: Record<string, unknown>;
}

async function call(base: string, path: string, token: string | undefined, init: { method?: string; body?: Uint8Array; type?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (init.type !== undefined) headers['content-type'] = init.type;
  const r = await fetch(`${base}${path}`, { method: init.method ?? 'GET', headers, ...(init.body !== undefined ? { body: init.body } : {}) });
  const text = await r.text();
  return { status: r.status, text, body: JSON.parse(text) as Record<string, unknown> };
}

function errorCode(a: Answer): unknown {
  return (a.body['error'] as { code?: unknown } | undefined)?.code;
}

type Item = Record<string, unknown> & { index: number; kind: string };

async function events(base: string, token: string): Promise<Item[]> {
  const a = await call(base, '/events?limit=1000', token);
  assert.equal(a.status, 200, a.text);
  return a.body['items'] as Item[];
}

/** Site, gateway bundle applied to <dir>/data, privacy keyring in <dir>/site, copied into data. */
async function prepare(t: TestContext): Promise<{ dir: string; data: string }> {
  const dir = await otiSite(t, 'oti-privacy-api-', SITE_PASS, { gateway: true });
  const init = await oti(['privacy', 'init', '--site-dir', 'site', '--json'], dir, { OTI_PRIVACY_PASSPHRASE: PRIVACY_PASS });
  assert.equal(init.code, 0, init.stderr);
  const data = join(dir, 'data');
  await copyFile(join(dir, 'site', 'privacy.json'), join(data, 'privacy.json'));
  await copyFile(join(dir, 'site', 'privacy.key'), join(data, 'privacy.key'));
  await chmod(join(data, 'privacy.key'), 0o600);
  return { dir, data };
}

const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');

/** Runs `f` once; later calls get the same promise (a step several cases build on). */
function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

void test('privacy role over HTTP: sealed credentials only for api.token, pseudonyms and person fields for api.privacyToken, persons added and erased, clear credentials refused', { timeout: 240_000 }, async (t) => {
  // The fixture every case below reads: the data folder, two locks on ptys (one sealing, one
  // legacy), the gateway running with its keyring, both locks enrolled, events recorded.
  const { dir, data } = await prepare(t);
  const sealing = await ptyPair(dir, 'sealing');
  const legacy = await ptyPair(dir, 'legacy');
  t.after(() => Promise.all([sealing.kill(), legacy.kill()]));
  const apiPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}`;
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir: data,
    broker: { host: '127.0.0.1', port: 0 },
    api: { port: apiPort, token: TOKEN, privacyToken: PRIVACY_TOKEN },
    serialPorts: [sealing.gateway, legacy.gateway],
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
  });
  const start = (env: Record<string, string>): GatewayProcess => startTestGateway(t, ['--config', config], env);
  const stop = async (gw: GatewayProcess): Promise<void> => {
    gw.proc.kill('SIGTERM');
    assert.equal(await gw.exited, 0, `a clean stop; stderr: ${gw.stderr()}`);
  };
  const gw = start({ OTI_PRIVACY_PASSPHRASE: PRIVACY_PASS });
  await gw.waitForLog('running', running);

  // Locks enrolled the designed way: oti lock enroll → POST /roster with the ordinary token.
  const api = ['--api', base];
  const keys = { front: generateKeyPair(), old: generateKeyPair() };
  for (const [id, k] of [['front-door', keys.front], ['old-door', keys.old]] as const) {
    const r = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', id, '--key', toHex(k.publicKey), '--yes', ...api], dir, { OTI_PASSPHRASE: SITE_PASS, OTI_API_TOKEN: TOKEN });
    assert.equal(r.code, 0, r.stderr);
  }

  // A privacy-aware lock seals to the current key of privacy.json; a legacy one sends ids in clear.
  const pub = await readPublicPrivacyFile(join(data, 'privacy.json'));
  const front = new SimLock({ id: 'front-door', seed: keys.front.seed, resendMs: 500, privacyKey: pub.current });
  const old = new SimLock({ id: 'old-door', seed: keys.old.seed, resendMs: 500 });
  const nacks: { ctr: number; code: string; retry: boolean }[] = [];
  old.on('nack', (ctr, code, retry) => nacks.push({ ctr, code, retry }));
  const links = [new SerialSimLink(front, { path: sealing.lock, reopenMs: 50 }), new SerialSimLink(old, { path: legacy.lock, reopenMs: 50 })];
  t.after(async () => {
    front.close();
    old.close();
    await Promise.all(links.map((l) => l.close()));
  });
  for (const l of links) l.start();
  front.record('unlocked', ALICE);
  front.record('unlocked', BOB);
  front.record('unlocked', ALICE);
  old.record('unlocked', BOB);
  await waitUntil('three acks from the sealing lock and a nack for the clear credential', () => front.acked.size === 3 && nacks.length > 0);

  const someone = '00112233445566778899aabbccddeeff';
  /** The privacy reader's view of front-door's lock events. */
  const privacyView = async (): Promise<Item[]> => (await events(base, PRIVACY_TOKEN)).filter((e) => e['lock'] === 'front-door' && e.kind === 'lock-event');
  /** Alice, added the designed way: fields encrypted by the CLI, posted with the privacy token. */
  const alice = once(async (): Promise<{ person: string; index: number }> => {
    const added = await oti(['privacy', 'person', 'add', '--site-dir', 'site', '--field', `name=${NAME}`, '--cred', ALICE.toString('hex'), '--json', ...api], dir, { OTI_PRIVACY_TOKEN: PRIVACY_TOKEN });
    assert.equal(added.code, 0, added.stderr);
    return JSON.parse(added.stdout) as { person: string; index: number };
  });

  await t.test('a lock that sends a clear credential is refused with ERR_PRIVACY_CLEAR_CREDENTIAL and nothing is stored', async () => {
    assert.deepEqual(nacks[0], { ctr: 1, code: 'ERR_PRIVACY_CLEAR_CREDENTIAL', retry: false });
    assert.equal(old.acked.size, 0, 'the clear credential was never acknowledged');
    assert.ok(!(await events(base, TOKEN)).some((e) => e['lock'] === 'old-door' && e.kind === 'lock-event'), 'the clear-credential event was not stored');
  });

  await t.test('api.token reads the sealed box only: no pseudonym (a PIN oracle), never the raw id', async () => {
    const readerView = await call(base, '/events?kind=lock-event&limit=1000', TOKEN);
    assert.equal(readerView.status, 200);
    const seen = (readerView.body['items'] as Item[]).filter((e) => e['lock'] === 'front-door');
    assert.equal(seen.length, 3);
    for (const e of seen) {
      assert.equal(Buffer.from(String(e['cred']), 'hex').length, SEALED_CRED_BYTES, 'the stored cred is the sealed box');
      assert.equal(e['pseudonym'], undefined, 'api.token must not get pseudonyms (a PIN oracle)');
      assert.equal(e['credential'], undefined, 'api.token must not see the raw credential id');
    }
    for (const raw of [ALICE, BOB]) {
      assert.ok(!readerView.text.includes(raw.toString('hex')) && !readerView.text.includes(raw.toString('latin1')), 'no raw id anywhere in the reader answer');
    }
    // The same entry by id, for both roles.
    const one = await call(base, '/events/front-door:1', TOKEN);
    assert.equal(one.body['credential'], undefined);
    assert.equal((await call(base, '/events/front-door:1', PRIVACY_TOKEN)).body['credential'], undefined);
  });

  await t.test('api.privacyToken reads pseudonyms on events, one per person, never a raw id', async () => {
    // A raw id is readable only in the fields of a person whose key is held, so erasure takes it
    // away: docs/PRIVACY.md §Roles.
    const privView = await privacyView();
    assert.deepEqual(privView.map((e) => e['credential']), [undefined, undefined, undefined]);
    for (const e of privView) assert.match(String(e['pseudonym']), /^[0-9a-f]{32}$/);
    assert.equal(privView[0]!['pseudonym'], privView[2]!['pseudonym'], 'one person, one pseudonym');
    assert.notEqual(privView[0]!['pseudonym'], privView[1]!['pseudonym']);
  });

  await t.test('/privacy/ refuses api.token, no token and a foreign token; answers 404, 400 and 405 to the privacy token', async () => {
    for (const token of [TOKEN, undefined, 'not-a-token-of-this-gateway']) {
      for (const [method, path] of [['GET', `/privacy/persons/${someone}`], ['POST', `/privacy/persons/${someone}/erase`], ['POST', '/privacy/persons']] as const) {
        const a = await call(base, path, token, { method });
        assert.equal(a.status, 401, `${method} ${path} with ${token ?? 'no token'}`);
        assert.equal(errorCode(a), 'ERR_UNAUTHORIZED');
      }
    }
    const unknown = await call(base, `/privacy/persons/${someone}`, PRIVACY_TOKEN);
    assert.equal(unknown.status, 404);
    assert.equal(errorCode(unknown), 'ERR_NOT_FOUND');
    const malformed = await call(base, '/privacy/persons/not-hex', PRIVACY_TOKEN);
    assert.equal(malformed.status, 400);
    assert.equal(errorCode(malformed), 'ERR_ARGUMENT');
    const garbage = await call(base, '/privacy/persons', PRIVACY_TOKEN, { method: 'POST', body: new Uint8Array([0xa1, 0x61]), type: 'application/cbor' });
    assert.equal(garbage.status, 400);
    assert.match(String(errorCode(garbage)), /^ERR_/);
    const put = await call(base, '/privacy/persons', PRIVACY_TOKEN, { method: 'PUT' });
    assert.equal(put.status, 405);
  });

  await t.test('a person added with oti privacy person add: fields for the privacy token only, with the key holder and the pseudonym of their credential', async () => {
    const { person, index } = await alice();
    assert.match(person, /^[0-9a-f]{32}$/);
    const got = await call(base, `/privacy/persons/${person}`, PRIVACY_TOKEN);
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.body['fields'], { name: NAME, cred: ALICE.toString('hex') });
    assert.equal(got.body['index'], index);
    const entryAsReader = (await events(base, TOKEN)).find((e) => e.index === index);
    assert.equal(entryAsReader?.kind, 'privacy');
    assert.equal(entryAsReader['personFields'], undefined, 'api.token must not see person fields');
    assert.ok(!JSON.stringify(entryAsReader).includes(NAME));
    const entryAsPrivacy = (await events(base, PRIVACY_TOKEN)).find((e) => e.index === index);
    assert.deepEqual(entryAsPrivacy?.['personFields'], { name: NAME, cred: ALICE.toString('hex') });
    assert.equal(entryAsPrivacy['keyHolder'], 'gw-1', 'the person entry says which gateway holds the key');
    assert.deepEqual(entryAsPrivacy['pseudonyms'], [(await privacyView())[0]!['pseudonym']], "the person's credential pseudonym finds their events");
  });

  await t.test('erasure through the endpoint: the key goes, ERR_PRIVACY_ERASED, nothing yields the credential or fields, idempotent, an unknown id is 404', async () => {
    const { person, index } = await alice();
    const erased = await call(base, `/privacy/persons/${person}/erase`, PRIVACY_TOKEN, { method: 'POST' });
    assert.equal(erased.status, 200, erased.text);
    assert.equal(erased.body['destroyed'], true);
    const gone = await call(base, `/privacy/persons/${person}`, PRIVACY_TOKEN);
    assert.equal(gone.status, 410);
    assert.equal(errorCode(gone), 'ERR_PRIVACY_ERASED');
    const afterAll = await call(base, '/events?limit=1000', PRIVACY_TOKEN);
    const after = (afterAll.body['items'] as Item[]).find((e) => e.index === index);
    assert.equal(after?.['erased'], true);
    assert.equal(after['personFields'], undefined);
    assert.equal(after['keyHeldHere'], undefined, 'erased, not merely "no key here"');
    // Nothing the privacy token reads yields the erased person's credential or fields any more.
    for (const secret of [ALICE.toString('hex'), ALICE.toString('latin1'), NAME]) assert.ok(!afterAll.text.includes(secret), `${secret} is still readable after erasure`);
    const again = await call(base, `/privacy/persons/${person}/erase`, PRIVACY_TOKEN, { method: 'POST' });
    assert.equal(again.status, 200, 'erasure is idempotent');
    assert.equal(again.body['destroyed'], false);
    // The erased id recorded again (the body `oti privacy person add` would post): refused, and no
    // key is stored beside the erasure marker.
    const key = newPersonKey();
    const id = Buffer.from(person, 'hex');
    const readd = encode({ key: wrapPersonKey(pub.current, pub.siteId, id, key), fields: encryptPersonFields(key, pub.siteId, id, { name: 'someone else' }), person: id });
    const refused = await call(base, '/privacy/persons', PRIVACY_TOKEN, { method: 'POST', body: readd, type: 'application/cbor' });
    assert.equal(refused.status, 410, refused.text);
    assert.equal(errorCode(refused), 'ERR_PRIVACY_ERASED');
    assert.deepEqual((await readdir(join(data, 'persons'))).filter((n) => n.startsWith(person)), [`${person}.erased`]);
    // A person id that this gateway never recorded is not "erased" by a typo.
    const never = await call(base, `/privacy/persons/${someone}/erase`, PRIVACY_TOKEN, { method: 'POST' });
    assert.equal(never.status, 404);
    assert.equal(errorCode(never), 'ERR_NOT_FOUND');
  });

  await t.test('the gateway stops cleanly and the whole chain verifies after an erasure (oti verify)', async () => {
    await stop(gw);
    const verified = await oti(['verify', '--data', 'data', '--json'], dir);
    assert.equal(verified.code, 0, `the whole chain verifies after an erasure: ${verified.stderr}`);
  });

  await t.test('privacy.key without its passphrase, or with a wrong one: the gateway does not start', async () => {
    const noPass = start({});
    assert.notEqual(await noPass.exited, 0);
    assert.match(noPass.stderr(), /ERR_KEY_PASSPHRASE_REQUIRED/);
    const wrong = start({ OTI_PRIVACY_PASSPHRASE: 'not the passphrase' });
    assert.notEqual(await wrong.exited, 0);
    assert.match(wrong.stderr(), /ERR_KEY_PASSPHRASE\b/);
  });

  await t.test('without privacy.key (privacy.json only) clear credentials are still refused, sealed ones stored, and nothing is opened', async () => {
    const { person } = await alice();
    await rename(join(data, 'privacy.key'), join(dir, 'privacy.key.away'));
    const keyless = start({});
    await keyless.waitForLog('running without the keyring', running);
    const blind = await privacyView();
    assert.equal(blind.length, 3);
    for (const e of blind) {
      assert.equal(e['credential'], undefined, 'a gateway without privacy.key cannot open sealed credentials, so the privacy token sees no raw id');
      assert.equal(e['pseudonym'], undefined, 'without the keyring there is no pseudonym key either');
    }
    const cannot = await call(base, `/privacy/persons/${person}`, PRIVACY_TOKEN);
    assert.equal(cannot.status, 409);
    assert.equal(errorCode(cannot), 'ERR_PRIVACY_OPEN');
    old.record('unlocked', ALICE);
    await waitUntil('a second nack', () => nacks.length > 1 && nacks.some((n) => n.ctr === 2));
    assert.equal(nacks.find((n) => n.ctr === 2)?.code, 'ERR_PRIVACY_CLEAR_CREDENTIAL', 'privacy.json alone is enough to enforce sealing');
    front.record('locked');
    await waitUntil('a sealed-lock event stored without the keyring', () => front.acked.size === 4);
    await stop(keyless);
  });
});
