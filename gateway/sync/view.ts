/**
 * What the sync layer shows of the site's other gateways: one view per peer (state, lag, last
 * contact, last refusal, evidence) and the stored evidence records. GET /status (peers, sync),
 * oti status, oti_peer_state and the retained oti/<site>/gateways/<gw>/state message carry them.
 * docs/API.md §GET /status, docs/MQTT.md §Gateway state.
 */
import type { ErrorCode } from '../../ledger/base/errors.js';

/**
 * A peer's sync state: synced (holds what it announced), syncing (fetching, or behind what it
 * announced), waiting (its chain is stored, nothing heard from it since start), refused (its lock
 * signatures failed the audit), equivocated (evidence against it), revoked (in the roster).
 */
export type PeerSyncState = 'synced' | 'syncing' | 'waiting' | 'refused' | 'equivocated' | 'revoked';

/** The last refusal of a peer's messages and how many there were (the log shows them rate-limited). */
export type PeerRefusal = {
  readonly code: ErrorCode;
  readonly message: string;
  /** When the last one happened (ms since 1970). */
  readonly at: number;
  /** Refusals of this peer's messages since the gateway started. */
  readonly count: number;
};

/** One other gateway of the site as this one sees it. docs/API.md §GET /status. */
export type PeerView = {
  readonly gateway: string;
  readonly origin: string;
  readonly state: PeerSyncState;
  /** Entries of its chain stored (and verified) here. */
  readonly size: number;
  /** The largest checkpoint it announced (null: none seen since this gateway started). */
  readonly announced: number | null;
  /** announced − size, at least 0. */
  readonly lag: number;
  /** Last verified message from it (ms since 1970), null when none since this gateway started. */
  readonly lastContact: number | null;
  /** The size of this gateway's own chain it has cosigned (null: none yet). */
  readonly cosignedOurs: number | null;
  readonly refusal: PeerRefusal | null;
  /** Id of the stored evidence against it, when it is refused for equivocation. */
  readonly evidence: string | null;
};

/** A stored evidence record, for GET /status and the gateways topic. docs/SYNC.md §Equivocation. */
export type EvidenceView = {
  readonly id: string;
  readonly origin: string;
  /** The gateway whose key signed the two inconsistent checkpoints: compromised or cloned. */
  readonly gateway: string;
  /** Who found it (null when not recorded, e.g. evidence stored before this was kept). */
  readonly reporter: string | null;
  readonly at: number | null;
  readonly a: { readonly size: number; readonly root: string };
  readonly b: { readonly size: number; readonly root: string };
  /** Whether the chain is still refused (false once a technician cleared it). */
  readonly refused: boolean;
};
