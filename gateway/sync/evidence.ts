/**
 * Equivocation evidence (docs/SYNC.md §Equivocation): two checkpoints signed with one gateway's
 * key that cannot both be true. Found here or received from another gateway, verified, it is
 * stored with a refused flag on the chain (gateway/sync/flags.ts), passed on retained to every
 * broker this gateway is linked to, and the chain is refused until a technician clears it.
 *
 * Evidence found here carries the site-signed statement that gives the gateway its key, so that a
 * gateway holding no copy of the chain (re-flashed, or enrolled later) can check it at once.
 * Received evidence that cannot be checked yet (no statement, and the key known from no chain or
 * roster held here) waits, a few per chain, until the key is known (retry(), after blocks are
 * stored); meanwhile the chain is fetched but neither served nor cosigned (waiting()).
 */
import { createHash } from 'node:crypto';
import { OtiError } from '../../ledger/base/errors.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { decodeEvidence, encodeEvidence, evidenceKey, verifyEvidence, type Equivocation } from '../../ledger/evidence.js';
import { decodeSigned, type SignedStatement } from '../../ledger/roster.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { SyncContext } from './context.js';
import { blockChain, readEvidenceRecords } from './flags.js';
import type { Links } from './links.js';
import type { EvidenceView } from './view.js';

/** Received evidence that waits for its gateway's key: at most this many (distinct) per chain … */
export const MAX_WAITING_PER_CHAIN = 4;
/** … and for at most this many chains (topic names are not all real gateways). */
export const MAX_WAITING_CHAINS = 16;

interface Waiting {
  readonly reporter: string;
  readonly payload: Buffer;
}

export class EvidenceBook {
  /** Origins refused after equivocation, until a technician clears them. */
  #blocked = new Set<string>();
  /** Evidence stored here, by id (loaded at start, added as found or received). */
  readonly #evidence = new Map<string, EvidenceView>();
  /** Received evidence whose gateway's key is not known here yet, by chain, then by payload hash. */
  readonly #waiting = new Map<string, Map<string, Waiting>>();
  /** Chains whose waiting evidence is being checked now (still neither served nor cosigned). */
  readonly #checking = new Set<string>();

  /**
   * `keyWithdrawn`: the technician's path ends with `oti evidence clear` once a roster held here
   * revokes the gateway or gives it another key: evidence signed with that key (the same evidence
   * again, retained on gateways not cleared yet, or a new finding) refuses nothing more
   * (provisioning/evidence.ts states the same rule).
   * `rosterKey`: the key a roster held here (a peer chain's or the own) gives a gateway, if any.
   */
  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly keyWithdrawn: (gatewayId: string, key: Uint8Array) => boolean,
    private readonly rosterKey: (gatewayId: string) => Uint8Array | undefined,
  ) {}

  get blocked(): ReadonlySet<string> {
    return this.#blocked;
  }

  /** True while received evidence against chain `origin` waits here for its gateway's key (or is being checked). */
  waiting(origin: string): boolean {
    return this.#waiting.has(origin) || this.#checking.has(origin);
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
    // Flagged before the first await (the statement is looked up below), so that a second finding stops above.
    this.#blocked.add(ev.origin);
    const statement = ev.statement ?? (await this.#statementOf(ev.origin, gatewayId, key));
    const bytes = encodeEvidence(statement !== undefined ? { ...ev, statement } : ev);
    const id = await this.#store(ev, bytes, c.o.gatewayId);
    c.closeInboxes(ev.origin);
    const self = ev.origin === c.origin ? ' (this gateway: its key signs elsewhere too, e.g. a copy of its data folder runs on another device)' : '';
    c.o.logger?.error({ origin: ev.origin, evidence: id }, `equivocation: ${ev.origin} signed two inconsistent checkpoints${self}; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    await this.links.publishAll(c.topics.evidence(c.o.gatewayId), bytes, true);
    c.emit('evidence', { origin: ev.origin, id, reporter: c.o.gatewayId });
    c.scheduleState();
    throw new OtiError('ERR_EQUIVOCATION', `${ev.origin} equivocated (evidence ${id})`, { origin: ev.origin, evidence: id });
  }

  /**
   * Evidence published by `reporter`: verified here, stored, passed on. Checked with the key of
   * the chain held here, else of a roster held here, else of the site-signed statement it
   * carries; without any of them it waits (#wait) for the key.
   */
  async received(reporter: string, payload: Buffer): Promise<void> {
    const c = this.c;
    const ev = decodeEvidence(payload);
    const { siteId } = parseOrigin(ev.origin);
    if (siteId !== c.o.trust.siteId || this.#blocked.has(ev.origin)) return;
    const key = (await this.#knownKey(ev.origin)) ?? evidenceKey(ev, c.o.trust);
    if (key === undefined) return this.#wait(reporter, ev.origin, payload);
    await this.#check(reporter, ev, payload, key);
  }

  /**
   * Checks the evidence that waits for a gateway's key, for each chain whose key is known here
   * by now (its first block stored, or a roster that lists it): verified, it refuses the chain as
   * received evidence does; evidence that does not verify is refused and logged as before.
   */
  async retry(): Promise<void> {
    const c = this.c;
    for (const [origin, held] of [...this.#waiting]) {
      const key = await this.#knownKey(origin);
      if (key === undefined || this.#waiting.get(origin) !== held) continue;
      this.#waiting.delete(origin);
      this.#checking.add(origin);
      try {
        for (const w of held.values()) {
          await this.#check(w.reporter, decodeEvidence(w.payload), w.payload, key).catch((e: unknown) => c.refuse(origin, w.reporter, e));
        }
      } finally {
        this.#checking.delete(origin);
      }
    }
  }

  /** The key of the gateway of chain `origin` as known here: its own, from its chain held here, or from a roster held here. */
  async #knownKey(origin: string): Promise<Uint8Array | undefined> {
    const c = this.c;
    if (origin === c.origin) return c.o.key.publicKey;
    const { gatewayId } = parseOrigin(origin);
    return (await c.replica(origin)).gatewayKey(gatewayId) ?? this.rosterKey(gatewayId);
  }

  /** Keeps evidence whose gateway's key is not known here, within the bounds (else refused as before). */
  #wait(reporter: string, origin: string, payload: Buffer): void {
    const c = this.c;
    const { gatewayId } = parseOrigin(origin);
    const unknown = () => new OtiError('ERR_PROOF_INVALID', `evidence from ${reporter} against ${origin} does not verify here: ${gatewayId}'s key is not known here, and as much evidence as is kept waits already`, { origin });
    let held = this.#waiting.get(origin);
    if (held === undefined) {
      if (this.#waiting.size >= MAX_WAITING_CHAINS) throw unknown();
      held = new Map();
    }
    const id = createHash('sha256').update(payload).digest('hex');
    if (held.has(id)) return; // the same evidence again (from another reporter or link)
    if (held.size >= MAX_WAITING_PER_CHAIN) throw unknown();
    held.set(id, { reporter, payload });
    this.#waiting.set(origin, held);
    c.o.logger?.warn({ origin, reporter }, `evidence from ${reporter} against ${origin} cannot be checked yet: ${gatewayId}'s key is not known here (no copy of its chain, no roster here lists it, and the evidence carries no statement of it); kept, and checked once the key is known; meanwhile its chain is neither served nor cosigned (docs/SYNC.md §Equivocation)`);
  }

  /** Verifies received evidence with `key`; stores it, refuses the chain and passes it on. */
  async #check(reporter: string, ev: Equivocation, payload: Buffer, key: Uint8Array): Promise<void> {
    const c = this.c;
    const { gatewayId } = parseOrigin(ev.origin);
    if (!verifyEvidence(ev, key)) throw new OtiError('ERR_PROOF_INVALID', `evidence from ${reporter} against ${ev.origin} does not verify here`, { origin: ev.origin });
    if (this.#blocked.has(ev.origin)) return;
    if (this.keyWithdrawn(gatewayId, key)) {
      // Retained on the brokers of gateways that have not cleared it yet: already dealt with here.
      c.o.logger?.debug({ origin: ev.origin, reporter }, `evidence from ${reporter} against ${ev.origin}: the key that signed it is revoked or replaced here, nothing more to refuse`);
      return;
    }
    this.#blocked.add(ev.origin);
    const id = await this.#store(ev, payload, reporter);
    c.closeInboxes(ev.origin);
    // Passed on to every broker this gateway is linked to, so that every gateway and app of the site gets it.
    await this.links.publishAll(c.topics.evidence(c.o.gatewayId), payload, true);
    c.o.logger?.error({ origin: ev.origin, evidence: id, reporter }, `equivocation: ${reporter} holds evidence that ${ev.origin} signed two inconsistent checkpoints; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    c.emit('evidence', { origin: ev.origin, id, reporter });
    c.scheduleState();
  }

  /** The site-signed statement (enroll or rotate) that gives `gatewayId` the key `key`, from the roster of its chain held here. */
  async #statementOf(origin: string, gatewayId: string, key: Uint8Array): Promise<SignedStatement | undefined> {
    const c = this.c;
    const roster = (origin === c.origin ? c.chain()?.roster : undefined) ?? (await c.replica(origin)).roster;
    for (const h of [...(roster.get('gateway', gatewayId)?.history ?? [])].reverse()) {
      const s = decodeSigned(h);
      if ((s.statement.op === 'enroll' || s.statement.op === 'rotate') && bytesEqual(s.statement.key, key)) return s;
    }
    if (origin === c.origin && bytesEqual(c.o.enrolment.statement.key, key)) return c.o.enrolment;
    return undefined;
  }

  /** Stores evidence and the refused flag of its chain; returns its id. */
  async #store(ev: Equivocation, bytes: Uint8Array, reporter: string): Promise<string> {
    // The caller flagged the chain before its first await, so that a second finding meanwhile stops at its check.
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
