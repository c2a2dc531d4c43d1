/**
 * The real `oti` given wrong input: each refusal is coded, names the option to use, and changes
 * nothing. A mistyped --data creates no ledger, a wrong backup --out is not a raw ENOENT/EEXIST,
 * an unreachable address says why (refused, a blocked port) and which service and option, and the
 * installed `bin/oti` reads the installed configuration.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { freePort } from '../support/gateway-process.js';
import { errorCode, otiIn, otiSite, ROOT, type Run } from '../support/oti-cli.js';

const PASS = 'site passphrase for the refusals test';

void test('a data folder without a ledger is refused by every command that reads one, and none is created', async (t) => {
  const dir = await otiSite(t, 'oti-cli-noledger-', PASS, { gateway: true });
  const reads = (data: string): string[][] => [
    ['export', '--data', data, '--out', 'tlog'],
    ['lock', 'list', '--data', data],
    ['evidence', 'list', '--data', data],
    ['evidence', 'clear', '--data', data, '--gateway', 'gw-2', '--yes'],
    ['verify', '--data', data],
  ];
  // A mistyped folder, and a gateway's folder whose ledger is not there (yet).
  for (const data of ['nosuch', 'data']) {
    for (const args of reads(data)) {
      const r = await otiIn(args, dir);
      assert.equal(r.code, 1, `oti ${args.join(' ')}: ${r.stderr}`);
      assert.equal(errorCode(r), 'ERR_NOT_FOUND', `oti ${args.join(' ')}: ${r.stderr}`);
    }
  }
  assert.equal(existsSync(join(dir, 'nosuch')), false, 'no folder made at a mistyped --data');
  assert.equal(existsSync(join(dir, 'data', 'ledger')), false, 'no ledger made in the data folder');
  assert.equal(existsSync(join(dir, 'tlog')), false);

  // A ledger folder that lost its CURRENT file: LevelDB would start an empty database over it.
  await mkdir(join(dir, 'data', 'ledger'));
  await writeFile(join(dir, 'data', 'ledger', '000005.ldb'), 'table bytes');
  const r = await otiIn(['export', '--data', 'data', '--out', 'tlog'], dir);
  assert.equal(errorCode(r), 'ERR_STORE_CORRUPT', r.stderr);
  assert.deepEqual(await readdir(join(dir, 'data', 'ledger')), ['000005.ldb'], 'the folder is left as it was');
});

void test('backup: an existing --out, a missing --data or --out folder are coded errors with a remedy; nothing is written', async (t) => {
  const dir = await otiSite(t, 'oti-cli-backup-', PASS, { gateway: true });
  const env = { OTI_BACKUP_PASSPHRASE: 'backup passphrase' };
  await writeFile(join(dir, 'b1.otibak'), 'an older backup');
  const cases: [string[], string, RegExp][] = [
    [['--data', 'data', '--out', 'b1.otibak'], 'ERR_ARGUMENT', /b1\.otibak already exists; choose another --out, or add --force/],
    [['--data', 'nosuch', '--out', 'b2.otibak'], 'ERR_NOT_FOUND', /no data folder nosuch: --data names/],
    [['--data', 'data', '--out', join('no-folder', 'b3.otibak')], 'ERR_NOT_FOUND', /the folder no-folder does not exist; create it or choose another --out/],
    [['--data', 'data', '--out', 'data'], 'ERR_ARGUMENT', /data is a folder; --out names the backup file/],
  ];
  for (const [args, code, message] of cases) {
    const r = await otiIn(['backup', ...args], dir, env);
    assert.equal(errorCode(r), code, r.stderr);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /EEXIST|ENOENT|ERR_INTERNAL/);
  }
  assert.equal(await readFile(join(dir, 'b1.otibak'), 'utf8'), 'an older backup', 'the existing file is untouched');
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.otibak')), ['b1.otibak']);
  assert.equal((await otiIn(['backup', '--data', 'data', '--out', 'b1.otibak', '--force'], dir, env)).code, 0, '--force overwrites');
});

void test('passphrase and password prompts name the option the command has', async (t) => {
  const dir = await otiSite(t, 'oti-cli-pass-', PASS, { gateway: false });
  const mqtt = await otiIn(['mqtt', 'user', 'add', 'bob', '--role', 'app', '--file', 'users.json'], dir);
  assert.equal(errorCode(mqtt), 'ERR_USAGE');
  assert.match(mqtt.stderr, /set OTI_MQTT_PASSWORD, pass --password-file FILE, or run on a terminal/);
  const bundle = await otiIn(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-2', '--encrypt'], dir, { OTI_PASSPHRASE: PASS });
  assert.equal(errorCode(bundle), 'ERR_USAGE');
  assert.match(bundle.stderr, /pass --bundle-passphrase-file FILE/);
});

void test('an address that cannot be reached says why, and names the service and the option', async (t) => {
  const dir = await tempDir(t, 'oti-cli-unreach-');
  const closed = await freePort();
  const refused = await otiIn(['status', '--api', `http://127.0.0.1:${closed}`], dir);
  assert.equal(refused.code, 3);
  assert.match(refused.stderr, /cannot reach the gateway at http:\/\/127\.0\.0\.1:\d+ \(connection refused: nothing listens on that port, ECONNREFUSED\): is it running\? \(systemctl status oti-gateway; --api or \$OTI_API_URL sets the address\)/);
  const blocked = await otiIn(['status', '--api', 'http://127.0.0.1:9'], dir);
  assert.equal(blocked.code, 3);
  assert.match(blocked.stderr, /a port that fetch refuses to connect to/);
  assert.doesNotMatch(blocked.stderr, /fetch failed/);
  const archive = await otiIn(['archive', 'chains', '--archive', `http://127.0.0.1:${closed}`], dir);
  assert.equal(archive.code, 3);
  assert.match(archive.stderr, /cannot reach the archive at .*npm run archive.*--archive or \$OTI_ARCHIVE_URL sets the address/);
  assert.doesNotMatch(archive.stderr, /oti-gateway|--api/);
  assert.match((await otiIn(['archive', 'chains', '--archive', 'nonsense'], dir)).stderr, /--archive must be an http\(s\) URL/);
});

void test('usage: a negative --expires, a bundle enrolling another gateway, doctor --no-ble say what is wrong', async (t) => {
  const dir = await otiSite(t, 'oti-cli-usage-', PASS, { gateway: false });
  const env = { OTI_PASSPHRASE: PASS };
  for (const args of [['--expires', '-5d'], ['--expires=-5d']]) {
    const r = await otiIn(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-2', ...args], dir, env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /negative/, r.stderr);
    assert.doesNotMatch(r.stderr, /ambiguous/);
  }
  assert.equal((await otiIn(['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-2', '--out', 't1.json'], dir, env)).code, 0);
  const bundle = JSON.parse(await readFile(join(dir, 't1.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 't1.json'), JSON.stringify({ ...bundle, gatewayId: 'gw-9' }));
  const other = await otiIn(['gateway', 'apply-bundle', 't1.json', '--data', 'data'], dir);
  assert.equal(errorCode(other), 'ERR_BUNDLE');
  assert.match(other.stderr, /^oti: t1\.json does not enrol gateway gw-9: its signed statement is op "enroll" for gateway gw-2 \[ERR_BUNDLE\]$/m);

  const doctor = await otiIn(['doctor', '--data', dir, '--no-ble', '--fsync-files', '1', '--api', `http://127.0.0.1:${await freePort()}`, '--json'], dir);
  assert.deepEqual(doctor.json<{ checks: { name: string; status: string; detail: string }[] }>().checks.find((c) => c.name === 'bluetooth'), { name: 'bluetooth', status: 'skip', detail: '--no-ble was given' });
});

void test('oti ble scan on a kernel without Bluetooth says so and does not suggest rfkill or setcap', async (t) => {
  if (existsSync('/sys/class/bluetooth')) {
    t.skip('this kernel has Bluetooth (/sys/class/bluetooth exists)');
    return;
  }
  const r = await otiIn(['ble', 'scan', '--seconds', '1'], ROOT);
  assert.equal(errorCode(r), 'ERR_DRIVER_UNAVAILABLE');
  assert.match(r.stderr, /the kernel has no Bluetooth\); use a kernel built with Bluetooth/);
  assert.doesNotMatch(r.stderr, /rfkill|setcap/);
});

/** The installed `bin/oti` (deploy/bin/oti) run in a release tree made of links to this checkout. */
function installedOti(bin: string, args: readonly string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(bin, 'oti'), args, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', OTI_NODE: process.execPath, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, json: <T>() => JSON.parse(stdout) as T }));
  });
}

void test('the installed oti reads the installed configuration when OTI_CONFIG is unset; --config and OTI_CONFIG= win', async (t) => {
  const dir = await tempDir(t, 'oti-cli-installed-');
  await mkdir(join(dir, 'release', 'bin'), { recursive: true });
  for (const f of ['oti', 'oti-node']) await copyFile(join(ROOT, 'deploy', 'bin', f), join(dir, 'release', 'bin', f));
  await symlink(join(ROOT, 'dist'), join(dir, 'release', 'dist'));
  const installed = join(dir, 'config.yaml');
  await writeFile(installed, `dataDir: ${join(dir, 'installed-data')}\nble:\n  enabled: false\n`);
  const doctor = ['doctor', '--fsync-files', '1', '--api', `http://127.0.0.1:${await freePort()}`, '--json'];
  const dataChecked = async (env: Record<string, string>, more: string[] = []): Promise<string> => {
    const r = await installedOti(join(dir, 'release', 'bin'), [...doctor, ...more], env);
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    return r.json<{ checks: { name: string; detail: string }[] }>().checks.find((c) => c.name === 'data folder')?.detail ?? '';
  };
  assert.match(await dataChecked({ OTI_INSTALLED_CONFIG: installed }), new RegExp(`^${join(dir, 'installed-data')} does not exist yet`));
  const other = join(dir, 'other.yaml');
  await writeFile(other, `dataDir: ${join(dir, 'other-data')}\n`);
  assert.match(await dataChecked({ OTI_INSTALLED_CONFIG: installed, OTI_CONFIG: other }), /other-data does not exist yet/);
  assert.match(await dataChecked({ OTI_INSTALLED_CONFIG: installed }, ['--config', other]), /other-data does not exist yet/);
  assert.doesNotMatch(await dataChecked({ OTI_INSTALLED_CONFIG: installed, OTI_CONFIG: '' }), /installed-data/);
  assert.doesNotMatch(await dataChecked({ OTI_INSTALLED_CONFIG: join(dir, 'absent.yaml') }), /installed-data/);
});
