/** Test fixtures: a site with its authority key, gateways and locks, and temporary stores. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { generateKeyPair, Signer, toHex, type KeyPair } from '../../ledger/crypto.js';
import { encodeSigned, signStatement, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent, type EventType, type LockEvent } from '../../ledger/lockevent.js';
import { LedgerStore } from '../../ledger/store.js';
import { writeKeyFile } from '../../ledger/keyfile.js';
import { Chain, type ChainOptions } from '../../ledger/chain.js';
import type { CrashKeys } from './crash-child.js';

export interface TestSite {
  readonly siteId: string;
  readonly siteKey: KeyPair;
  readonly site: Signer;
  readonly trust: SiteTrust;
}

export function makeSite(siteId = 'site-1'): TestSite {
  const siteKey = generateKeyPair();
  return { siteId, siteKey, site: new Signer(siteKey.seed), trust: { siteId, siteKeys: [siteKey.publicKey] } };
}

export function enrollGateway(s: TestSite, gatewayId: string, key: KeyPair = generateKeyPair()): { key: KeyPair; statement: SignedStatement } {
  return { key, statement: signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'gateway', id: gatewayId, key: key.publicKey, time: 1_700_000_000_000 }) };
}

export interface TestLock {
  readonly id: string;
  readonly key: KeyPair;
  readonly signer: Signer;
  readonly statement: SignedStatement;
  ctr: number;
}

export function enrollLock(s: TestSite, id: string, opts: { unsigned?: boolean } = {}): TestLock {
  const key = generateKeyPair();
  const statement = signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id, key: key.publicKey, time: 1_700_000_000_000, ...(opts.unsigned === true ? { unsigned: true } : {}) });
  return { id, key, signer: new Signer(key.seed), statement, ctr: 0 };
}

/** The next signed event of a lock, as COSE_Sign1 bytes. */
export function signedEvent(lock: TestLock, type: EventType = 'unlocked', extra: Partial<LockEvent> = {}): Uint8Array {
  lock.ctr++;
  const ev: LockEvent = { lock: lock.id, ctr: lock.ctr, time: 1_700_000_000_000 + lock.ctr, type, cred: Uint8Array.of(1, 2, 3, 4), ...extra };
  return coseSign1(lock.signer, encodeLockEvent(ev));
}

/** The site folder `oti site init` would have written for `s` (site.key encrypted under `passphrase`), for the real `oti` to sign with. */
export async function writeSiteDir(s: TestSite, dir: string, passphrase: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeKeyFile(join(dir, 'site.key'), s.siteKey, { passphrase, label: `site authority ${s.siteId}` });
  await writeFile(join(dir, 'site.json'), JSON.stringify({ format: 'oti-site', version: 1, siteId: s.siteId, siteKeys: [toHex(s.siteKey.publicKey)] }));
}

export async function tempDir(t: TestContext, prefix = 'oti-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Retried: a process stopped a moment ago may still be closing files in it (ENOTEMPTY).
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
  return dir;
}

export interface OpenedChain {
  readonly store: LedgerStore;
  readonly chain: Chain;
  readonly gatewayKey: KeyPair;
  readonly genesis: SignedStatement;
  reopen(extra?: Partial<ChainOptions>): Promise<OpenedChain>;
}

/** A store in a temporary folder and this gateway's chain, closed on teardown. */
export async function openChain(t: TestContext, s: TestSite, extra: Partial<ChainOptions> = {}, dir?: string): Promise<OpenedChain> {
  const path = dir ?? join(await tempDir(t), 'ledger');
  const gw = enrollGateway(s, 'gw-1');
  return openAt(t, s, path, gw.key, gw.statement, extra);
}

async function openAt(t: TestContext, s: TestSite, path: string, gatewayKey: KeyPair, genesis: SignedStatement, extra: Partial<ChainOptions>): Promise<OpenedChain> {
  const store = await LedgerStore.open(path);
  const chain = await Chain.open({ store, trust: s.trust, gatewayId: 'gw-1', key: gatewayKey, genesis, ...extra });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await chain.close().catch(() => undefined);
    await store.close();
  };
  t.after(close);
  return {
    store,
    chain,
    gatewayKey,
    genesis,
    async reopen(more: Partial<ChainOptions> = {}): Promise<OpenedChain> {
      await close();
      return openAt(t, s, path, gatewayKey, genesis, { ...extra, ...more });
    },
  };
}

/**
 * A site with gateway gw-1 and `lockCount` locks (lock-0, lock-1, …), and the key file the
 * child-process tests hand to their child (CrashKeys, support/crash-child.ts).
 */
export function childSite(siteId: string, lockCount: number): { site: TestSite; gw: { key: KeyPair; statement: SignedStatement }; keys: CrashKeys } {
  const site = makeSite(siteId);
  const gw = enrollGateway(site, 'gw-1');
  const locks = Array.from({ length: lockCount }, (_, i) => enrollLock(site, `lock-${i}`));
  const keys: CrashKeys = {
    siteId: site.siteId,
    sitePublicKey: toHex(site.siteKey.publicKey),
    gatewayId: 'gw-1',
    gatewaySeed: toHex(gw.key.seed),
    gatewayStatement: toHex(encodeSigned(gw.statement)),
    locks: locks.map((l) => ({ id: l.id, seed: toHex(l.key.seed), statement: toHex(encodeSigned(l.statement)) })),
  };
  return { site, gw, keys };
}
