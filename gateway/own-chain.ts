/**
 * The gateway's own ledger at run time: the store opened (waiting for disk space rather than
 * failing), the own chain opened once recovery has run (gateway/sync/recovery.ts), with the
 * last-checkpoint record following it, its whole history verified in the background, and the
 * pipeline paused while the disk is full. gateway/runtime.ts decides when each of these runs.
 */
import { join } from 'node:path';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { verifyChain } from '../ledger/verify.js';
import { isOtiError } from '../ledger/base/errors.js';
import { ED25519_VERIFIER } from '../ledger/ed25519.js';
import type { SignaturePool } from '../ledger/sigpool.js';
import type { Identity } from './config/identity.js';
import type { GatewayConfig } from './config/config.js';
import type { CheckpointRecord } from './sync/checkpoint-record.js';
import type { RecoveryOutcome } from './sync/recovery.js';
import type { HealthBoard } from './api/health.js';
import type { Logger } from './log.js';

/**
 * Opens the ledger; on a full disk, waits for space (logged once, health degraded) instead of
 * failing: a gateway restarted by its service manager would otherwise fail again and again.
 */
export async function openStore(path: string, health: HealthBoard, log: Logger): Promise<LedgerStore> {
  let waited = false;
  const store = await LedgerStore.open(path, {
    waitForSpace: (e) => {
      waited = true;
      log.warn({ code: e.code, path }, `${e.message}; start-up waits for space (free some on that disk)`);
      health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', e.message);
    },
  });
  if (waited) {
    log.info({ path }, 'there is space on the disk again: start-up goes on');
    health.clear('disk-full');
  }
  return store;
}

/** What pauses while the disk is full: the pipeline. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/**
 * A full disk pauses the pipeline: the store holds the block it could not write until there
 * is space (and writes it then), the pipeline takes no more events (the locks keep them), and
 * health says why. Both resume by themselves once the store has written again.
 */
export function pauseWhileDiskFull(store: LedgerStore, ingest: Pausable, health: HealthBoard, log: Logger): void {
  store.on('disk-full', (e) => {
    log.warn({ code: e.code, path: store.path }, `${e.message}; taking no new events until then (the locks keep them)`);
    health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', e.message);
    ingest.pause();
  });
  store.on('disk-space', () => {
    log.info({ path: store.path }, 'there is space on the disk again: the ledger was reopened and takes events again');
    health.clear('disk-full');
    ingest.resume();
  });
}

export interface OpenOwnChainOptions {
  readonly config: GatewayConfig;
  readonly identity: Identity;
  readonly store: LedgerStore;
  readonly pool: SignaturePool;
  readonly record: CheckpointRecord;
  /** What recovery found (run before, so that the chain never forks its own history). */
  readonly recovery: RecoveryOutcome;
  readonly log: Logger;
}

/**
 * Opens the own chain (its last block verified before anything is served); from here on the
 * last-checkpoint record follows it (after an accepted loss, from what it holds).
 */
export async function openOwnChain(o: OpenOwnChainOptions): Promise<Chain> {
  const { config, identity: id, log } = o;
  const chain = await Chain.open({
    store: o.store,
    trust: id.trust,
    gatewayId: id.gatewayId,
    key: id.key,
    genesis: id.enrolment,
    pool: o.pool,
    sealDelayMs: config.ingest.sealDelayMs,
    maxBlockEntries: config.ingest.maxBlockEntries,
  });
  if (chain.checkpoint !== undefined) o.record.note(chain.checkpoint);
  chain.on('block', (b) => o.record.note(b.checkpoint));
  if (o.recovery === 'loss-accepted') log.warn({ entries: chain.size }, `chain ${chain.origin} continues from ${chain.size} entries after the accepted loss`);
  log.info({ chain: chain.origin, entries: chain.size, blocks: chain.head.n + 1 }, `ledger ${join(config.dataDir, 'ledger')}: chain ${chain.origin} with ${chain.size} entries`);
  if (ED25519_VERIFIER.sodiumUnavailable !== undefined) log.info({ ed25519: ED25519_VERIFIER.name }, `Ed25519 verification on node:crypto (libsodium unavailable: ${ED25519_VERIFIER.sodiumUnavailable})`);
  else log.info({ ed25519: ED25519_VERIFIER.name }, 'Ed25519 verification on libsodium');
  return chain;
}

/**
 * Verifies the whole own chain on the signature pool while the gateway runs; a chain that does
 * not verify is fatal. A verification cut short by a store reopened after a full disk starts
 * again; one cut short because the gateway stops (`stopping` aborted) is no verdict.
 */
export function verifyInBackground(o: { store: LedgerStore; chain: Chain; pool: SignaturePool; identity: Identity; log: Logger; stopping: AbortSignal; onFatal: ((e: Error) => void) | undefined }): void {
  const { store, chain } = o;
  const started = performance.now();
  const generation = store.generation;
  verifyChain(chain, { trust: o.identity.trust, pool: o.pool, toBlock: chain.head.n }).then(
    (r) => o.log.info({ entries: r.entries, lockSignatures: r.lockSignatures, ms: Math.round(performance.now() - started) }, `verified ${r.entries} entries and ${r.lockSignatures} lock signatures`),
    (e: unknown) => {
      if (o.stopping.aborted) return; // the pool and store were closed under it
      if (!isOtiError(e) && (store.waitingForSpace || store.generation !== generation)) {
        // The store was reopened after a full disk, closing the verification's iterators.
        verifyInBackground(o);
        return;
      }
      o.onFatal?.(e as Error);
    },
  );
}
