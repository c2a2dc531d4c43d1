/**
 * Peer discovery: finds the other gateways of this site on the local network and tells the sync
 * layer where their brokers are. docs/DISCOVERY.md describes it for installers.
 *
 * This gateway advertises `_oti._tcp.local` with a TXT record signed by its key that carries
 * its enrolment (gateway/discovery/announcement.ts). Every TXT record heard is decoded and verified
 * (site, freshness, signature, site-signed enrolment of exactly that id and key, revocation)
 * before its sender becomes a peer; anything else is reported as 'rejected' and otherwise
 * ignored. Nothing is trusted on the strength of mDNS alone, and a peer found here is only a
 * lead: the sync layer still authenticates the broker it connects to.
 *
 * Events:
 *  'peer'     a gateway was verified for the first time, or its address or port changed; also
 *             once per configured static peer on start;
 *  'lost'     a verified gateway's announcements stopped (no fresh one within the record TTL,
 *             capped at staleMs), it sent a signed goodbye, or the backend saw it go;
 *  'rejected' an announcement failed a check; `reason` is a stable error code. Repeats of the
 *             same rejection (same sender, instance and reason) are reported once a minute;
 *  'warning'  the backend met something worth a debug log line (an undecodable packet, an
 *             interface it could not join); discovery carries on;
 *  'fault'    checking an announcement failed unexpectedly (a bug or a part not ready, never the
 *             sender's fault): the sender is not taken as a peer, so this is worth an error line.
 *
 * The mDNS work is done by a backend: the built-in one (gateway/discovery/mdns-js.ts) or the system's
 * Avahi daemon (gateway/discovery/mdns-avahi.ts), which may be unavailable: see startWithFallback.
 */
import { EventEmitter } from 'node:events';
import { Signer, toHex, type KeyPair } from '../../ledger/crypto.js';
import { OtiError, isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import { encodeSigned, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { announcementDigest, decodeAnnouncement, encodeAnnouncement, instanceLabel, verifyAnnouncement, type SignedAnnouncement } from './announcement.js';
import { JsMdnsBackend } from './mdns-js.js';
import { AvahiMdnsBackend } from './mdns-avahi.js';
import type { Advertisement, BackendSink, MdnsBackend, Sighting } from './backend.js';

export type { Advertisement, BackendSink, MdnsBackend, Sighting };

/** A gateway whose announcement verified. */
export interface MdnsPeer {
  readonly via: 'mdns';
  readonly gatewayId: string;
  readonly key: Uint8Array;
  /** The address its announcement came from: an address on the link we share. */
  readonly host: string;
  /** Its broker port, as signed in the announcement. */
  readonly port: number;
  readonly lastSeen: number;
}

/** A peer from the configuration. Its identity is unknown here: the sync layer verifies it from its credentials. */
export interface StaticPeer {
  readonly via: 'static';
  readonly gatewayId?: undefined;
  readonly key?: undefined;
  readonly host: string;
  readonly port: number;
  readonly lastSeen: number;
}

export type Peer = MdnsPeer | StaticPeer;

export interface Rejection {
  readonly reason: ErrorCode;
  /** For people and logs; may change. */
  readonly detail: string;
  /** Sender address and port. */
  readonly from: string;
  /** The service instance label, when there was one. */
  readonly name?: string;
}

export interface DiscoveryOptions {
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  /** The site-signed statement that enrols this gateway's key (identity.enrolment). */
  readonly enrolment: SignedStatement;
  /** The port this gateway's broker listens on, advertised to peers. */
  readonly brokerPort: number;
  /** 'js' (built in), 'avahi' (system daemon), or a backend object. */
  readonly backend: 'js' | 'avahi' | MdnsBackend;
  readonly staticPeers?: readonly { readonly host: string; readonly port: number }[];
  /** True when the roster says this gateway is revoked or `key` is no longer its key. */
  readonly isRevoked?: (gatewayId: string, key: Uint8Array) => boolean;
  /** IPv4 address of the interface to use (js backend); all interfaces when unset. */
  readonly interface?: string;
  /** UDP port of the js backend; 5353 (mDNS) unless a test wants another. */
  readonly mdnsPort?: number;
  readonly now?: () => number;
  /** How often the record is re-signed and announced. Default 20 s. */
  readonly announceIntervalMs?: number;
  /** Largest accepted distance between an announcement's time and ours. Default 5 min. */
  readonly staleMs?: number;
}

const DEFAULT_ANNOUNCE_MS = 20_000;
const DEFAULT_STALE_MS = 5 * 60_000;
/** Records live for three announcement intervals: a peer is lost after missing three. */
const TTL_INTERVALS = 3;
const REJECTION_REPEAT_MS = 60_000;
/** Bounds on what is remembered about the network, whatever it sends. */
const MAX_PEERS = 256;
const MAX_REJECTIONS_REMEMBERED = 1024;

interface PeerState {
  peer: MdnsPeer;
  instance: string;
  expiresAt: number;
  ts: number;
  digest: string;
}

export class Discovery extends EventEmitter<{ peer: [Peer]; lost: [Peer]; rejected: [Rejection]; warning: [Error]; fault: [Error] }> {
  readonly #o: DiscoveryOptions;
  readonly #signer: Signer;
  readonly #now: () => number;
  readonly #announceMs: number;
  readonly #staleMs: number;
  readonly #ttlS: number;
  readonly #instance: string;
  readonly #enrolmentBytes: Uint8Array;
  readonly #mdns = new Map<string, PeerState>();
  readonly #static: StaticPeer[] = [];
  readonly #rejections = new Map<string, number>();
  #backend: MdnsBackend | undefined;
  #timers: NodeJS.Timeout[] = [];
  #state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  /** Throws ERR_ARGUMENT when the enrolment does not enrol this gateway's id and key. */
  constructor(opts: DiscoveryOptions) {
    super();
    const s = opts.enrolment.statement;
    if (s.role !== 'gateway' || s.id !== opts.gatewayId || toHex(s.key) !== toHex(opts.key.publicKey) || s.site !== opts.trust.siteId) {
      throw new OtiError('ERR_ARGUMENT', 'the enrolment does not enrol this gateway id and key in this site', { argument: 'enrolment' });
    }
    if (!Number.isInteger(opts.brokerPort) || opts.brokerPort < 1 || opts.brokerPort > 65535) throw new OtiError('ERR_ARGUMENT', 'brokerPort must be 1..65535', { argument: 'brokerPort' });
    this.#o = opts;
    this.#signer = new Signer(opts.key.seed);
    this.#now = opts.now ?? Date.now;
    this.#announceMs = opts.announceIntervalMs ?? DEFAULT_ANNOUNCE_MS;
    this.#staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
    this.#ttlS = Math.max(1, Math.ceil((this.#announceMs * TTL_INTERVALS) / 1000));
    this.#instance = instanceLabel(opts.gatewayId, opts.key.publicKey);
    this.#enrolmentBytes = encodeSigned(opts.enrolment);
  }

  /**
   * Starts with the configured backend and, when that is 'avahi' and Avahi is unavailable
   * (ERR_DRIVER_UNAVAILABLE), with the built-in one instead; `onFallback` hears why.
   */
  static async startWithFallback(opts: DiscoveryOptions, onFallback: (e: OtiError) => void): Promise<Discovery> {
    const d = new Discovery(opts);
    try {
      await d.start();
      return d;
    } catch (e) {
      if (opts.backend !== 'avahi' || !isOtiError(e, 'ERR_DRIVER_UNAVAILABLE')) throw e;
      onFallback(e);
      const js = new Discovery({ ...opts, backend: 'js' });
      await js.start();
      return js;
    }
  }

  /** The built-in backend's instance label of this gateway. */
  get instance(): string {
    return this.#instance;
  }

  /** Opens the backend, announces this gateway and lists the static peers. Once only. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new OtiError('ERR_ARGUMENT', 'a Discovery starts once');
    this.#state = 'starting';
    const o = this.#o;
    const backend =
      o.backend === 'js' ? new JsMdnsBackend({ ...(o.mdnsPort !== undefined ? { port: o.mdnsPort } : {}), interface: o.interface })
      : o.backend === 'avahi' ? new AvahiMdnsBackend({ refreshMs: this.#announceMs, ...(o.interface !== undefined ? { interface: o.interface } : {}) })
      : o.backend;
    await backend.start({
      sighting: (s) => this.#onSighting(s),
      gone: (instance) => this.#onGone(instance),
      warning: (e) => this.emit('warning', e),
    });
    this.#backend = backend;
    this.#state = 'running';
    backend.publish(this.#advertisement(false));
    this.#timers.push(setInterval(() => backend.publish(this.#advertisement(false)), this.#announceMs));
    this.#timers.push(setInterval(() => this.#expire(), Math.min(Math.max(100, this.#announceMs / 2), 5000)));
    for (const p of o.staticPeers ?? []) {
      const peer: StaticPeer = { via: 'static', host: p.host, port: p.port, lastSeen: this.#now() };
      this.#static.push(peer);
      this.emit('peer', peer);
    }
  }

  /** Sends a signed goodbye and closes the backend. Peers are forgotten without 'lost' events. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    const backend = this.#backend;
    this.#state = 'stopped';
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#backend = undefined;
    this.#mdns.clear();
    await backend?.stop(this.#advertisement(true));
  }

  /** Verified mDNS peers and static peers, now. */
  peers(): Peer[] {
    return [...[...this.#mdns.values()].map((s) => s.peer), ...this.#static];
  }

  #advertisement(bye: boolean): Advertisement {
    const txt = encodeAnnouncement(
      { site: this.#o.trust.siteId, gatewayId: this.#o.gatewayId, key: this.#o.key.publicKey, port: this.#o.brokerPort, ts: this.#now(), enrolment: this.#enrolmentBytes, bye },
      this.#signer,
    );
    return { instance: this.#instance, port: this.#o.brokerPort, txt, ttlS: bye ? 0 : this.#ttlS };
  }

  #onSighting(s: Sighting): void {
    if (this.#state !== 'running' || s.instance === this.#instance) return;
    let a: SignedAnnouncement;
    try {
      a = decodeAnnouncement(s.txt);
      if (toHex(a.key) === toHex(this.#o.key.publicKey)) return; // ours, relayed or replayed
      const known = this.#mdns.get(a.gatewayId);
      const digest = announcementDigest(a);
      const now = this.#now();
      verifyAnnouncement(a, { trust: this.#o.trust, now, staleMs: this.#staleMs, isRevoked: this.#o.isRevoked, signaturesVerified: known?.digest === digest });
      this.#accept(a, s, digest, known, now);
    } catch (e) {
      // A packet from the network must never take the process down; anything unexpected is a fault.
      if (e instanceof OtiError) this.#reject(e, s);
      else this.emit('fault', e as Error);
    }
  }

  #accept(a: SignedAnnouncement, s: Sighting, digest: string, known: PeerState | undefined, now: number): void {
    // An older announcement than one already accepted is a replay (or a late packet): it refreshes nothing.
    if (known !== undefined && a.ts < known.ts) return;
    if (a.bye) {
      if (known !== undefined && toHex(known.peer.key) === toHex(a.key)) this.#lose(a.gatewayId, known);
      return;
    }
    if (known === undefined && this.#mdns.size >= MAX_PEERS) return;
    const lifeMs = Math.min(this.#staleMs, s.ttlS !== undefined ? s.ttlS * 1000 : this.#staleMs);
    if (lifeMs <= 0) return;
    const peer: MdnsPeer = { via: 'mdns', gatewayId: a.gatewayId, key: a.key, host: s.address, port: a.port, lastSeen: now };
    this.#mdns.set(a.gatewayId, { peer, instance: s.instance, expiresAt: now + lifeMs, ts: a.ts, digest });
    const changed = known === undefined || known.peer.host !== peer.host || known.peer.port !== peer.port || toHex(known.peer.key) !== toHex(peer.key);
    if (changed) this.emit('peer', peer);
  }

  #reject(e: OtiError, s: Sighting): void {
    const id = `${s.from}|${s.instance}|${e.code}`;
    const now = this.#now();
    const last = this.#rejections.get(id);
    if (last !== undefined && now - last < REJECTION_REPEAT_MS) return;
    if (this.#rejections.size >= MAX_REJECTIONS_REMEMBERED) this.#rejections.clear();
    this.#rejections.set(id, now);
    this.emit('rejected', { reason: e.code, detail: e.message, from: s.from, name: s.instance });
  }

  #onGone(instance: string): void {
    for (const [id, st] of this.#mdns) if (st.instance === instance) this.#lose(id, st);
  }

  #expire(): void {
    const now = this.#now();
    for (const [id, st] of this.#mdns) if (st.expiresAt <= now) this.#lose(id, st);
  }

  #lose(gatewayId: string, st: PeerState): void {
    this.#mdns.delete(gatewayId);
    this.emit('lost', st.peer);
  }
}
