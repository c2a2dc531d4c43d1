/**
 * What the parts of a SyncNode share (gateway/sync/node.ts composes them): its options and
 * events, the peer table, and the context each part is given: the node's state it may read, and
 * the other parts' entry points it may call (late-bound, so that the parts do not import each other).
 */
import type { IClientOptions } from 'mqtt';
import type { Logger } from '../log.js';
import type { ErrorCode } from '../../ledger/base/errors.js';
import type { KeyPair } from '../../ledger/crypto.js';
import { chainOrigin, type Chain } from '../../ledger/chain.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import type { Equivocation } from '../../ledger/evidence.js';
import type { ChainReplica } from '../../ledger/peer.js';
import type { LedgerStore } from '../../ledger/store.js';
import type { SignedStatement, SiteTrust } from '../../ledger/roster.js';
import type { SignaturePool } from '../../ledger/sigpool.js';
import type { TopicMap } from '../broker/topics.js';
import type { GatewayLogin } from '../broker/credentials.js';
import type { SyncLink } from './transport.js';
import type { SyncTransport } from './transport.js';

export const DEFAULT_SYNC_MESSAGE_BYTES = 256 * 1024;
export const DEFAULT_WINDOW_ENTRIES = 16_384;
export const DEFAULT_STALL_MS = 15_000;

/** One link to one broker (gateway/sync/links.ts keeps them). */
export interface Link {
  readonly url: string;
  readonly t: SyncLink;
  /** Settles once the link's first subscription is acknowledged: retained messages come right after. */
  readonly subscribed: Promise<void>;
  readonly markSubscribed: () => void;
  /** Settles once the first connection attempt has ended: true when it connected, false when it failed (retried meanwhile). */
  readonly firstAttempt: Promise<boolean>;
}

export interface SyncOptions {
  readonly store: LedgerStore;
  readonly trust: SiteTrust;
  readonly gatewayId: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  /** Broker URLs: the own embedded broker and each peer's (mesh), or one external broker. */
  readonly brokers: readonly string[];
  /** How links reach the brokers; default MQTT (gateway/sync/transport-mqtt.ts) with the `mqtt` options. */
  readonly transport?: SyncTransport;
  /** Extra mqtt.js options per connection (TLS `ca`, `rejectUnauthorized`, …) for the default transport. */
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

/** What this gateway knows of one peer chain from its announcements, and where its pull stands. */
export interface PeerState {
  readonly origin: string;
  readonly gatewayId: string;
  /** Largest checkpoint announced for the chain (verified when the key is known). */
  target: SignedCheckpoint | undefined;
  link: Link | undefined;
  pulling: Promise<void> | undefined;
  cosigned: number;
  /** Pulls refused in a row, and when the next may start (see PULL_BACKOFF_MS in pull.ts). */
  failures: number;
  retryAt: number;
  retry: NodeJS.Timeout | undefined;
}

/** The peers heard of since start, by chain origin. */
export class PeerTable {
  readonly #peers = new Map<string, PeerState>();
  constructor(private readonly siteId: string) {}

  /** The state of gateway `gw`'s chain (created on first use). */
  of(gw: string): PeerState {
    const origin = chainOrigin(this.siteId, gw);
    let p = this.#peers.get(origin);
    if (p === undefined) {
      p = { origin, gatewayId: gw, target: undefined, link: undefined, pulling: undefined, cosigned: 0, failures: 0, retryAt: 0, retry: undefined };
      this.#peers.set(origin, p);
    }
    return p;
  }

  get(origin: string): PeerState | undefined {
    return this.#peers.get(origin);
  }

  values(): IterableIterator<PeerState> {
    return this.#peers.values();
  }
}

/** The node as its parts see it. */
export interface SyncContext {
  readonly o: SyncOptions;
  /** This gateway's chain origin. */
  readonly origin: string;
  readonly topics: TopicMap;
  readonly peers: PeerTable;
  now(): number;
  stopped(): boolean;
  /** The own chain, once attached. */
  chain(): Chain | undefined;
  replica(origin: string): Promise<ChainReplica>;
  /** The replica, remembered as a peer chain of the site held here. */
  settledReplica(origin: string): Promise<ChainReplica>;
  settled(origin: string): ChainReplica | undefined;
  /** Refused after equivocation (until a technician clears it). */
  blocked(origin: string): boolean;
  /** Refused: after equivocation, or after a failed audit. */
  refused(origin: string): boolean;
  /**
   * Received evidence against the chain waits here for its gateway's key (evidence.ts): the chain
   * is fetched, so that the key becomes known, but neither served nor cosigned meanwhile.
   */
  evidenceWaits(origin: string): boolean;
  /** Reports a failure as a 'refused' event (logged, rate-limited). */
  refuse(origin: string | undefined, peer: string, e: unknown): void;
  /** Runs a handler; any failure is refused (never an unhandled rejection). */
  guard(peer: string, f: () => Promise<void>): Promise<void>;
  emit<K extends keyof SyncEvents>(event: K, ...args: SyncEvents[K]): boolean;
  /** A verified message from gateway `gw` just now. */
  contact(gw: string): void;
  scheduleState(): void;
  // The other parts' entry points.
  equivocation(ev: Equivocation, key: Uint8Array): Promise<void>;
  cosign(origin: string): void;
  audit(origin: string): void;
  retryCosigs(): void;
  checkOwn(cp: SignedCheckpoint): Promise<void>;
  /** Checks the evidence that waits for a gateway's key, where the key is known by now. */
  retryEvidence(): Promise<void>;
  closeInboxes(origin: string): void;
}
