/**
 * The serial rig of the pty tests: the real SerialDriver on one end of a kernel pty pair (socat),
 * the real ingest pipeline and a LevelDB chain behind it, and simulated locks (SerialSimLink) on
 * the other end. Everything is torn down with the test.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { makeSite, enrollLock, openChain, tempDir, type TestLock, type TestSite } from './site.js';
import type { SignedStatement } from '../../ledger/roster.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialDriver, type PortLike } from '../../drivers/serial.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { Ingest, type IngestOptions } from '../../gateway/ingest.js';
import type { Chain, ChainOptions } from '../../ledger/chain.js';
import { decodeEntry, type EntryBody } from '../../ledger/entry.js';
import { leafHash } from '../../ledger/merkle.js';
import type { KeyPair } from '../../ledger/crypto.js';
import type { DriverNotice } from '../../drivers/driver.js';

export interface RigLockOptions {
  readonly unsigned?: boolean;
  readonly enrolled?: boolean;
  readonly bufferSize?: number;
  /** The key the lock signs with (default: the enrolled one). */
  readonly key?: KeyPair;
  /** The lock protocol version it speaks (default the newest). */
  readonly protocol?: number;
  /** Opens the lock's end of the line without the exclusive lock, so that several locks share it (a bus). */
  readonly shared?: boolean;
  /** Roster statements appended after its enrolment, before the lock starts (a revocation, say). */
  readonly then?: (enrolled: TestLock) => SignedStatement[];
}

export interface Rig {
  readonly chain: Chain;
  readonly pty: PtyPair;
  readonly driver: SerialDriver;
  readonly ingest: Ingest;
  readonly notices: DriverNotice[];
  /** The codes of the ingest's refusals, in order. */
  readonly codes: string[];
  readonly site: TestSite;
  /** A simulated lock on the pty's far end (enrolled unless told otherwise) and its link. */
  lock(id: string, opts?: RigLockOptions): Promise<{ lock: SimLock; link: SerialSimLink; enrolled: TestLock }>;
}

export interface RigOptions {
  readonly chain?: Partial<ChainOptions>;
  readonly ingest?: Partial<Omit<IngestOptions, 'chain'>>;
  readonly window?: number;
  /** Listener faults fail the test unless this is set. */
  readonly allowFaults?: boolean;
}

export async function serialRig(t: TestContext, opts: RigOptions = {}): Promise<Rig> {
  const site = makeSite();
  const { chain } = await openChain(t, site, { sealDelayMs: 2, ...opts.chain });
  const pty = await ptyPair(await tempDir(t));
  t.after(() => pty.kill());
  const driver = new SerialDriver({ path: pty.gateway, gatewayId: 'gw-1', window: opts.window ?? 8, reconnectMinMs: 20, reconnectMaxMs: 200, probeMs: 100 });
  const ingest = new Ingest({ chain, ...opts.ingest });
  const notices: DriverNotice[] = [];
  const codes: string[] = [];
  ingest.on('notice', (n) => notices.push(n));
  ingest.on('rejected', (_ev, code) => codes.push(code));
  if (opts.allowFaults !== true) ingest.on('fault', (e) => assert.fail(e));
  await driver.start();
  ingest.attach(driver);
  t.after(async () => {
    await driver.stop();
    await ingest.close();
  });
  return {
    chain,
    pty,
    driver,
    ingest,
    notices,
    codes,
    site,
    async lock(id, o = {}) {
      const enrolled = enrollLock(site, id, { unsigned: o.unsigned === true });
      if (o.enrolled !== false) await chain.append({ kind: 'roster', signed: enrolled.statement });
      for (const signed of o.then?.(enrolled) ?? []) await chain.append({ kind: 'roster', signed });
      const seed = o.key?.seed ?? enrolled.key.seed;
      const lock = new SimLock({ id, ...(o.unsigned === true ? {} : { seed }), resendMs: 300, ...(o.bufferSize === undefined ? {} : { bufferSize: o.bufferSize }), ...(o.protocol === undefined ? {} : { protocol: o.protocol }) });
      const link = new SerialSimLink(lock, { path: pty.lock, reopenMs: 20, ...(o.shared === true ? { openPort: openShared } : {}) });
      link.start();
      t.after(async () => {
        lock.close();
        await link.close();
      });
      return { lock, link, enrolled };
    },
  };
}

/** A serialport port opened without TIOCEXCL, so that a second opener shares the line. */
async function openShared(path: string, baudRate: number): Promise<PortLike> {
  const { SerialPort } = await import('serialport');
  return new SerialPort({ path, baudRate, autoOpen: false, lock: false });
}

/** Every stored event of a lock, by counter, with its leaf hash; fails on a counter stored twice. */
export async function storedEvents(chain: Chain, lock: string): Promise<Map<number, Uint8Array>> {
  await chain.flush();
  const out = new Map<number, Uint8Array>();
  for (let i = 0; i < chain.size; i++) {
    const bytes = await chain.entry(i);
    const body = decodeEntry(bytes).body;
    if (body.kind !== 'lock-event' || body.event.lock !== lock) continue;
    assert.ok(!out.has(body.event.ctr), `counter ${body.event.ctr} stored twice`);
    out.set(body.event.ctr, leafHash(bytes));
  }
  return out;
}

/** The bodies of the chain's entries of one kind, in order. */
export async function bodies(chain: Chain, kind: string): Promise<EntryBody[]> {
  await chain.flush();
  const out = [];
  for (let i = 0; i < chain.size; i++) {
    const body = decodeEntry(await chain.entry(i)).body;
    if (body.kind === kind) out.push(body);
  }
  return out;
}
