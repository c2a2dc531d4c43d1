/**
 * What the retained MQTT statuses say, read back from the ledger (docs/MQTT.md §Status): the
 * broker keeps retained messages in memory only, so at start the notifier rebuilds them from
 * the chain, the one record that survives a stop or a crash; so does Home Assistant's bridge with
 * the battery and tamper facts it shows. Every read here is bounded.
 */
import type { Chain } from '../../ledger/chain.js';
import { decodeEntry } from '../../ledger/entry.js';
import { leafHash } from '../../ledger/merkle.js';
import { toHex } from '../../ledger/crypto.js';
import type { LockStateMessage } from '../broker/topics.js';

/** Lock event types that set the bolt state shown on `lockstate`. */
export const BOLT_STATE: Partial<Record<string, LockStateMessage['state']>> = { locked: 'LOCKED', unlocked: 'UNLOCKED', jammed: 'JAMMED' };

/** Entries read from the store at a time, newest first. */
const RANGE = 256;
/** Events of one lock looked at, newest first, to find its bolt state. */
export const BOLT_LOOKBACK = 64;

export interface CommittedEvent {
  readonly lock: string;
  readonly ctr: number;
  readonly index: number;
  /** Hex leaf hash of the entry. */
  readonly entry: string;
  /** When the gateway committed it (the entry's time). */
  readonly time: number;
}

/**
 * The last `max` lock events of the chain committed at `since` or later, oldest first. Reads at
 * most `scanMax` entries, from the newest back.
 */
export async function recentLockEvents(chain: Chain, max: number, since: number, scanMax: number): Promise<CommittedEvent[]> {
  const found: CommittedEvent[] = [];
  const stop = Math.max(0, chain.size - scanMax);
  for (let hi = chain.size; hi > stop && found.length < max; hi -= RANGE) {
    const lo = Math.max(stop, hi - RANGE);
    const raws = await chain.entryRange(lo, hi);
    for (let k = raws.length - 1; k >= 0 && found.length < max; k--) {
      const e = decodeEntry(raws[k]!);
      if (e.time < since) return found.reverse();
      if (e.body.kind === 'lock-event') found.push({ lock: e.body.event.lock, ctr: e.body.event.ctr, index: lo + k, entry: toHex(leafHash(raws[k]!)), time: e.time });
    }
  }
  return found.reverse();
}

/**
 * Calls `visit` with `lock`'s committed events, newest first, until it returns true or
 * `lookback` counters were looked at (a counter the chain does not hold counts too).
 */
async function newestEvents(chain: Chain, lock: string, lookback: number, visit: (type: string, id: string, time: number) => boolean): Promise<void> {
  const last = await chain.lastCounter(lock);
  for (let ctr = last; ctr >= 0 && ctr > last - lookback; ctr--) {
    const id = `${lock}:${ctr}`;
    const index = await chain.indexOf(id);
    if (index === undefined) continue;
    const e = decodeEntry(await chain.entry(index));
    if (e.body.kind === 'lock-event' && visit(e.body.event.type, id, e.time)) return;
  }
}

/** The bolt state `lock` was last left in, from its last BOLT_LOOKBACK committed events. */
export async function lastBoltState(chain: Chain, lock: string): Promise<LockStateMessage | undefined> {
  let found: LockStateMessage | undefined;
  await newestEvents(chain, lock, BOLT_LOOKBACK, (type, id, at) => {
    const state = BOLT_STATE[type];
    if (state !== undefined) found = { state, id, at };
    return found !== undefined;
  });
  return found;
}

/** Events of one lock looked at, newest first, to find whether it reported battery-low or tamper. */
export const FACTS_LOOKBACK = 256;

/** What `lockinfo` keeps from the chain (docs/MQTT.md §Home Assistant); null: not reported. */
export interface ChainFacts {
  readonly battery: 'low' | null;
  readonly tamper: true | null;
}

/** Whether `lock` reported battery-low, and tamper, in its last FACTS_LOOKBACK committed events. */
export async function chainFacts(chain: Chain, lock: string): Promise<ChainFacts> {
  let battery: 'low' | null = null;
  let tamper: true | null = null;
  await newestEvents(chain, lock, FACTS_LOOKBACK, (type) => {
    if (type === 'battery-low') battery = 'low';
    if (type === 'tamper') tamper = true;
    return battery !== null && tamper !== null;
  });
  return { battery, tamper };
}
