/**
 * The stored "refused after equivocation" flag per chain. Once a gateway has stored evidence
 * that a chain's gateway signed two inconsistent checkpoints, it stops accepting, serving and
 * cosigning that chain, across restarts, until a technician has looked at the evidence and
 * decided (docs/SYNC.md §Equivocation: clearing the flag).
 *
 *   sublevel ["sync", "refused"]: key = origin (UTF-8) → CBOR { "evidence": text (id), "at": uint,
 *                                                              ? "reporter": text (who found it) }
 */
import { decode, encode } from '../../ledger/base/cbor.js';
import { asMap, text, uint } from '../../ledger/schema.js';
import type { LedgerStore } from '../../ledger/store.js';
import { decodeEvidence, type Equivocation } from '../../ledger/evidence.js';

const SUB = ['sync', 'refused'];

export interface RefusedChain {
  readonly origin: string;
  readonly evidence: string;
  readonly at: number;
  /** The gateway that found the evidence (absent in flags stored before it was kept). */
  readonly reporter?: string;
}

export async function blockChain(store: LedgerStore, origin: string, evidence: string, at: number, reporter?: string): Promise<void> {
  const sub = store.sub(SUB);
  await store.write([{ type: 'put', sublevel: sub, key: Buffer.from(origin, 'utf8'), value: encode({ evidence, at, ...(reporter !== undefined ? { reporter } : {}) }) }]);
}

export async function listRefusedChains(store: LedgerStore): Promise<RefusedChain[]> {
  const out: RefusedChain[] = [];
  for await (const [k, v] of store.sub(SUB).iterator()) {
    const m = asMap(decode(v, 512), 'refused chain', ['evidence', 'at', 'reporter']);
    const reporter = m['reporter'] !== undefined ? { reporter: text(m, 'reporter', 'refused chain', 64) } : {};
    out.push({ origin: Buffer.from(k).toString('utf8'), evidence: text(m, 'evidence', 'refused chain'), at: uint(m, 'at', 'refused chain'), ...reporter });
  }
  return out;
}

export async function blockedChains(store: LedgerStore): Promise<Set<string>> {
  return new Set((await listRefusedChains(store)).map((r) => r.origin));
}

/**
 * The technician's decision: accept the chain again (e.g. after the gateway was re-keyed and
 * its stored copy removed). The evidence itself stays stored. Takes effect at the next start
 * of the sync node.
 */
export async function clearRefusedChain(store: LedgerStore, origin: string): Promise<boolean> {
  const sub = store.sub(SUB);
  const key = Buffer.from(origin, 'utf8');
  if ((await sub.get(key)) === undefined) return false;
  await store.write([{ type: 'del', sublevel: sub, key }]);
  return true;
}

/** One stored evidence record (unreadable ones are skipped) with the refused flag that names it. */
export interface StoredEvidenceRecord {
  readonly id: string;
  readonly ev: Equivocation;
  readonly flag: RefusedChain | undefined;
}

/** The refused flags and the evidence records of a store (sync at start, `oti evidence list`). */
export async function readEvidenceRecords(store: LedgerStore): Promise<{ flags: RefusedChain[]; records: StoredEvidenceRecord[] }> {
  const flags = await listRefusedChains(store);
  const records: StoredEvidenceRecord[] = [];
  for (const { key, record } of await store.listEvidence()) {
    const id = key.slice(key.indexOf('/') + 1);
    let ev: Equivocation;
    try {
      ev = decodeEvidence(record);
    } catch {
      continue;
    }
    records.push({ id, ev, flag: flags.find((f) => f.evidence === id && f.origin === ev.origin) });
  }
  return { flags, records };
}
