/**
 * The native addons of a release tree, checked for one architecture (`npm run release`):
 *
 *   node dist/deploy/native-check.js <tree> <amd64|arm64|armhf> [--prune]
 *
 * Lists every `*.node` file under <tree>/node_modules with the machine its ELF header names.
 * With --prune, files for other machines or systems (other prebuilds, a build/ made on this
 * host for another architecture, musl variants) and the addons of packages that Linux never loads
 * (NOT_ON_LINUX) are deleted first. Then each native package must keep at least one addon of the
 * target machine. A package the gateway can run without (OPTIONAL: it falls back, see
 * docs/INSTALL.md §Architectures) is reported as `none`; any other package without one, or a
 * wrong-machine addon left anywhere, fails the check (exit 1).
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { MACHINES, MACHINE_NAMES, readElfHeader, type DebianArch } from './elf.js';

/** Native packages whose addon only other systems load, with why: pruned, reported as `n/a`. */
const NOT_ON_LINUX: Readonly<Record<string, string>> = {
  '@abandonware/noble': 'its addon serves the macOS and Windows bindings; on Linux noble uses the HCI socket addon',
};

/** Native packages the gateway runs without, with what it does instead. */
const OPTIONAL: Readonly<Record<string, string>> = {
  'sodium-native': 'Ed25519 verification falls back to node:crypto',
};

/** Node's name of each architecture (process.arch), as in prebuilds/linux-<arch>/. */
const NODE_ARCH: Readonly<Record<DebianArch, string>> = { amd64: 'x64', arm64: 'arm64', armhf: 'arm' };

interface Addon {
  readonly path: string;
  readonly pkg: string;
  readonly machine: number | undefined;
}

async function findAddons(dir: string, out: string[] = []): Promise<string[]> {
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, d.name);
    if (d.isDirectory()) await findAddons(full, out);
    else if (d.isFile() && d.name.endsWith('.node')) out.push(full);
  }
  return out;
}

/** The package an addon belongs to: the path up to its last node_modules/<name> (or @scope/name). */
function packageOf(rel: string): string {
  const parts = rel.split(sep);
  const i = parts.lastIndexOf('node_modules');
  const name = parts[i + 1] ?? '';
  return name.startsWith('@') ? `${name}/${parts[i + 2] ?? ''}` : name;
}

async function addons(tree: string): Promise<Addon[]> {
  const found = await findAddons(join(tree, 'node_modules'));
  return Promise.all(found.map(async (path) => ({ path: relative(tree, path), pkg: packageOf(relative(tree, path)), machine: (await readElfHeader(path))?.machine })));
}

/** Packages that ship native code: a binding.gyp or a prebuilds/ folder at their root. */
async function nativePackages(tree: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (nm: string): Promise<void> => {
    for (const d of await readdir(nm, { withFileTypes: true }).catch(() => [])) {
      if (!d.isDirectory() || d.name.startsWith('.')) continue;
      if (d.name.startsWith('@')) {
        for (const s of await readdir(join(nm, d.name), { withFileTypes: true })) if (s.isDirectory()) await visitPkg(join(nm, d.name, s.name), `${d.name}/${s.name}`);
      } else await visitPkg(join(nm, d.name), d.name);
    }
  };
  const visitPkg = async (dir: string, name: string): Promise<void> => {
    const has = async (f: string): Promise<boolean> => stat(join(dir, f)).then(() => true, () => false);
    if ((await has('binding.gyp')) || (await has('prebuilds'))) out.push(name);
    await visit(join(dir, 'node_modules'));
  };
  await visit(join(tree, 'node_modules'));
  return [...new Set(out)].sort();
}

async function main(): Promise<number> {
  const [tree, arch, flag] = process.argv.slice(2);
  if (tree === undefined || arch === undefined || !(arch in MACHINES)) {
    process.stderr.write('usage: native-check <tree> <amd64|arm64|armhf> [--prune]\n');
    return 2;
  }
  const want = MACHINES[arch as DebianArch];
  const prebuilds = `prebuilds${sep}linux-${NODE_ARCH[arch as DebianArch]}${sep}`;
  const foreign = (a: Addon): boolean => a.machine !== want || /musl/.test(a.path) || (a.path.includes(`prebuilds${sep}`) && !a.path.includes(prebuilds));
  if (flag === '--prune') {
    for (const a of await addons(tree)) if (foreign(a) || Object.hasOwn(NOT_ON_LINUX, a.pkg)) await rm(join(tree, a.path));
  }
  const left = await addons(tree);
  let ok = true;
  for (const a of left) {
    const name = a.machine === undefined ? 'not ELF' : (MACHINE_NAMES[a.machine] ?? `machine 0x${a.machine.toString(16)}`);
    const good = !foreign(a);
    ok &&= good;
    process.stdout.write(`${good ? 'ok  ' : 'BAD '} ${name.padEnd(8)} ${a.path}\n`);
  }
  for (const pkg of await nativePackages(tree)) {
    if (left.some((a) => a.pkg === pkg && a.machine === want)) continue;
    const notUsed = Object.hasOwn(NOT_ON_LINUX, pkg) ? NOT_ON_LINUX[pkg] : undefined;
    const fallback = Object.hasOwn(OPTIONAL, pkg) ? OPTIONAL[pkg] : undefined;
    if (notUsed !== undefined) process.stdout.write(`n/a  ${arch.padEnd(8)} ${pkg}: ${notUsed}\n`);
    else if (fallback !== undefined) process.stdout.write(`none ${arch.padEnd(8)} ${pkg}: no prebuilt addon for this architecture (${fallback})\n`);
    else {
      ok = false;
      process.stdout.write(`MISSING ${arch} ${pkg}: no prebuilt addon for this architecture, and the gateway needs it\n`);
    }
  }
  return ok ? 0 : 1;
}

process.exitCode = await main();
