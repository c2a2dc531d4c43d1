/**
 * `oti lock enroll|list|revoke|rotate` and `oti ble scan`. Every change is a site-signed roster
 * statement (ledger/roster.ts) that ends up as a roster entry in the gateway's chain; a key
 * rotation is a `rotate` statement naming the old and the new key, the recorded hand-over.
 */
import { fingerprint, toHex } from '../ledger/crypto.js';
import { OtiError } from '../ledger/base/errors.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { API_OPTIONS, flag, int, str, usage, type Command, type Parsed } from './command.js';
import { DATA_OPTION, DELIVERY_OPTIONS, currentMember, keyOption, readRoster, signAndDeliver } from './statements.js';
import { openRadio, readLockInfo, scanLocks } from './ble.js';

function lockId(p: Parsed): string {
  const id = str(p, 'id', true);
  if (!ID_PATTERN.test(id)) throw usage(`--id must match ${String(ID_PATTERN)}`);
  return id;
}

/** The key to enrol: --key, or read over BLE from the lock's info characteristic. */
async function keyToEnrol(p: Parsed, id: string): Promise<{ key: Uint8Array; fw?: string; address?: string }> {
  const key = keyOption(p, 'key');
  if (key !== undefined && flag(p, 'ble')) throw usage('give either --key or --ble, not both');
  if (key !== undefined) return { key };
  if (!flag(p, 'ble')) throw usage('give the lock’s public key with --key HEX, or read it over Bluetooth with --ble');
  const noble = await openRadio();
  const wanted = str(p, 'address');
  process.stderr.write(`scanning for lock ${wanted ?? id} for up to ${int(p, 'seconds', 10, 1, 300)} s...\n`);
  const found = await scanLocks(noble, int(p, 'seconds', 10, 1, 300));
  const candidates = [...found.values()].filter((f) => wanted === undefined || f.lock.address.toLowerCase() === wanted.toLowerCase());
  for (const c of candidates) {
    const info = await readLockInfo(c.peripheral).catch(() => undefined);
    if (info === undefined || (wanted === undefined && info.lock !== id)) continue;
    if (info.lock !== id) throw new OtiError('ERR_ARGUMENT', `the lock at ${c.lock.address} says it is ${info.lock}, not ${id}`);
    if (info.key === undefined) throw new OtiError('ERR_ARGUMENT', `lock ${id} reports no public key; enrol it with --key (and --unsigned if it cannot sign)`);
    return { key: info.key, fw: info.fw, address: c.lock.address };
  }
  throw new OtiError('ERR_NOT_FOUND', `no lock ${wanted ?? id} answered within the scan; bring the tablet closer, wake the lock, or give --address`);
}

const enroll: Command = {
  name: 'lock enroll',
  summary: 'Enrol a lock: sign its public key into the site roster and send it to the gateway.',
  details: [
    'The key comes from --key, or from the lock itself over Bluetooth (--ble): the lock’s id, firmware and key fingerprint are shown for you to compare with the lock’s label or display before anything is signed.',
  ],
  options: {
    id: { type: 'string', value: 'LOCK', help: 'the lock id' },
    key: { type: 'string', value: 'HEX', help: 'the lock’s Ed25519 public key (64 hex digits)' },
    ble: { type: 'boolean', help: 'read the key from the lock over Bluetooth' },
    address: { type: 'string', value: 'ADDR', help: 'with --ble: the lock’s Bluetooth address' },
    seconds: { type: 'string', value: 'N', help: 'with --ble: scan time (default 10)' },
    unsigned: { type: 'boolean', help: 'the lock cannot sign; accept its unsigned events (weaker provenance)' },
    ...DELIVERY_OPTIONS,
  },
  examples: [
    'oti lock enroll --site-dir ./acme-hq --id front-door --key 3b6a27bc...',
    'oti lock enroll --site-dir ./acme-hq --id front-door --ble',
    'oti lock enroll --site-dir ./acme-hq --id old-gate --key 9f0e... --unsigned --out old-gate.cbor --yes',
  ],
  async run(p, term) {
    const id = lockId(p);
    const k = await keyToEnrol(p, id);
    const fp = fingerprint(k.key);
    if (!p.json) {
      process.stderr.write(`lock ${id}${k.fw !== undefined ? `, firmware ${k.fw}` : ''}${k.address !== undefined ? `, at ${k.address}` : ''}\nkey fingerprint: ${term.bold(fp)}\n`);
    }
    const unsigned = flag(p, 'unsigned');
    return signAndDeliver(
      p,
      term,
      `Enrol lock ${id} with key ${fp}${unsigned ? ' (unsigned events accepted)' : ''}?`,
      (site) => ({ site, op: 'enroll', role: 'lock', id, key: k.key, time: Date.now(), ...(unsigned ? { unsigned: true } : {}) }),
      `lock ${id} enrolled (key ${fp})`,
    );
  },
};

const list: Command = {
  name: 'lock list',
  summary: 'List the locks (and gateways) in the roster at the head of the gateway’s chain.',
  details: ['Reads GET /roster from the gateway, or with --data the ledger in a data folder (a copy when the gateway is running: the output says so, and "copy": true with --json).'],
  options: { all: { type: 'boolean', help: 'include gateways and revoked members' }, ...DATA_OPTION, ...API_OPTIONS },
  examples: ['oti lock list', 'oti lock list --all --json', 'oti lock list --data /var/lib/oti-gateway'],
  async run(p, term) {
    const all = flag(p, 'all');
    const roster = await readRoster(p, term);
    const members = roster.members.filter((m) => all || (m.role === 'lock' && !m.revoked));
    const text = [
      ...(roster.copy ? [term.yellow('the gateway is running: read a copy of the ledger')] : []),
      ...(members.length === 0 ? ['no locks enrolled'] : members.map((m) => `${m.role.padEnd(8)}${m.id.padEnd(24)}${m.fingerprint}  ${m.revoked ? term.red('revoked') : term.green('active')}${m.unsigned ? ' unsigned' : ''}`)),
    ];
    return { json: { members, copy: roster.copy }, text };
  },
};

const revoke: Command = {
  name: 'lock revoke',
  summary: 'Revoke a lock: its events are refused from now on; the id cannot be enrolled again.',
  options: { id: { type: 'string', value: 'LOCK', help: 'the lock id' }, key: { type: 'string', value: 'HEX', help: 'its current key (default: looked up in the roster)' }, ...DATA_OPTION, ...DELIVERY_OPTIONS },
  examples: ['oti lock revoke --site-dir ./acme-hq --id front-door', 'oti lock revoke --site-dir ./acme-hq --id front-door --yes --json'],
  async run(p, term) {
    const id = lockId(p);
    const key = keyOption(p, 'key') ?? Buffer.from((await currentMember(p, term, 'lock', id)).key, 'hex');
    return signAndDeliver(p, term, `Revoke lock ${id} (key ${fingerprint(key)})? This cannot be undone.`, (site) => ({ site, op: 'revoke', role: 'lock', id, key, time: Date.now() }), `lock ${id} revoked`);
  },
};

const rotate: Command = {
  name: 'lock rotate',
  summary: 'Record a lock’s key hand-over: the old key is replaced by --key in a signed rotate statement.',
  options: {
    id: { type: 'string', value: 'LOCK', help: 'the lock id' },
    key: { type: 'string', value: 'HEX', help: 'the new public key' },
    prev: { type: 'string', value: 'HEX', help: 'the current key (default: looked up in the roster)' },
    ...DATA_OPTION,
    ...DELIVERY_OPTIONS,
  },
  examples: ['oti lock rotate --site-dir ./acme-hq --id front-door --key 51c0...', 'oti lock rotate --site-dir ./acme-hq --id front-door --key 51c0... --prev 3b6a... --out rotate.cbor'],
  async run(p, term) {
    const id = lockId(p);
    const key = keyOption(p, 'key');
    if (key === undefined) throw usage('--key (the new key) is required');
    const prev = keyOption(p, 'prev') ?? Buffer.from((await currentMember(p, term, 'lock', id)).key, 'hex');
    if (toHex(prev) === toHex(key)) throw usage('the new key is the current key');
    return signAndDeliver(
      p,
      term,
      `Replace the key of lock ${id}: ${fingerprint(prev)} → ${fingerprint(key)}?`,
      (site) => ({ site, op: 'rotate', role: 'lock', id, key, prev, time: Date.now() }),
      `lock ${id} now uses key ${fingerprint(key)}`,
    );
  },
};

const bleScan: Command = {
  name: 'ble scan',
  summary: 'List nearby locks that advertise the OTI service, and whether they have events pending.',
  options: { seconds: { type: 'string', value: 'N', help: 'scan time in seconds (default 10)' }, info: { type: 'boolean', help: 'connect to each lock and read its id, firmware and key' } },
  examples: ['oti ble scan', 'oti ble scan --seconds 30 --info --json'],
  async run(p, term) {
    const seconds = int(p, 'seconds', 10, 1, 300);
    const noble = await openRadio();
    const progress = term.progress('scanning');
    const started = Date.now();
    const timer = setInterval(() => progress.update(Date.now() - started, seconds * 1000), 200);
    let found;
    try {
      found = await scanLocks(noble, seconds);
    } finally {
      clearInterval(timer);
      progress.end();
    }
    const locks = [];
    for (const { lock, peripheral } of found.values()) {
      const info = flag(p, 'info') ? await readLockInfo(peripheral).catch((e: unknown) => ({ error: (e as Error).message })) : undefined;
      locks.push({ ...lock, ...(info !== undefined ? { info: 'error' in info ? info : { lock: info.lock, fw: info.fw, ...(info.key !== undefined ? { key: toHex(info.key), fingerprint: fingerprint(info.key) } : {}) } } : {}) });
    }
    const text = locks.length === 0 ? [`no OTI locks seen in ${seconds} s`] : locks.map((l) => `${l.address}  ${l.name ?? ''}${l.pending ? '  events pending' : ''}${l.info !== undefined ? `  ${JSON.stringify(l.info)}` : ''}`);
    return { json: { locks }, text };
  },
};

export const lockCommands: readonly Command[] = [enroll, list, revoke, rotate, bleScan];
