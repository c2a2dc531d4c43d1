/**
 * `oti lock simulate`: a simulated lock (drivers/simlock.ts) on a serial line, for trying a
 * gateway of an enrolled site where `--demo` cannot run (the demo enrols its locks with the
 * development site's key, and an enrolled site's authority key is never on a gateway). The lock
 * keeps its key and next counter in a state file (0600), so a restart continues its counters; it
 * prints its public key, which the installer enrols like any lock's (`oti lock enroll --key`).
 * docs/CONFIGURATION.md §Simulated locks on an enrolled site.
 */
import { readFile } from 'node:fs/promises';
import { generateKeyPair, fingerprint, fromHex, keyPairFromSeed, toHex } from '../ledger/crypto.js';
import { OtiError } from '../ledger/base/errors.js';
import { writeFileAtomic } from '../ledger/base/files.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { SimLock } from '../drivers/simlock.js';
import { SerialSimLink } from '../drivers/simlink.js';
import { int, str, usage, type Command } from './command.js';

interface LockState {
  readonly seed: string;
  next: number;
}

async function loadState(path: string): Promise<LockState> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as Partial<LockState>;
    if (typeof v.seed !== 'string' || !/^[0-9a-f]{64}$/.test(v.seed) || !Number.isSafeInteger(v.next) || (v.next as number) < 1) throw new OtiError('ERR_KEY_FILE_FORMAT', `${path} is not a simulated lock's state file`, { path });
    return v as LockState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const state = { seed: toHex(generateKeyPair().seed), next: 1 };
    await writeFileAtomic(path, `${JSON.stringify(state)}\n`, { mode: 0o600, overwrite: false });
    return state;
  }
}

const simulate: Command = {
  name: 'lock simulate',
  summary: 'Run a simulated lock on a serial line (a pty pair from socat, say) for a gateway of an enrolled site.',
  details: [
    'Make a pty pair: socat pty,raw,echo=0,link=/tmp/oti-lock pty,raw,echo=0,link=/tmp/oti-gw ; add /tmp/oti-gw to the gateway’s serial.ports; run this with --port /tmp/oti-lock.',
    'The lock’s key is created on first run in --state (0600) and printed; enrol it from the installer’s machine with oti lock enroll --key. Until then the gateway refuses its events as unenrolled.',
    'Runs until Ctrl+C (or --count acknowledged events), then prints how many events were acknowledged.',
  ],
  options: {
    id: { type: 'string', value: 'ID', help: 'the lock id (as enrolled)' },
    port: { type: 'string', value: 'PATH', help: 'the lock’s end of the serial line' },
    state: { type: 'string', value: 'FILE', help: 'key and next counter of the lock (default ./<id>.simlock.json; created 0600)' },
    rate: { type: 'string', value: 'N', help: 'events per second (default 1; 0.01 to 1000)' },
    count: { type: 'string', value: 'N', help: 'stop after N acknowledged events (default: run until Ctrl+C)' },
  },
  examples: ['oti lock simulate --id sim-1 --port /tmp/oti-lock', 'oti lock simulate --id sim-1 --port /tmp/oti-lock --rate 5 --count 100 --json'],
  async run(p) {
    const id = str(p, 'id');
    if (id === undefined || !ID_PATTERN.test(id)) throw usage(`--id is required and must match ${String(ID_PATTERN)}`);
    const port = str(p, 'port');
    if (port === undefined) throw usage('--port PATH (the lock’s end of the serial line) is required');
    const rate = Number(str(p, 'rate') ?? '1');
    if (!Number.isFinite(rate) || rate < 0.01 || rate > 1000) throw usage('--rate must be a number from 0.01 to 1000');
    const count = int(p, 'count', 0, 0, 1_000_000_000);
    const path = str(p, 'state') ?? `${id}.simlock.json`;
    const state = await loadState(path);
    const seed = fromHex('seed', state.seed, 32);
    const key = keyPairFromSeed(seed).publicKey;
    process.stderr.write(`lock ${id} key ${toHex(key)} (${fingerprint(key)}); enrol it with: oti lock enroll --site-dir SITE --id ${id} --key ${toHex(key)}\n`);
    const lock = new SimLock({ id, seed, firstCounter: state.next, fw: 'sim-1.0' });
    const link = new SerialSimLink(lock, { path: port, reopenMs: 500 });
    let acked = 0;
    let saved = state.next;
    const save = async (): Promise<void> => {
      if (lock.counter === saved) return;
      saved = lock.counter;
      await writeFileAtomic(path, `${JSON.stringify({ seed: state.seed, next: saved })}\n`, { mode: 0o600, overwrite: true });
    };
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      const done = (): void => resolve();
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
      lock.on('ack', (ctr) => {
        acked++;
        process.stderr.write(`${id}: event ${ctr} acknowledged\n`);
        if (count > 0 && acked >= count) done();
      });
      lock.on('nack', (ctr, code) => process.stderr.write(`${id}: event ${ctr} refused (${code})\n`));
      link.start();
      lock.startAuto(rate);
      // The counter is saved as the lock goes, so a restart continues rather than replays.
      timer = setInterval(() => void save().catch(() => undefined), 1000);
    });
    clearInterval(timer);
    lock.stopAuto();
    await save();
    lock.close();
    await link.close();
    return { json: { id, key: toHex(key), acked, next: lock.counter, state: path }, text: [`lock ${id}: ${acked} events acknowledged; next counter ${lock.counter} (kept in ${path})`] };
  },
};

export const simulateCommands: readonly Command[] = [simulate];
