/**
 * Loads the native addons of an installed release as the gateway does, uses each once, and says
 * which addon file the process mapped and for which machine (deploy/test-install-arm64.sh runs it
 * with the root's own Node.js inside an emulated arm64 root):
 *
 *   node load-addons.js <release folder> [--no-sodium]     e.g. /usr/lib/oti-gateway
 *
 * sodium-native signs and verifies, classic-level writes and reads back a database, the Bluetooth
 * HCI socket that noble loads (the @stoprocent addon) opens a raw HCI socket, which on a machine
 * without an adapter or without kernel Bluetooth fails with the reason, and
 * @serialport/bindings-cpp opens a serial port that does not exist (ENOENT from the addon). Exit
 * 1 when an addon does not load or a mapped addon is not of this process's machine (its ELF
 * header, deploy/elf.ts). --no-sodium: the release has no sodium-native addon (armhf), which is
 * then checked to be absent rather than used.
 */
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MACHINES, MACHINE_NAMES, readElfHeader } from './elf.js';

const MACHINE_OF_ARCH: Readonly<Record<string, number>> = { x64: MACHINES.amd64, arm64: MACHINES.arm64, arm: MACHINES.armhf };

interface Sodium {
  crypto_sign_PUBLICKEYBYTES: number;
  crypto_sign_SECRETKEYBYTES: number;
  crypto_sign_BYTES: number;
  crypto_sign_keypair(pk: Buffer, sk: Buffer): void;
  crypto_sign_detached(sig: Buffer, m: Buffer, sk: Buffer): void;
  crypto_sign_verify_detached(sig: Buffer, m: Buffer, pk: Buffer): boolean;
}
interface Level {
  open(): Promise<void>;
  put(k: string, v: string): Promise<void>;
  get(k: string): Promise<string | undefined>;
  close(): Promise<void>;
}
interface HciSocket {
  bindRaw(devId?: number): number;
  isDevUp(): boolean;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function main(): Promise<number> {
  const [release, flag] = process.argv.slice(2);
  const sodium = flag !== '--no-sodium';
  if (release === undefined || (flag !== undefined && sodium)) {
    process.stderr.write('usage: load-addons <release folder> [--no-sodium]\n');
    return 2;
  }
  const req = createRequire(join(release, 'package.json'));
  // noble's own dependency: the npm override puts the @stoprocent addon under noble's name.
  const nobleReq = createRequire(req.resolve('@abandonware/noble/package.json'));
  let ok = true;
  const check = async (name: string, use: () => Promise<string> | string): Promise<void> => {
    try {
      process.stdout.write(`ok   ${name}: ${await use()}\n`);
    } catch (e) {
      ok = false;
      process.stdout.write(`FAIL ${name}: ${messageOf(e)}\n`);
    }
  };

  await check('sodium-native', () => {
    if (!sodium) {
      let loaded = true;
      try {
        req('sodium-native');
      } catch {
        loaded = false;
      }
      if (loaded) throw new Error('loaded, although the release should have no addon for this architecture');
      return 'absent, as expected here (the gateway uses node:crypto)';
    }
    const s = req('sodium-native') as Sodium;
    const pk = Buffer.alloc(s.crypto_sign_PUBLICKEYBYTES);
    const sk = Buffer.alloc(s.crypto_sign_SECRETKEYBYTES);
    const sig = Buffer.alloc(s.crypto_sign_BYTES);
    const m = Buffer.from('oti');
    s.crypto_sign_keypair(pk, sk);
    s.crypto_sign_detached(sig, m, sk);
    if (!s.crypto_sign_verify_detached(sig, m, pk)) throw new Error('an Ed25519 signature did not verify');
    return 'Ed25519 sign and verify';
  });
  await check('classic-level', async () => {
    const { ClassicLevel } = req('classic-level') as { ClassicLevel: new (dir: string) => Level };
    const dir = await mkdtemp(join(tmpdir(), 'oti-level-'));
    try {
      const db = new ClassicLevel(dir);
      await db.open();
      await db.put('k', 'v');
      const v = await db.get('k');
      await db.close();
      if (v !== 'v') throw new Error(`read back ${String(v)}`);
      return 'LevelDB put and get';
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  await check('bluetooth-hci-socket', () => {
    const Socket = nobleReq('@abandonware/bluetooth-hci-socket') as new () => HciSocket;
    const socket = new Socket();
    try {
      const dev = socket.bindRaw();
      return `bound to hci${dev}, adapter ${socket.isDevUp() ? 'up' : 'down'}`;
    } catch (e) {
      return `loaded; no adapter usable here: ${messageOf(e)}`;
    }
  });
  await check('@serialport/bindings-cpp', async () => {
    // Listing ports runs udevadm; opening one is the addon's own code.
    const { autoDetect } = req('@serialport/bindings-cpp') as { autoDetect(): { open(o: { path: string; baudRate: number }): Promise<unknown> } };
    const missing = '/dev/oti-no-such-port';
    try {
      await autoDetect().open({ path: missing, baudRate: 9600 });
    } catch (e) {
      if (/ENOENT|No such file/.test(messageOf(e))) return `opening ${missing} fails as it should: ${messageOf(e)}`;
      throw e;
    }
    throw new Error(`${missing} opened`);
  });

  const want = MACHINE_OF_ARCH[process.arch];
  const maps = await readFile('/proc/self/maps', 'utf8');
  const mapped = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((p) => p.endsWith('.node')))].sort();
  for (const path of mapped) {
    const machine = (await readElfHeader(path))?.machine;
    const good = machine !== undefined && machine === want;
    ok &&= good;
    process.stdout.write(`${good ? 'ok  ' : 'BAD '} mapped ${(machine === undefined ? 'not ELF' : (MACHINE_NAMES[machine] ?? `0x${machine.toString(16)}`)).padEnd(8)} ${path}\n`);
  }
  const expected = sodium ? 4 : 3;
  if (mapped.length !== expected) {
    ok = false;
    process.stdout.write(`FAIL ${mapped.length} addon(s) mapped, ${expected} expected\n`);
  }
  process.stdout.write(`node ${process.version} ${process.arch}: ${ok ? 'all addons loaded' : 'FAILED'}\n`);
  return ok ? 0 : 1;
}

process.exitCode = await main();
