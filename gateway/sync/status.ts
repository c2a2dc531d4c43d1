/**
 * What sync shows of the site's other gateways (gateway/sync/view.ts): one view per peer, and the
 * gateway state this gateway publishes, retained, on oti/<site>/gateways/<gw>/state on every
 * broker it is linked to (docs/MQTT.md §Gateway state): soon after a change, at most once per
 * STATE_MIN_MS, and again every STATE_REFRESH_MS.
 */
import type { ErrorCode } from '../../ledger/base/errors.js';
import { chainOrigin } from '../../ledger/chain.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { GatewayStateMessage } from '../broker/topics.js';
import type { SyncContext } from './context.js';
import type { Links } from './links.js';
import type { EvidenceView, PeerRefusal, PeerSyncState, PeerView } from './view.js';
import type { CoverageTracker } from './witness.js';

/** The gateway state on the gateways topic: at most one publication per this, and one at least every STATE_REFRESH_MS. */
const STATE_MIN_MS = 2000;
const STATE_REFRESH_MS = 30_000;
/** Peers whose refusals are kept for the status (the topic names are not all real gateways). */
const MAX_REFUSAL_RECORDS = 256;

/** What the status reads from the rest of the node. */
export interface StatusSources {
  readonly coverage: CoverageTracker;
  /** Origins of the peer chains held here. */
  settledOrigins(): Iterable<string>;
  blocked(): ReadonlySet<string>;
  evidence(): EvidenceView[];
  auditFailed(origin: string): boolean;
  /** Whether a roster held here lists the gateway as revoked. */
  revokedHere(gw: string): boolean;
}

export class SyncStatus {
  /** Last verified message per gateway, and the last refusal of each peer's messages. */
  readonly #contact = new Map<string, number>();
  readonly #refusals = new Map<string, PeerRefusal>();
  #timer: NodeJS.Timeout | undefined;
  #at = 0;

  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly s: StatusSources,
  ) {}

  contact(gw: string): void {
    this.#contact.set(gw, this.c.now());
  }

  recordRefusal(peer: string, code: ErrorCode, message: string, at: number): void {
    const prev = this.#refusals.get(peer);
    if (prev === undefined && this.#refusals.size >= MAX_REFUSAL_RECORDS) return;
    this.#refusals.set(peer, { code, message, at, count: (prev?.count ?? 0) + 1 });
    if (prev === undefined || prev.code !== code) this.schedule();
  }

  /** Gateways of the site whose key signed two inconsistent checkpoints (refused until cleared). */
  compromised(): string[] {
    return [...this.s.blocked()].map((o) => parseOrigin(o).gatewayId).sort();
  }

  /** Every other gateway of the site known here: from its checkpoints, its stored chain, refusals or evidence. */
  peerViews(): PeerView[] {
    const ids = new Set<string>();
    for (const p of this.c.peers.values()) ids.add(p.gatewayId);
    for (const o of this.s.settledOrigins()) ids.add(parseOrigin(o).gatewayId);
    for (const o of this.s.blocked()) ids.add(parseOrigin(o).gatewayId);
    ids.delete(this.c.o.gatewayId);
    const cosigs = new Map(this.s.coverage.witnesses().map((w) => [w.witness, w.size]));
    return [...ids].sort().map((gw) => this.#peerView(gw, cosigs.get(gw) ?? null));
  }

  #peerView(gw: string, cosignedOurs: number | null): PeerView {
    const origin = chainOrigin(this.c.o.trust.siteId, gw);
    const p = this.c.peers.get(origin);
    const r = this.c.settled(origin);
    const size = r?.size ?? 0;
    const announced = p?.target?.size ?? null;
    const lag = Math.max(0, (announced ?? size) - size);
    const flag = this.s.evidence().reverse().find((e) => e.origin === origin && e.refused);
    let state: PeerSyncState;
    if (this.s.blocked().has(origin)) state = 'equivocated';
    else if (this.s.auditFailed(origin)) state = 'refused';
    else if (this.s.revokedHere(gw)) state = 'revoked';
    else if (p?.pulling !== undefined || lag > 0) state = 'syncing';
    else if (announced === null) state = 'waiting';
    else state = 'synced';
    return { gateway: gw, origin, state, size, announced, lag, lastContact: this.#contact.get(gw) ?? null, cosignedOurs, refusal: this.#refusals.get(gw) ?? null, evidence: flag?.id ?? null };
  }

  gatewayState(): GatewayStateMessage {
    return {
      state: 'online',
      at: this.c.now(),
      chain: { origin: this.c.origin, size: this.c.chain()?.size ?? 0 },
      compromised: this.compromised(),
      peers: this.peerViews(),
      evidence: this.s.evidence(),
    };
  }

  /** Publishes the gateway state soon (at most once per STATE_MIN_MS), and again every STATE_REFRESH_MS. */
  schedule(): void {
    const c = this.c;
    if (c.stopped() || c.chain() === undefined) return;
    c.emit('peers');
    const due = Math.max(0, this.#at + STATE_MIN_MS - c.now());
    if (this.#timer !== undefined && due > 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#at = c.now();
      void this.links.publishAll(c.topics.gatewayState(c.o.gatewayId), JSON.stringify(this.gatewayState()), true);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.schedule();
      }, STATE_REFRESH_MS).unref();
    }, due).unref();
  }

  /** Sets the gateway state to offline on every broker before the links close (the will covers a crash). */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    const payload = JSON.stringify({ state: 'offline', at: this.c.now() });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000);
      timer.unref();
    });
    await Promise.race([this.links.publishAll(this.c.topics.gatewayState(this.c.o.gatewayId), payload, true), waited]);
    clearTimeout(timer);
  }
}
