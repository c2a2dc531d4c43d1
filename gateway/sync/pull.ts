/**
 * Fetching peer chains (docs/SYNC.md §Fetching): an announced checkpoint beyond what is stored
 * becomes the target of a pull, which asks the responder for a window of
 * entries beyond what is stored, checks the window's head against the stored chain, assembles
 * and stores the blocks as they complete (ledger/peer.ts verifies them), reports progress, and
 * goes on window by window until the responder has nothing more. A pull that stalls or ends short
 * is tried again shortly on another connected link; one that is refused waits longer each time.
 */
import { randomBytes } from 'node:crypto';
import { OtiError } from '../../ledger/base/errors.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { chainOrigin } from '../../ledger/chain.js';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { compareWithChain } from '../../ledger/evidence.js';
import { verifyConsistency } from '../../ledger/merkle.js';
import type { ChainReplica, ReplicaBlock } from '../../ledger/peer.js';
import { parseOrigin } from '../../ledger/verify.js';
import { BlockAssembler, PullProgress } from './assembly.js';
import { DEFAULT_STALL_MS, DEFAULT_WINDOW_ENTRIES, type PeerState, type SyncContext } from './context.js';
import { close, type Inboxes } from './inbox.js';
import type { Links } from './links.js';
import type { Link } from './context.js';
import { MAX_REQUEST_ENTRIES, encodeRequest, type RangeMessage } from './wire.js';

/** After a pull that ended short of its target, the next attempt starts this much later. */
const PULL_RETRY_MS = 1000;
/** A pull that is refused (a bad proof, a bad block) is tried again after this, doubled each time up to the max. */
const PULL_BACKOFF_MS = 1000;
const PULL_BACKOFF_MAX_MS = 60_000;
/** Range messages already received that a pull stores in one durable write, at most. */
const STORE_BATCH_MESSAGES = 8;

/**
 * Stores the blocks of several range messages in one ChainReplica.append. When that fails, they
 * are stored message by message instead, so that what comes before the first bad block is stored
 * and the error is the one it gives, as when each message was stored alone.
 */
async function storeBatches(replica: ChainReplica, batches: readonly (readonly ReplicaBlock[])[]): Promise<void> {
  try {
    await replica.append(batches.flat());
  } catch (e) {
    if (batches.length === 1) throw e;
    for (const b of batches) if (b.length > 0) await replica.append(b);
  }
}

export class Puller {
  readonly #window: number;
  readonly #stallMs: number;
  #seq = randomBytes(4).readUInt32BE(0) >>> 1;

  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly inboxes: Inboxes,
  ) {
    this.#window = Math.min(MAX_REQUEST_ENTRIES, Math.max(1, c.o.windowEntries ?? DEFAULT_WINDOW_ENTRIES));
    this.#stallMs = c.o.stallMs ?? DEFAULT_STALL_MS;
  }

  /**
   * A peer's announced checkpoint: verified when its key is known; one within what is stored is
   * compared (evidence when inconsistent) and cosigned, or refused as stale when older; one
   * beyond it becomes the pull's target.
   */
  async announced(link: Link, gw: string, payload: Buffer): Promise<void> {
    const c = this.c;
    const origin = chainOrigin(c.o.trust.siteId, gw);
    if (c.blocked(origin)) throw new OtiError('ERR_EQUIVOCATION', `chain ${origin} is refused after equivocation`, { origin });
    const cp = parseCheckpoint(payload);
    if (cp.origin !== origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `a checkpoint of ${cp.origin} was published for ${origin}`, { origin });
    const replica = await c.settledReplica(origin);
    const key = replica.gatewayKey(gw);
    const peer = c.peers.of(gw);
    if (key !== undefined) {
      verifyCheckpoint(cp, origin, key);
      c.contact(gw);
      if (cp.size <= replica.size) {
        const ev = await compareWithChain(replica, replica.checkpoint!, cp, key);
        if (ev !== undefined) return c.equivocation(ev, key);
        peer.link ??= link;
        // Consistent and already held: a duplicate (same size, from another link) is quietly
        // cosigned; an older one is a replay and is refused.
        if (cp.size < replica.size) throw new OtiError('ERR_SYNC_STALE', `checkpoint ${origin} @ ${cp.size} is older than the verified ${replica.size}`, { origin });
        c.cosign(origin);
        return;
      }
    }
    if (peer.target === undefined || cp.size > peer.target.size) {
      peer.target = cp;
      peer.link = link;
    }
    this.start(peer);
  }

  /** Starts pulling a peer's chain toward its announced checkpoint, unless a pull runs or must wait. */
  start(peer: PeerState): void {
    const c = this.c;
    if (peer.pulling !== undefined || peer.link === undefined || c.stopped() || c.refused(peer.origin)) return;
    // After refused pulls, the next waits (doubling): a peer that keeps failing is not asked 3 times a second.
    const wait = peer.retryAt - c.now();
    if (wait > 0) {
      peer.retry ??= setTimeout(() => {
        peer.retry = undefined;
        this.start(peer);
      }, wait).unref();
      return;
    }
    // The link the checkpoint came on may be down by now (a cut cable): any connected link
    // reaches the responder, which listens for requests on every broker it is linked to.
    if (!peer.link.t.connected) peer.link = this.links.connected()[0] ?? peer.link;
    const link = peer.link;
    peer.pulling = this.pull(peer.origin, peer.gatewayId, link, Number.POSITIVE_INFINITY)
      .then(
        () => {
          peer.failures = 0;
          peer.retryAt = 0;
        },
        (e: unknown) => {
          peer.retryAt = c.now() + Math.min(PULL_BACKOFF_MAX_MS, PULL_BACKOFF_MS * 2 ** Math.min(16, peer.failures));
          peer.failures++;
          c.refuse(peer.origin, peer.gatewayId, e);
        },
      )
      .finally(() => {
        c.scheduleState();
        peer.pulling = undefined;
        // The audit ran beside the pull (after each stored batch); this run takes what the last
        // batches stored, and cosigns what it has passed (gateway/sync/audit.ts).
        c.audit(peer.origin);
        void this.#afterPull(peer).catch((e: unknown) => c.refuse(peer.origin, peer.gatewayId, e));
      });
  }

  /** Once a pull ends: check the announced checkpoint against what is stored, cosign, or pull again. */
  async #afterPull(peer: PeerState): Promise<void> {
    const c = this.c;
    if (c.stopped() || c.refused(peer.origin)) return;
    const replica = await c.replica(peer.origin);
    const target = peer.target;
    if (target === undefined) return;
    const key = replica.gatewayKey(peer.gatewayId);
    if (target.size <= replica.size && key !== undefined && replica.checkpoint !== undefined) {
      verifyCheckpoint(target, peer.origin, key);
      const ev = await compareWithChain(replica, replica.checkpoint, target, key);
      if (ev !== undefined) return c.equivocation(ev, key);
      c.emit('synced', { origin: peer.origin, size: replica.size });
      c.cosign(peer.origin);
    } else if (target.size > replica.size) {
      // The pull ended short of the announced checkpoint (it stalled, or its link went down),
      // also when nothing of the chain is stored yet: try again shortly, on the next connected
      // link (a broker that drops the requests, or a second copy of this gateway that takes the
      // answers there, must not hold the pull forever), rather than wait for a checkpoint that an
      // idle peer may never send.
      const others = this.links.connected().filter((l) => l !== peer.link);
      if (others.length > 0) peer.link = others[Math.floor(Math.random() * others.length)];
      const retry = setTimeout(() => this.start(peer), PULL_RETRY_MS);
      retry.unref();
    }
    c.retryCosigs();
  }

  /**
   * Pulls chain `origin` from `responder` window by window until the responder has nothing more
   * (or `deadline`). Each window starts at the stored size. Resolves true when the responder
   * answered to the end (it has nothing beyond what is stored now), false when the pull ended
   * short: a stall, a closed link, the deadline, or stop().
   */
  async pull(origin: string, responder: string, link: Link, deadline: number): Promise<boolean> {
    const c = this.c;
    const replica = await c.settledReplica(origin);
    const { gatewayId } = parseOrigin(origin);
    const progress = new PullProgress(origin, replica.size, () => c.now());
    for (;;) {
      if (c.stopped() || c.refused(origin) || c.now() >= deadline) return false;
      const from = replica.size;
      const head = await this.#pullWindow(replica, gatewayId, responder, link, deadline, progress);
      // Stalled or closed (retried on the next checkpoint, or by #afterPull), or nothing beyond what is stored.
      if (head === 'short') return false;
      if (head === 'nothing-more') return true;
      if (replica.size <= from || head.size <= replica.size) {
        if (replica.size > from || head.size <= replica.size) c.emit('synced', { origin, size: replica.size });
        return head.size <= replica.size;
      }
    }
  }

  /**
   * Asks `responder` for its head of chain `origin` (a window of one entry from the stored size,
   * nothing stored) and waits for the first answer until `deadline` (or a stall): its verified head
   * when it holds more, 'nothing-more' when it does not, 'silent' when no answer came or the
   * request was closed. For asking every peer at once (SyncNode.recoverOwnChain).
   */
  async head(origin: string, responder: string, link: Link, deadline: number): Promise<SignedCheckpoint | 'nothing-more' | 'silent'> {
    const c = this.c;
    const replica = await c.settledReplica(origin);
    const from = replica.size;
    const id = (this.#seq = (this.#seq + 1) >>> 0);
    const inbox = this.inboxes.open(id, responder, origin, link);
    try {
      this.links.publish(link, c.topics.syncRequest(responder, c.o.gatewayId), encodeRequest({ id, chain: origin, from, to: from + 1 }), false).catch(() => close(inbox));
      const msg = await this.inboxes.next(inbox, Math.min(this.#stallMs, Math.max(1, deadline - c.now())));
      if (msg === undefined) return 'silent';
      return (await this.#checkHead(replica, parseOrigin(origin).gatewayId, from, msg)) ?? 'nothing-more';
    } finally {
      this.inboxes.remove(inbox);
    }
  }

  /**
   * One window: asks for entries from the stored size, checks the first message's head (the
   * responder proves that its tree extends the stored one before any block is taken), then
   * stores the blocks as they complete. Returns the verified head; 'nothing-more' when the
   * responder has nothing beyond what is stored (or its head is evidence); 'short' on a stall or a
   * closed link.
   */
  async #pullWindow(replica: ChainReplica, gatewayId: string, responder: string, link: Link, deadline: number, progress: PullProgress): Promise<SignedCheckpoint | 'nothing-more' | 'short'> {
    const c = this.c;
    const origin = replica.origin;
    const from = replica.size;
    const id = (this.#seq = (this.#seq + 1) >>> 0);
    const inbox = this.inboxes.open(id, responder, origin, link);
    const blocks = new BlockAssembler(origin, from);
    let head: SignedCheckpoint | undefined;
    try {
      // Not awaited: a QoS 1 publication on a link that went away waits for a reconnect that
      // may never come (and stop() would wait on it). The answer, a stall, or stop() ends the wait.
      this.links.publish(link, c.topics.syncRequest(responder, c.o.gatewayId), encodeRequest({ id, chain: origin, from, to: from + this.#window }), false).catch(() => close(inbox));
      for (;;) {
        const msg = await this.inboxes.next(inbox, Math.min(this.#stallMs, Math.max(1, deadline - c.now())));
        if (msg === undefined) return 'short';
        blocks.expect(msg);
        if (head === undefined) {
          head = await this.#checkHead(replica, gatewayId, from, msg);
          if (head === undefined) return 'nothing-more';
        }
        // The messages that arrived while the last batch was being stored go into this one: one
        // durable write for them all, not one each.
        const batches = [blocks.take(msg)];
        let end = msg.end;
        let later: unknown;
        while (!end && batches.length < STORE_BATCH_MESSAGES) {
          const more = this.inboxes.take(inbox);
          if (more === undefined) break;
          try {
            batches.push(blocks.take(more));
          } catch (e) {
            // Refused after what came before it is stored, as when each message was stored alone.
            later = { e };
            break;
          }
          end = more.end;
        }
        if (batches.some((b) => b.length > 0)) {
          await storeBatches(replica, batches);
          // The blocks stored may give a gateway's key (its chain's first block, a roster statement):
          // evidence that waited for it is checked before anything else reads them.
          await c.retryEvidence();
          c.emit('progress', progress.at(replica.size, head.size));
          // The lock signatures of what was stored are audited while the pull goes on: on the
          // signature workers, one run at a time, each taking what was stored meanwhile. Nothing
          // is cosigned before the audit has passed it, and not before the pull ends (audit.ts).
          // The own chain, recovered from peers, was checked whole before it was stored.
          if (origin !== c.origin) c.audit(origin);
        }
        if (later !== undefined) throw (later as { e: unknown }).e;
        if (end) return head;
      }
    } finally {
      this.inboxes.remove(inbox);
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
      const ev = await compareWithChain(replica, ours, head, key);
      if (ev !== undefined) await this.c.equivocation(ev, key);
      return undefined;
    }
    if (msg.root === undefined || msg.proof === undefined || !verifyConsistency(from, head.size, msg.root, head.root, msg.proof)) {
      throw new OtiError('ERR_PROOF_INVALID', `the responder did not prove that ${origin} @ ${head.size} extends the stored ${from} entries`, { origin });
    }
    if (!bytesEqual(msg.root, ours.root)) {
      await this.c.equivocation({ origin, a: ours, b: head, root: msg.root, proof: msg.proof }, key);
      return undefined;
    }
    return head;
  }
}
