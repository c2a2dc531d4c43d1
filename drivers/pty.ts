/**
 * Real kernel pty pairs, made by socat: two linked paths whose bytes cross over, as a
 * null-modem cable between the gateway's port and a lock's UART would. The demo mode, the serial
 * tests and the benchmarks connect simulated locks through them.
 * `restart()` kills socat and starts a new pair under the same paths: to both ends it looks like
 * the cable was pulled and plugged back in.
 *
 * socat must not outlive the process that made the pair, even one killed with SIGKILL, which
 * runs no handler: it is started through util-linux's `setpriv --pdeathsig TERM`, which sets the
 * parent-death signal (prctl PR_SET_PDEATHSIG(2), which Node.js cannot set for a child) and then
 * execs socat, so socat gets SIGTERM when its parent dies and removes its links. Where setpriv is
 * missing, socat runs on its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { OtiError } from '../ledger/base/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PtyPair {
  /** The gateway's end. */
  readonly gateway: string;
  /** The lock's end. */
  readonly lock: string;
  /** Pulls the cable: both paths disappear until start(). */
  kill(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** setpriv on the PATH, looked for once. */
let setpriv: Promise<boolean> | undefined;

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) if (dir !== '' && (await exists(join(dir, command)))) return true;
  return false;
}

/** socat with `args`, made to exit when this process dies (see the file comment). */
async function spawnSocat(args: readonly string[]): Promise<ChildProcess> {
  setpriv ??= onPath('setpriv');
  if (await setpriv) return spawn('setpriv', ['--pdeathsig', 'TERM', '--', 'socat', ...args], { stdio: 'ignore' });
  return spawn('socat', args, { stdio: 'ignore' });
}

export async function ptyPair(dir: string, name = 'pty'): Promise<PtyPair> {
  const gateway = join(dir, `${name}-gw`);
  const lock = join(dir, `${name}-lock`);
  let proc: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    proc = await spawnSocat([`pty,raw,echo=0,link=${gateway}`, `pty,raw,echo=0,link=${lock}`]);
    const p = proc;
    const failed = new Promise<never>((_, reject) =>
      p.once('error', (e) => reject(new OtiError('ERR_DRIVER_UNAVAILABLE', `cannot run socat: ${e.message} (apt-get install socat)`, undefined, { cause: e }))),
    );
    for (let i = 0; i < 500; i++) {
      if ((await Promise.race([Promise.all([exists(gateway), exists(lock)]), failed])).every(Boolean)) return;
      await sleep(10);
    }
    throw new OtiError('ERR_DRIVER_UNAVAILABLE', 'socat did not create a pty pair within 5 s (is socat installed? apt-get install socat)');
  };
  const kill = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p === undefined || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    await exited;
    // socat removes its links on exit; wait until it has.
    for (let i = 0; i < 200 && ((await exists(gateway)) || (await exists(lock))); i++) await sleep(10);
  };
  await start();
  return {
    gateway,
    lock,
    kill,
    start,
    restart: async () => {
      await kill();
      await start();
    },
  };
}
