/**
 * The native files of a release tree, checked for one architecture (`npm run release`):
 *
 *   node dist/deploy/native-check.js <tree> <amd64|arm64|armhf> [--prune]
 *
 * Lists every native file under <tree>/node_modules with the machine its ELF header names: every
 * `*.node` and `*.bare` file, every ELF file, and every file in a `prebuilds/` folder. A file is
 * kept only if Node on Linux for the target loads it: an ELF file of the target machine, for
 * glibc (no musl variant), and, under `prebuilds/`, a `.node` addon in `prebuilds/linux-<arch>/`.
 * Everything else is foreign: other machines and systems (Mach-O, PE, android, ios), the `.bare`
 * builds that only the Bare runtime loads (sodium-native ships one beside each addon), and the
 * addons of packages that Linux never loads (NOT_ON_LINUX). With --prune the foreign files are
 * deleted first. Then each native package must keep at least one addon of the target machine. A
 * package the gateway can run without (OPTIONAL: it falls back, see docs/INSTALL.md
 * §Architectures) is reported as `none`; any other package without one, or a foreign file left
 * anywhere, fails the check (exit 1).
 */
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
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

interface NativeFile {
  readonly path: string;
  readonly pkg: string;
  readonly machine: number | undefined;
}

/** Every file under `dir` that holds or may hold native code (see the header), with its ELF machine. */
async function findNative(dir: string, out: { path: string; machine: number | undefined }[] = []): Promise<typeof out> {
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, d.name);
    if (d.isDirectory()) await findNative(full, out);
    else if (d.isFile()) {
      const machine = (await readElfHeader(full))?.machine;
      if (machine !== undefined || /\.(node|bare)$/.test(d.name) || full.includes(`${sep}prebuilds${sep}`)) out.push({ path: full, machine });
    }
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

async function nativeFiles(tree: string): Promise<NativeFile[]> {
  return (await findNative(join(tree, 'node_modules'))).map((f) => ({ path: relative(tree, f.path), pkg: packageOf(relative(tree, f.path)), machine: f.machine }));
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
  const prebuilds = `${sep}prebuilds${sep}linux-${NODE_ARCH[arch as DebianArch]}${sep}`;
  /** Why Node on Linux for `arch` never loads `f`, or undefined when it may. */
  const foreign = (f: NativeFile): string | undefined => {
    if (f.machine !== want) return 'another machine or system';
    if (/musl/.test(f.path)) return 'musl';
    const inPrebuilds = f.path.includes(`${sep}prebuilds${sep}`);
    if (inPrebuilds && !f.path.includes(prebuilds)) return 'another platform';
    if (f.path.endsWith('.bare')) return 'Bare runtime only';
    if (inPrebuilds && !f.path.endsWith('.node')) return 'not a Node addon';
    if (Object.hasOwn(NOT_ON_LINUX, f.pkg)) return 'not loaded on Linux';
    return undefined;
  };
  if (flag === '--prune') {
    const gone = (await nativeFiles(tree)).filter((f) => foreign(f) !== undefined);
    for (const f of gone) await rm(join(tree, f.path));
    // The folders emptied (prebuilds/<platform>/), deepest first; a folder still holding files stays.
    const dirs = [...new Set(gone.map((f) => dirname(join(tree, f.path))))].sort((a, b) => b.length - a.length);
    for (const d of dirs) await rmdir(d).catch(() => undefined);
  }
  const left = await nativeFiles(tree);
  let ok = true;
  for (const f of left) {
    const name = f.machine === undefined ? 'not ELF' : (MACHINE_NAMES[f.machine] ?? `machine 0x${f.machine.toString(16)}`);
    const why = foreign(f);
    ok &&= why === undefined;
    process.stdout.write(`${why === undefined ? 'ok  ' : 'BAD '} ${name.padEnd(8)} ${f.path}${why === undefined ? '' : ` (${why})`}\n`);
  }
  for (const pkg of await nativePackages(tree)) {
    if (left.some((f) => f.pkg === pkg && foreign(f) === undefined)) continue;
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
