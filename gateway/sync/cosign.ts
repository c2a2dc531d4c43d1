/**
 * Witnessing between the gateways of a site (docs/SYNC.md §Confirmation): this gateway cosigns
 * the latest checkpoint it verified (and audited) of each peer chain, retained on every link, and
 * counts the verified cosignatures of its own chain (CoverageTracker, gateway/sync/witness.ts).
 */
import { OtiError } from '../../ledger/base/errors.js';
import { chainOrigin } from '../../ledger/chain.js';
import { parseCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import type { Signer } from '../../ledger/crypto.js';
import type { SyncContext } from './context.js';
import type { Links } from './links.js';
import { cosign, verifyCosignature, type CoverageTracker } from './witness.js';

export class Cosigner {
  /** Cosignatures of the own chain whose witness key is not known yet: latest per witness. */
  readonly #pending = new Map<string, Buffer>();

  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly signer: Signer,
    private readonly coverage: CoverageTracker,
  ) {}

  /** Publishes this gateway's cosignature of the latest verified checkpoint of a peer chain. */
  cosign(origin: string): void {
    const c = this.c;
    const r = c.settled(origin);
    const peer = c.peers.get(origin);
    const cp = r?.checkpoint;
    // Not while evidence against the chain waits for its key: it may be refused as soon as it is checked.
    if (cp === undefined || peer === undefined || c.refused(origin) || c.evidenceWaits(origin)) return;
    // Only what the audit passed: a cosignature vouches for the lock signatures too.
    if (r!.audited.size < cp.size) {
      c.audit(origin);
      return;
    }
    if (cp.size <= peer.cosigned && this.links.all.every((l) => l.t.connected)) return;
    peer.cosigned = Math.max(peer.cosigned, cp.size);
    const note = cosign(cp, this.signer, c.origin, Math.floor(c.now() / 1000)).note;
    void this.links.publishAll(c.topics.cosignature(peer.gatewayId, c.o.gatewayId), note, true);
  }

  /** A cosignature of the own chain by `witness`; checked once the own chain is attached and the witness's key known. */
  async received(witness: string, payload: Buffer): Promise<void> {
    const c = this.c;
    const chain = c.chain();
    if (chain === undefined) {
      this.#pending.set(witness, payload);
      return;
    }
    const cp = parseCheckpoint(payload);
    if (cp.origin !== c.origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `a cosignature for ${c.origin} carries a checkpoint of ${cp.origin}`);
    verifyCheckpoint(cp, c.origin, c.o.key.publicKey);
    if (c.blocked(c.origin)) return; // this gateway's key signs elsewhere too: nothing it counts is confirmed
    // A cosigned checkpoint this gateway did not make is evidence that its key is used elsewhere.
    await c.checkOwn(cp);
    const made = chain.checkpoint?.size ?? 0;
    if (cp.size > made) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `${witness} cosigned size ${cp.size} of a chain of ${made} entries: a checkpoint this gateway has not made (checked again once its chain gets there)`);
    const wOrigin = chainOrigin(c.o.trust.siteId, witness);
    const wr = await c.replica(wOrigin);
    const wm = wr.roster.get('gateway', witness);
    if (wm === undefined) {
      this.#pending.set(witness, payload); // checked once the witness's chain is known
      return;
    }
    this.#pending.delete(witness);
    if (wm.revoked || c.refused(wOrigin) || c.evidenceWaits(wOrigin)) throw new OtiError('ERR_ROSTER', `witness ${witness} is revoked or refused, or evidence against it waits here for its key`);
    const ts = verifyCosignature(cp, wOrigin, wm.key, Math.floor(c.now() / 1000));
    if (ts === undefined) throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `no valid cosignature by ${witness}`, { origin: c.origin });
    c.contact(witness);
    this.coverage.record(witness, cp.size, ts);
    c.emit('cosigned', { witness, size: cp.size, name: wOrigin, key: wm.key, checkpoint: cp });
  }

  /** Re-checks cosignatures that waited for their witness's key (or for the own chain). */
  retry(): void {
    const c = this.c;
    if (c.chain() === undefined) return;
    for (const [witness, payload] of this.#pending) {
      if (c.settled(chainOrigin(c.o.trust.siteId, witness)) !== undefined) void c.guard(witness, () => this.received(witness, payload));
    }
  }

  /** Once the own chain is attached: checks every cosignature that waited for it. */
  attached(): void {
    for (const [witness, payload] of this.#pending) void this.c.guard(witness, () => this.received(witness, payload));
  }
}
