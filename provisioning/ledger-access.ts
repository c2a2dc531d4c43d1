/**
 * Opening a gateway's ledger from the CLI (`oti verify`, `oti lock list --data`, `oti backup`).
 *
 * LevelDB (classic-level) takes an exclusive lock on its folder: while the gateway runs, a
 * second open fails with LEVEL_LOCKED, and the database has no read-only mode. Commands that
 * only read may instead open a copy: the folder's files are copied without the LOCK file and
 * the copy is opened. This is consistent because LevelDB never changes a table file once
 * written, the log is append-only, and each block of the chain is one write batch: recovery of
 * the copy drops a torn last batch, so the copy holds whole blocks up to some point. A table
 * deleted by a compaction during the copy makes the copy fail; it is retried a few times.
 *
 * Nothing here creates a ledger: LevelDB would make an empty database at a mistyped --data, or,
 * in a ledger folder that lost its CURRENT file, a new database that deletes the old tables.
 */
import { cp, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { tmpdir } from 'node:os';
import { LedgerStore } from '../ledger/store.js';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { chainOrigin } from '../ledger/chain.js';
import type { SiteTrust } from '../ledger/roster.js';
import { readSiteTrust } from './site.js';

const COPY_ATTEMPTS = 5;

export interface OpenedLedger {
  readonly store: LedgerStore;
  /** True when a copy was opened because the gateway holds the database. */
  readonly copy: boolean;
  close(): Promise<void>;
}

function isLocked(e: unknown): boolean {
  let c: unknown = e;
  for (let i = 0; i < 4 && c !== undefined && c !== null; i++) {
    if ((c as { code?: unknown }).code === 'LEVEL_LOCKED') return true;
    c = (c as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The path of <dataDir>/ledger when it holds a LevelDB database (its CURRENT file); otherwise
 * ERR_NOT_FOUND (no such data folder, or no ledger in it) or ERR_STORE_CORRUPT (a ledger folder
 * with files but no CURRENT, which LevelDB would replace by an empty database).
 */
export async function existingLedger(dataDir: string): Promise<string> {
  const path = join(dataDir, 'ledger');
  if ((await stat(join(path, 'CURRENT')).catch(() => undefined))?.isFile() === true) return path;
  if ((await stat(dataDir).catch(() => undefined))?.isDirectory() !== true) {
    throw new OtiError('ERR_NOT_FOUND', `no data folder ${dataDir}: --data names a gateway's data folder (installed: /var/lib/oti-gateway)`, { path: dataDir });
  }
  const files = await readdir(path).catch(() => [] as string[]);
  if (files.length === 0) throw new OtiError('ERR_NOT_FOUND', `${dataDir} holds no ledger (no ${path}); is it a gateway data folder? (installed: /var/lib/oti-gateway)`, { path });
  throw new OtiError('ERR_STORE_CORRUPT', `${path} holds files but no CURRENT file, so LevelDB cannot open it; restore the data folder from a backup (docs/INSTALL.md §7)`, { path });
}

/**
 * Opens <dataDir>/ledger, which must exist (existingLedger); when a running gateway holds it, a
 * copy (if `copyIfLocked`) or ERR_STORE_LOCKED.
 */
export async function openLedger(dataDir: string, opts: { copyIfLocked: boolean }): Promise<OpenedLedger> {
  const path = await existingLedger(dataDir);
  try {
    const store = await LedgerStore.open(path);
    return { store, copy: false, close: () => store.close() };
  } catch (e) {
    if (!isLocked(e)) throw e;
    if (!opts.copyIfLocked) {
      throw new OtiError('ERR_STORE_LOCKED', `the ledger at ${path} is in use by a running gateway; stop it first (systemctl stop oti-gateway)`, { path });
    }
  }
  const { store, dir } = await openCopy(path);
  return {
    store,
    copy: true,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Copies the ledger at `path` (without its LOCK) into a new folder under `parent` and opens the copy. */
async function openCopy(path: string, parent = tmpdir()): Promise<{ store: LedgerStore; dir: string }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < COPY_ATTEMPTS; attempt++) {
    const dir = await mkdtemp(join(parent, 'oti-ledger-copy-'));
    try {
      await cp(path, dir, { recursive: true, filter: (src) => !src.endsWith('/LOCK') });
      return { store: await LedgerStore.open(dir), dir };
    } catch (e) {
      lastError = e;
      await rm(dir, { recursive: true, force: true });
    }
  }
  throw new OtiError('ERR_STORE_LOCKED', `could not take a consistent copy of the ledger at ${path} while the gateway runs; stop it and try again`, { path }, { cause: lastError });
}

export interface DataSnapshot {
  /** A data folder holding a consistent copy of the live one. */
  readonly dir: string;
  close(): Promise<void>;
}

/**
 * A copy of a running gateway's data folder (`oti backup`): first every file outside ledger/,
 * then the ledger copied as `openLedger` does, opened once (LevelDB's recovery keeps whole
 * blocks) and closed. In that order the ledger is never older than the identity and the
 * last-checkpoint record beside it, so the copy starts without waiting for peers.
 */
export async function snapshotDataDir(dataDir: string): Promise<DataSnapshot> {
  const dir = await mkdtemp(join(tmpdir(), 'oti-data-copy-'));
  const close = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await cp(dataDir, dir, { recursive: true, filter: (src) => relative(dataDir, src) !== 'ledger' });
    const copy = await openCopy(join(dataDir, 'ledger'), dir);
    await copy.store.close();
    await rename(copy.dir, join(dir, 'ledger'));
    return { dir, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The site trust and gateway id of a data folder (its site.json, as gateway/config/identity.ts writes it). */
export async function readDataIdentity(dataDir: string): Promise<{ trust: SiteTrust; gatewayId: string; origin: string }> {
  const trust = await readSiteTrust(dataDir);
  const raw = JSON.parse(await readFile(join(dataDir, 'site.json'), 'utf8')) as { gatewayId?: unknown };
  if (typeof raw.gatewayId !== 'string' || !ID_PATTERN.test(raw.gatewayId)) {
    throw new OtiError('ERR_KEY_FILE_FORMAT', `${join(dataDir, 'site.json')}: gatewayId is missing; is this a gateway data folder?`);
  }
  return { trust, gatewayId: raw.gatewayId, origin: chainOrigin(trust.siteId, raw.gatewayId) };
}

/** Runs `f` with the ledger of `dataDir` open, closing it afterwards. */
export async function withLedger<T>(dataDir: string, opts: { copyIfLocked: boolean }, f: (l: OpenedLedger) => Promise<T>): Promise<T> {
  const l = await openLedger(dataDir, opts);
  try {
    return await f(l);
  } finally {
    await l.close().catch((e: unknown) => {
      if (!isOtiError(e)) throw e;
    });
  }
}
