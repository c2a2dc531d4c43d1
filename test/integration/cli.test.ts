/**
 * The real `oti` binary (node dist/provisioning/cli.js) in subprocesses, never a TTY: every
 * command's --help, each command's normal path and its bad inputs (wrong passphrase, tampered
 * and expired bundles, unknown lock, unreachable gateway), --json output, exit codes, and no
 * ANSI escapes anywhere.
 *
 * Commands that talk to a gateway run against an HTTP server in this process that mounts the
 * API routes the CLI uses, built from the real pieces: the gateway's chain opened from the data
 * folder that `oti gateway apply-bundle` wrote, handleRosterPost/rosterListing
 * (gateway/api/roster-admin.ts) and receiptFor (ledger/receipt.ts). The full flow against the real
 * gateway process is the last test; it runs once the runtime applies bundles at start.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile, writeFile, readdir, stat, mkdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../support/site.js';
import { ptyPair } from '../../drivers/pty.js';
import { generateKeyPair, Signer, toHex, type KeyPair } from '../../ledger/crypto.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { receiptFor } from '../../ledger/receipt.js';
import { decodeEntry } from '../../ledger/entry.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { createBundle } from '../../gateway/config/bundle.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { handleRosterPost, rosterListing, rosterStatus } from '../../gateway/api/roster-admin.js';
import { oti as runOti, errorCode, ROOT, type Run } from '../support/oti-cli.js';

const PASS = 'correct horse battery staple';
const ANSI = /\u001b\[/;

/** `oti` with the check every CLI test makes: no ANSI escapes when output is not a terminal. */
async function oti(args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const r = await runOti(args, opts);
  assert.doesNotMatch(r.stdout, ANSI, `ANSI escape on stdout of oti ${args.join(' ')}`);
  assert.doesNotMatch(r.stderr, ANSI, `ANSI escape on stderr of oti ${args.join(' ')}`);
  return r;
}

interface Site {
  readonly dir: string;
  readonly siteDir: string;
  readonly env: Record<string, string>;
}

async function makeSite(t: TestContext, siteId = 'acme'): Promise<Site> {
  const dir = await tempDir(t, 'oti-cli-');
  const env = { OTI_PASSPHRASE: PASS };
  const r = await oti(['site', 'init', '--site', siteId, '--out', 'site', '--json'], { cwd: dir, env });
  assert.equal(r.code, 0, r.stderr);
  return { dir, siteDir: join(dir, 'site'), env };
}

/** Site, bundle applied to <dir>/data. */
async function makeGateway(t: TestContext, gatewayId = 'gw-1'): Promise<Site & { data: string }> {
  const s = await makeSite(t);
  const e = await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', gatewayId, '--out', 'b.json', '--json'], { cwd: s.dir, env: s.env });
  assert.equal(e.code, 0, e.stderr);
  const a = await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data', '--json'], { cwd: s.dir });
  assert.equal(a.code, 0, a.stderr);
  return { ...s, data: join(s.dir, 'data') };
}

void test('oti --help lists every command and each command’s --help exits 0 with examples', async () => {
  const top = await oti(['--help']);
  assert.equal(top.code, 0);
  const names = top.stdout
    .split('\n')
    .slice(top.stdout.split('\n').indexOf('Commands:') + 1)
    .filter((l) => l.startsWith('  '))
    .map((l) => l.trim().split(/\s{2,}/)[0] as string);
  for (const expected of ['site init', 'gateway enroll', 'gateway apply-bundle', 'lock enroll', 'lock list', 'lock revoke', 'lock rotate', 'gateway revoke', 'status', 'events tail', 'verify', 'receipt', 'receipt verify', 'ports', 'ble scan', 'backup', 'restore', 'doctor']) {
    assert.ok(names.includes(expected), `oti --help lists ${expected}`);
  }
  for (const name of names) {
    const r = await oti([...name.split(' '), '--help']);
    assert.equal(r.code, 0, `oti ${name} --help`);
    assert.match(r.stdout, /Examples:\n  .*\boti /, `oti ${name} --help has examples`);
  }
});

void test('usage errors exit 2: no command, unknown command, unknown option, missing argument', async () => {
  assert.equal((await oti([])).code, 2);
  const unknown = await oti(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.equal(errorCode(unknown), 'ERR_USAGE');
  const opt = await oti(['site', 'init', '--bogus', '--json']);
  assert.equal(opt.code, 2);
  assert.equal(opt.json<{ error: { code: string } }>().error.code, 'ERR_USAGE');
  assert.equal((await oti(['receipt', 'verify'])).code, 2);
  assert.equal((await oti(['gateway', 'enroll', '--expires', 'soon', '--id', 'gw'])).code, 2);
});

void test('site init writes an encrypted key and public site.json, refuses to overwrite, needs a passphrase without a terminal', async (t) => {
  const s = await makeSite(t);
  const info = JSON.parse(await readFile(join(s.siteDir, 'site.json'), 'utf8')) as { siteId: string; siteKeys: string[] };
  assert.equal(info.siteId, 'acme');
  assert.equal(((await stat(join(s.siteDir, 'site.key'))).mode & 0o777).toString(8), '600');
  const key = await readKeyFile(join(s.siteDir, 'site.key'), { passphrase: PASS });
  assert.equal(toHex(key.publicKey), info.siteKeys[0]);
  await assert.rejects(readKeyFile(join(s.siteDir, 'site.key')), (e) => isOtiError(e, 'ERR_KEY_PASSPHRASE_REQUIRED'));

  const again = await oti(['site', 'init', '--site', 'acme', '--out', 'site'], { cwd: s.dir, env: s.env });
  assert.equal(again.code, 1);
  assert.equal(errorCode(again), 'ERR_ARGUMENT');
  const noPass = await oti(['site', 'init', '--site', 'other', '--out', 'other'], { cwd: s.dir });
  assert.equal(noPass.code, 2);
  // The key that signs the whole site is not guarded by a one-character passphrase.
  const short = await oti(['site', 'init', '--site', 'other', '--out', 'other'], { cwd: s.dir, env: { OTI_PASSPHRASE: 'x' } });
  assert.equal(short.code, 2);
  assert.equal(errorCode(short), 'ERR_USAGE');
  assert.match(short.stderr, /at least 12 characters/);
  assert.equal(existsSync(join(s.dir, 'other', 'site.key')), false);
  const forced = await oti(['site', 'init', '--site', 'acme', '--out', 'site', '--force', '--json'], { cwd: s.dir, env: s.env });
  assert.equal(forced.code, 0);
  assert.notEqual(forced.json<{ siteKey: string }>().siteKey, info.siteKeys[0]);
});

void test('gateway enroll + apply-bundle write the identity the gateway loads; the bundle is renamed and not applied twice', async (t) => {
  const g = await makeGateway(t);
  const site = JSON.parse(await readFile(join(g.data, 'site.json'), 'utf8')) as { gatewayId: string };
  assert.equal(site.gatewayId, 'gw-1');
  assert.equal(((await stat(join(g.data, 'gateway.key'))).mode & 0o777).toString(8), '600');
  const id = await loadOrCreateIdentity(g.data);
  assert.equal(id.created, false);
  assert.equal(id.gatewayId, 'gw-1');
  assert.equal(id.enrolment.statement.expires !== undefined, true);
  assert.ok(existsSync(join(g.dir, 'b.json.applied')));
  const twice = await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data'], { cwd: g.dir });
  assert.equal(twice.code, 1);
  assert.equal(errorCode(twice), 'ERR_NOT_FOUND');
  // Another bundle onto an enrolled data folder is refused without --force.
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-2', '--out', 'c.json'], { cwd: g.dir, env: g.env })).code, 0);
  const other = await oti(['gateway', 'apply-bundle', 'c.json', '--data', 'data'], { cwd: g.dir });
  assert.equal(errorCode(other), 'ERR_BUNDLE');
  // --force moves everything of the old identity aside into one folder: the new one starts on nothing of gw-1's.
  const state = ['ledger/CURRENT', 'last-checkpoint.json', 'ledger-decision.json', 'uplink.cursor', 'witness-state.json', 'webhooks/h.json', 'persons/p.key'];
  for (const f of state) {
    await mkdir(join(g.data, f, '..'), { recursive: true });
    await writeFile(join(g.data, f), 'old');
  }
  const forced = await oti(['gateway', 'apply-bundle', 'c.json', '--data', 'data', '--force'], { cwd: g.dir });
  assert.equal(forced.code, 0, forced.stderr);
  const aside = /the old identity \(gateway gw-1\) was moved to (\S+):/.exec(forced.stdout)?.[1];
  assert.ok(aside !== undefined, forced.stdout);
  for (const f of ['site.json', 'gateway.key', ...state]) {
    assert.ok(existsSync(resolve(g.dir, aside, f)), `${f} moved aside`);
    assert.equal(existsSync(join(g.data, f)), f === 'site.json' || f === 'gateway.key', `${f} in the data folder`);
  }
  assert.equal((await loadOrCreateIdentity(g.data)).gatewayId, 'gw-2');
});

void test('gateway enroll with a wrong site passphrase fails with ERR_KEY_PASSPHRASE and writes nothing', async (t) => {
  const s = await makeSite(t);
  const r = await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json', '--json'], { cwd: s.dir, env: { OTI_PASSPHRASE: 'wrong' } });
  assert.equal(r.code, 1);
  assert.equal(r.json<{ error: { code: string } }>().error.code, 'ERR_KEY_PASSPHRASE');
  assert.equal(existsSync(join(s.dir, 'b.json')), false);
});

void test('tampered bundles are refused with a code; nothing is written to the data folder', async (t) => {
  const s = await makeSite(t);
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json'], { cwd: s.dir, env: s.env })).code, 0);
  const original = JSON.parse(await readFile(join(s.dir, 'b.json'), 'utf8')) as Record<string, unknown>;
  const cases: [string, (b: Record<string, unknown>) => void, string][] = [
    ['statement bit flipped', (b) => (b.enrolment = (b.enrolment as string).replace(/.$/, (c) => (c === '0' ? '1' : '0'))), 'ERR_ROSTER'],
    ['site keys replaced', (b) => (b.siteKeys = [toHex(generateKeyPair().publicKey)]), 'ERR_ROSTER'],
    ['gateway id changed', (b) => (b.gatewayId = 'gw-evil'), 'ERR_BUNDLE'],
    ['expiry extended', (b) => (b.expires = new Date(Date.parse(b.expires as string) + 86_400_000).toISOString()), 'ERR_BUNDLE'],
    ['unknown member', (b) => (b.extra = 1), 'ERR_BUNDLE'],
    ['key swapped', (b) => {
      const other = JSON.parse(readFileSync(join(s.dir, 'b2.json'), 'utf8')) as Record<string, unknown>;
      b.gatewayKey = other.gatewayKey;
    }, 'ERR_BUNDLE'],
  ];
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b2.json'], { cwd: s.dir, env: s.env })).code, 0);
  for (const [what, change, code] of cases) {
    const b = structuredClone(original);
    change(b);
    await writeFile(join(s.dir, 't.json'), JSON.stringify(b));
    const r = await oti(['gateway', 'apply-bundle', 't.json', '--data', 'data', '--json'], { cwd: s.dir });
    assert.equal(r.code, 1, what);
    assert.equal(r.json<{ error: { code: string } }>().error.code, code, what);
    assert.equal(existsSync(join(s.dir, 'data', 'site.json')), false, `${what}: nothing written`);
  }
  await writeFile(join(s.dir, 't.json'), 'not json');
  assert.equal(errorCode(await oti(['gateway', 'apply-bundle', 't.json', '--data', 'data'], { cwd: s.dir })), 'ERR_BUNDLE');
});

void test('an expired bundle is refused with ERR_BUNDLE_EXPIRED', async (t) => {
  const s = await makeSite(t);
  const info = JSON.parse(await readFile(join(s.siteDir, 'site.json'), 'utf8')) as { siteId: string; siteKeys: string[] };
  const key = await readKeyFile(join(s.siteDir, 'site.key'), { passphrase: PASS });
  const dayAgo = Date.now() - 86_400_000;
  const { bundle } = await createBundle({ site: new Signer(key.seed), siteId: info.siteId, siteKeys: [key.publicKey], gatewayId: 'gw-1', validForMs: 3_600_000, now: dayAgo });
  await writeFile(join(s.dir, 'old.json'), JSON.stringify(bundle), { mode: 0o600 });
  const r = await oti(['gateway', 'apply-bundle', 'old.json', '--data', 'data', '--json'], { cwd: s.dir });
  assert.equal(r.code, 1);
  assert.equal(r.json<{ error: { code: string } }>().error.code, 'ERR_BUNDLE_EXPIRED');
  assert.equal(existsSync(join(s.dir, 'old.json')), true, 'an expired bundle stays where it is');
});

void test('an encrypted bundle needs its passphrase: none (no terminal) is a usage error, a wrong one ERR_KEY_PASSPHRASE', async (t) => {
  const s = await makeSite(t);
  const env = { ...s.env, OTI_BUNDLE_PASSPHRASE: 'bundle secret' };
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json', '--encrypt'], { cwd: s.dir, env })).code, 0);
  assert.equal((await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data'], { cwd: s.dir })).code, 2);
  const wrong = await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data'], { cwd: s.dir, env: { OTI_BUNDLE_PASSPHRASE: 'nope' } });
  assert.equal(errorCode(wrong), 'ERR_KEY_PASSPHRASE');
  const ok = await oti(['gateway', 'apply-bundle', 'b.json', '--data', 'data', '--json'], { cwd: s.dir, env: { OTI_BUNDLE_PASSPHRASE: 'bundle secret' } });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.json<{ gatewayId: string }>().gatewayId, 'gw-1');
});

void test('a gateway that is not running: every API command exits 3 with ERR_GATEWAY_UNREACHABLE', async (t) => {
  const s = await makeSite(t);
  const api = ['--api', 'http://127.0.0.1:9'];
  const key = toHex(generateKeyPair().publicKey);
  for (const args of [['status'], ['events', 'tail'], ['receipt', 'door:1'], ['lock', 'list'], ['lock', 'enroll', '--site-dir', 'site', '--id', 'door', '--key', key, '--yes']]) {
    const r = await oti([...args, ...api, '--json'], { cwd: s.dir, env: s.env });
    assert.equal(r.code, 3, args.join(' '));
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'ERR_GATEWAY_UNREACHABLE', args.join(' '));
  }
});

/** The API routes the CLI uses, over a chain opened from a data folder (see the file comment). */
async function apiServer(t: TestContext, data: string): Promise<{ url: string; chain: Chain; close(): Promise<void> }> {
  const id = await loadOrCreateIdentity(data);
  const store = await LedgerStore.open(join(data, 'ledger'));
  const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment, sealDelayMs: 1 });
  const send = (res: ServerResponse, status: number, body: unknown, type = 'application/json'): void => {
    const b = body instanceof Uint8Array ? body : Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': type, 'content-length': b.length }).end(b);
  };
  const body = async (req: IncomingMessage): Promise<Uint8Array> => {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    return new Uint8Array(Buffer.concat(parts));
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = async (): Promise<void> => {
      if (req.method === 'POST' && url.pathname === '/roster') return send(res, 201, await handleRosterPost(chain, await body(req)));
      if (url.pathname === '/roster') return send(res, 200, rosterListing(chain.roster));
      if (url.pathname === '/status') return send(res, 200, { chain: { origin: chain.origin, size: chain.size } });
      if (url.pathname === '/events') {
        const after = Number(url.searchParams.get('after') ?? '-1');
        const events = [];
        for (let i = after + 1; i < chain.size; i++) {
          const b = decodeEntry(await chain.entry(i)).body;
          if (b.kind === 'lock-event') events.push({ index: i, id: `${b.event.lock}:${b.event.ctr}`, lock: b.event.lock, ctr: b.event.ctr, type: b.event.type, time: b.event.time });
        }
        return send(res, 200, { items: events, next: null });
      }
      const m = /^\/receipts\/(.+)$/.exec(url.pathname);
      if (m !== null) {
        const index = await chain.indexOf(decodeURIComponent(m[1] as string));
        if (index === undefined) return send(res, 404, { error: { code: 'ERR_NOT_FOUND', message: 'no such entry' } });
        return send(res, 200, await receiptFor(chain, index), 'application/cbor');
      }
      send(res, 404, { error: { code: 'ERR_NOT_FOUND', message: 'no route' } });
    };
    route().catch((e: unknown) => send(res, rosterStatus(e), { error: { code: isOtiError(e) ? e.code : 'ERR_INTERNAL', message: (e as Error).message } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await new Promise((r) => server.close(r));
    await chain.close();
    await store.close();
  };
  t.after(close);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, chain, close };
}

void test('gateway revoke of a gateway enrolled by bundle: its enrolment from --data or --bundle goes first; without either a coded error', async (t) => {
  const g = await makeGateway(t);
  const api = await apiServer(t, g.data);
  const A = ['--site-dir', 'site', '--id', 'gw-2', '--api', api.url, '--yes', '--json'];
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-2', '--out', 'c.json'], { cwd: g.dir, env: g.env })).code, 0);
  await writeFile(join(g.dir, 'c-kept.json'), await readFile(join(g.dir, 'c.json')));
  assert.equal((await oti(['gateway', 'apply-bundle', 'c.json', '--data', 'data2'], { cwd: g.dir })).code, 0);
  const unlisted = await oti(['gateway', 'revoke', ...A], { cwd: g.dir, env: g.env });
  assert.equal(errorCode(unlisted), 'ERR_NOT_FOUND');
  assert.match(unlisted.stderr, /--data DIR\) or its bundle \(--bundle FILE\)/);
  // --out with the bundle: the enrolment is written next to the revocation, and both submit in that order.
  const out = await oti(['gateway', 'revoke', '--site-dir', 'site', '--id', 'gw-2', '--bundle', 'c-kept.json', '--out', 'rev.cbor', '--yes'], { cwd: g.dir, env: g.env });
  assert.equal(out.code, 0, out.stderr);
  assert.ok(existsSync(join(g.dir, 'rev.cbor.enrolment.cbor')));
  const revoked = await oti(['gateway', 'revoke', ...A, '--data', 'data2'], { cwd: g.dir, env: g.env });
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(revoked.json<{ enrolment: { op: string } }>().enrolment.op, 'enroll');
  assert.equal(rosterListing(api.chain.roster).members.find((m) => m.id === 'gw-2')?.revoked, true);
});

function lockEvent(key: KeyPair, lock: string, ctr: number): Uint8Array {
  return coseSign1(new Signer(key.seed), encodeLockEvent({ lock, ctr, time: 1_700_000_000_000 + ctr, type: 'unlocked', cred: Uint8Array.of(1, 2) }));
}

void test('lock enroll/list/rotate/revoke, status, events, receipt and receipt verify against a gateway; verify and backup with the ledger in use', async (t) => {
  const g = await makeGateway(t);
  const api = await apiServer(t, g.data);
  const A = ['--api', api.url];
  const lockKey = generateKeyPair();

  const enrolled = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', '--json', ...A], { cwd: g.dir, env: g.env });
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.equal(typeof enrolled.json<{ index: number }>().index, 'number');
  // Without --yes and without a terminal, nothing is signed: a usage error.
  assert.equal((await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'back-door', '--key', toHex(generateKeyPair().publicKey), ...A], { cwd: g.dir, env: g.env })).code, 2);

  const list = await oti(['lock', 'list', '--json', ...A]);
  assert.deepEqual(list.json<{ members: { id: string }[] }>().members.map((m) => m.id), ['front-door']);

  for (let ctr = 1; ctr <= 5; ctr++) await api.chain.append({ kind: 'lock-event', cose: lockEvent(lockKey, 'front-door', ctr) });
  const status = await oti(['status', '--json', ...A]);
  assert.equal(status.json<{ chain: { size: number } }>().chain.size, api.chain.size);
  const events = await oti(['events', 'tail', '--lock', 'front-door', '--json', ...A]);
  assert.deepEqual(events.json<{ items: { ctr: number }[] }>().items.map((e) => e.ctr), [1, 2, 3, 4, 5]);

  const receipt = await oti(['receipt', 'front-door:3', '--out', 'r3.cbor', '--json', ...A], { cwd: g.dir });
  assert.equal(receipt.code, 0, receipt.stderr);
  const verified = await oti(['receipt', 'verify', 'r3.cbor', '--site-keys', 'site/site.json', '--json'], { cwd: g.dir });
  assert.equal(verified.code, 0, verified.stderr);
  assert.deepEqual([verified.json<{ lock: string }>().lock, verified.json<{ ctr: number }>().ctr, verified.json<{ provenance: string }>().provenance], ['front-door', 3, 'lock-signed']);
  // The data folder's site.json works as well; hex keys need --site.
  const siteKey = (JSON.parse(await readFile(join(g.siteDir, 'site.json'), 'utf8')) as { siteKeys: string[] }).siteKeys[0] as string;
  assert.equal((await oti(['receipt', 'verify', 'r3.cbor', '--site-keys', 'data'], { cwd: g.dir })).code, 0);
  assert.equal((await oti(['receipt', 'verify', 'r3.cbor', '--site-keys', siteKey, '--site', 'acme'], { cwd: g.dir })).code, 0);
  const wrongSite = await oti(['receipt', 'verify', 'r3.cbor', '--site-keys', toHex(generateKeyPair().publicKey), '--site', 'acme'], { cwd: g.dir });
  assert.equal(wrongSite.code, 1);
  assert.equal(errorCode(wrongSite), 'ERR_RECEIPT_INVALID');
  const bytes = await readFile(join(g.dir, 'r3.cbor'));
  bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 1;
  await writeFile(join(g.dir, 'bad.cbor'), bytes);
  assert.equal(errorCode(await oti(['receipt', 'verify', 'bad.cbor', '--site-keys', 'site'], { cwd: g.dir })), 'ERR_RECEIPT_INVALID');
  assert.equal(errorCode(await oti(['receipt', 'front-door:99', ...A])), 'ERR_NOT_FOUND');

  // The gateway holds the LevelDB lock: verify works on a copy, and so does backup.
  const v = await oti(['verify', '--data', 'data', '--json'], { cwd: g.dir });
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.json<{ ok: boolean; copy: boolean }>().copy, true);
  assert.equal(v.json<{ chains: { report: { lockSignatures: number } }[] }>().chains[0]?.report.lockSignatures, 5);
  const busy = await oti(['backup', '--data', 'data', '--out', 'b.otibak', '--json'], { cwd: g.dir, env: { OTI_BACKUP_PASSPHRASE: 'b' } });
  assert.equal(busy.code, 0, busy.stderr);
  assert.equal(busy.json<{ live: boolean }>().live, true);

  // Rotation and revocation, with the current key looked up through the API.
  const newKey = generateKeyPair();
  const rot = await oti(['lock', 'rotate', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(newKey.publicKey), '--yes', ...A], { cwd: g.dir, env: g.env });
  assert.equal(rot.code, 0, rot.stderr);
  assert.equal(toHex(api.chain.roster.get('lock', 'front-door')?.key ?? new Uint8Array()), toHex(newKey.publicKey));
  const unknown = await oti(['lock', 'revoke', '--site-dir', 'site', '--id', 'no-such-lock', '--yes', ...A], { cwd: g.dir, env: g.env });
  assert.equal(unknown.code, 1);
  assert.equal(errorCode(unknown), 'ERR_NOT_FOUND');
  const rev = await oti(['lock', 'revoke', '--site-dir', 'site', '--id', 'front-door', '--yes', '--json', ...A], { cwd: g.dir, env: g.env });
  assert.equal(rev.code, 0, rev.stderr);
  assert.equal(api.chain.roster.get('lock', 'front-door')?.revoked, true);
  // A statement the roster refuses (re-enrolling a revoked id) comes back as ERR_API with the gateway's code.
  const again = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', '--json', ...A], { cwd: g.dir, env: g.env });
  assert.equal(again.code, 1);
  assert.equal(again.json<{ error: { code: string } }>().error.code, 'ERR_API');

  // Statements written with --out and submitted later.
  const later = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'side-door', '--key', toHex(generateKeyPair().publicKey), '--unsigned', '--yes', '--out', 'side.cbor'], { cwd: g.dir, env: g.env });
  assert.equal(later.code, 0, later.stderr);
  assert.equal(api.chain.roster.get('lock', 'side-door'), undefined);
  assert.equal((await oti(['roster', 'submit', 'side.cbor', ...A], { cwd: g.dir })).code, 0);
  assert.equal(api.chain.roster.get('lock', 'side-door')?.unsigned, true);

  // Stopped gateway: verify opens the live files, lock list reads them, backup and restore round-trip.
  await api.close();
  const v2 = await oti(['verify', '--data', 'data', '--json'], { cwd: g.dir });
  assert.equal(v2.code, 0, v2.stderr);
  assert.equal(v2.json<{ copy: boolean }>().copy, false);
  const offline = await oti(['lock', 'list', '--all', '--data', 'data', '--json'], { cwd: g.dir });
  assert.deepEqual(offline.json<{ members: { id: string; revoked: boolean }[] }>().members.map((m) => `${m.id}:${m.revoked}`), ['gw-1:false', 'front-door:true', 'side-door:false']);
  const bEnv = { OTI_BACKUP_PASSPHRASE: 'backup pass' };
  const b = await oti(['backup', '--data', 'data', '--out', 'gw.otibak', '--json'], { cwd: g.dir, env: bEnv });
  assert.equal(b.code, 0, b.stderr);
  assert.equal(((await stat(join(g.dir, 'gw.otibak'))).mode & 0o777).toString(8), '600');
  assert.equal(errorCode(await oti(['restore', 'gw.otibak', '--data', 'restored'], { cwd: g.dir, env: { OTI_BACKUP_PASSPHRASE: 'wrong' } })), 'ERR_BACKUP');
  assert.equal(existsSync(join(g.dir, 'restored')), false, 'a failed restore leaves nothing');
  const tampered = await readFile(join(g.dir, 'gw.otibak'));
  tampered[tampered.length - 100] = (tampered[tampered.length - 100] as number) ^ 1;
  await writeFile(join(g.dir, 'bad.otibak'), tampered);
  assert.equal(errorCode(await oti(['restore', 'bad.otibak', '--data', 'restored'], { cwd: g.dir, env: bEnv })), 'ERR_BACKUP');
  assert.equal(existsSync(join(g.dir, 'restored')), false);
  const r = await oti(['restore', 'gw.otibak', '--data', 'restored', '--json'], { cwd: g.dir, env: bEnv });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await oti(['verify', '--data', 'restored'], { cwd: g.dir })).code, 0);
  assert.equal(((await stat(join(g.dir, 'restored', 'gateway.key'))).mode & 0o777).toString(8), '600');
  // Restoring over a data folder needs --force and a confirmation; the old folder is kept.
  assert.equal(errorCode(await oti(['restore', 'gw.otibak', '--data', 'restored'], { cwd: g.dir, env: bEnv })), 'ERR_ARGUMENT');
  assert.equal((await oti(['restore', 'gw.otibak', '--data', 'restored', '--force'], { cwd: g.dir, env: bEnv })).code, 2);
  assert.equal((await oti(['restore', 'gw.otibak', '--data', 'restored', '--force', '--yes'], { cwd: g.dir, env: bEnv })).code, 0);
  assert.ok((await readdir(g.dir)).some((n) => n.startsWith('restored.before-restore-')));
});

void test('oti ble scan reports Bluetooth unavailable with a reason and a non-zero exit where there is no adapter', async (t) => {
  const r = await oti(['ble', 'scan', '--seconds', '1', '--json']);
  if (r.code === 0) {
    t.skip('this machine has a working Bluetooth adapter');
    return;
  }
  assert.equal(r.code, 1);
  assert.equal(r.json<{ error: { code: string } }>().error.code, 'ERR_DRIVER_UNAVAILABLE');
});

void test('oti ports lists ports as JSON', async () => {
  const r = await oti(['ports', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Array.isArray(r.json<{ ports: unknown[] }>().ports));
});

void test('oti doctor: a pty pair with an echoing far end passes the loopback check; a missing port fails with a remedy and exit 1', async (t) => {
  const dir = await tempDir(t, 'oti-doctor-');
  const pty = await ptyPair(dir);
  t.after(() => pty.kill());
  // The far end echoes everything back, as a loopback plug would.
  const { SerialPort } = await import('serialport');
  const far = new SerialPort({ path: pty.lock, baudRate: 115200 });
  far.on('data', (d: Buffer) => far.write(d));
  t.after(() => new Promise<void>((r) => (far.isOpen ? far.close(() => r()) : r())));
  await new Promise<void>((r) => (far.isOpen ? r() : far.once('open', () => r())));

  await mkdir(join(dir, 'data'), { mode: 0o700 });
  const ok = await oti(['doctor', '--data', join(dir, 'data'), '--serial', pty.gateway, '--loopback', '--no-ble', '--fsync-files', '5', '--json']);
  const checks = ok.json<{ checks: { name: string; status: string; remedy?: string }[] }>().checks;
  const by = (name: string): { status: string; remedy?: string } | undefined => checks.find((c) => c.name === name);
  assert.equal(by(`serial ${pty.gateway}`)?.status, 'pass');
  assert.equal(by('data folder')?.status, 'pass');
  assert.ok(['pass', 'warn'].includes(by('storage fsync')?.status ?? ''), 'fsync measured');
  assert.equal(by('bluetooth')?.status, 'skip');
  assert.equal(by('clock')?.status, 'pass');
  assert.equal(by('signature verifier')?.status, 'pass', 'libsodium on this machine');
  for (const c of checks) if (c.status === 'fail' || c.status === 'warn') assert.ok(c.remedy !== undefined && c.remedy !== '', `${c.name} has a remedy`);

  const bad = await oti(['doctor', '--data', join(dir, 'data'), '--serial', join(dir, 'no-such-tty'), '--no-ble', '--fsync-files', '2', '--json']);
  assert.equal(bad.code, 1);
  const failed = bad.json<{ ok: boolean; checks: { name: string; status: string; remedy?: string }[] }>();
  assert.equal(failed.ok, false);
  const port = failed.checks.find((c) => c.name === `serial ${join(dir, 'no-such-tty')}`);
  assert.equal(port?.status, 'fail');
  assert.ok((port?.remedy ?? '').length > 0);
});

void test('full flow: site init → gateway enroll → gateway starts with the bundle → lock enroll → lock events → oti verify → oti receipt → oti receipt verify', { timeout: 120_000 }, async (t) => {
  const s = await makeSite(t);
  const boot = join(s.dir, 'boot');
  await mkdir(boot);
  const enrolled = await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-door', '--out', join(boot, 'oti-bundle.json')], { cwd: s.dir, env: s.env });
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const pty = await ptyPair(s.dir);
  t.after(() => pty.kill());
  const port = await new Promise<number>((r) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as AddressInfo).port;
      srv.close(() => r(p));
    });
  });
  const gw = spawn(process.execPath, [join(ROOT, 'dist/gateway/main.js'), '--dataDir', join(s.dir, 'data'), '--provisioning.bundle', join(boot, 'oti-bundle.json'), '--api.port', String(port), '--broker.port', '0', '--serial.ports', pty.gateway], {
    cwd: s.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    gw.kill('SIGTERM');
  });
  const A = ['--api', `http://127.0.0.1:${port}`];
  for (let i = 0; ; i++) {
    if ((await oti(['status', ...A])).code === 0) break;
    if (i > 300 || gw.exitCode !== null) assert.fail('the gateway did not start');
    await sleep(100);
  }
  assert.ok(existsSync(join(boot, 'oti-bundle.json.applied')), 'the bundle was applied and renamed');
  const lockKey = generateKeyPair();
  assert.equal((await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', ...A], { cwd: s.dir, env: s.env })).code, 0);
  const { SimLock } = await import('../../drivers/simlock.js');
  const { SerialSimLink } = await import('../../drivers/simlink.js');
  const lock = new SimLock({ id: 'front-door', seed: lockKey.seed, resendMs: 300 });
  const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 20 });
  link.start();
  t.after(async () => {
    lock.close();
    await link.close();
  });
  for (let i = 0; i < 10; i++) lock.record('unlocked');
  for (let i = 0; lock.acked.size < 10; i++) {
    if (i > 600) assert.fail('events were not acknowledged');
    await sleep(50);
  }
  const v = await oti(['verify', '--data', 'data', '--json'], { cwd: s.dir });
  assert.equal(v.code, 0, v.stderr);
  assert.equal((await oti(['receipt', 'front-door:7', '--out', 'r.cbor', ...A], { cwd: s.dir })).code, 0);
  const rv = await oti(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--json'], { cwd: s.dir });
  assert.equal(rv.code, 0, rv.stderr);
  assert.equal(rv.json<{ ctr: number }>().ctr, 7);

  // A rotation kept in a file cannot be replayed (docs/PROTOCOL.md §Roster rules): after a
  // rotation back to the first key, the kept rotation submitted again is not applied.
  const second = generateKeyPair();
  const r1 = await oti(['lock', 'rotate', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(second.publicKey), '--yes', '--out', 'r1.cbor', ...A], { cwd: s.dir, env: s.env });
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal((await oti(['roster', 'submit', 'r1.cbor', ...A], { cwd: s.dir })).code, 0);
  const back = await oti(['lock', 'rotate', '--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', ...A], { cwd: s.dir, env: s.env });
  assert.equal(back.code, 0, back.stderr);
  const replay = await oti(['roster', 'submit', 'r1.cbor', ...A], { cwd: s.dir });
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /rotate of lock front-door was applied before .*nothing was recorded/);
  // The lock's key for a second id: refused beside the chain's rules, the rule in the answer's details.
  const twin = await oti(['lock', 'enroll', '--site-dir', 'site', '--id', 'back-door', '--key', toHex(lockKey.publicKey), '--yes', '--out', 'twin.cbor'], { cwd: s.dir, env: s.env });
  assert.equal(twin.code, 0, twin.stderr);
  const posted = await fetch(`http://127.0.0.1:${port}/roster`, { method: 'POST', headers: { 'content-type': 'application/cbor' }, body: await readFile(join(s.dir, 'twin.cbor')) });
  assert.equal(posted.status, 422);
  const refusal = ((await posted.json()) as { error: { code: string; details?: { rule?: string } } }).error;
  assert.deepEqual([refusal.code, refusal.details?.rule], ['ERR_ROSTER', 'key-held']);
  const members = (await oti(['lock', 'list', '--json', ...A])).json<{ members: { id: string; key: string; statements: number }[] }>().members;
  assert.deepEqual(members.map((m) => [m.id, m.key, m.statements]), [['front-door', toHex(lockKey.publicKey), 3]]);
});

void test('oti doctor creates nothing, checks the identity and its enrolment expiry, and says whether the gateway runs', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-doctor-');
  const down = `http://127.0.0.1:${await new Promise<number>((r) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as AddressInfo).port;
      srv.close(() => r(p));
    });
  })}`;
  const common = ['--no-ble', '--fsync-files', '2', '--api', down, '--json'];
  type Checks = { checks: { name: string; status: string; detail: string; remedy?: string }[] };
  const by = (r: Run, name: string): { status: string; detail: string } | undefined => r.json<Checks>().checks.find((c) => c.name === name);

  const missing = await oti(['doctor', '--data', join(dir, 'data'), ...common]);
  assert.equal(by(missing, 'data folder')?.status, 'warn');
  assert.equal(existsSync(join(dir, 'data')), false, 'doctor created no data folder');
  assert.equal(by(missing, 'gateway running')?.status, 'warn', 'nothing answers: the gateway is not running');

  const s = await makeSite(t);
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-ok', '--out', 'ok.json'], { cwd: s.dir, env: s.env })).code, 0);
  assert.equal((await oti(['gateway', 'apply-bundle', 'ok.json', '--data', 'ok'], { cwd: s.dir })).code, 0);
  const fine = await oti(['doctor', '--data', join(s.dir, 'ok'), ...common]);
  assert.equal(by(fine, 'identity')?.status, 'pass', by(fine, 'identity')?.detail);
  assert.match(by(fine, 'identity')?.detail ?? '', /gateway gw-ok of site acme/);

  // An enrolment that has expired since it was applied fails.
  assert.equal((await oti(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-old', '--expires', '2s', '--out', 'old.json'], { cwd: s.dir, env: s.env })).code, 0);
  assert.equal((await oti(['gateway', 'apply-bundle', 'old.json', '--data', 'old'], { cwd: s.dir })).code, 0);
  await sleep(2100);
  const expired = await oti(['doctor', '--data', join(s.dir, 'old'), ...common]);
  assert.equal(expired.code, 1);
  assert.equal(by(expired, 'identity')?.status, 'fail');
  assert.match(by(expired, 'identity')?.detail ?? '', /expired/);
});
