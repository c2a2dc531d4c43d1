/**
 * Before the gateway's own chain is opened for appending: make sure the ledger holds at least
 * everything this gateway ever published, so that it never signs a checkpoint inconsistent with
 * one it signed before (a fork of its own chain, which the site refuses as equivocation).
 * docs/SYNC.md §Recovery.
 *
 *  1. Peers are looked for for up to `sync.recoverWaitMs` (discovery announces and queries at
 *     once, so a peer on the LAN is found in about a second); with peers, the own chain is asked
 *     for beyond what is stored (SyncNode.recoverOwnChain).
 *  2. The last-checkpoint record (gateway/sync/checkpoint-record.ts) says how long the chain was;
 *     a checkpoint of the own chain retained on the brokers that is larger (after a re-flash, or
 *     the restore of an older data folder) takes its place and is recorded. A ledger still
 *     shorter than that is lost data: the gateway stays read-only (no chain is
 *     opened: the drivers do not run, so locks keep their events), raises `ledger-lost`
 *     (unavailable, ERR_LEDGER_LOST) on the health board, logs the remedy at error, and keeps
 *     trying peers until it has caught up, or until an operator accepts the loss with
 *     `oti ledger accept-loss` (gateway/sync/ledger-decision.ts). When peers saw a checkpoint
 *     beyond what the ledger holds (retained on their brokers), the remedy named is to retire the
 *     id instead: accepting the loss would make the gateway sign a fork of what they saw.
 *
 * A data folder without a record (a first start, or the whole folder replaced) knows that its
 * chain existed only from the peers: their answers and the checkpoints retained on their brokers.
 */
import type { Logger } from '../log.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { Discovery } from '../discovery/discovery.js';
import type { HealthBoard } from '../api/health.js';
import { parseOrigin } from '../../ledger/verify.js';
import { LAST_CHECKPOINT_FILE } from './checkpoint-record.js';
import { lossAccepted, LEDGER_DECISION_FILE } from './ledger-decision.js';
import type { SyncNode } from './node.js';
import { RepeatLog } from '../repeat-log.js';

/** The health condition raised while the ledger is behind the record. */
export const LEDGER_LOST_CONDITION = 'ledger-lost';
/** While read-only: how often the decision file is looked at, and how often peers are asked again. */
const DECISION_POLL_MS = 1000;
const RETRY_PEERS_MS = 5000;

export interface RecoveryOptions {
  readonly sync: Pick<SyncNode, 'origin' | 'replica' | 'recoverOwnChain' | 'retainedOwn'>;
  readonly discovery: Discovery | undefined;
  /** Peers from the configuration (linked by sync directly). */
  readonly staticPeers: number;
  /** The last-checkpoint record read at start, if any. */
  readonly record: SignedCheckpoint | undefined;
  /** The record says that peers saw it (a checkpoint retained on their brokers, recorded by an earlier wait). */
  readonly recordSeenByPeers?: boolean;
  readonly dataDir: string;
  readonly publicKey: Uint8Array;
  /** sync.recoverWaitMs and sync.recoverTimeoutMs. */
  readonly waitMs: number;
  readonly timeoutMs: number;
  readonly health: HealthBoard;
  readonly log: Logger;
  /** Aborted when the gateway stops meanwhile. */
  readonly signal: AbortSignal;
  /**
   * Records the checkpoint the ledger is held to, as seen by peers (CheckpointRecord.note with
   * seenByPeers): one retained on the brokers ahead of `record`, or `record` itself when peers saw a
   * checkpoint beyond what the ledger holds.
   */
  readonly adopt?: (cp: SignedCheckpoint) => void;
  /** Called once when the gateway becomes read-only; what it returns is closed when that ends. */
  readonly whileReadOnly?: () => Promise<{ close(): Promise<void> }>;
  /** While read-only, how often the decision file is looked at and peers are asked again (tests shorten them). */
  readonly pollMs?: number;
  readonly retryPeersMs?: number;
}

/** 'fresh': nothing to recover and no record; 'current': the ledger is whole; 'recovered'; 'loss-accepted'. */
export type RecoveryOutcome = 'fresh' | 'current' | 'recovered' | 'loss-accepted';

export async function recoverBeforeAppending(o: RecoveryOptions): Promise<RecoveryOutcome> {
  const own = await o.sync.replica(o.sync.origin);
  const start = own.size;
  // "Nothing newer" is said at once, then at most once a minute while read-only (asked every 5 s).
  const quiet = new RepeatLog();
  if (!peers(o) && o.discovery !== undefined && o.waitMs > 0) {
    o.log.info(`looking for the site's other gateways for up to ${o.waitMs} ms before opening the chain, in case they hold a newer copy of it (sync.recoverWaitMs)`);
    await waitFor(() => peers(o), o.waitMs, o.signal);
  }
  if (peers(o)) await askPeers(o, o.record?.size ?? 0, quiet);
  const { record, seenByPeers } = await newestRecord(o, own.size);
  if (own.size >= (record?.size ?? 0)) return own.size > start ? 'recovered' : record === undefined && own.size === 0 ? 'fresh' : 'current';
  return readOnlyUntilResolved(o, { record: record!, seenByPeers, quiet }, () => own.size);
}

async function askPeers(o: RecoveryOptions, need: number, quiet: RepeatLog): Promise<void> {
  const r = await o.sync.recoverOwnChain({ timeoutMs: o.timeoutMs, need });
  if (r.after > r.before) {
    o.log.warn(r, `recovered this gateway's own chain from peers: ${r.before} → ${r.after} entries (restored from a backup or re-flashed?)`);
    return;
  }
  const admitted = quiet.admit('own chain', 'nothing newer', Date.now());
  if (admitted === undefined) return;
  const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more like it since the last such line)` : '';
  o.log.info({ peers: r.peers, answered: r.answered, size: r.after, suppressed: admitted.suppressed }, `own chain checked with ${r.peers.length} peer(s), ${r.answered.length} answered: nothing newer${more}`);
}

/**
 * The record to hold the ledger to, and whether peers saw a checkpoint beyond what the ledger
 * holds (`held`, after asking them). That is the last-checkpoint record, or a checkpoint of this
 * chain retained on the brokers (verified with this gateway's key) when it is larger and beyond
 * what the peers gave back, as after a re-flash (no record) or the restore of an older data
 * folder: peers saw that checkpoint, so appending before holding it would fork the chain. A
 * retained checkpoint whose loss was accepted is not held to.
 */
async function newestRecord(o: RecoveryOptions, held: number): Promise<{ record: SignedCheckpoint | undefined; seenByPeers: boolean }> {
  const seen = o.sync.retainedOwn;
  if (seen === undefined || seen.size <= held || (await lossAccepted(o.dataDir, seen, o.publicKey))) return { record: o.record, seenByPeers: o.recordSeenByPeers === true };
  if (seen.size <= (o.record?.size ?? 0)) return { record: o.record, seenByPeers: true };
  o.log.warn(
    { retained: seen.size, record: o.record?.size ?? null, stored: held },
    `a checkpoint of this gateway's chain at ${seen.size} entries, retained on the brokers, is ahead of its last-checkpoint record and of the ${held} entries the ledger holds: it is the record from now on`,
  );
  return { record: seen, seenByPeers: true };
}

async function readOnlyUntilResolved(o: RecoveryOptions, w: { record: SignedCheckpoint; seenByPeers: boolean; quiet: RepeatLog }, size: () => number): Promise<RecoveryOutcome> {
  const { record, seenByPeers } = w;
  const need = record.size;
  // Recorded, so that a restart keeps waiting and `oti ledger accept-loss` warns as this does.
  if (seenByPeers) o.adopt?.(record);
  const reason = (): string => lostReason(o.dataDir, record, size(), seenByPeers);
  o.health.raise(LEDGER_LOST_CONDITION, 'unavailable', 'ERR_LEDGER_LOST', reason());
  o.log.error({ code: 'ERR_LEDGER_LOST', stored: size(), record: need, origin: record.origin, seenByPeers }, `ledger lost: ${reason()}`);
  const waiting = await o.whileReadOnly?.();
  try {
    let lastTry = Date.now();
    for (;;) {
      if (o.signal.aborted) throw new OtiError('ERR_LEDGER_LOST', `stopped while waiting for the ledger: ${reason()}`);
      if (await lossAccepted(o.dataDir, record, o.publicKey)) {
        o.log.warn({ code: 'ERR_LEDGER_LOST', stored: size(), record: need, decision: LEDGER_DECISION_FILE }, `an operator accepted the loss of entries ${size()}..${need - 1} of this gateway's chain (${LEDGER_DECISION_FILE}); appending again from ${size()} entries`);
        return 'loss-accepted';
      }
      if (peers(o) && Date.now() - lastTry >= (o.retryPeersMs ?? RETRY_PEERS_MS)) {
        lastTry = Date.now();
        await askPeers(o, need, w.quiet).catch((e: unknown) => o.log.warn({ err: e }, 'asking peers for this gateway’s chain failed'));
        if (size() >= need) {
          o.log.warn({ stored: size(), record: need }, `ledger recovered from peers: ${size()} entries, at least the ${need} of the last checkpoint this gateway signed; appending again`);
          return 'recovered';
        }
        o.health.raise(LEDGER_LOST_CONDITION, 'unavailable', 'ERR_LEDGER_LOST', reason());
      }
      await sleep(o.pollMs ?? DECISION_POLL_MS, undefined, { signal: o.signal }).catch(() => undefined);
    }
  } finally {
    o.health.clear(LEDGER_LOST_CONDITION);
    await waiting?.close();
  }
}

/**
 * What ERR_LEDGER_LOST says (log and /health): what is missing and the remedy. When peers saw a
 * checkpoint beyond what the ledger holds, accepting the loss would fork what they saw, so the
 * remedy is to retire the id (docs/SYNC.md §Recovery of the own chain); otherwise accept-loss.
 */
export function lostReason(dataDir: string, record: SignedCheckpoint, stored: number, seenByPeers: boolean): string {
  const lost = `the ledger holds ${stored} entries of this gateway's chain, but it signed a checkpoint at ${record.size} (${LAST_CHECKPOINT_FILE})`;
  if (!seenByPeers) {
    return `${lost}: nothing is appended until the missing entries are recovered from a peer (start one, or check the network), or an operator accepts the loss with oti ledger accept-loss --data ${dataDir}`;
  }
  const gw = parseOrigin(record.origin).gatewayId;
  return (
    `${lost}, and its peers saw a checkpoint beyond ${stored} (retained on their brokers): nothing is appended until the missing entries are recovered from a peer: start every gateway of the site that is offline. ` +
    `If none holds them, do not accept the loss (the gateway would sign a fork of what the peers saw and be listed as compromised); retire the id: stop this gateway, ` +
    `oti gateway revoke --id ${gw} --data ${dataDir} --api <another gateway of the site>, oti gateway enroll --id <new id>, ` +
    `oti gateway apply-bundle <new id>.bundle.json --data ${dataDir} --force (docs/SYNC.md §Recovery of the own chain)`
  );
}

function peers(o: RecoveryOptions): boolean {
  return o.staticPeers > 0 || (o.discovery?.peers().length ?? 0) > 0;
}

async function waitFor(cond: () => boolean, ms: number, signal: AbortSignal): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end && !signal.aborted) await sleep(100);
}
