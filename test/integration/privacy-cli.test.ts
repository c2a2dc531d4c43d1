/**
 * `oti privacy ...` as the real binary (node dist/provisioning/cli.js) in subprocesses, never a
 * TTY (docs/CLI.md §Privacy, docs/PRIVACY.md): every command's --help, normal paths with --json,
 * and bad inputs with their codes and exit statuses (wrong passphrase, no passphrase, unknown
 * person, erase without --yes, malformed fields and credential ids, the ordinary token instead of
 * the privacy token, a gateway that is down).
 *
 * person add and erase talk to the real gateway process; show and rotate read its data folder.
 * Rotation is checked to keep old items readable: events sealed under the first key and person
 * keys wrapped to it still open after `oti privacy rotate --data`, and locks sealing to either
 * key are accepted.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { ptyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { generateKeyPair, toHex } from '../../ledger/crypto.js';
import { boxKeyId, readPublicPrivacyFile, PRIVACY_KEY_BYTES } from '../../ledger/privacy.js';
import { otiIn as oti, otiSite, errorCode, type Run } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';

const SITE_PASS = 'site passphrase for privacy cli tests';
const PRIVACY_PASS = 'privacy keyring passphrase 0002';
const TOKEN = 'reader-token-fedcba9876543210';
const PRIVACY_TOKEN = 'privacy-token-fedcba9876543210';
const ALICE = Buffer.from('ALICE-CARD-0001');
const BOB = Buffer.from('BOB-CARD-000002');
const CAROL = Buffer.from('CAROL-CARD-0003');
const COMMANDS = ['privacy init', 'privacy rotate', 'privacy person add', 'privacy erase', 'privacy show'];


/** The code of a --json error document on stdout. */
function jsonErrorCode(r: Run): string {
  return r.json<{ error: { code: string } }>().error.code;
}


const PRIV_ENV = { OTI_PRIVACY_PASSPHRASE: PRIVACY_PASS };

/** A site folder (<dir>/site) with a site key; with `gateway`, also a bundle applied to <dir>/data. */
const makeSite = (t: TestContext, gateway: boolean): Promise<string> => otiSite(t, 'oti-privacy-cli-', SITE_PASS, { gateway });

type ShowItem = Record<string, unknown> & { chain: string; index: number; kind: string };

async function show(dir: string, plaintext: boolean): Promise<ShowItem[]> {
  const r = await oti(['privacy', 'show', '--site-dir', 'site', '--data', 'data', '--json', ...(plaintext ? ['--plaintext'] : [])], dir, PRIV_ENV);
  assert.equal(r.code, 0, r.stderr);
  return r.json<{ items: ShowItem[] }>().items;
}

void test('every oti privacy command has --help (exit 0, with examples) and is listed by oti --help', async (t) => {
  const dir = await tempDir(t, 'oti-privacy-cli-');
  const top = await oti(['--help'], dir);
  assert.equal(top.code, 0);
  for (const name of COMMANDS) {
    assert.match(top.stdout, new RegExp(`^  ${name}\\b`, 'm'), `oti --help lists ${name}`);
    const r = await oti([...name.split(' '), '--help'], dir);
    assert.equal(r.code, 0, `oti ${name} --help`);
    assert.match(r.stdout, /Examples:\n  .*\boti privacy /, `oti ${name} --help has examples`);
  }
});

void test('privacy init: keyring 0600 and public privacy.json; refuses to overwrite; passphrase rules; rotate with a wrong passphrase', async (t) => {
  const dir = await makeSite(t, false);
  const noPass = await oti(['privacy', 'init', '--site-dir', 'site'], dir);
  assert.equal(noPass.code, 2, 'no passphrase and no terminal is a usage error');
  assert.equal(errorCode(noPass), 'ERR_USAGE');

  const init = await oti(['privacy', 'init', '--site-dir', 'site', '--json'], dir, PRIV_ENV);
  assert.equal(init.code, 0, init.stderr);
  const out = init.json<{ siteId: string; keyId: string; publicKey: string }>();
  assert.equal(out.siteId, 'acme');
  assert.match(out.keyId, /^[0-9a-f]+$/);
  assert.match(out.publicKey, new RegExp(`^[0-9a-f]{${2 * PRIVACY_KEY_BYTES}}$`));
  assert.equal(((await stat(join(dir, 'site', 'privacy.key'))).mode & 0o777).toString(8), '600');
  const pub = await readPublicPrivacyFile(join(dir, 'site', 'privacy.json'));
  assert.equal(pub.siteId, 'acme');
  assert.equal(toHex(pub.current.id), out.keyId);
  assert.equal(toHex(pub.current.publicKey), out.publicKey);
  assert.ok(!(await readFile(join(dir, 'site', 'privacy.key'), 'utf8')).includes(PRIVACY_PASS));

  const twice = await oti(['privacy', 'init', '--site-dir', 'site', '--json'], dir, PRIV_ENV);
  assert.equal(twice.code, 1);
  assert.equal(jsonErrorCode(twice), 'ERR_ARGUMENT');
  assert.equal(toHex((await readPublicPrivacyFile(join(dir, 'site', 'privacy.json'))).current.id), out.keyId, 'the keyring was not replaced');

  // --force with the passphrase from a file: a new keyring, unlocked by that file only.
  await writeFile(join(dir, 'pass.txt'), 'a passphrase from a file\n', { mode: 0o600 });
  const forced = await oti(['privacy', 'init', '--site-dir', 'site', '--force', '--passphrase-file', 'pass.txt', '--json'], dir);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(forced.json<{ keyId: string }>().keyId, out.keyId);
  const wrong = await oti(['privacy', 'rotate', '--site-dir', 'site', '--json'], dir, PRIV_ENV);
  assert.equal(wrong.code, 1, 'the old passphrase no longer opens the new keyring');
  assert.equal(jsonErrorCode(wrong), 'ERR_KEY_PASSPHRASE');
  const missingFile = await oti(['privacy', 'rotate', '--site-dir', 'site', '--passphrase-file', 'nope.txt'], dir);
  assert.equal(missingFile.code, 2);
  assert.equal(errorCode(missingFile), 'ERR_USAGE');
  const rotated = await oti(['privacy', 'rotate', '--site-dir', 'site', '--passphrase-file', 'pass.txt', '--json'], dir);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.deepEqual(Object.keys(rotated.json()).sort(), ['keyId', 'keys', 'rewrapped']);
  assert.equal(rotated.json<{ keys: number }>().keys, 2);

  // A folder that holds no site.
  const nowhere = await oti(['privacy', 'init', '--site-dir', 'no-such-site', '--json'], dir, PRIV_ENV);
  assert.notEqual(nowhere.code, 0);
  assert.match(jsonErrorCode(nowhere), /^ERR_/);
});

void test('person add / erase / show against the real gateway, bad inputs refused, and rotate keeps old items readable', { timeout: 240_000 }, async (t) => {
  const dir = await makeSite(t, true);
  const data = join(dir, 'data');
  assert.equal((await oti(['privacy', 'init', '--site-dir', 'site'], dir, PRIV_ENV)).code, 0);
  await writeFile(join(data, 'privacy.json'), await readFile(join(dir, 'site', 'privacy.json')));
  const pty = await ptyPair(dir, 'door');
  t.after(() => pty.kill());
  const apiPort = await freePort();
  const api = ['--api', `http://127.0.0.1:${apiPort}`];
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir: data,
    broker: { host: '127.0.0.1', port: 0 },
    api: { port: apiPort, token: TOKEN, privacyToken: PRIVACY_TOKEN },
    serialPorts: [pty.gateway],
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
  });
  let gw: GatewayProcess | undefined;
  t.after(() => gw?.proc.kill('SIGKILL'));
  const startGw = async (): Promise<void> => {
    gw = startGateway(['--config', config]);
    await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));
  };
  const stopGw = async (): Promise<void> => {
    gw!.proc.kill('SIGTERM');
    assert.equal(await gw!.exited, 0, `a clean stop; stderr: ${gw!.stderr()}`);
  };

  // The gateway is down: person commands cannot reach it.
  const down = await oti(['privacy', 'person', 'add', '--site-dir', 'site', '--field', 'name=X', '--token', PRIVACY_TOKEN, ...api], dir);
  assert.equal(down.code, 3);
  assert.equal(errorCode(down), 'ERR_GATEWAY_UNREACHABLE');

  await startGw();
  const lockKey = generateKeyPair();
  const enrolled = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', ...api], dir, { OTI_PASSPHRASE: SITE_PASS, OTI_API_TOKEN: TOKEN });
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const firstKey = await readPublicPrivacyFile(join(data, 'privacy.json'));
  const lock = new SimLock({ id: 'front-door', seed: lockKey.seed, resendMs: 500, privacyKey: firstKey.current });
  const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 50 });
  t.after(async () => {
    lock.close();
    await link.close();
  });
  link.start();
  lock.record('unlocked', ALICE);
  lock.record('unlocked', BOB);
  await waitUntil('two sealed events acknowledged', () => lock.acked.size === 2);

  // person add: bad inputs are usage errors (exit 2) and send nothing.
  const PT = { OTI_PRIVACY_TOKEN: PRIVACY_TOKEN };
  for (const [what, args, env] of [
    ['no field and no cred', [], PT],
    ['a field without =', ['--field', 'name'], PT],
    ['a field with an empty name', ['--field', '=Alice'], PT],
    ['upper-case hex', ['--cred', 'ABCD'], PT],
    ['odd hex', ['--cred', 'abc'], PT],
    ['a credential longer than 31 bytes', ['--cred', 'ab'.repeat(32)], PT],
    ['no privacy token', ['--field', 'name=Alice'], {}],
  ] as const) {
    const r = await oti(['privacy', 'person', 'add', '--site-dir', 'site', ...args, ...api, '--json'], dir, env);
    assert.equal(r.code, 2, what);
    assert.equal(jsonErrorCode(r), 'ERR_USAGE', what);
  }
  const ordinary = await oti(['privacy', 'person', 'add', '--site-dir', 'site', '--field', 'name=Alice', '--token', TOKEN, ...api], dir);
  assert.equal(ordinary.code, 1, 'the ordinary token does not reach /privacy/');
  assert.equal(errorCode(ordinary), 'ERR_API');
  assert.match(ordinary.stderr, /check the privacy token: --token or OTI_PRIVACY_TOKEN/, 'the 401 names the privacy token');
  assert.ok(!ordinary.stderr.includes('OTI_API_TOKEN'), 'not the ordinary token');

  // Two persons, fields encrypted here; the gateway holds only wrapped keys.
  const add = async (fields: Record<string, string>, cred: Buffer): Promise<string> => {
    const r = await oti(['privacy', 'person', 'add', '--site-dir', 'site', ...Object.entries(fields).flatMap(([k, v]) => ['--field', `${k}=${v}`]), '--cred', cred.toString('hex'), '--json', ...api], dir, PT);
    assert.equal(r.code, 0, r.stderr);
    const out = r.json<{ person: string; index: number; id: string }>();
    assert.match(out.person, /^[0-9a-f]{32}$/);
    assert.ok(Number.isSafeInteger(out.index));
    return out.person;
  };
  const alice = await add({ name: 'Alice Example', badge: 'B-1' }, ALICE);
  const bob = await add({ name: 'Bob Example' }, BOB);
  const wrapped = await readFile(join(data, 'persons', `${alice}.key`));
  assert.equal(toHex(boxKeyId(wrapped, PRIVACY_KEY_BYTES)!), toHex(firstKey.current.id), 'the person key is wrapped to the current privacy key');

  // erase: refused without --yes on a non-TTY, a malformed or unknown id is a clear error.
  const unconfirmed = await oti(['privacy', 'erase', alice, ...api, '--json'], dir, PT);
  assert.equal(unconfirmed.code, 2);
  assert.equal(jsonErrorCode(unconfirmed), 'ERR_USAGE');
  const malformed = await oti(['privacy', 'erase', 'alice', '--yes', ...api, '--json'], dir, PT);
  assert.notEqual(malformed.code, 0);
  assert.equal(jsonErrorCode(malformed), 'ERR_ARGUMENT');
  const unknown = await oti(['privacy', 'erase', 'ffeeddccbbaa99887766554433221100', '--yes', ...api, '--json'], dir, PT);
  assert.equal(unknown.code, 1);
  assert.equal(jsonErrorCode(unknown), 'ERR_NOT_FOUND');
  const noToken = await oti(['privacy', 'erase', alice, '--yes', ...api], dir);
  assert.equal(noToken.code, 2);

  // show: pseudonyms without --plaintext; raw ids and fields with it; wrong passphrase refused.
  const pseudo = await show(dir, false);
  const pseudoEvents = pseudo.filter((e) => e.kind === 'lock-event' && e['lock'] === 'front-door');
  assert.equal(pseudoEvents.length, 2);
  for (const e of pseudoEvents) {
    assert.match(String(e['pseudonym']), /^[0-9a-f]{32}$/);
    assert.equal(e['credential'], undefined);
  }
  assert.ok(!pseudo.some((e) => e['personFields'] !== undefined));
  const before = await show(dir, true);
  const credentials = (items: ShowItem[]): unknown[] => items.filter((e) => e.kind === 'lock-event' && e['lock'] === 'front-door').map((e) => e['credential']);
  const pseudonyms = (items: ShowItem[]): unknown[] => items.filter((e) => e.kind === 'lock-event' && e['lock'] === 'front-door').map((e) => e['pseudonym']);
  const personOf = (items: ShowItem[], person: string): ShowItem | undefined => items.find((e) => e.kind === 'privacy' && e['person'] === person && e['op'] === 'person');
  const fieldsOf = (items: ShowItem[], person: string): unknown => personOf(items, person)?.['personFields'];
  // No raw id on events, even with --plaintext: it is readable only in a live person's fields,
  // and the person entry carries the pseudonym that finds their events.
  assert.deepEqual(credentials(before), [undefined, undefined]);
  assert.deepEqual([personOf(before, alice)?.['pseudonyms'], personOf(before, bob)?.['pseudonyms']], pseudonyms(before).map((p) => [p]));
  assert.equal(personOf(before, alice)?.['keyHolder'], 'gw-1');
  assert.deepEqual(fieldsOf(before, alice), { name: 'Alice Example', badge: 'B-1', cred: ALICE.toString('hex') });
  assert.deepEqual(fieldsOf(before, bob), { name: 'Bob Example', cred: BOB.toString('hex') });
  const wrongShow = await oti(['privacy', 'show', '--site-dir', 'site', '--data', 'data', '--plaintext', '--json'], dir, { OTI_PRIVACY_PASSPHRASE: 'wrong passphrase' });
  assert.equal(wrongShow.code, 1);
  assert.equal(jsonErrorCode(wrongShow), 'ERR_KEY_PASSPHRASE');
  assert.ok(!wrongShow.stdout.includes('Alice'));
  const text = await oti(['privacy', 'show', '--site-dir', 'site', '--data', 'data'], dir, PRIV_ENV);
  assert.equal(text.code, 0, text.stderr);
  assert.ok(!text.stdout.includes('Alice') && !text.stdout.includes(ALICE.toString('hex')), 'no plaintext without --plaintext');

  // rotate with --data (gateway stopped): person keys re-wrapped, new privacy.json in data.
  await stopGw();
  const rotWrong = await oti(['privacy', 'rotate', '--site-dir', 'site', '--data', 'data', '--json'], dir, { OTI_PRIVACY_PASSPHRASE: 'wrong passphrase' });
  assert.equal(rotWrong.code, 1);
  assert.equal(jsonErrorCode(rotWrong), 'ERR_KEY_PASSPHRASE');
  const rot = await oti(['privacy', 'rotate', '--site-dir', 'site', '--data', 'data', '--json'], dir, PRIV_ENV);
  assert.equal(rot.code, 0, rot.stderr);
  const r = rot.json<{ keyId: string; keys: number; rewrapped: number }>();
  assert.notEqual(r.keyId, toHex(firstKey.current.id));
  assert.equal(r.keys, 2);
  assert.equal(r.rewrapped, 2);
  const second = await readPublicPrivacyFile(join(data, 'privacy.json'));
  assert.equal(toHex(second.current.id), r.keyId);
  assert.equal(second.keys.length, 2, 'the old key stays in privacy.json for locks not yet updated');
  assert.equal(toHex(boxKeyId(await readFile(join(data, 'persons', `${alice}.key`)), PRIVACY_KEY_BYTES)!), r.keyId, 're-wrapped to the new key');
  const rotatedView = await show(dir, true);
  assert.deepEqual(pseudonyms(rotatedView), pseudonyms(before), 'events sealed under the old key still open');
  assert.deepEqual(fieldsOf(rotatedView, alice), fieldsOf(before, alice), 'fields encrypted before the rotation still open');

  // The gateway with the new privacy.json: locks sealing to the old key and to the new one are both
  // accepted. The lock is swapped while the gateway is stopped: the serial driver greets a lock
  // that announces itself again only once per hello (drivers/serial.ts), so a lock restarted on a
  // port that stays open waits for the next hello.
  lock.record('unlocked', ALICE);
  await startGw();
  await waitUntil('an old-key event acknowledged after the rotation', () => lock.acked.size === 3);
  await stopGw();
  const updated = new SimLock({ id: 'front-door', seed: lockKey.seed, resendMs: 500, privacyKey: second.current, firstCounter: lock.counter });
  lock.close();
  await link.close();
  const link2 = new SerialSimLink(updated, { path: pty.lock, reopenMs: 50 });
  t.after(async () => {
    updated.close();
    await link2.close();
  });
  link2.start();
  updated.record('unlocked', CAROL);
  await startGw();
  await waitUntil('a new-key event acknowledged', () => updated.acked.size === 1);

  // erase with --yes: Alice's key is destroyed, her fields unreadable; Bob untouched.
  const erased = await oti(['privacy', 'erase', alice, '--yes', ...api, '--json'], dir, PT);
  assert.equal(erased.code, 0, erased.stderr);
  assert.equal(erased.json<{ destroyed: boolean }>().destroyed, true);
  const twice = await oti(['privacy', 'erase', alice, '--yes', ...api, '--json'], dir, PT);
  assert.equal(twice.code, 0, 'erasure is idempotent');
  assert.equal(twice.json<{ destroyed: boolean }>().destroyed, false);
  await stopGw();
  const last = await show(dir, true);
  assert.equal(fieldsOf(last, alice), undefined);
  assert.equal(last.find((e) => e.kind === 'privacy' && e['person'] === alice && e['op'] === 'person')?.['erased'], true);
  assert.deepEqual(fieldsOf(last, bob), fieldsOf(before, bob));
  assert.equal(last.filter((e) => e.kind === 'privacy' && e['op'] === 'shred' && e['person'] === alice).length, 2);
  assert.equal(personOf(last, alice)?.['keyHeldHere'], undefined, 'erased, not merely "no key here"');
  assert.deepEqual(credentials(last), [undefined, undefined, undefined, undefined]);
  const lastText = await oti(['privacy', 'show', '--site-dir', 'site', '--data', 'data', '--plaintext'], dir, PRIV_ENV);
  assert.equal(lastText.code, 0, lastText.stderr);
  const lastJson = await oti(['privacy', 'show', '--site-dir', 'site', '--data', 'data', '--plaintext', '--json'], dir, PRIV_ENV);
  for (const secret of [ALICE.toString('hex'), ALICE.toString('latin1'), 'Alice Example']) {
    assert.ok(!lastText.stdout.includes(secret) && !lastJson.stdout.includes(secret), `${secret} is still readable after erasure`);
  }
  assert.ok(lastText.stdout.includes('Bob Example'), 'a person not erased stays readable');
  const verified = await oti(['verify', '--data', 'data', '--json'], dir);
  assert.equal(verified.code, 0, verified.stderr);
});
