/**
 * Equivocation evidence (docs/SYNC.md §Equivocation): two checkpoints signed with one gateway's
 * key that cannot both be true. Found here or received from another gateway, verified, it is
 * stored with a refused flag on the chain (gateway/sync/flags.ts), passed on retained to every
 * broker this gateway is linked to, and the chain is refused until a technician clears it.
 */
import { OtiError } from '../../ledger/base/errors.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { decodeEvidence, encodeEvidence, verifyEvidence, type Equivocation } from '../../ledger/evidence.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { SyncContext } from './context.js';
import { blockChain, readEvidenceRecords } from './flags.js';
import type { Links } from './links.js';
import type { EvidenceView } from './view.js';

export class EvidenceBook {
  /** Origins refused after equivocation, until a technician clears them. */
  #blocked = new Set<string>();
  /** Evidence stored here, by id (loaded at start, added as found or received). */
  readonly #evidence = new Map<string, EvidenceView>();

  /**
   * `keyWithdrawn`: the technician's path ends with `oti evidence clear` once a roster held here
   * revokes the gateway or gives it another key: evidence signed with that key (the same evidence
   * again, retained on gateways not cleared yet, or a new finding) refuses nothing more
   * (provisioning/evidence.ts states the same rule).
   */
  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly keyWithdrawn: (gatewayId: string, key: Uint8Array) => boolean,
  ) {}

  get blocked(): ReadonlySet<string> {
    return this.#blocked;
  }

  /** Evidence stored here, newest last. */
  views(): EvidenceView[] {
    return [...this.#evidence.values()];
  }

  /** Found here: stores and publishes the evidence, refuses the chain, and throws ERR_EQUIVOCATION. */
  async found(ev: Equivocation, key: Uint8Array): Promise<void> {
    const c = this.c;
    if (!verifyEvidence(ev, key)) throw new OtiError('ERR_PROOF_INVALID', `inconsistent checkpoints of ${ev.origin} did not make valid evidence`, { origin: ev.origin });
    const { gatewayId } = parseOrigin(ev.origin);
    if (this.keyWithdrawn(gatewayId, key)) {
      throw new OtiError('ERR_ROSTER', `inconsistent checkpoints of ${ev.origin}, signed with a key of ${gatewayId} that is revoked or replaced here: not refused again (docs/SYNC.md §Equivocation)`, { origin: ev.origin });
    }
    // Found twice at once (two checks in flight): the first one stands, one record per chain.
    if (this.#blocked.has(ev.origin)) throw new OtiError('ERR_EQUIVOCATION', `chain ${ev.origin} is refused after equivocation`, { origin: ev.origin });
    const bytes = encodeEvidence(ev);
    const id = await this.#store(ev, bytes, c.o.gatewayId);
    c.closeInboxes(ev.origin);
    const self = ev.origin === c.origin ? ' (this gateway: its key signs elsewhere too, e.g. a copy of its data folder runs on another device)' : '';
    c.o.logger?.error({ origin: ev.origin, evidence: id }, `equivocation: ${ev.origin} signed two inconsistent checkpoints${self}; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    await this.links.publishAll(c.topics.evidence(c.o.gatewayId), bytes, true);
    c.emit('evidence', { origin: ev.origin, id, reporter: c.o.gatewayId });
    c.scheduleState();
    throw new OtiError('ERR_EQUIVOCATION', `${ev.origin} equivocated (evidence ${id})`, { origin: ev.origin, evidence: id });
  }

  /** Evidence published by `reporter`: verified here, stored, passed on. */
  async received(reporter: string, payload: Buffer): Promise<void> {
    const c = this.c;
    const ev = decodeEvidence(payload);
    const { siteId, gatewayId } = parseOrigin(ev.origin);
    if (siteId !== c.o.trust.siteId || this.#blocked.has(ev.origin)) return;
    const key = ev.origin === c.origin ? c.o.key.publicKey : (await c.replica(ev.origin)).gatewayKey(gatewayId);
    if (key === undefined || !verifyEvidence(ev, key)) throw new OtiError('ERR_PROOF_INVALID', `evidence from ${reporter} against ${ev.origin} does not verify here`, { origin: ev.origin });
    if (this.#blocked.has(ev.origin)) return;
    if (this.keyWithdrawn(gatewayId, key)) {
      // Retained on the brokers of gateways that have not cleared it yet: already dealt with here.
      c.o.logger?.debug({ origin: ev.origin, reporter }, `evidence from ${reporter} against ${ev.origin}: the key that signed it is revoked or replaced here, nothing more to refuse`);
      return;
    }
    const id = await this.#store(ev, payload, reporter);
    c.closeInboxes(ev.origin);
    // Passed on to every broker this gateway is linked to, so that every gateway and app of the site gets it.
    await this.links.publishAll(c.topics.evidence(c.o.gatewayId), payload, true);
    c.o.logger?.error({ origin: ev.origin, evidence: id, reporter }, `equivocation: ${reporter} holds evidence that ${ev.origin} signed two inconsistent checkpoints; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    c.emit('evidence', { origin: ev.origin, id, reporter });
    c.scheduleState();
  }

  /** Stores evidence and the refused flag of its chain; returns its id. */
  async #store(ev: Equivocation, bytes: Uint8Array, reporter: string): Promise<string> {
    // Flagged before the first await, so that a second finding meanwhile stops at the check above.
    this.#blocked.add(ev.origin);
    const id = await this.c.o.store.recordEvidence('equivocation', bytes);
    const at = this.c.now();
    await blockChain(this.c.o.store, ev.origin, id, at, reporter);
    this.#evidence.set(id, evidenceView(id, ev, reporter, at, true));
    return id;
  }

  /** The refused flags and the evidence records of the store. */
  async load(): Promise<void> {
    const { flags, records } = await readEvidenceRecords(this.c.o.store);
    this.#blocked = new Set(flags.map((f) => f.origin));
    for (const { id, ev, flag } of records) {
      this.#evidence.set(id, evidenceView(id, ev, flag?.reporter ?? null, flag?.at ?? null, this.#blocked.has(ev.origin)));
    }
  }
}

function evidenceView(id: string, ev: Equivocation, reporter: string | null, at: number | null, refused: boolean): EvidenceView {
  const cp = (c: SignedCheckpoint): { size: number; root: string } => ({ size: c.size, root: Buffer.from(c.root).toString('hex') });
  return { id, origin: ev.origin, gateway: parseOrigin(ev.origin).gatewayId, reporter, at, a: cp(ev.a), b: cp(ev.b), refused };
}
