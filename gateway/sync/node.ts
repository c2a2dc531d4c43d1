/**
 * Chain sync between the gateways of a site. docs/SYNC.md (design) and docs/PROTOCOL.md §Sync
 * (messages).
 *
 * A SyncNode holds one link per broker it is given (gateway/sync/transport.ts; MQTT by default):
 * in the mesh topology its own embedded broker and each peer's; with an external broker, that one
 * broker. Every link runs the same code: the node publishes its own signed checkpoint (retained),
 * answers range requests for any chain it holds (serve.ts), fetches what it lacks of peer chains
 * and verifies it before storing (pull.ts, ledger/peer.ts), audits their lock signatures
 * (audit.ts), cosigns what it verified (cosign.ts), counts the cosignatures of its own chain, and
 * turns inconsistent checkpoints into equivocation evidence (evidence.ts, own-chain.ts). This file
 * composes those parts, routes the messages of the links to them, and holds the replicas.
 *
 * Nothing a peer sends is trusted: checkpoints must carry the chain gateway's signature (the
 * key from the chain's own site-signed roster), blocks are verified before they are stored, a
 * range must extend the stored chain through a consistency proof from the stored checkpoint,
 * and every message is decoded within a byte bound. A failure is reported as a 'refused' event
 * with its error code and changes nothing stored; honest peers keep syncing meanwhile.
 */
import { EventEmitter } from 'node:events';
import { OtiError, isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { Signer } from '../../ledger/crypto.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { chainOrigin, type Chain, type BlockEvent } from '../../ledger/chain.js';
import { ChainReplica } from '../../ledger/peer.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { ChainReader } from '../../ledger/reader.js';
import type { Roster } from '../../ledger/roster.js';
import { TopicMap, type GatewayStateMessage } from '../broker/topics.js';
import { Auditor } from './audit.js';
import { DEFAULT_SYNC_MESSAGE_BYTES, PeerTable, type SyncContext, type SyncEvents, type SyncOptions } from './context.js';
import { Cosigner } from './cosign.js';
import { EvidenceBook } from './evidence.js';
import { Inboxes } from './inbox.js';
import { Links } from './links.js';
import type { Link } from './context.js';
import { OwnChainGuard } from './own-chain.js';
import { Puller } from './pull.js';
import { RepeatLog } from '../repeat-log.js';
import { Server } from './serve.js';
import { SyncStatus } from './status.js';
import { MqttTransport } from './transport-mqtt.js';
import type { EvidenceView, PeerView } from './view.js';
import { CoverageTracker } from './witness.js';
import { RANGE_OVERHEAD_BYTES } from './wire.js';

/** Recovery: how long the other peers are waited for after the first answered (when what it holds is not known to be enough). */
const PROBE_GRACE_MS = 2000;

export { DEFAULT_SYNC_MESSAGE_BYTES, DEFAULT_STALL_MS, DEFAULT_WINDOW_ENTRIES } from './context.js';
export type { SyncEvents, SyncOptions, SyncProgress, SyncRefusal } from './context.js';
export type { SyncLink, SyncTransport } from './transport.js';

export class SyncNode extends EventEmitter<SyncEvents> {
  readonly origin: string;
  readonly topics: TopicMap;
  readonly coverage: CoverageTracker;
  readonly #o: SyncOptions;
  readonly #now: () => number;
  readonly #c: SyncContext;
  readonly #peers: PeerTable;
  readonly #links: Links;
  readonly #inboxes: Inboxes;
  readonly #pull: Puller;
  readonly #serve: Server;
  readonly #audit: Auditor;
  readonly #cosign: Cosigner;
  readonly #evidence: EvidenceBook;
  readonly #own: OwnChainGuard;
  readonly #status: SyncStatus;
  readonly #refusalLog = new RepeatLog();
  readonly #replicas = new Map<string, Promise<ChainReplica>>();
  /** Replicas opened and known to hold (or be fetching) a peer chain of this site. */
  readonly #settled = new Map<string, ChainReplica>();
  #chain: Chain | undefined;
  /** The own chain as stored, until the chain is attached (its roster, see #rosters). */
  #self: ChainReplica | undefined;
  #onBlock: ((b: BlockEvent) => void) | undefined;
  #stopped = false;

  constructor(opts: SyncOptions) {
    super();
    this.#o = { ...opts, transport: opts.transport ?? new MqttTransport(opts.mqtt) };
    this.origin = chainOrigin(opts.trust.siteId, opts.gatewayId);
    this.topics = new TopicMap(opts.trust.siteId);
    this.#now = opts.now ?? Date.now;
    const maxBytes = opts.maxMessageBytes ?? DEFAULT_SYNC_MESSAGE_BYTES;
    if (maxBytes < RANGE_OVERHEAD_BYTES + 16 * 1024) throw new OtiError('ERR_ARGUMENT', `maxMessageBytes must be at least ${RANGE_OVERHEAD_BYTES + 16 * 1024}`, { argument: 'maxMessageBytes' });
    this.coverage = new CoverageTracker(opts.gatewayId, () => this.quorum, () => opts.externalQuorum ?? 0);
    this.#peers = new PeerTable(opts.trust.siteId);
    this.#c = this.#context();
    this.#links = new Links(this.#c, {
      message: (link, topic, payload) => this.#onMessage(link, topic, payload),
      connect: (link) => this.#onConnect(link),
      close: (link) => this.#inboxes.closeWhere((i) => i.link === link),
    });
    this.#inboxes = new Inboxes(maxBytes);
    this.#pull = new Puller(this.#c, this.#links, this.#inboxes);
    this.#serve = new Server(this.#c, this.#links, maxBytes);
    this.#audit = new Auditor(this.#c);
    this.#cosign = new Cosigner(this.#c, this.#links, new Signer(opts.key.seed), this.coverage);
    this.#evidence = new EvidenceBook(this.#c, this.#links, (gw, key) => this.isRefusedGateway(gw, key), (gw) => this.#rosterKey(gw));
    this.#own = new OwnChainGuard(this.#c);
    this.#status = new SyncStatus(this.#c, this.#links, {
      coverage: this.coverage,
      settledOrigins: () => this.#settled.keys(),
      blocked: () => this.#evidence.blocked,
      evidence: () => this.#evidence.views(),
      auditFailed: (origin) => this.#audit.failed(origin),
      revokedHere: (gw) => this.#revoked(gw),
    });
  }

  /** The node as its parts see it (gateway/sync/context.ts). */
  #context(): SyncContext {
    return {
      o: this.#o,
      origin: this.origin,
      topics: this.topics,
      peers: this.#peers,
      now: () => this.#now(),
      stopped: () => this.#stopped,
      chain: () => this.#chain,
      replica: (origin) => this.replica(origin),
      settledReplica: async (origin) => {
        const r = await this.replica(origin);
        if (origin !== this.origin) this.#settled.set(origin, r);
        return r;
      },
      settled: (origin) => this.#settled.get(origin),
      blocked: (origin) => this.#evidence.blocked.has(origin),
      refused: (origin) => this.#refused(origin),
      evidenceWaits: (origin) => this.#evidence.waiting(origin),
      refuse: (origin, peer, e) => this.#refuse(origin, peer, e),
      guard: (peer, f) => this.#guard(peer, f),
      emit: (event, ...args) => EventEmitter.prototype.emit.call(this, event, ...args),
      contact: (gw) => this.#status.contact(gw),
      scheduleState: () => this.#status.schedule(),
      equivocation: (ev, key) => this.#evidence.found(ev, key),
      cosign: (origin) => this.#cosign.cosign(origin),
      audit: (origin) => this.#audit.audit(origin),
      retryCosigs: () => this.#cosign.retry(),
      checkOwn: (cp) => this.#own.check(cp),
      retryEvidence: () => this.#evidence.retry(),
      closeInboxes: (origin) => this.#inboxes.closeWhere((i) => i.chain === origin),
    };
  }

  /** Confirmation quorum, the origin included: configured, or a majority of the gateways known. */
  get quorum(): number {
    if (this.#o.quorum !== undefined) return this.#o.quorum;
    return Math.floor(this.knownGateways().length / 2) + 1;
  }

  /** Refused: after equivocation (until a technician clears it) or a failed audit of its lock signatures. */
  #refused(origin: string): boolean {
    return this.#evidence.blocked.has(origin) || this.#audit.failed(origin);
  }

  /**
   * This gateway and every gateway whose chain it holds or that announced one, unless refused or
   * revoked in any roster held here: a revocation is recorded in the chains of the gateways that
   * took it, never in the revoked gateway's own, so its own roster cannot be the one asked.
   */
  knownGateways(): string[] {
    const out = new Set<string>([this.#o.gatewayId]);
    for (const p of this.#peers.values()) if (!this.#refused(p.origin) && p.target !== undefined && !this.#revoked(p.gatewayId)) out.add(p.gatewayId);
    for (const r of this.#settled.values()) {
      const { gatewayId } = parseOrigin(r.origin);
      if (r.roster.get('gateway', gatewayId) !== undefined && !this.#revoked(gatewayId) && !this.#refused(r.origin)) out.add(gatewayId);
    }
    return [...out];
  }

  /** True when a roster held here (a peer chain's or the own) lists `gatewayId` as revoked. */
  #revoked(gatewayId: string): boolean {
    return this.#rosters().some((x) => x.get('gateway', gatewayId)?.revoked === true);
  }

  /** The key a roster held here gives `gatewayId` (the first that lists it), if any. */
  #rosterKey(gatewayId: string): Uint8Array | undefined {
    for (const r of this.#rosters()) {
      const m = r.get('gateway', gatewayId);
      if (m !== undefined) return m.key;
    }
    return undefined;
  }

  /** True when this gateway's rosters list `gatewayId` as revoked or under another key (for credentials). */
  isRefusedGateway(gatewayId: string, key: Uint8Array): boolean {
    const rosters = this.#rosters();
    return rosters.some((r) => {
      const m = r.get('gateway', gatewayId);
      return m !== undefined && (m.revoked || !bytesEqual(m.key, key));
    });
  }

  /**
   * True for this gateway itself (its enrolment was checked at start, even before its chain is
   * open), and when one of its rosters lists `gatewayId` and none lists it as revoked (for the
   * broker's retained messages).
   */
  isRosterGateway(gatewayId: string): boolean {
    if (gatewayId === this.#o.gatewayId) return true;
    const rosters = this.#rosters();
    const members = rosters.map((r) => r.get('gateway', gatewayId)).filter((m) => m !== undefined);
    return members.length > 0 && members.every((m) => !m.revoked);
  }

  /** Origins refused after equivocation, until a technician clears them (sync-flags.ts). */
  get blocked(): ReadonlySet<string> {
    return this.#evidence.blocked;
  }

  /** The replica of a peer chain (opened on first use). */
  replica(origin: string): Promise<ChainReplica> {
    let r = this.#replicas.get(origin);
    if (r === undefined) {
      const role = origin === this.origin ? 'self' : 'peer';
      // The own chain, recovered from peers, is checked whole before it is stored.
      const lockSignatures = role === 'peer' ? (this.#o.lockSignatures ?? 'audit') : 'before-storing';
      r = ChainReplica.open(this.#o.store, origin, role, { trust: this.#o.trust, lockSignatures, ...(this.#o.pool !== undefined ? { pool: this.#o.pool } : {}) });
      this.#replicas.set(origin, r);
      r.catch(() => this.#replicas.delete(origin));
    }
    return r;
  }

  /** The stores of the peer chains held here (GET /chains, /events?chain=, oti_chain_entries). */
  storedChains(): ChainReader[] {
    return [...this.#settled.values()].map((r) => r);
  }

  /**
   * Every roster held here: the peer chains' and this gateway's own. Before the chain is attached
   * (start-up waits for the recovery of the own chain, gateway/sync/recovery.ts), the own roster is the
   * stored one: a gateway revoked there is refused during that wait too.
   */
  #rosters(): Roster[] {
    const own = this.#chain?.roster ?? this.#self?.roster;
    return [...[...this.#settled.values()].map((r) => r.roster), ...(own !== undefined ? [own] : [])];
  }

  /** Connects every link and subscribes; resolves once each link has connected once or failed. */
  async start(): Promise<void> {
    await this.#evidence.load();
    if (this.#chain === undefined) this.#self = await this.replica(this.origin);
    for (const { origin, role } of await this.#o.store.listChains()) {
      if (role === 'peer' && origin.startsWith(`oti/${this.#o.trust.siteId}/`)) this.#settled.set(origin, await this.replica(origin));
    }
    // Audits a restart interrupted.
    for (const origin of this.#settled.keys()) this.#audit.audit(origin);
    await Promise.all(this.#o.brokers.map((url) => this.#links.connect(url)));
  }

  /**
   * Adds a peer's broker (found by discovery, or configured) to the links; no-op for one already
   * linked. The transport reconnects a link that drops, so a peer that comes back is resumed.
   */
  async addBroker(url: string): Promise<void> {
    if (this.#stopped || this.#links.has(url)) return;
    await this.#links.connect(url);
  }

  /**
   * Starts serving and announcing the gateway's own chain (after Chain.open). Each new block's
   * checkpoint is published retained on every link, the latest only when blocks come faster.
   */
  attachChain(chain: Chain): void {
    if (chain.origin !== this.origin) throw new OtiError('ERR_ARGUMENT', `the chain is ${chain.origin}, this node syncs for ${this.origin}`);
    this.#chain = chain;
    this.#self = undefined;
    this.#onBlock = () => {
      this.#own.made(chain.checkpoint);
      // A roster statement appended here (oti roster submit) may give the key that waiting evidence needs.
      void this.#guard(this.#o.gatewayId, () => this.#evidence.retry());
      this.#links.announce();
      this.#own.grew(chain.checkpoint?.size ?? 0);
    };
    chain.on('block', this.#onBlock);
    this.#own.made(chain.checkpoint);
    this.#links.announce();
    this.#own.attached();
    this.#status.schedule();
    this.#cosign.attached();
  }

  /**
   * Recovery after a restore or a re-flash: before the chain is opened for appending, asks the
   * peers for this gateway's own chain beyond what is stored and stores every verified block
   * (role "self"), so that Chain.open continues from the tip and never forks the chain.
   * Peers are those whose retained checkpoints arrive within `settleMs` of subscribing, plus
   * those whose chains are stored, less those revoked in a roster held here. All are asked for
   * their head at once, so that one offline or silent peer cannot use up the time of the others;
   * those that answered are then pulled from, the longest first (docs/SYNC.md §Recovery).
   * `need`: the size of the last-checkpoint record, if any. Returns the sizes before and after,
   * the peers asked and those that answered.
   */
  async recoverOwnChain(opts: { timeoutMs: number; settleMs?: number; need?: number }): Promise<{ before: number; after: number; peers: string[]; answered: string[] }> {
    const deadline = this.#now() + opts.timeoutMs;
    const replica = await this.replica(this.origin);
    const before = replica.size;
    // The settle window starts once every link has subscribed (the brokers send their retained
    // checkpoints right after the SUBACK), so a slow connection does not eat it; a broker whose
    // first connection failed (a peer offline) is not waited for, and a slow one holds it up for
    // at most half the time allowed.
    let bound: NodeJS.Timeout | undefined;
    const subscribed = this.#links.all.map((l) => l.firstAttempt.then((ok) => (ok ? l.subscribed : undefined)));
    await Promise.race([Promise.all(subscribed), new Promise<void>((resolve) => (bound = setTimeout(resolve, opts.timeoutMs / 2)))]);
    clearTimeout(bound);
    await new Promise((resolve) => setTimeout(resolve, Math.min(opts.settleMs ?? 1000, Math.max(0, deadline - this.#now()))));
    const peers = new Set<string>([...this.#peers.values()].map((p) => p.gatewayId));
    for (const r of this.#settled.values()) peers.add(parseOrigin(r.origin).gatewayId);
    peers.delete(this.#o.gatewayId);
    for (const gw of peers) if (this.#revoked(gw)) peers.delete(gw);
    const heads = await this.#askHeads([...peers], Math.max(opts.need ?? 0, this.#own.retained?.size ?? 0), deadline);
    for (const [gw, size] of [...heads].sort((x, y) => y[1] - x[1])) {
      if (size <= replica.size) break;
      // The link the peer was heard on first, then every other connected one: a link can drop
      // during the pull (a broker restarting, a cable), and any broker the peer is linked to reaches it.
      const tried = new Set<Link>();
      for (;;) {
        const link = this.#recoveryLink(gw, tried);
        if (link === undefined || this.#now() >= deadline) break;
        tried.add(link);
        const answered = await this.#pull.pull(this.origin, gw, link, deadline).catch((e: unknown) => {
          this.#refuse(this.origin, gw, e);
          return true; // refused: this peer is not asked again
        });
        if (answered) break;
      }
    }
    return { before, after: replica.size, peers: [...peers], answered: [...heads.keys()] };
  }

  /**
   * Asks every peer at once for its head of the own chain; returns the size each that answered
   * holds. Stops waiting for the rest once an answer reaches `need` (the most this gateway is known
   * to have published: nobody holds more); else PROBE_GRACE_MS after the first answer, or after
   * the start when the ledger already holds `need`; else at `deadline` (a stall at most).
   */
  async #askHeads(peers: readonly string[], need: number, deadline: number): Promise<Map<string, number>> {
    const own = await this.replica(this.origin);
    const heads = new Map<string, number>();
    let enough: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (enough = resolve));
    let grace: NodeJS.Timeout | undefined;
    if (need > 0 && own.size >= need) grace = setTimeout(enough, PROBE_GRACE_MS);
    const asked = peers.map(async (gw) => {
      const link = this.#recoveryLink(gw, new Set());
      if (link === undefined) return;
      const h = await this.#pull.head(this.origin, gw, link, deadline).catch((e: unknown) => {
        this.#refuse(this.origin, gw, e);
        return 'silent' as const;
      });
      if (h === 'silent') return;
      heads.set(gw, h === 'nothing-more' ? own.size : h.size);
      if (need > 0 && heads.get(gw)! >= need) enough();
      grace ??= setTimeout(enough, PROBE_GRACE_MS);
    });
    await Promise.race([Promise.all(asked), done]);
    clearTimeout(grace);
    // The peers still silent are not waited for: their requests end now.
    this.#inboxes.closeWhere((i) => i.chain === this.origin);
    await Promise.all(asked);
    return heads;
  }

  /** A connected link not tried yet for recovering the own chain from `gw`: the one it was heard on first. */
  #recoveryLink(gw: string, tried: ReadonlySet<Link>): Link | undefined {
    const heard = this.#peers.get(chainOrigin(this.#o.trust.siteId, gw))?.link;
    if (heard !== undefined && heard.t.connected && !tried.has(heard)) return heard;
    return this.#links.connected().find((l) => !tried.has(l));
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const p of this.#peers.values()) clearTimeout(p.retry);
    await this.#status.stop();
    if (this.#chain !== undefined && this.#onBlock !== undefined) this.#chain.off('block', this.#onBlock);
    this.#inboxes.closeWhere(() => true);
    await this.#links.end();
    await Promise.all([...this.#peers.values()].map((p) => p.pulling ?? Promise.resolve()));
    await this.#audit.stop();
  }

  /** The largest checkpoint of the own chain seen on a broker, verified with this gateway's key (recovery compares it with what it holds). */
  get retainedOwn(): SignedCheckpoint | undefined {
    return this.#own.retained;
  }

  // ---- links -------------------------------------------------------------------------------

  async #onConnect(link: Link): Promise<void> {
    const t = this.topics;
    const me = this.#o.gatewayId;
    const filters = [
      `${t.root}/chain/+/checkpoint`,
      `${t.root}/chain/${me}/cosig/+`,
      `${t.root}/chain/${me}/req/+`,
      `${t.root}/chain/+/range/${me}`,
      `${t.root}/evidence/+`,
    ];
    try {
      await link.t.subscribe(filters, 1);
      link.markSubscribed();
      if (this.#chain?.checkpoint !== undefined) await this.#links.publishOwn(link, this.#chain.checkpoint);
      for (const p of this.#peers.values()) if (p.cosigned > 0) this.#cosign.cosign(p.origin);
      if (this.#chain !== undefined) await this.#links.publish(link, t.gatewayState(me), JSON.stringify(this.gatewayState()), true);
    } catch (e) {
      this.#o.logger?.warn({ url: link.url, err: (e as Error).message }, 'sync link could not subscribe');
    }
  }

  #onMessage(link: Link, topic: string, payload: Buffer): void {
    if (this.#stopped) return;
    const d = this.topics.parse(topic);
    if (d === undefined) return;
    const me = this.#o.gatewayId;
    switch (d.kind) {
      case 'checkpoint':
        if (payload.length === 0) return;
        if (d.gateway === me) void this.#guard(me, () => this.#own.received(payload));
        else void this.#guard(d.gateway, () => this.#pull.announced(link, d.gateway, payload));
        return;
      case 'cosignature':
        if (d.gateway === me && payload.length > 0) void this.#guard(d.witness, () => this.#cosign.received(d.witness, payload));
        return;
      case 'syncRequest':
        if (d.gateway === me && d.requester !== me) this.#serve.queue(link, d.requester, payload);
        return;
      case 'syncRange':
        if (d.requester === me) void this.#guard(d.gateway, () => Promise.resolve(this.#onRange(d.gateway, payload)));
        return;
      case 'evidence':
        // From `me` too: another copy of this gateway may have found it (its own echo is already stored, so skipped).
        if (payload.length > 0) void this.#guard(d.gateway, () => this.#evidence.received(d.gateway, payload));
        return;
      default:
        return;
    }
  }

  /** A range message: decoded and queued for the pull that asked for it (late, replayed or unasked ones are dropped unread). */
  #onRange(responder: string, payload: Buffer): void {
    if (this.#inboxes.receive(responder, payload)) this.#status.contact(responder);
  }

  /** Runs a handler; any failure becomes a 'refused' event (never an unhandled rejection). */
  async #guard(peer: string, f: () => Promise<void>): Promise<void> {
    try {
      await f();
    } catch (e) {
      this.#refuse(undefined, peer, e);
    }
  }

  #refuse(origin: string | undefined, peer: string, e: unknown): void {
    if (this.#stopped) return;
    const code: ErrorCode = isOtiError(e) ? e.code : 'ERR_INTERNAL';
    const o = origin ?? (isOtiError(e) && typeof e.details?.['origin'] === 'string' ? e.details['origin'] : undefined);
    const message = (e as Error).message;
    const now = this.#now();
    // Late copies of older checkpoints arrive routinely over several links: not worth a warning.
    const level = code === 'ERR_SYNC_STALE' ? 'debug' : 'warn';
    if (level === 'warn') this.#status.recordRefusal(peer, code, message, now);
    // The same refusal again and again (a peer that keeps sending what is refused) is logged once a minute, counted in between.
    const admitted = level === 'debug' ? { suppressed: 0 } : this.#refusalLog.admit(peer, code, now);
    if (admitted !== undefined) {
      const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more like it since the last such line)` : '';
      this.#o.logger?.[level]({ origin: o, peer, code, suppressed: admitted.suppressed }, `sync refused a message from ${peer}: ${message}${more}`);
    }
    this.emit('refused', { origin: o, peer, code, message });
  }

  // ---- what sync shows ---------------------------------------------------------------------

  /** Evidence stored here, newest last. */
  evidence(): EvidenceView[] {
    return this.#evidence.views();
  }

  /** Gateways of the site whose key signed two inconsistent checkpoints (refused until cleared). */
  compromised(): string[] {
    return this.#status.compromised();
  }

  /** Every other gateway of the site known here: from its checkpoints, its stored chain, refusals or evidence. */
  peerViews(): PeerView[] {
    return this.#status.peerViews();
  }

  /** What this gateway publishes, retained, on oti/<site>/gateways/<gw>/state on every broker it is linked to. */
  gatewayState(): GatewayStateMessage {
    return this.#status.gatewayState();
  }

  /** Publishes the gateway state again soon (e.g. after something else set a plainer one on the own broker). */
  refreshState(): void {
    this.#status.schedule();
  }
}
