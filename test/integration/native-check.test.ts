/**
 * deploy/native-check.ts on copies of the real prebuilt addons of this repository's native
 * dependencies: pruned for one architecture, only that architecture's Linux addons stay (their
 * ELF e_machine read here byte by byte) and nothing else under prebuilds/ (sodium-native's `.bare`
 * builds for the Bare runtime included), a foreign file fails the check, and a package without a
 * prebuild for the architecture is named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { ROOT } from '../support/oti-cli.js';

const CHECK = join(ROOT, 'dist', 'deploy', 'native-check.js');
const PACKAGES = ['classic-level', 'sodium-native', '@serialport/bindings-cpp'];

async function tree(dir: string): Promise<string> {
  for (const p of PACKAGES) {
    await cp(join(ROOT, 'node_modules', p, 'prebuilds'), join(dir, 'node_modules', p, 'prebuilds'), { recursive: true });
    await cp(join(ROOT, 'node_modules', p, 'package.json'), join(dir, 'node_modules', p, 'package.json'));
  }
  return dir;
}

/** Every file of the tree but the packages' package.json: what the prune left. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile() && e.name !== 'package.json') out.push(relative(dir, join(e.parentPath, e.name)));
  return out.sort();
}

async function check(dir: string, arch: string, prune: boolean): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [CHECK, dir, arch, ...(prune ? ['--prune'] : [])]);
    return { code: 0, out: stdout };
  } catch (e) {
    return { code: (e as { code: number }).code, out: (e as { stdout: string }).stdout };
  }
}

void test('pruned for arm64, only linux-arm64 glibc addons of machine aarch64 (0xB7) stay', async (t) => {
  const dir = await tree(await tempDir(t, 'oti-native-'));
  const before = await check(dir, 'arm64', false);
  assert.equal(before.code, 1, 'an unpruned tree holds addons of other machines');
  assert.match(before.out, /^BAD +x86-64 /m);
  assert.match(before.out, /^BAD +not ELF /m);
  assert.match(before.out, /^BAD +aarch64 +node_modules\/sodium-native\/prebuilds\/linux-arm64\/sodium-native\.bare \(Bare runtime only\)$/m);
  assert.match(before.out, /^BAD +aarch64 +node_modules\/sodium-native\/prebuilds\/android-arm64\/sodium-native\.node \(another platform\)$/m);

  const after = await check(dir, 'arm64', true);
  assert.equal(after.code, 0, after.out);
  const left = await files(dir);
  assert.deepEqual(new Set(left.map((f) => f.split('/prebuilds/')[0])), new Set(PACKAGES.map((p) => `node_modules/${p}`)), 'each package keeps an addon');
  for (const p of PACKAGES) assert.deepEqual(await readdir(join(dir, 'node_modules', p, 'prebuilds')), ['linux-arm64'], `${p}: the emptied platform folders are gone`);
  for (const f of left) {
    assert.match(f, /\/prebuilds\/linux-arm64\/[^/]+\.node$/);
    assert.doesNotMatch(f, /musl/);
    const b = await readFile(join(dir, f));
    assert.equal(b.readUInt32BE(0), 0x7f454c46, `${f} is ELF`);
    assert.equal(b.readUInt16LE(18), 0xb7, `${f} is aarch64`);
  }
});

void test('pruned for armhf, the arm (0x28) addons stay and sodium-native is named as having none', async (t) => {
  const dir = await tree(await tempDir(t, 'oti-native-'));
  const r = await check(dir, 'armhf', true);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^none armhf +sodium-native: no prebuilt addon/m);
  const left = await files(dir);
  assert.ok(left.some((f) => f.startsWith('node_modules/classic-level/prebuilds/linux-arm/')));
  for (const f of left) assert.equal((await readFile(join(dir, f))).readUInt16LE(18), 0x28, `${f} is arm`);
});
