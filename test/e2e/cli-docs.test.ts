/**
 * Every command documented in docs/CLI.md, run as the real `oti` binary against a live gateway
 * process (the one `npm start` runs), so that the CLI, its documentation and the gateway's API
 * cannot drift apart: the documented commands must be exactly those `oti --help` lists, and each
 * of them is run here, the way a technician would, with the exit code and output it documents.
 *
 * A command added to docs/CLI.md or to `oti` without a run here fails the first assertion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFile, readFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { oti as runOti, errorCode, ROOT, type Run } from '../support/oti-cli.js';
import { ptyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { generateKeyPair, toHex } from '../../ledger/crypto.js';
import { waitUntil } from '../support/wait.js';

const SITE_PASS = 'site passphrase for the documented commands';
const PRIVACY_PASS = 'privacy passphrase for the documented commands';
const TOKEN = 'reader-token-0123456789abcdef';
const PRIVACY_TOKEN = 'privacy-token-0123456789abcdef';

/** Command names in the docs/CLI.md §Commands table: the words after `oti` before any option or placeholder. */
async function documentedCommands(): Promise<string[]> {
  const doc = await readFile(join(ROOT, 'docs', 'CLI.md'), 'utf8');
  const table = doc.slice(doc.indexOf('## Commands'), doc.indexOf('\n## ', doc.indexOf('## Commands') + 1));
  const names = new Set<string>();
  for (const row of table.split('\n').filter((l) => l.startsWith('| `oti '))) {
    const cell = row.split(' | ')[0] ?? '';
    for (const m of cell.matchAll(/`oti ([^`]+)`/g)) {
      const words: string[] = [];
      for (const w of (m[1] as string).split(' ')) {
        if (!/^[a-z][a-z-]*$/.test(w)) break;
        words.push(w);
      }
      names.add(words.join(' '));
    }
  }
  return [...names].sort();
}

/** Command names `oti --help` lists. */
async function listedCommands(): Promise<string[]> {
  const r = await runOti(['--help']);
  assert.equal(r.code, 0);
  const after = r.stdout.slice(r.stdout.indexOf('Commands:'));
  return [...after.matchAll(/^ {2}([a-z][a-z -]*?) {2,}/gm)].map((m) => (m[1] as string).trim()).sort();
}

/** mosquitto_sub logging in as `user`: 0 once it receives one message, non-zero when refused. */
function mosquittoSub(port: number, user: string, password: string, topic: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-t', topic, '-C', '1', '-W', '20', '-v']);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

void test('every command of docs/CLI.md runs against a live gateway as documented', { timeout: 300_000 }, async (t) => {
  const documented = await documentedCommands();
  assert.deepEqual(documented, await listedCommands(), 'docs/CLI.md documents exactly the commands oti has');

  const dir = await tempDir(t, 'oti-cli-docs-');
  const ran = new Set<string>();
  const env = { OTI_PASSPHRASE: SITE_PASS, OTI_PRIVACY_PASSPHRASE: PRIVACY_PASS, OTI_BACKUP_PASSPHRASE: 'backup passphrase 12345', OTI_MQTT_PASSWORD: 'mqtt-password-1' };
  /** Runs `oti <name> ...args` in the test folder and checks its exit code. */
  const run = async (name: string, args: readonly string[], code = 0, more: Record<string, string> = {}): Promise<Run> => {
    const r = await runOti([...name.split(' '), ...args], { cwd: dir, env: { ...env, ...more } });
    assert.equal(r.code, code, `oti ${name} ${args.join(' ')} exited ${String(r.code)}: ${r.stderr}`);
    ran.add(name);
    return r;
  };

  // Site, privacy keyring, a gateway's bundle applied to its data folder.
  await run('site init', ['--site', 'acme', '--out', 'site']);
  await run('privacy init', ['--site-dir', 'site', '--json']);
  await run('gateway enroll', ['--site-dir', 'site', '--id', 'gw-door', '--out', 'gw-door.bundle.json']);
  const applied = await run('gateway apply-bundle', ['gw-door.bundle.json', '--data', 'data']);
  assert.match(applied.stdout, /compare them with the site key fingerprint that oti site init printed$/m);
  await copyFile(join(dir, 'site', 'privacy.json'), join(dir, 'data', 'privacy.json'));

  // The gateway, with one lock on a serial line.
  const pty = await ptyPair(dir, 'door');
  t.after(() => pty.kill());
  // A second line, for a lock simulated with `oti lock simulate`.
  const simPty = await ptyPair(dir, 'sim');
  t.after(() => simPty.kill());
  const apiPort = await freePort();
  const api = ['--api', `http://127.0.0.1:${apiPort}`, '--token', TOKEN];
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir: join(dir, 'data'),
    broker: { host: '127.0.0.1', port: 0 },
    api: { port: apiPort, token: TOKEN, privacyToken: PRIVACY_TOKEN },
    serialPorts: [pty.gateway, simPty.gateway],
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
    more: { discovery: { enabled: false } },
  });
  let gw: GatewayProcess | undefined = startGateway(['--config', config]);
  t.after(() => gw?.proc.kill('SIGKILL'));
  const brokerPort = (await gw.waitForLog('broker', (l) => l.msg.startsWith('MQTT broker listening'))).port as number;
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));

  const lockKey = generateKeyPair();
  await run('lock enroll', ['--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', ...api]);
  const lock = new SimLock({ id: 'front-door', seed: lockKey.seed, resendMs: 300, fw: 'fw-2.1' });
  const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 20 });
  link.start();
  t.after(async () => {
    lock.close();
    await link.close();
  });
  for (let i = 0; i < 5; i++) lock.record(i % 2 === 0 ? 'unlocked' : 'locked');
  await waitUntil('five events acknowledged', () => lock.acked.size === 5);

  // Enrolling it again with the same key records nothing and says so.
  const sizeBefore = (await run('status', ['--json', ...api])).json<{ chain: { size: number } }>().chain.size;
  const again = await run('lock enroll', ['--site-dir', 'site', '--id', 'front-door', '--key', toHex(lockKey.publicKey), '--yes', ...api]);
  assert.match(again.stdout, /already enrolled with this key/);
  assert.equal((await run('status', ['--json', ...api])).json<{ chain: { size: number } }>().chain.size, sizeBefore, 'no duplicate roster entry');
  // A gateway error's code is printed once.
  const missing = await run('receipt', ['no-such-lock:1', ...api], 1);
  assert.equal(missing.stderr.match(/ERR_NOT_FOUND/g)?.length, 1, missing.stderr);
  const listed = await run('lock list', ['--json', ...api]);
  assert.ok(listed.json<{ members: { id: string }[] }>().members.some((m) => m.id === 'front-door'));
  await run('lock enroll', ['--site-dir', 'site', '--id', 'back-door', '--key', toHex(generateKeyPair().publicKey), '--yes', '--out', 'back-door.cbor']);
  await run('roster submit', ['back-door.cbor', ...api]);
  const status = await run('status', ['--json', ...api]);
  assert.equal(status.json<{ gateway: string }>().gateway, 'gw-door');
  const events = await run('events tail', ['--lock', 'front-door', '--json', ...api]);
  assert.deepEqual(events.json<{ items: { ctr: number }[] }>().items.filter((e) => e.ctr !== undefined).map((e) => e.ctr), [1, 2, 3, 4, 5]);
  await run('receipt', ['front-door:3', '--out', 'r3.cbor', ...api]);
  const verified = await run('receipt verify', ['r3.cbor', '--site-keys', 'site', '--json']);
  assert.equal(verified.json<{ ctr: number }>().ctr, 3);
  await run('receipt', ['front-door:3', '--format', 'tlog-proof', '--out', 'r3.tlog-proof', ...api]);
  assert.equal((await run('receipt verify', ['r3.tlog-proof', '--site-keys', 'site', '--json'])).json<{ ctr: number }>().ctr, 3);
  const chains = await run('verify', ['--data', 'data', '--json']);
  assert.equal(chains.json<{ ok: boolean }>().ok, true);
  const exported = await run('export', ['--data', 'data', '--out', 'tlog', '--json']);
  const tree = exported.json<{ chains: { origin: string; size: number }[] }>().chains[0]!;
  assert.ok(tree.size > 0);
  assert.match(await readFile(join(dir, 'tlog', tree.origin, 'checkpoint'), 'utf8'), new RegExp(`^${tree.origin}\n${tree.size}\n`));
  await run('lock rotate', ['--site-dir', 'site', '--id', 'back-door', '--key', toHex(generateKeyPair().publicKey), '--yes', ...api]);
  await run('lock revoke', ['--site-dir', 'site', '--id', 'back-door', '--yes', ...api]);
  // The chain grew since r3.cbor was made: a consistency proof ties its checkpoint to today's.
  const r3Size = verified.json<{ checkpointSize: number }>().checkpointSize;
  const proof = await run('proof consistency', ['--from', String(r3Size), '--out', 'p.json', '--json', ...api]);
  assert.equal(proof.json<{ checked: boolean }>().checked, true);
  assert.equal((await run('receipt verify', ['r3.cbor', '--site-keys', 'site', '--newer', 'p.json', '--json'])).json<{ heldSize: number }>().heldSize, proof.json<{ to: number }>().to);
  await run('gateway enroll', ['--site-dir', 'site', '--id', 'gw-spare', '--out', 'gw-spare.bundle.json']);
  await mkdir(join(dir, 'spare'), { mode: 0o700 });
  await run('gateway apply-bundle', ['gw-spare.bundle.json', '--data', 'spare']);
  // This gateway's roster does not list the spare (enrolled by bundle): revoke submits its enrolment, from its data folder, first.
  const revoked = await run('gateway revoke', ['--site-dir', 'site', '--id', 'gw-spare', '--data', 'spare', '--yes', '--json', ...api]);
  assert.equal(revoked.json<{ enrolment: { op: string } }>().enrolment.op, 'enroll');
  // A simulated lock on an enrolled site: its key (kept in its state file) enrolled first, then
  // it runs until two of its events are acknowledged.
  const simKey = generateKeyPair();
  await writeFile(join(dir, 'sim-1.simlock.json'), `${JSON.stringify({ seed: toHex(simKey.seed), next: 1 })}\n`, { mode: 0o600 });
  await run('lock enroll', ['--site-dir', 'site', '--id', 'sim-1', '--key', toHex(simKey.publicKey), '--yes', ...api]);
  const simulated = await run('lock simulate', ['--id', 'sim-1', '--port', simPty.lock, '--rate', '20', '--count', '2', '--json']);
  assert.ok(simulated.json<{ acked: number; next: number }>().acked >= 2);
  await run('ports', ['--json']);
  // No Bluetooth adapter here: a failure with its reason, never a usage error.
  const ble = await runOti(['ble', 'scan', '--seconds', '1'], { cwd: dir });
  assert.ok(ble.code === 0 || ble.code === 1, `oti ble scan: ${ble.stderr}`);
  ran.add('ble scan');
  const doctor = await runOti(['doctor', '--config', config, '--no-ble', '--fsync-files', '5', '--json'], { cwd: dir });
  assert.ok(doctor.code === 0 || doctor.code === 1, `oti doctor: ${doctor.stderr}`);
  const checks = doctor.json<{ checks: { name: string; status: string }[] }>().checks;
  assert.equal(checks.find((c) => c.name === 'gateway running')?.status, 'pass', 'doctor sees the running gateway');
  assert.equal(checks.find((c) => c.name === 'identity')?.status, 'pass', 'and its identity');
  ran.add('doctor');
  // Run against a live archive on a private MariaDB in test/e2e/archive.test.ts and archive-cosign.test.ts.
  for (const c of ['archive events', 'archive gaps', 'archive chains', 'archive cosignatures', 'archive receipt']) ran.add(c);

  // Shell completion: a script bash accepts, which completes what oti has.
  const completion = await run('completion', ['bash']);
  const typed = await promisify(execFile)('bash', ['-c', `${completion.stdout}\nCOMP_WORDS=(oti mqtt user ''); COMP_CWORD=3; _oti; echo "\${COMPREPLY[*]}"`]);
  assert.match(typed.stdout, /\badd\b.*\blist\b.*\bpasswd\b.*\bremove\b/);

  // MQTT users, taken up by the running broker at the next login.
  const users = ['--file', join(dir, 'data', 'mqtt-users.json')];
  await run('mqtt user add', ['dashboard', '--role', 'readonly', ...users]);
  const topic = 'oti/acme/gateways/+/state';
  assert.equal((await mosquittoSub(brokerPort, 'dashboard', 'mqtt-password-1', topic)).code, 0, 'the new user logs in at once');
  const userList = await run('mqtt user list', ['--json', ...users]);
  assert.deepEqual(userList.json<{ users: { username: string; role: string }[] }>().users, [{ username: 'dashboard', role: 'readonly' }]);
  await run('mqtt user passwd', ['dashboard', ...users], 0, { OTI_MQTT_PASSWORD: 'mqtt-password-2' });
  assert.notEqual((await mosquittoSub(brokerPort, 'dashboard', 'mqtt-password-1', topic)).code, 0, 'the old password is refused');
  assert.equal((await mosquittoSub(brokerPort, 'dashboard', 'mqtt-password-2', topic)).code, 0, 'the new one works');
  await run('mqtt user remove', ['dashboard', ...users]);
  assert.notEqual((await mosquittoSub(brokerPort, 'dashboard', 'mqtt-password-2', topic)).code, 0, 'a removed user is refused');
  assert.equal(errorCode(await run('mqtt user remove', ['dashboard', ...users], 1)), 'ERR_NOT_FOUND');

  // Privacy, with the privacy token.
  const person = await run('privacy person add', ['--site-dir', 'site', '--field', 'name=Alice', '--token', PRIVACY_TOKEN, '--api', `http://127.0.0.1:${apiPort}`, '--json']);
  const personId = person.json<{ person: string }>().person;
  await run('privacy erase', [personId, '--yes', '--token', PRIVACY_TOKEN, '--api', `http://127.0.0.1:${apiPort}`, '--json']);
  await run('privacy rotate', ['--site-dir', 'site', '--json']);

  // The gateway stopped: what needs the data folder to itself.
  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, gw.stderr());
  gw = undefined;
  await run('privacy show', ['--site-dir', 'site', '--data', 'data', '--json']);
  // No equivocation on this site: nothing stored, nothing to clear.
  assert.deepEqual((await run('evidence list', ['--data', 'data', '--json'])).json<{ compromised: unknown[]; evidence: unknown[] }>(), { compromised: [], evidence: [] });
  assert.equal(errorCode(await run('evidence clear', ['--data', 'data', '--gateway', 'gw-spare', '--yes'], 1)), 'ERR_NOT_FOUND');
  await run('backup', ['--data', 'data', '--out', 'gw-door.otibak']);
  await run('restore', ['gw-door.otibak', '--data', 'restored']);
  assert.equal((await run('verify', ['--data', 'restored', '--json'])).json<{ ok: boolean }>().ok, true);
  // A gateway whose ledger is gone and cannot be recovered: the operator accepts the loss.
  await rm(join(dir, 'restored', 'ledger'), { recursive: true });
  const accepted = await run('ledger accept-loss', ['--data', 'restored', '--yes', '--json']);
  assert.ok(accepted.json<{ recordSize: number }>().recordSize > 0);

  assert.deepEqual([...ran].sort(), documented, 'every documented command was run');
});
