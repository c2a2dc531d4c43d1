/**
 * Personal data across the gateways of one site (docs/PRIVACY.md §Where a person's key is held,
 * §Backups and restores): two real gateway processes on loopback, each with its own broker,
 * syncing through static peers; the site, enrolment and keyring made with the real `oti` binary.
 *
 * - Single holder: a person recorded through gw-1 has their key only at gw-1. Reading or erasing
 *   them through gw-2 answers ERR_PRIVACY_NO_KEY (409) naming gw-1, over HTTP and in `oti privacy
 *   erase`; `oti privacy show --plaintext` on gw-2's folder says "no key here: held by gw-1",
 *   never "erased".
 * - Erasure at gw-1 reaches gw-2 by sync: then gw-2 says "erased".
 * - A backup of gw-1 taken before the erasure, restored into a new folder and started with gw-2
 *   as a peer, recovers its chain (with the shred entry) from gw-2 and applies the erasure before
 *   the API answers: the person is erased, the restored key file is gone.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { access, chmod, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess, type LogLine } from '../support/gateway-process.js';
import { oti as runOti, type Run } from '../support/oti-cli.js';
import { encode } from '../../ledger/base/cbor.js';
import { encryptPersonFields, newPersonKey, readPublicPrivacyFile, wrapPersonKey } from '../../ledger/privacy.js';

const SITE_PASS = 'site passphrase for two gateways';
const PRIVACY_PASS = 'privacy keyring passphrase 0003';
const BACKUP_PASS = 'backup passphrase 0003';
const PRIVACY_TOKEN = 'privacy-token-two-gateways-0123';
const NAME = 'Dana Two-Gateways';
const CARD = Buffer.from('DANA-CARD-00042');
const GW_ENV = { OTI_PRIVACY_PASSPHRASE: PRIVACY_PASS };

function oti(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return runOti(args, { cwd, env });
}

async function must(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const r = await oti(args, cwd, env);
  assert.equal(r.code, 0, `oti ${args.join(' ')}: ${r.stderr}`);
  return r;
}

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function call(api: string, path: string, method = 'GET', body?: Uint8Array): Promise<Answer> {
  const headers = { authorization: `Bearer ${PRIVACY_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/cbor' } : {}) };
  const r = await fetch(`${api}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

function errorOf(a: Answer): { code?: string; message?: string; details?: Record<string, unknown> } {
  const e = a.body['error'];
  return (typeof e === 'object' && e !== null ? e : a.body) as { code?: string; message?: string };
}

type ShowItem = Record<string, unknown> & { chain: string; kind: string };

/** `oti privacy show --plaintext` of a data folder: the person entry of `person`, and the text lines. */
async function showPerson(dir: string, data: string, person: string): Promise<{ item: ShowItem | undefined; text: string }> {
  const json = await must(['privacy', 'show', '--site-dir', 'site', '--data', data, '--plaintext', '--json'], dir, GW_ENV);
  const text = await must(['privacy', 'show', '--site-dir', 'site', '--data', data, '--plaintext'], dir, GW_ENV);
  const item = json.json<{ items: ShowItem[] }>().items.find((e) => e.kind === 'privacy' && e['op'] === 'person' && e['person'] === person);
  return { item, text: text.stdout };
}

const running = (l: LogLine): boolean => l.msg.includes('running; press Ctrl+C');

void test('a person key is held by the recording gateway only: other gateways name it, erasure reaches them, a restored backup re-applies the erasure', { timeout: 300_000 }, async (t: TestContext) => {
  const dir = await tempDir(t, 'oti-privacy-gws-');
  const siteEnv = { OTI_PASSPHRASE: SITE_PASS };
  await must(['site', 'init', '--site', 'acme', '--out', 'site'], dir, siteEnv);
  for (const gw of ['gw-1', 'gw-2']) {
    await must(['gateway', 'enroll', '--site-dir', 'site', '--id', gw, '--out', `${gw}.json`], dir, siteEnv);
    await must(['gateway', 'apply-bundle', `${gw}.json`, '--data', gw], dir, siteEnv);
  }
  await must(['privacy', 'init', '--site-dir', 'site'], dir, GW_ENV);
  for (const gw of ['gw-1', 'gw-2']) {
    await copyFile(join(dir, 'site', 'privacy.json'), join(dir, gw, 'privacy.json'));
    await copyFile(join(dir, 'site', 'privacy.key'), join(dir, gw, 'privacy.key'));
    await chmod(join(dir, gw, 'privacy.key'), 0o600);
  }
  const ports = { 'gw-1': await freePort(), 'gw-2': await freePort() };
  const config = async (name: string, data: string, port: number, peer: number): Promise<string> =>
    writeGatewayConfig(join(dir, `${name}.yaml`), {
      dataDir: join(dir, data),
      broker: { host: '127.0.0.1', port },
      api: { port: 0, privacyToken: PRIVACY_TOKEN },
      serialPorts: [],
      more: { discovery: { enabled: false, staticPeers: [{ host: '127.0.0.1', port: peer }] }, sync: { recoverWaitMs: 0 } },
    });
  const procs: GatewayProcess[] = [];
  t.after(() => {
    for (const p of procs) p.proc.kill('SIGKILL');
  });
  const start = async (file: string): Promise<{ gw: GatewayProcess; api: string }> => {
    const gw = startGateway(['--config', file], GW_ENV);
    procs.push(gw);
    const api = String((await gw.waitForLog('the API', (l) => l.msg.startsWith('local API on')))['url']);
    await gw.waitForLog('running', running);
    return { gw, api };
  };
  const stop = async (gw: GatewayProcess): Promise<void> => {
    gw.proc.kill('SIGTERM');
    assert.equal(await gw.exited, 0, gw.stderr());
  };
  const replicated = (gw: GatewayProcess, what: string, size: number): Promise<LogLine> =>
    gw.waitForLog(what, (l) => l['origin'] === 'oti/acme/gw-1' && typeof l['size'] === 'number' && l['size'] >= size, 60_000);

  const config1 = await config('gw-1', 'gw-1', ports['gw-1'], ports['gw-2']);
  let gw1 = await start(config1);
  const gw2 = await start(await config('gw-2', 'gw-2', ports['gw-2'], ports['gw-1']));

  const added = await must(['privacy', 'person', 'add', '--site-dir', 'site', '--field', `name=${NAME}`, '--cred', CARD.toString('hex'), '--api', gw1.api, '--json'], dir, { OTI_PRIVACY_TOKEN: PRIVACY_TOKEN });
  const { person, index } = added.json<{ person: string; index: number }>();
  assert.equal((await call(gw1.api, `/privacy/persons/${person}`)).status, 200, 'the recording gateway reads the person');
  await replicated(gw2.gw, 'gw-2 holding the person entry', index + 1);

  // Through gw-2: no key here, and the answer names the holder; never "erased".
  for (const [method, path] of [['GET', `/privacy/persons/${person}`], ['POST', `/privacy/persons/${person}/erase`]] as const) {
    const a = await call(gw2.api, path, method);
    assert.equal(a.status, 409, `${method} ${path}: ${JSON.stringify(a.body)}`);
    assert.equal(errorOf(a).code, 'ERR_PRIVACY_NO_KEY');
    assert.match(String(errorOf(a).message), /recorded by gateway gw-1, which alone holds the person's key/);
  }
  // The same person id recorded through gw-2 would give them a second key holder, whose key an
  // erasure at gw-1 would not destroy: refused, naming gw-1.
  const pub = await readPublicPrivacyFile(join(dir, 'site', 'privacy.json'));
  const key = newPersonKey();
  const id = Buffer.from(person, 'hex');
  const again = encode({ key: wrapPersonKey(pub.current, pub.siteId, id, key), fields: encryptPersonFields(key, pub.siteId, id, { name: 'a second holder' }), person: id });
  const twice = await call(gw2.api, '/privacy/persons', 'POST', again);
  assert.equal(twice.status, 400, JSON.stringify(twice.body));
  assert.equal(errorOf(twice).code, 'ERR_ARGUMENT');
  assert.match(String(errorOf(twice).message), /already recorded by gateway gw-1/);
  const viaGw2 = await oti(['privacy', 'erase', person, '--yes', '--api', gw2.api], dir, { OTI_PRIVACY_TOKEN: PRIVACY_TOKEN });
  assert.equal(viaGw2.code, 1);
  assert.match(viaGw2.stderr, /gw-1.*ERR_PRIVACY_NO_KEY/);
  const before = await showPerson(dir, 'gw-2', person);
  assert.equal(before.item?.['keyHeldHere'], false);
  assert.equal(before.item['keyHolder'], 'gw-1');
  assert.equal(before.item['erased'], undefined, 'not erased: only not held here');
  assert.ok(before.text.includes(`${person} (no key here: held by gw-1)`), before.text);
  assert.ok(!before.text.includes('(erased)'));

  // A backup of gw-1 before the erasure.
  await stop(gw1.gw);
  await must(['backup', '--data', 'gw-1', '--out', 'gw-1.otibak'], dir, { OTI_BACKUP_PASSPHRASE: BACKUP_PASS });
  gw1 = await start(config1);

  // Erasure at the holder; the shred entry reaches gw-2, which now says "erased".
  const erased = await call(gw1.api, `/privacy/persons/${person}/erase`, 'POST');
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  assert.equal(erased.body['keyHolder'], 'gw-1');
  await replicated(gw2.gw, 'gw-2 holding the shred entry', Number(erased.body['index']) + 1);
  const after = await showPerson(dir, 'gw-2', person);
  assert.equal(after.item?.['erased'], true);
  assert.equal(after.item['keyHeldHere'], undefined);
  assert.ok(!after.text.includes(NAME) && !after.text.includes(CARD.toString('hex')));
  await stop(gw1.gw);

  // The old backup restored into a new folder: its chain comes back from gw-2 with the shred
  // entry, and the erasure is applied before the API answers anything.
  await must(['restore', 'gw-1.otibak', '--data', 'gw-1-restored'], dir, { OTI_BACKUP_PASSPHRASE: BACKUP_PASS });
  await access(join(dir, 'gw-1-restored', 'persons', `${person}.key`));
  const restored = await start(await config('gw-1-restored', 'gw-1-restored', ports['gw-1'], ports['gw-2']));
  assert.ok(restored.gw.logs.some((l) => l.msg.startsWith("recovered this gateway's own chain from peers")), 'the own chain was recovered from gw-2');
  const gone = await call(restored.api, `/privacy/persons/${person}`);
  assert.equal(gone.status, 410, JSON.stringify(gone.body));
  assert.equal(errorOf(gone).code, 'ERR_PRIVACY_ERASED');
  await assert.rejects(access(join(dir, 'gw-1-restored', 'persons', `${person}.key`)), 'the restored key file is destroyed');
  await access(join(dir, 'gw-1-restored', 'persons', `${person}.erased`));
  const apiLine = restored.gw.logs.findIndex((l) => l.msg.startsWith('local API on'));
  const shredLine = restored.gw.logs.findIndex((l) => /destroyed \d+ person key\(s\) whose erasure/.test(l.msg));
  assert.ok(shredLine >= 0 && shredLine < apiLine, 'the erasure was applied before the API listened');
});
