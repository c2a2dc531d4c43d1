/**
 * Chain sync between the gateways of a site, over MQTT. docs/SYNC.md (design) and
 * docs/PROTOCOL.md §Sync (messages).
 *
 * A SyncNode holds one mqtt.js connection ("link") per broker it is given: in the mesh topology
 * its own embedded broker and each peer's; with an external broker, that one broker. Every link
 * runs the same code: the node publishes its own signed checkpoint (retained), answers range
 * requests for any chain it holds, fetches what it lacks of peer chains and verifies it before
 * storing (ledger/peer.ts), cosigns what it verified (gateway/sync/witness.ts), counts the
 * cosignatures of its own chain, and turns inconsistent checkpoints into equivocation evidence.
 *
 * Nothing a peer sends is trusted: checkpoints must carry the chain gateway's signature (the
 * key from the chain's own site-signed roster), blocks are verified before they are stored, a
 * range must extend the stored chain through a consistency proof from the stored checkpoint,
 * and every message is decoded within a byte bound. A failure is reported as a 'refused' event
 * with its error code and changes nothing stored; honest peers keep syncing meanwhile.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { OtiError, isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import { Signer, type KeyPair } from '../../ledger/crypto.js';
import { chainOrigin, type Chain, type BlockEvent } from '../../ledger/chain.js';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { compareWithChain, decodeEvidence, encodeEvidence, verifyEvidence, type Equivocation } from '../../ledger/evidence.js';
import { consistencyProof, rangeHash, verifyConsistency } from '../../ledger/merkle.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { ChainReplica, type ReplicaBlock } from '../../ledger/peer.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { LedgerStore, ChainStore } from '../../ledger/store.js';
import type { Roster, SignedStatement, SiteTrust } from '../../ledger/roster.js';
import type { SignaturePool } from '../../ledger/sigpool.js';
import { TopicMap, type GatewayStateMessage } from '../broker/topics.js';
import { makeGatewayCredential, type GatewayLogin } from '../broker/credentials.js';
import { cosign, verifyCosignature, CoverageTracker } from './witness.js';
import { BLOCK_FRAMING_BYTES, ENTRY_FRAMING_BYTES, MAX_REQUEST_ENTRIES, RANGE_OVERHEAD_BYTES, decodeRange, decodeRequest, encodeRange, encodeRequest, type RangeMessage } from './wire.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { blockChain, listRefusedChains } from './flags.js';
import { RefusalLog } from './refusal-log.js';
import type { EvidenceView, PeerRefusal, PeerSyncState, PeerView } from './view.js';

export const DEFAULT_SYNC_MESSAGE_BYTES = 256 * 1024;
export const DEFAULT_WINDOW_ENTRIES = 16_384;
export const DEFAULT_STALL_MS = 15_000;
/** Entries of an incomplete block a fetch buffers at most (a block is at most this long). */
const MAX_PENDING_ENTRIES = 65_536;

export interface SyncOptions {
  readonly store: LedgerStore;
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  /** MQTT URLs: the own embedded broker and each peer's (mesh), or one external broker. */
  readonly brokers: readonly string[];
  /** Extra mqtt.js options per connection (TLS `ca`, `rejectUnauthorized`, …). */
  readonly mqtt?: Partial<IClientOptions>;
  /** A fresh login for each (re)connection; default: a signed gateway credential. */
  readonly login?: () => GatewayLogin;
  readonly pool?: SignaturePool;
  /** Largest range message sent (must fit the brokers' maxMessageBytes); default 256 KiB. */
  readonly maxMessageBytes?: number;
  /** Entries asked for per request (at most 65,536); default 16,384. */
  readonly windowEntries?: number;
  /** A request that brings nothing for this long is given up and retried later; default 15 s. */
  readonly stallMs?: number;
  /** Gateways whose cosignatures confirm (origin included); default a majority of the known gateways. */
  readonly quorum?: number;
  /** External witnesses (witness.external) whose cosignatures confirmation also needs (witness.externalQuorum). */
  readonly externalQuorum?: number;
  /**
   * When the lock signatures of peer chains are checked: 'audit' (default), after storing, by
   * ChainReplica.audit() on the pool, before anything is cosigned; or 'before-storing'.
   */
  readonly lockSignatures?: 'audit' | 'before-storing';
  readonly logger?: Logger;
  readonly now?: () => number;
  /**
   * Awaited before a checkpoint of the own chain is published: the gateway records it outside
   * the ledger first (gateway/sync/checkpoint-record.ts), so it never signs one inconsistent with a
   * checkpoint a peer has seen, even after losing its ledger.
   */
  readonly beforeAnnounce?: (cp: SignedCheckpoint) => Promise<void>;
}

export interface SyncProgress {
  readonly origin: string;
  readonly size: number;
  /** Entries the responder announced beyond what is stored. */
  readonly remaining: number;
  readonly entriesPerSecond: number;
}

export interface SyncRefusal {
  readonly origin: string | undefined;
  /** The gateway whose message was refused (topic identity). */
  readonly peer: string;
  readonly code: ErrorCode;
  readonly message: string;
}

export interface SyncEvents {
  progress: [SyncProgress];
  /** A chain replica reached the size its responder holds. */
  synced: [{ origin: string; size: number }];
  refused: [SyncRefusal];
  /** Equivocation evidence stored (and published when found here); the chain is refused from now on. */
  evidence: [{ origin: string; id: string; reporter: string }];
  /** The sync view of the peers changed (a pull ended, a refusal, evidence): see peerViews(). */
  peers: [];
  /** A verified cosignature of this gateway's own chain. */
  cosigned: [{ witness: string; size: number; name: string; key: Uint8Array; checkpoint: SignedCheckpoint }];
  /** The lock signatures of a peer chain are checked up to `size` (its audit; see lockSignatures). */
  audited: [{ origin: string; size: number }];
}

interface Link {
  readonly url: string;
  readonly client: MqttClient;
  /** Settles once the link's first subscription is acknowledged: retained messages come right after. */
  readonly subscribed: Promise<void>;
  readonly markSubscribed: () => void;
  /** A checkpoint publication on this link has not finished (or timed out) yet. */
  announcing?: boolean;
  /** A newer checkpoint arrived meanwhile: publish it when the current one is done. */
  announceDirty?: boolean;
}

/** After a pull that ended short of its target, the next attempt starts this much later. */
const PULL_RETRY_MS = 1000;
/** After an audit was interrupted by something other than the chain (a worker died), the next try; doubled up to the max. */
const AUDIT_RETRY_MS = 5000;
const AUDIT_RETRY_MAX_MS = 300_000;
/** How long one link's checkpoint publication may hold up the next one on that link. */
const ANNOUNCE_WAIT_MS = 5000;
/** A pull that is refused (a bad proof, a bad block) is tried again after this, doubled each time up to the max. */
const PULL_BACKOFF_MS = 1000;
const PULL_BACKOFF_MAX_MS = 60_000;
/** The gateway state on the gateways topic: at most one publication per this, and one at least every STATE_REFRESH_MS. */
const STATE_MIN_MS = 2000;
const STATE_REFRESH_MS = 30_000;
/** Own checkpoints remembered for recognising their echoes (older ones are checked against the chain). */
const MADE_KEPT = 64;
/** Peers whose refusals are kept for the status (the topic names are not all real gateways). */
const MAX_REFUSAL_RECORDS = 256;

interface PeerState {
  readonly origin: string;
  readonly gatewayId: string;
  /** Largest checkpoint announced for the chain (verified when the key is known). */
  target: SignedCheckpoint | undefined;
  link: Link | undefined;
  pulling: Promise<void> | undefined;
  cosigned: number;
  /** Pulls refused in a row, and when the next may start (see PULL_BACKOFF_MS). */
  failures: number;
  retryAt: number;
  retry: NodeJS.Timeout | undefined;
}

interface Inbox {
  readonly id: number;
  readonly responder: string;
  readonly chain: string;
  readonly queue: RangeMessage[];
  wake: (() => void) | undefined;
  closed: boolean;
}

export class SyncNode extends EventEmitter<SyncEvents> {
  readonly origin: string;
  readonly topics: TopicMap;
  readonly coverage: CoverageTracker;
  readonly #o: SyncOptions;
  readonly #signer: Signer;
  readonly #now: () => number;
  readonly #maxBytes: number;
  readonly #window: number;
  readonly #stallMs: number;
  readonly #links: Link[] = [];
  readonly #peers = new Map<string, PeerState>();
  readonly #replicas = new Map<string, Promise<ChainReplica>>();
  /** Replicas opened and known to hold (or be fetching) a peer chain of this site. */
  readonly #settled = new Map<string, ChainReplica>();
  readonly #inboxes = new Map<number, Inbox>();
  readonly #inboxLinks = new WeakMap<Inbox, Link>();
  readonly #serving = new Map<string, { busy: boolean; next: { link: Link; payload: Buffer } | undefined }>();
  /** Cosignatures of the own chain whose witness key is not known yet: latest per witness. */
  readonly #pendingCosigs = new Map<string, Buffer>();
  #blocked = new Set<string>();
  /** Peer chains whose audit is running, asked for again meanwhile, or failed (not pulled further). */
  readonly #auditing = new Set<string>();
  readonly #auditRuns = new Map<string, Promise<void>>();
  /** Retries waiting after an interrupted audit, and the delay of the next one. */
  readonly #auditRetries = new Map<string, NodeJS.Timeout>();
  readonly #auditDelay = new Map<string, number>();
  readonly #auditAgain = new Set<string>();
  readonly #auditFailed = new Set<string>();
  /** Evidence stored here, by id (loaded at start, added as found or received). */
  readonly #evidence = new Map<string, EvidenceView>();
  /** Last verified message per gateway, and the last refusal of each peer's messages. */
  readonly #contact = new Map<string, number>();
  readonly #refusals = new Map<string, PeerRefusal>();
  readonly #refusalLog = new RefusalLog();
  /** A checkpoint signed with this gateway's key, larger than its chain: compared once the chain gets there. */
  #ownAhead: SignedCheckpoint | undefined;
  /** The latest checkpoints this gateway made (size → root), so that their echoes are recognised without hashing. */
  readonly #made = new Map<number, Uint8Array>();
  #stateTimer: NodeJS.Timeout | undefined;
  #stateAt = 0;
  #chain: Chain | undefined;
  /** The own chain as stored, until the chain is attached (its roster, see #rosters). */
  #self: ChainReplica | undefined;
  #onBlock: ((b: BlockEvent) => void) | undefined;
  #ownRetained: SignedCheckpoint | undefined;
  #seq = randomBytes(4).readUInt32BE(0) >>> 1;
  #stopped = false;

  constructor(opts: SyncOptions) {
    super();
    this.#o = opts;
    this.origin = chainOrigin(opts.trust.siteId, opts.gatewayId);
    this.topics = new TopicMap(opts.trust.siteId);
    this.#signer = new Signer(opts.key.seed);
    this.#now = opts.now ?? Date.now;
    this.#maxBytes = opts.maxMessageBytes ?? DEFAULT_SYNC_MESSAGE_BYTES;
    if (this.#maxBytes < RANGE_OVERHEAD_BYTES + 16 * 1024) throw new OtiError('ERR_ARGUMENT', `maxMessageBytes must be at least ${RANGE_OVERHEAD_BYTES + 16 * 1024}`, { argument: 'maxMessageBytes' });
    this.#window = Math.min(MAX_REQUEST_ENTRIES, Math.max(1, opts.windowEntries ?? DEFAULT_WINDOW_ENTRIES));
    this.#stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.coverage = new CoverageTracker(opts.gatewayId, () => this.quorum, () => opts.externalQuorum ?? 0);
  }

  /** Confirmation quorum, the origin included: configured, or a majority of the gateways known. */
  get quorum(): number {
    if (this.#o.quorum !== undefined) return this.#o.quorum;
    return Math.floor(this.knownGateways().length / 2) + 1;
  }

  /** Refused: after equivocation (until a technician clears it) or a failed audit of its lock signatures. */
  #refused(origin: string): boolean {
    return this.#blocked.has(origin) || this.#auditFailed.has(origin);
  }

  /** This gateway and every gateway whose chain it holds, unless revoked or refused. */
  knownGateways(): string[] {
    const out = new Set<string>([this.#o.gatewayId]);
    for (const p of this.#peers.values()) if (!this.#refused(p.origin) && p.target !== undefined) out.add(p.gatewayId);
    for (const r of this.#settledReplicas()) {
      const { gatewayId } = parseOrigin(r.origin);
      const m = r.roster.get('gateway', gatewayId);
      if (m !== undefined && !m.revoked && !this.#refused(r.origin)) out.add(gatewayId);
    }
    return [...out];
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
    return this.#blocked;
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
  storedChains(): ChainStore[] {
    return this.#settledReplicas().map((r) => r.cs);
  }

    #settledReplicas(): ChainReplica[] {
    return [...this.#settled.values()];
  }

  /**
   * Every roster held here: the peer chains' and this gateway's own. Before the chain is attached
   * (start-up waits for the recovery of the own chain, gateway/sync/recovery.ts), the own roster is the
   * stored one: a gateway revoked there is refused during that wait too.
   */
  #rosters(): Roster[] {
    const own = this.#chain?.roster ?? this.#self?.roster;
    return [...this.#settledReplicas().map((r) => r.roster), ...(own !== undefined ? [own] : [])];
  }

  /** Connects every link and subscribes; resolves once each link has connected once or failed. */
  async start(): Promise<void> {
    await this.#loadEvidence();
    if (this.#chain === undefined) this.#self = await this.replica(this.origin);
    for (const { origin, role } of await this.#o.store.listChains()) {
      if (role === 'peer' && origin.startsWith(`oti/${this.#o.trust.siteId}/`)) this.#settled.set(origin, await this.replica(origin));
    }
    // Audits a restart interrupted.
    for (const origin of this.#settled.keys()) this.#audit(origin);
    await Promise.all(this.#o.brokers.map((url) => this.#connect(url)));
  }

  /**
   * Adds a peer's broker (found by discovery, or configured) to the links; no-op for one already
   * linked. mqtt.js reconnects a link that drops, so a peer that comes back is resumed.
   */
  async addBroker(url: string): Promise<void> {
    if (this.#stopped || this.#links.some((l) => l.url === url)) return;
    await this.#connect(url);
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
      this.#rememberMade(chain.checkpoint);
      this.#announce();
      if (this.#ownAhead !== undefined && this.#ownAhead.size <= (chain.checkpoint?.size ?? 0)) void this.#guard(this.#o.gatewayId, () => this.#checkOwn(this.#ownAhead!));
    };
    chain.on('block', this.#onBlock);
    this.#rememberMade(chain.checkpoint);
    this.#announce();
    if (this.#ownRetained !== undefined) void this.#guard(this.#o.gatewayId, () => this.#checkOwn(this.#ownRetained!));
    this.#scheduleState();
    for (const [witness, payload] of this.#pendingCosigs) void this.#guard(witness, () => this.#onCosignature(witness, payload));
  }

  /**
   * Recovery after a restore or a re-flash: before the chain is opened for appending, asks the
   * peers for this gateway's own chain beyond what is stored and stores every verified block
   * (role "self"), so that Chain.open continues from the tip and never forks the chain.
   * Peers are those whose retained checkpoints arrive within `settleMs` of subscribing, plus
   * those whose chains are stored. Returns the size before and after.
   */
  async recoverOwnChain(opts: { timeoutMs: number; settleMs?: number }): Promise<{ before: number; after: number; peers: string[] }> {
    const deadline = this.#now() + opts.timeoutMs;
    const replica = await this.replica(this.origin);
    const before = replica.size;
    // The settle window starts once every link has subscribed (the brokers send their retained
    // checkpoints right after the SUBACK), so a slow connection does not eat it; an unreachable
    // broker holds it up for at most half the time allowed.
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.#links.map((l) => l.subscribed)), new Promise<void>((resolve) => (bound = setTimeout(resolve, opts.timeoutMs / 2)))]);
    clearTimeout(bound);
    await this.#sleep(Math.min(opts.settleMs ?? 1000, Math.max(0, deadline - this.#now())));
    const peers = new Set<string>([...this.#peers.values()].map((p) => p.gatewayId));
    for (const r of this.#settledReplicas()) peers.add(parseOrigin(r.origin).gatewayId);
    peers.delete(this.#o.gatewayId);
    for (const gw of peers) {
      if (this.#now() >= deadline) break;
      const link = this.#peers.get(chainOrigin(this.#o.trust.siteId, gw))?.link ?? this.#links.find((l) => l.client.connected);
      if (link === undefined) break;
      await this.#pull(this.origin, gw, link, deadline).catch((e: unknown) => this.#refuse(this.origin, gw, e));
    }
    const after = replica.size;
    if (this.#ownRetained !== undefined && this.#ownRetained.size > after) {
      this.#o.logger?.warn({ retained: this.#ownRetained.size, stored: after }, 'a retained checkpoint of this gateway’s chain is ahead of what the peers could give');
    }
    return { before, after, peers: [...peers] };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#stateTimer);
    for (const p of this.#peers.values()) clearTimeout(p.retry);
    await this.#publishOffline();
    if (this.#chain !== undefined && this.#onBlock !== undefined) this.#chain.off('block', this.#onBlock);
    for (const inbox of this.#inboxes.values()) this.#closeInbox(inbox);
    await Promise.all(this.#links.map((l) => l.client.endAsync(true).catch(() => undefined)));
    await Promise.all([...this.#peers.values()].map((p) => p.pulling ?? Promise.resolve()));
    for (const retry of this.#auditRetries.values()) clearTimeout(retry);
    this.#auditRetries.clear();
    // Running audits stop at their next block; their watermarks keep what was checked.
    for (const origin of this.#auditRuns.keys()) void this.replica(origin).then((r) => r.stopAudit(), () => undefined);
    await Promise.all(this.#auditRuns.values());
  }

  // ---- links -------------------------------------------------------------------------------

  #login(): GatewayLogin {
    return this.#o.login?.() ?? makeGatewayCredential({ siteId: this.#o.trust.siteId, gatewayId: this.#o.gatewayId, key: this.#o.key, enrolment: this.#o.enrolment, now: this.#now() });
  }

  #connect(url: string): Promise<void> {
    const login = this.#login();
    const client = connect(url, {
      clientId: `oti-sync-${this.#o.gatewayId}-${randomBytes(4).toString('hex')}`,
      username: login.username,
      password: login.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      clean: true,
      resubscribe: false,
      will: { topic: this.topics.gatewayState(this.#o.gatewayId), payload: Buffer.from(JSON.stringify({ state: 'offline', at: this.#now() })), qos: 1, retain: true },
      ...this.#o.mqtt,
    });
    let markSubscribed = (): void => undefined;
    const subscribed = new Promise<void>((resolve) => (markSubscribed = resolve));
    const link: Link = { url, client, subscribed, markSubscribed };
    this.#links.push(link);
    // A credential is fresh for 10 minutes: each reconnection logs in with a new one.
    client.on('reconnect', () => {
      client.options.password = this.#login().password;
    });
    client.on('message', (topic, payload) => this.#onMessage(link, topic, payload));
    client.on('error', (e) => this.#o.logger?.debug({ url, err: e.message }, 'sync link error'));
    client.on('close', () => {
      for (const inbox of this.#inboxes.values()) if (this.#peerLinkOf(inbox) === link) this.#closeInbox(inbox);
    });
    client.on('connect', () => void this.#onConnect(link));
    return new Promise((resolve) => {
      const done = (): void => {
        client.off('connect', done);
        client.off('error', done);
        resolve();
      };
      client.once('connect', done);
      client.once('error', done);
    });
  }

  #peerLinkOf(inbox: Inbox): Link | undefined {
    return this.#inboxLinks.get(inbox);
  }

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
      await link.client.subscribeAsync(filters, { qos: 1 });
      link.markSubscribed();
      if (this.#chain?.checkpoint !== undefined) await this.#publishOwn(link, this.#chain.checkpoint);
      for (const p of this.#peers.values()) if (p.cosigned > 0) this.#cosign(p.origin);
      if (this.#chain !== undefined) await this.#publish(link, t.gatewayState(me), JSON.stringify(this.gatewayState()), true);
    } catch (e) {
      this.#o.logger?.warn({ url: link.url, err: (e as Error).message }, 'sync link could not subscribe');
    }
  }

  async #publish(link: Link, topic: string, payload: Uint8Array | string, retain: boolean): Promise<void> {
    if (!link.client.connected) return;
    await link.client.publishAsync(topic, typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: 1, retain });
  }

  /** Publishes a checkpoint of the own chain (retained), once it is recorded (beforeAnnounce). */
  async #publishOwn(link: Link, cp: SignedCheckpoint): Promise<void> {
    await this.#o.beforeAnnounce?.(cp);
    await this.#publish(link, this.topics.checkpoint(this.#o.gatewayId), cp.note, true);
  }

  async #publishAll(topic: string, payload: Uint8Array | string, retain: boolean): Promise<void> {
    await Promise.all(this.#links.map((l) => this.#publish(l, topic, payload, retain).catch(() => undefined)));
  }

  /** Publishes the own chain's latest checkpoint; coalesces bursts (one publish in flight). */
  /**
   * Publishes the latest checkpoint on every link, each link on its own: a link whose broker
   * went away (a QoS 1 publication then waits for its PUBACK until a reconnect that may never
   * come) must not hold up the announcements on the others, nor later ones on itself for more
   * than ANNOUNCE_WAIT_MS. (Re)connecting links publish the current checkpoint in #onConnect.
   */
  #announce(): void {
    if (this.#chain?.checkpoint === undefined || this.#stopped) return;
    for (const link of this.#links) this.#announceOn(link);
  }

  #announceOn(link: Link): void {
    const cp = this.#chain?.checkpoint;
    if (cp === undefined || this.#stopped) return;
    if (link.announcing === true) {
      link.announceDirty = true;
      return;
    }
    link.announcing = true;
    link.announceDirty = false;
    let timer: NodeJS.Timeout | undefined;
    const published = this.#publishOwn(link, cp).catch(() => undefined);
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ANNOUNCE_WAIT_MS);
      timer.unref();
    });
    void Promise.race([published, waited]).finally(() => {
      clearTimeout(timer);
      link.announcing = false;
      if (link.announceDirty === true) this.#announceOn(link);
    });
  }

  #onMessage(link: Link, topic: string, payload: Buffer): void {
    if (this.#stopped) return;
    const d = this.topics.parse(topic);
    if (d === undefined) return;
    const me = this.#o.gatewayId;
    switch (d.kind) {
      case 'checkpoint':
        if (payload.length === 0) return;
        if (d.gateway === me) void this.#guard(me, () => this.#onOwnCheckpoint(payload));
        else void this.#guard(d.gateway, () => this.#onCheckpoint(link, d.gateway, payload));
        return;
      case 'cosignature':
        if (d.gateway === me && payload.length > 0) void this.#guard(d.witness, () => this.#onCosignature(d.witness, payload));
        return;
      case 'syncRequest':
        if (d.gateway === me && d.requester !== me) this.#queueServe(link, d.requester, payload);
        return;
      case 'syncRange':
        if (d.requester === me) void this.#guard(d.gateway, () => Promise.resolve(this.#onRange(d.gateway, payload)));
        return;
      case 'evidence':
        // From `me` too: another copy of this gateway may have found it (its own echo is already stored, so skipped).
        if (payload.length > 0) void this.#guard(d.gateway, () => this.#onEvidence(d.gateway, payload));
        return;
      default:
        return;
    }
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
    if (level === 'warn') this.#recordRefusal(peer, code, message, now);
    // The same refusal again and again (a peer that keeps sending what is refused) is logged once a minute, counted in between.
    const admitted = level === 'debug' ? { suppressed: 0 } : this.#refusalLog.admit(peer, code, now);
    if (admitted !== undefined) {
      const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more like it since the last such line)` : '';
      this.#o.logger?.[level]({ origin: o, peer, code, suppressed: admitted.suppressed }, `sync refused a message from ${peer}: ${message}${more}`);
    }
    this.emit('refused', { origin: o, peer, code, message });
  }

  // ---- checkpoints and fetching ------------------------------------------------------------

  #peer(gw: string): PeerState {
    const origin = chainOrigin(this.#o.trust.siteId, gw);
    let p = this.#peers.get(origin);
    if (p === undefined) {
      p = { origin, gatewayId: gw, target: undefined, link: undefined, pulling: undefined, cosigned: 0, failures: 0, retryAt: 0, retry: undefined };
      this.#peers.set(origin, p);
    }
    return p;
  }

  async #settledReplica(origin: string): Promise<ChainReplica> {
    const r = await this.replica(origin);
    if (origin !== this.origin) this.#settled.set(origin, r);
    return r;
  }

  async #onOwnCheckpoint(payload: Buffer): Promise<void> {
    const cp = parseCheckpoint(payload);
    verifyCheckpoint(cp, this.origin, this.#o.key.publicKey);
    if (this.#ownRetained === undefined || cp.size > this.#ownRetained.size) this.#ownRetained = cp;
    await this.#checkOwn(cp);
  }

  /**
   * A checkpoint signed with this gateway's key (its own echo, a retained one, or one a witness
   * cosigned) must be one this gateway made: one that does not match its chain is proof that the
   * key signs elsewhere too (a copy of this gateway's data folder runs somewhere): evidence
   * against its own chain. One larger than the chain is compared once the chain gets there.
   */
  async #checkOwn(cp: SignedCheckpoint): Promise<void> {
    const ours = this.#chain?.checkpoint;
    if (ours === undefined || this.#blocked.has(this.origin)) return;
    if (cp.size > ours.size) {
      if (this.#ownAhead === undefined || cp.size < this.#ownAhead.size || this.#ownAhead.size <= ours.size) this.#ownAhead = cp;
      return;
    }
    if (this.#ownAhead !== undefined && this.#ownAhead.size <= ours.size && this.#ownAhead !== cp) {
      const pending = this.#ownAhead;
      this.#ownAhead = undefined;
      await this.#checkOwn(pending);
    }
    const made = this.#made.get(cp.size);
    if (made !== undefined && bytesEqual(cp.root, made)) return;
    if (cp.size === ours.size && bytesEqual(cp.root, ours.root)) return;
    const ev = await compareWithChain(this.#chain!.cs, ours, cp, this.#o.key.publicKey);
    if (ev !== undefined) await this.#equivocation(ev, this.#o.key.publicKey);
  }

  async #onCheckpoint(link: Link, gw: string, payload: Buffer): Promise<void> {
    const origin = chainOrigin(this.#o.trust.siteId, gw);
    if (this.#blocked.has(origin)) throw new OtiError('ERR_EQUIVOCATION', `chain ${origin} is refused after equivocation`, { origin });
    const cp = parseCheckpoint(payload);
    if (cp.origin !== origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `a checkpoint of ${cp.origin} was published for ${origin}`, { origin });
    const replica = await this.#settledReplica(origin);
    const key = replica.gatewayKey(gw);
    const peer = this.#peer(gw);
    if (key !== undefined) {
      verifyCheckpoint(cp, origin, key);
      this.#contact.set(gw, this.#now());
      if (cp.size <= replica.size) {
        const ev = await compareWithChain(replica.cs, replica.checkpoint!, cp, key);
        if (ev !== undefined) return this.#equivocation(ev, key);
        peer.link ??= link;
        // Consistent and already held: a duplicate (same size, from another link) is quietly
        // cosigned; an older one is a replay and is refused.
        if (cp.size < replica.size) throw new OtiError('ERR_SYNC_STALE', `checkpoint ${origin} @ ${cp.size} is older than the verified ${replica.size}`, { origin });
        this.#cosign(origin);
        return;
      }
    }
    if (peer.target === undefined || cp.size > peer.target.size) {
      peer.target = cp;
      peer.link = link;
    }
    this.#startPull(peer);
  }

  #startPull(peer: PeerState): void {
    if (peer.pulling !== undefined || peer.link === undefined || this.#stopped || this.#refused(peer.origin)) return;
    // After refused pulls, the next waits (doubling): a peer that keeps failing is not asked 3 times a second.
    const wait = peer.retryAt - this.#now();
    if (wait > 0) {
      peer.retry ??= setTimeout(() => {
        peer.retry = undefined;
        this.#startPull(peer);
      }, wait).unref();
      return;
    }
    // The link the checkpoint came on may be down by now (a cut cable): any connected link
    // reaches the responder, which listens for requests on every broker it is linked to.
    if (!peer.link.client.connected) peer.link = this.#links.find((l) => l.client.connected) ?? peer.link;
    const link = peer.link;
    peer.pulling = this.#pull(peer.origin, peer.gatewayId, link, Number.POSITIVE_INFINITY)
      .then(
        () => {
          peer.failures = 0;
          peer.retryAt = 0;
        },
        (e: unknown) => {
          peer.retryAt = this.#now() + Math.min(PULL_BACKOFF_MAX_MS, PULL_BACKOFF_MS * 2 ** Math.min(16, peer.failures));
          peer.failures++;
          this.#refuse(peer.origin, peer.gatewayId, e);
        },
      )
      .finally(() => {
        this.#scheduleState();
        peer.pulling = undefined;
        // The audit of what was stored comes after the pull, so that a catch-up is not slowed by it.
        this.#audit(peer.origin);
        void this.#afterPull(peer).catch((e: unknown) => this.#refuse(peer.origin, peer.gatewayId, e));
      });
  }

  /** Once a pull ends: check the announced checkpoint against what is stored, cosign, or pull again. */
  async #afterPull(peer: PeerState): Promise<void> {
    if (this.#stopped || this.#refused(peer.origin)) return;
    const replica = await this.replica(peer.origin);
    const target = peer.target;
    if (target === undefined) return;
    const key = replica.gatewayKey(peer.gatewayId);
    if (target.size <= replica.size && key !== undefined && replica.checkpoint !== undefined) {
      verifyCheckpoint(target, peer.origin, key);
      const ev = await compareWithChain(replica.cs, replica.checkpoint, target, key);
      if (ev !== undefined) return this.#equivocation(ev, key);
      this.emit('synced', { origin: peer.origin, size: replica.size });
      this.#cosign(peer.origin);
    } else if (target.size > replica.size) {
      // The pull ended short of the announced checkpoint (it stalled, or its link went down),
      // also when nothing of the chain is stored yet: try again shortly, on the next connected
      // link (a broker that drops the requests, or a second copy of this gateway that takes the
      // answers there, must not hold the pull forever), rather than wait for a checkpoint that an
      // idle peer may never send.
      const others = this.#links.filter((l) => l !== peer.link && l.client.connected);
      if (others.length > 0) peer.link = others[Math.floor(Math.random() * others.length)];
      const retry = setTimeout(() => this.#startPull(peer), PULL_RETRY_MS);
      retry.unref();
    }
    this.#retryCosigs();
  }

  /**
   * Pulls chain `origin` from `responder` window by window until the responder has nothing more
   * (or `deadline`). Each window starts at the stored size; the responder proves that its tree
   * extends the stored one (root at the stored size + consistency proof to its signed head)
   * before any block is taken; blocks are verified and stored as they complete.
   */
  async #pull(origin: string, responder: string, link: Link, deadline: number): Promise<void> {
    const replica = await this.#settledReplica(origin);
    const { gatewayId } = parseOrigin(origin);
    const started = this.#now();
    const startSize = replica.size;
    for (;;) {
      if (this.#stopped || this.#refused(origin) || this.#now() >= deadline) return;
      const from = replica.size;
      const id = (this.#seq = (this.#seq + 1) >>> 0);
      const inbox: Inbox = { id, responder, chain: origin, queue: [], wake: undefined, closed: false };
      this.#inboxes.set(id, inbox);
      this.#inboxLinks.set(inbox, link);
      let head: SignedCheckpoint | undefined;
      let pending: Uint8Array[] = [];
      let position = from;
      try {
        // Not awaited: a QoS 1 publication on a link that went away waits for a reconnect that
        // may never come (and stop() would wait on it). The answer, a stall, or stop() ends the wait.
        this.#publish(link, this.topics.syncRequest(responder, this.#o.gatewayId), encodeRequest({ id, chain: origin, from, to: from + this.#window }), false).catch(() => this.#closeInbox(inbox));
        let first = true;
        for (;;) {
          const msg = await this.#next(inbox, Math.min(this.#stallMs, Math.max(1, deadline - this.#now())));
          if (msg === undefined) return; // stalled or link closed: retried on the next checkpoint
          if (msg.chain !== origin || msg.first !== position) throw new OtiError('ERR_BLOCK_INVALID', `range for ${origin} starts at ${msg.first}, expected ${position}`, { origin });
          if (first) {
            first = false;
            head = await this.#checkHead(replica, gatewayId, from, msg);
            if (head === undefined) return;
          }
          pending = pending.length === 0 ? [...msg.entries] : pending.concat(msg.entries);
          position += msg.entries.length;
          const blocks: ReplicaBlock[] = [];
          let used = 0;
          for (const b of msg.blocks) {
            const h = decodeBlockHeader(b.h);
            if (h.count > pending.length - used) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} of ${origin} claims more entries than were sent`, { origin });
            blocks.push({ headerBytes: b.h, checkpoint: parseCheckpoint(b.cp), entries: pending.slice(used, used + h.count) });
            used += h.count;
          }
          pending = pending.slice(used);
          if (pending.length > MAX_PENDING_ENTRIES) throw new OtiError('ERR_BLOCK_INVALID', `more than ${MAX_PENDING_ENTRIES} entries of ${origin} arrived without their block`, { origin });
          if (blocks.length > 0) {
            await replica.append(blocks);
            const secs = Math.max(0.001, (this.#now() - started) / 1000);
            this.emit('progress', { origin, size: replica.size, remaining: Math.max(0, head!.size - replica.size), entriesPerSecond: Math.round((replica.size - startSize) / secs) });
          }
          if (msg.end) break;
        }
      } finally {
        this.#closeInbox(inbox);
        this.#inboxes.delete(id);
      }
      if (replica.size <= from || head === undefined || head.size <= replica.size) {
        if (replica.size > from || (head !== undefined && head.size <= replica.size)) this.emit('synced', { origin, size: replica.size });
        return;
      }
    }
  }

  /**
   * Checks the first message of a window: the responder's signed head, and, when something is
   * stored already, that the responder's tree at the stored size has the stored root (a
   * consistency proof ties it to the head). A proof that fails is the responder's fault
   * (refused); a valid proof to another root is equivocation by the chain's gateway.
   * Returns undefined when the responder has nothing beyond `from`.
   */
  async #checkHead(replica: ChainReplica, gatewayId: string, from: number, msg: RangeMessage): Promise<SignedCheckpoint | undefined> {
    const origin = replica.origin;
    if (msg.head === undefined) return undefined;
    const head = parseCheckpoint(msg.head);
    if (head.origin !== origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the head sent for ${origin} is of ${head.origin}`, { origin });
    const key = replica.gatewayKey(gatewayId);
    if (key === undefined) return head.size > from ? head : undefined; // verified block by block from block 0
    verifyCheckpoint(head, origin, key);
    const ours = replica.checkpoint!;
    if (head.size <= from) {
      const ev = await compareWithChain(replica.cs, ours, head, key);
      if (ev !== undefined) await this.#equivocation(ev, key);
      return undefined;
    }
    if (msg.root === undefined || msg.proof === undefined || !verifyConsistency(from, head.size, msg.root, head.root, msg.proof)) {
      throw new OtiError('ERR_PROOF_INVALID', `the responder did not prove that ${origin} @ ${head.size} extends the stored ${from} entries`, { origin });
    }
    if (!bytesEqual(msg.root, ours.root)) {
      await this.#equivocation({ origin, a: ours, b: head, root: msg.root, proof: msg.proof }, key);
      return undefined;
    }
    return head;
  }

  #next(inbox: Inbox, timeoutMs: number): Promise<RangeMessage | undefined> {
    const ready = inbox.queue.shift();
    if (ready !== undefined || inbox.closed) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        inbox.wake = undefined;
        resolve(undefined);
      }, timeoutMs);
      inbox.wake = () => {
        clearTimeout(timer);
        inbox.wake = undefined;
        resolve(inbox.queue.shift());
      };
    });
  }

  #closeInbox(inbox: Inbox): void {
    inbox.closed = true;
    inbox.wake?.();
  }

  #onRange(responder: string, payload: Buffer): void {
    const msg = decodeRange(payload, this.#maxBytes);
    const inbox = this.#inboxes.get(msg.id);
    // A response to no open request (late, replayed or unasked) is dropped unread.
    if (inbox === undefined || inbox.responder !== responder || inbox.closed) return;
    this.#contact.set(responder, this.#now());
    inbox.queue.push(msg);
    inbox.wake?.();
  }

  // ---- serving -----------------------------------------------------------------------------

  /** One request served at a time per requester; a newer one waiting replaces an older one. */
  #queueServe(link: Link, requester: string, payload: Buffer): void {
    let s = this.#serving.get(requester);
    if (s === undefined) {
      s = { busy: false, next: undefined };
      this.#serving.set(requester, s);
    }
    s.next = { link, payload };
    if (s.busy) return;
    s.busy = true;
    void (async () => {
      while (s.next !== undefined && !this.#stopped) {
        const job = s.next;
        s.next = undefined;
        await this.#guard(requester, () => this.#serve(job.link, requester, job.payload));
      }
      s.busy = false;
    })();
  }

  /** The store and latest checkpoint of a chain this gateway can serve. */
  async #source(origin: string): Promise<{ cs: ChainStore; head: SignedCheckpoint } | undefined> {
    if (this.#refused(origin)) return undefined;
    if (origin === this.origin) {
      const c = this.#chain;
      if (c !== undefined) {
        const head = c.checkpoint;
        if (head === undefined) return undefined;
        // What is served is as good as published: recorded first (beforeAnnounce).
        await this.#o.beforeAnnounce?.(head);
        return { cs: c.cs, head };
      }
    }
    let p: parseOriginResult;
    try {
      p = parseOrigin(origin);
    } catch {
      return undefined;
    }
    if (p.siteId !== this.#o.trust.siteId) return undefined;
    const chains = await this.#o.store.listChains();
    if (!chains.some((c) => c.origin === origin)) return undefined;
    const r = await this.replica(origin);
    return r.checkpoint === undefined ? undefined : { cs: r.cs, head: r.checkpoint };
  }

  async #serve(link: Link, requester: string, payload: Buffer): Promise<void> {
    const req = decodeRequest(payload);
    const topic = this.topics.syncRange(this.#o.gatewayId, requester);
    const src = await this.#source(req.chain);
    const empty = (head?: string): Promise<void> => this.#publish(link, topic, encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true, ...(head !== undefined ? { head } : {}) }), false);
    if (src === undefined) return empty();
    const { cs, head } = src;
    const size = head.size;
    if (req.from >= size) {
      const proofPart = req.from === size ? { root: head.root, proof: [] } : {};
      return this.#publish(link, topic, encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true, head: head.note, ...proofPart }), false);
    }
    let block = req.from === 0 ? await cs.getBlock(0) : await cs.blockOf(req.from);
    const firstExtras = req.from > 0 ? { head: head.note, root: await rangeHash(cs, 0, req.from), proof: await consistencyProof(cs, req.from, size) } : { head: head.note };
    // A size that is no block boundary here: the requester holds another tree of this chain (a
    // fork by a second copy of its gateway). Blocks cannot start there, but the root at that size
    // and its proof to the head can: with them the requester holds evidence instead of retrying.
    if (block.header.first !== req.from) return this.#publish(link, topic, encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true, ...firstExtras }), false);
    const budget = this.#maxBytes - RANGE_OVERHEAD_BYTES;
    let msg: { first: number; entries: Uint8Array[]; blocks: { h: Uint8Array; cp: string }[]; bytes: number } = { first: req.from, entries: [], blocks: [], bytes: 0 };
    let sentFirst = false;
    const flush = async (end: boolean): Promise<void> => {
      const extras = sentFirst ? {} : firstExtras;
      sentFirst = true;
      await this.#publish(link, topic, encodeRange({ id: req.id, chain: req.chain, first: msg.first, entries: msg.entries, blocks: msg.blocks, end, ...extras }), false);
      msg = { first: msg.first + msg.entries.length, entries: [], blocks: [], bytes: 0 };
    };
    let n = block.header.n;
    const lastBlock = head.block;
    for (;;) {
      const h = block.header;
      const entries = await cs.entryRange(h.first, h.first + h.count);
      for (const e of entries) {
        if (msg.bytes + e.length + ENTRY_FRAMING_BYTES > budget && msg.entries.length > 0) await flush(false);
        msg.entries.push(e);
        msg.bytes += e.length + ENTRY_FRAMING_BYTES;
      }
      const cpNote = block.checkpoint.note;
      const extra = block.headerBytes.length + cpNote.length + BLOCK_FRAMING_BYTES;
      if (msg.bytes + extra > budget) await flush(false);
      msg.blocks.push({ h: block.headerBytes, cp: cpNote });
      msg.bytes += extra;
      n++;
      if (n > lastBlock || h.first + h.count >= req.to || this.#stopped) break;
      block = await cs.getBlock(n);
    }
    await flush(true);
  }

  // ---- auditing ----------------------------------------------------------------------------

  /**
   * Runs the audit of a peer replica's lock signatures in the background, once a pull has ended
   * (one run at a time per replica; a run covers what was stored meanwhile), then cosigns what
   * it passed. A failure is
   * a refusal of that gateway's chain: nothing beyond it is cosigned, it is not pulled further,
   * and a restart finds it again.
   */
  #audit(origin: string): void {
    if (this.#stopped) return;
    // A run going on, or a retry waiting after an interruption: this request is served by it.
    if (this.#auditing.has(origin) || this.#auditRetries.has(origin)) {
      if (this.#auditing.has(origin)) this.#auditAgain.add(origin);
      return;
    }
    this.#auditing.add(origin);
    const run = this.replica(origin)
      .then(async (r) => {
        const before = r.audited.size;
        const state = await r.audit();
        this.#auditDelay.delete(origin);
        if (state.size > before) {
          this.emit('audited', { origin, size: state.size });
          this.#cosign(origin);
        }
        if (state.failure !== undefined && !this.#auditFailed.has(origin)) {
          this.#auditFailed.add(origin);
          this.#refuse(origin, parseOrigin(origin).gatewayId, state.failure);
        }
      })
      .catch((e: unknown) => {
        if (this.#stopped) return;
        // Not the chain's fault (a signature worker died, the store failed): one retry, later
        // each time it fails again (up to AUDIT_RETRY_MAX_MS); requests meanwhile wait for it.
        const delay = Math.min(AUDIT_RETRY_MAX_MS, this.#auditDelay.get(origin) ?? AUDIT_RETRY_MS);
        this.#auditDelay.set(origin, delay * 2);
        this.#o.logger?.warn({ origin, err: (e as Error).message }, `audit of ${origin} interrupted, retried in ${delay / 1000} s: ${(e as Error).message}`);
        this.#auditAgain.delete(origin);
        const retry = setTimeout(() => {
          this.#auditRetries.delete(origin);
          this.#audit(origin);
        }, delay);
        retry.unref();
        this.#auditRetries.set(origin, retry);
      })
      .finally(() => {
        this.#auditing.delete(origin);
        this.#auditRuns.delete(origin);
        if (this.#auditAgain.delete(origin)) this.#audit(origin);
      });
    this.#auditRuns.set(origin, run);
  }

  // ---- witnessing --------------------------------------------------------------------------

  /** Publishes this gateway's cosignature of the latest verified checkpoint of a peer chain. */
  #cosign(origin: string): void {
    const r = this.#settled.get(origin);
    const peer = this.#peers.get(origin);
    const cp = r?.checkpoint;
    if (cp === undefined || peer === undefined || this.#refused(origin)) return;
    // Only what the audit passed: a cosignature vouches for the lock signatures too.
    if (r!.audited.size < cp.size) {
      this.#audit(origin);
      return;
    }
    if (cp.size <= peer.cosigned && this.#links.every((l) => l.client.connected)) return;
    peer.cosigned = Math.max(peer.cosigned, cp.size);
    const note = cosign(cp, this.#signer, this.origin, Math.floor(this.#now() / 1000)).note;
    void this.#publishAll(this.topics.cosignature(peer.gatewayId, this.#o.gatewayId), note, true);
  }

  async #onCosignature(witness: string, payload: Buffer): Promise<void> {
    const chain = this.#chain;
    if (chain === undefined) {
      this.#pendingCosigs.set(witness, payload);
      return;
    }
    const cp = parseCheckpoint(payload);
    if (cp.origin !== this.origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `a cosignature for ${this.origin} carries a checkpoint of ${cp.origin}`);
    verifyCheckpoint(cp, this.origin, this.#o.key.publicKey);
    if (this.#blocked.has(this.origin)) return; // this gateway's key signs elsewhere too: nothing it counts is confirmed
    // A cosigned checkpoint this gateway did not make is evidence that its key is used elsewhere.
    await this.#checkOwn(cp);
    const made = chain.checkpoint?.size ?? 0;
    if (cp.size > made) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `${witness} cosigned size ${cp.size} of a chain of ${made} entries: a checkpoint this gateway has not made (checked again once its chain gets there)`);
    const wOrigin = chainOrigin(this.#o.trust.siteId, witness);
    const wr = await this.replica(wOrigin);
    const wm = wr.roster.get('gateway', witness);
    if (wm === undefined) {
      this.#pendingCosigs.set(witness, payload); // checked once the witness's chain is known
      return;
    }
    this.#pendingCosigs.delete(witness);
    if (wm.revoked || this.#refused(wOrigin)) throw new OtiError('ERR_ROSTER', `witness ${witness} is revoked or refused`);
    const ts = verifyCosignature(cp, wOrigin, wm.key, Math.floor(this.#now() / 1000));
    if (ts === undefined) throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `no valid cosignature by ${witness}`, { origin: this.origin });
    this.#contact.set(witness, this.#now());
    this.coverage.record(witness, cp.size, ts);
    this.emit('cosigned', { witness, size: cp.size, name: wOrigin, key: wm.key, checkpoint: cp });
  }

  /** Re-checks cosignatures that waited for their witness's key. */
  #retryCosigs(): void {
    if (this.#chain === undefined) return;
    for (const [witness, payload] of this.#pendingCosigs) {
      if (this.#settled.has(chainOrigin(this.#o.trust.siteId, witness))) void this.#guard(witness, () => this.#onCosignature(witness, payload));
    }
  }

  // ---- equivocation ------------------------------------------------------------------------

  async #equivocation(ev: Equivocation, key: Uint8Array): Promise<void> {
    if (!verifyEvidence(ev, key)) throw new OtiError('ERR_PROOF_INVALID', `inconsistent checkpoints of ${ev.origin} did not make valid evidence`, { origin: ev.origin });
    const { gatewayId } = parseOrigin(ev.origin);
    if (this.#keyWithdrawn(gatewayId, key)) {
      throw new OtiError('ERR_ROSTER', `inconsistent checkpoints of ${ev.origin}, signed with a key of ${gatewayId} that is revoked or replaced here: not refused again (docs/SYNC.md §Equivocation)`, { origin: ev.origin });
    }
    // Found twice at once (two checks in flight): the first one stands, one record per chain.
    if (this.#blocked.has(ev.origin)) throw new OtiError('ERR_EQUIVOCATION', `chain ${ev.origin} is refused after equivocation`, { origin: ev.origin });
    const bytes = encodeEvidence(ev);
    const id = await this.#storeEvidence(ev, bytes, this.#o.gatewayId);
    for (const inbox of this.#inboxes.values()) if (inbox.chain === ev.origin) this.#closeInbox(inbox);
    const self = ev.origin === this.origin ? ' (this gateway: its key signs elsewhere too, e.g. a copy of its data folder runs on another device)' : '';
    this.#o.logger?.error({ origin: ev.origin, evidence: id }, `equivocation: ${ev.origin} signed two inconsistent checkpoints${self}; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    await this.#publishAll(this.topics.evidence(this.#o.gatewayId), bytes, true);
    this.emit('evidence', { origin: ev.origin, id, reporter: this.#o.gatewayId });
    this.#scheduleState();
    throw new OtiError('ERR_EQUIVOCATION', `${ev.origin} equivocated (evidence ${id})`, { origin: ev.origin, evidence: id });
  }

  async #onEvidence(reporter: string, payload: Buffer): Promise<void> {
    const ev = decodeEvidence(payload);
    const { siteId, gatewayId } = parseOrigin(ev.origin);
    if (siteId !== this.#o.trust.siteId || this.#blocked.has(ev.origin)) return;
    const key = ev.origin === this.origin ? this.#o.key.publicKey : (await this.replica(ev.origin)).gatewayKey(gatewayId);
    if (key === undefined || !verifyEvidence(ev, key)) throw new OtiError('ERR_PROOF_INVALID', `evidence from ${reporter} against ${ev.origin} does not verify here`, { origin: ev.origin });
    if (this.#blocked.has(ev.origin)) return;
    if (this.#keyWithdrawn(gatewayId, key)) {
      // Retained on the brokers of gateways that have not cleared it yet: already dealt with here.
      this.#o.logger?.debug({ origin: ev.origin, reporter }, `evidence from ${reporter} against ${ev.origin}: the key that signed it is revoked or replaced here, nothing more to refuse`);
      return;
    }
    const id = await this.#storeEvidence(ev, payload, reporter);
    for (const inbox of this.#inboxes.values()) if (inbox.chain === ev.origin) this.#closeInbox(inbox);
    // Passed on to every broker this gateway is linked to, so that every gateway and app of the site gets it.
    await this.#publishAll(this.topics.evidence(this.#o.gatewayId), payload, true);
    this.#o.logger?.error({ origin: ev.origin, evidence: id, reporter }, `equivocation: ${reporter} holds evidence that ${ev.origin} signed two inconsistent checkpoints; its chain is refused until a technician re-keys the gateway and clears it (docs/SYNC.md §Equivocation)`);
    this.emit('evidence', { origin: ev.origin, id, reporter });
    this.#scheduleState();
  }

  #rememberMade(cp: SignedCheckpoint | undefined): void {
    if (cp === undefined) return;
    this.#made.set(cp.size, cp.root);
    if (this.#made.size > MADE_KEPT) this.#made.delete(this.#made.keys().next().value!);
  }

  /**
   * The technician's path (docs/SYNC.md §Equivocation) ends with `oti evidence clear` once a
   * roster held here revokes the gateway or gives it another key: evidence signed with that key
   * (the same evidence again, retained on gateways not cleared yet, or a new finding) refuses
   * nothing more. The command's rule (provisioning/evidence.ts), from the rosters sync holds.
   */
  #keyWithdrawn(gatewayId: string, key: Uint8Array): boolean {
    return this.isRefusedGateway(gatewayId, key);
  }

  /** Stores evidence and the refused flag of its chain; returns its id. */
  async #storeEvidence(ev: Equivocation, bytes: Uint8Array, reporter: string): Promise<string> {
    // Flagged before the first await, so that a second finding meanwhile stops at the check above.
    this.#blocked.add(ev.origin);
    const id = await this.#o.store.recordEvidence('equivocation', bytes);
    const at = this.#now();
    await blockChain(this.#o.store, ev.origin, id, at, reporter);
    this.#evidence.set(id, evidenceView(id, ev, reporter, at, true));
    return id;
  }

  /** The refused flags and the evidence records of the store. */
  async #loadEvidence(): Promise<void> {
    const flags = await listRefusedChains(this.#o.store);
    this.#blocked = new Set(flags.map((f) => f.origin));
    for (const { key, record } of await this.#o.store.listEvidence()) {
      const id = key.slice(key.indexOf('/') + 1);
      let ev: Equivocation;
      try {
        ev = decodeEvidence(record);
      } catch {
        continue;
      }
      const flag = flags.find((f) => f.evidence === id);
      this.#evidence.set(id, evidenceView(id, ev, flag?.reporter ?? null, flag?.at ?? null, this.#blocked.has(ev.origin)));
    }
  }

  /** Evidence stored here, newest last. */
  evidence(): EvidenceView[] {
    return [...this.#evidence.values()];
  }

  /** Gateways of the site whose key signed two inconsistent checkpoints (refused until cleared). */
  compromised(): string[] {
    return [...this.#blocked].map((o) => parseOrigin(o).gatewayId).sort();
  }

  #recordRefusal(peer: string, code: ErrorCode, message: string, at: number): void {
    const prev = this.#refusals.get(peer);
    if (prev === undefined && this.#refusals.size >= MAX_REFUSAL_RECORDS) return;
    this.#refusals.set(peer, { code, message, at, count: (prev?.count ?? 0) + 1 });
    if (prev === undefined || prev.code !== code) this.#scheduleState();
  }

  /** Every other gateway of the site known here: from its checkpoints, its stored chain, refusals or evidence. */
  peerViews(): PeerView[] {
    const ids = new Set<string>();
    for (const p of this.#peers.values()) ids.add(p.gatewayId);
    for (const o of this.#settled.keys()) ids.add(parseOrigin(o).gatewayId);
    for (const o of this.#blocked) ids.add(parseOrigin(o).gatewayId);
    ids.delete(this.#o.gatewayId);
    const cosigs = new Map(this.coverage.witnesses().map((w) => [w.witness, w.size]));
    return [...ids].sort().map((gw) => this.#peerView(gw, cosigs.get(gw) ?? null));
  }

  #peerView(gw: string, cosignedOurs: number | null): PeerView {
    const origin = chainOrigin(this.#o.trust.siteId, gw);
    const p = this.#peers.get(origin);
    const r = this.#settled.get(origin);
    const size = r?.size ?? 0;
    const announced = p?.target?.size ?? null;
    const lag = Math.max(0, (announced ?? size) - size);
    const flag = [...this.#evidence.values()].reverse().find((e) => e.origin === origin && e.refused);
    let state: PeerSyncState;
    if (this.#blocked.has(origin)) state = 'equivocated';
    else if (this.#auditFailed.has(origin)) state = 'refused';
    else if (this.#revokedHere(gw)) state = 'revoked';
    else if (p?.pulling !== undefined || lag > 0) state = 'syncing';
    else if (announced === null) state = 'waiting';
    else state = 'synced';
    return { gateway: gw, origin, state, size, announced, lag, lastContact: this.#contact.get(gw) ?? null, cosignedOurs, refusal: this.#refusals.get(gw) ?? null, evidence: flag?.id ?? null };
  }

  /** Whether any roster held here (its own chain's, a replica's) lists the gateway as revoked. */
  #revokedHere(gw: string): boolean {
    const rosters = this.#rosters();
    return rosters.some((x) => x.get('gateway', gw)?.revoked === true);
  }

  /** What this gateway publishes, retained, on oti/<site>/gateways/<gw>/state on every broker it is linked to. */
  gatewayState(): GatewayStateMessage {
    return {
      state: 'online',
      at: this.#now(),
      chain: { origin: this.origin, size: this.#chain?.size ?? 0 },
      compromised: this.compromised(),
      peers: this.peerViews(),
      evidence: this.evidence(),
    };
  }

  /** Publishes the gateway state again soon (e.g. after something else set a plainer one on the own broker). */
  refreshState(): void {
    this.#scheduleState();
  }

  /** Publishes the gateway state soon (at most once per STATE_MIN_MS), and again every STATE_REFRESH_MS. */
  #scheduleState(): void {
    if (this.#stopped || this.#chain === undefined) return;
    this.emit('peers');
    const due = Math.max(0, this.#stateAt + STATE_MIN_MS - this.#now());
    if (this.#stateTimer !== undefined && due > 0) return;
    clearTimeout(this.#stateTimer);
    this.#stateTimer = setTimeout(() => {
      this.#stateTimer = undefined;
      this.#stateAt = this.#now();
      void this.#publishAll(this.topics.gatewayState(this.#o.gatewayId), JSON.stringify(this.gatewayState()), true);
      this.#stateTimer = setTimeout(() => {
        this.#stateTimer = undefined;
        this.#scheduleState();
      }, STATE_REFRESH_MS).unref();
    }, due).unref();
  }

  /** Sets the gateway state to offline on every broker before the links close (the will covers a crash). */
  async #publishOffline(): Promise<void> {
    const payload = JSON.stringify({ state: 'offline', at: this.#now() });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000);
      timer.unref();
    });
    await Promise.race([this.#publishAll(this.topics.gatewayState(this.#o.gatewayId), payload, true), waited]);
    clearTimeout(timer);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

type parseOriginResult = ReturnType<typeof parseOrigin>;

function evidenceView(id: string, ev: Equivocation, reporter: string | null, at: number | null, refused: boolean): EvidenceView {
  const cp = (c: SignedCheckpoint): { size: number; root: string } => ({ size: c.size, root: Buffer.from(c.root).toString('hex') });
  return { id, origin: ev.origin, gateway: parseOrigin(ev.origin).gatewayId, reporter, at, a: cp(ev.a), b: cp(ev.b), refused };
}
