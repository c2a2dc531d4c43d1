/**
 * Equivocation evidence in a gateway data folder: `oti evidence list` and `oti evidence clear`,
 * and the refusal summary `oti verify` prints. docs/SYNC.md §Equivocation.
 *
 * Evidence (ledger/evidence.ts) is two checkpoints signed with one gateway's key that cannot
 * both be true: that key signs on two devices (a copied data folder, a stolen key). The gateways
 * that hold it refuse that chain (gateway/sync/flags.ts) until a technician, once the gateway is
 * re-keyed (revoked and replaced, or its key rotated), clears the flag on each gateway. The
 * evidence itself stays stored.
 */
import { toHex, fingerprint } from '../ledger/crypto.js';
import { OtiError } from '../ledger/base/errors.js';
import { decodeEvidence, evidenceKey, verifyEvidence, type Equivocation } from '../ledger/evidence.js';
import { Roster, decodeSigned, type Member, type SiteTrust } from '../ledger/roster.js';
import { parseOrigin } from '../ledger/verify.js';
import type { LedgerStore } from '../ledger/store.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { chainOrigin } from '../ledger/chain.js';
import { clearRefusedChain, listRefusedChains, readEvidenceRecords } from '../gateway/sync/flags.js';
import { flag, str, usage, type Command } from './command.js';
import { readDataIdentity, withLedger } from './ledger-access.js';

export interface StoredEvidence {
  readonly id: string;
  readonly origin: string;
  readonly gateway: string;
  readonly a: { readonly size: number; readonly root: string };
  readonly b: { readonly size: number; readonly root: string };
  /**
   * Whether it verifies with a key the site's rosters (as stored here) gave that gateway, or, when
   * none lists it (no copy of its chain here), the key the evidence's site-signed statement gives it.
   */
  readonly verifies: boolean;
  /** Its chain is refused (false once cleared). */
  readonly refused: boolean;
  readonly reporter: string | null;
  readonly at: number | null;
}

/** Every roster member record of `role/id` in the chains stored here (each chain keeps its own view). */
async function membersOf(store: LedgerStore, id: string): Promise<Member[]> {
  const out: Member[] = [];
  for (const c of await store.listChains()) {
    const roster = new Roster();
    for (const m of await (await store.chain(c.origin, c.role)).rosterMembers()) roster.restore(m);
    const m = roster.get('gateway', id);
    if (m !== undefined) out.push(m);
  }
  return out;
}

/** Every key a member has had: the current one and those its statements named. */
function keysOf(m: Member): Uint8Array[] {
  return [m.key, ...m.history.map((h) => decodeSigned(h).statement.key)];
}

/** The key the evidence's own statement gives its gateway, when that statement verifies with `trust` (docs/PROTOCOL.md §Equivocation evidence). */
function statementKey(ev: Equivocation, trust: SiteTrust): Uint8Array[] {
  try {
    const k = evidenceKey(ev, trust);
    return k !== undefined ? [k] : [];
  } catch {
    return [];
  }
}

/** The evidence records of a store with the refused flags that name them; `trust`: the site keys the statements in evidence are checked with. */
export async function readEvidence(store: LedgerStore, trust: SiteTrust): Promise<StoredEvidence[]> {
  const { flags, records } = await readEvidenceRecords(store);
  const out: StoredEvidence[] = [];
  for (const { id, ev, flag: flagged } of records) {
    const gateway = parseOrigin(ev.origin).gatewayId;
    const members = await membersOf(store, gateway);
    const keys = members.length > 0 ? members.flatMap(keysOf) : statementKey(ev, trust);
    out.push({
      id,
      origin: ev.origin,
      gateway,
      a: { size: ev.a.size, root: toHex(ev.a.root) },
      b: { size: ev.b.size, root: toHex(ev.b.root) },
      verifies: keys.some((k) => verifyEvidence(ev, k)),
      refused: flags.some((f) => f.origin === ev.origin),
      reporter: flagged?.reporter ?? null,
      at: flagged?.at ?? null,
    });
  }
  return out;
}

/** One line per evidence record. */
export function evidenceLine(e: StoredEvidence): string {
  const who = e.reporter !== null ? `, found by ${e.reporter}` : '';
  const when = e.at !== null ? ` at ${new Date(e.at).toISOString()}` : '';
  return `evidence ${e.id.slice(0, 16)}: ${e.gateway}'s key signed ${e.origin} @ ${e.a.size} (root ${e.a.root.slice(0, 16)}…) and @ ${e.b.size} (root ${e.b.root.slice(0, 16)}…), which cannot both be true${who}${when}; ${e.verifies ? 'verifies with its enrolled key' : 'does NOT verify with a key enrolled for it here'}; ${e.refused ? 'its chain is refused' : 'cleared by a technician'}`;
}

const DATA = { data: { type: 'string', value: 'DIR', help: 'the gateway data folder' } } as const;

const list: Command = {
  name: 'evidence list',
  summary: 'List the equivocation evidence a gateway stores, and which chains it refuses for it.',
  details: ['Evidence is two checkpoints signed with one gateway’s key that cannot both be true: that key signs on two devices. See docs/SYNC.md §Equivocation.'],
  options: { ...DATA },
  examples: ['oti evidence list --data /var/lib/oti-gateway', 'oti evidence list --data ./data --json'],
  async run(p) {
    const data = str(p, 'data', true);
    const { trust } = await readDataIdentity(data);
    return withLedger(data, { copyIfLocked: true }, async ({ store }) => {
      const evidence = await readEvidence(store, trust);
      const compromised = [...new Set(evidence.filter((e) => e.refused).map((e) => e.gateway))].sort();
      return {
        json: { compromised, evidence },
        text: evidence.length === 0 ? ['no evidence stored'] : [...(compromised.length > 0 ? [`compromised (refused): ${compromised.join(', ')}`] : []), ...evidence.map(evidenceLine)],
      };
    });
  },
};

const clear: Command = {
  name: 'evidence clear',
  summary: 'After a compromised gateway was re-keyed, accept its chain again on this gateway (gateway stopped).',
  details: [
    'Only once the gateway the evidence names no longer holds the key that signed it: revoked (oti gateway revoke) and replaced by a newly enrolled gateway, or its key rotated. The roster statement must be stored in this data folder (it reaches every gateway with the chains).',
    'Run it on every gateway of the site, each stopped (the ledger is opened for writing). The evidence stays stored.',
  ],
  options: { ...DATA, gateway: { type: 'string', value: 'GW', help: 'the gateway whose refusal to clear' }, yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' } },
  examples: ['oti evidence clear --data /var/lib/oti-gateway --gateway gw-lobby'],
  async run(p, term) {
    const data = str(p, 'data', true);
    const gw = str(p, 'gateway', true);
    if (!ID_PATTERN.test(gw)) throw usage(`--gateway must match ${String(ID_PATTERN)}`);
    const { trust } = await readDataIdentity(data);
    const origin = chainOrigin(trust.siteId, gw);
    return withLedger(data, { copyIfLocked: false }, async ({ store }) => {
      const flags = (await listRefusedChains(store)).filter((f) => f.origin === origin);
      if (flags.length === 0) throw new OtiError('ERR_NOT_FOUND', `${origin} is not refused here`, { origin });
      const members = await membersOf(store, gw);
      const records = (await store.listEvidence()).filter((r) => r.key.endsWith(`/${flags[0]!.evidence}`));
      const ev = records.length > 0 ? decodeEvidence(records[0]!.record) : undefined;
      // Re-keyed: revoked in some roster stored here, or no current key of it signs the evidence.
      const revoked = members.some((m) => m.revoked);
      const stillSigns = members.filter((m) => !m.revoked).find((m) => ev === undefined || verifyEvidence(ev, m.key));
      if (!revoked && stillSigns !== undefined) {
        throw new OtiError('ERR_ROSTER', `gateway ${gw} still holds the key ${fingerprint(stillSigns.key)} that signed the evidence: revoke it (oti gateway revoke) or rotate its key first, and let the statement reach this gateway`, { origin });
      }
      await term.confirm(`Accept chain ${origin} on this gateway again? The evidence stays stored.`, flag(p, 'yes'));
      await clearRefusedChain(store, origin);
      return { json: { cleared: origin, revoked }, text: [`${origin} is no longer refused here (${revoked ? 'the gateway is revoked' : 'its key was rotated'}); the evidence stays stored`] };
    });
  },
};

export const evidenceCommands: readonly Command[] = [list, clear];
