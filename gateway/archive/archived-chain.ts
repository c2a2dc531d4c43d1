/**
 * One chain as the archive holds it, verified as any third party would (docs/ARCHIVE.md
 * §Verification): every block goes through ledger/verify.ts's ChainVerifier (link to the
 * previous block, entries against the block root, the gateway's checkpoint signature with the
 * key the site's roster gives it, roster statements signed by the site's authority keys, lock
 * signatures, enrolment, counters) before a row is written.
 *
 * The verifier's state is rebuilt from the database when the chain is first seen after a start
 * (the subtree peaks from the stored tree nodes and the entries after them, O(log n) reads,
 * checked against the last block's signed root; the last block's hash; the roster from the
 * stored statements, each checked again) and after any refusal, so a refused block leaves
 * nothing behind. Counters are compared with the last stored counter of each lock the first
 * time a session sees the lock, so they increase across restarts
 * as within one.
 */
import type { Pool } from 'mysql2/promise';
import { OtiError } from '../../ledger/base/errors.js';
import { ChainVerifier, parseOrigin } from '../../ledger/verify.js';
import { blockHash, decodeBlockHeader } from '../../ledger/block.js';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { checkSigned, decodeSigned, Roster, type SiteTrust } from '../../ledger/roster.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import type { SignaturePool } from '../../ledger/sigpool.js';
import { verify as ed25519Verify, type Ed25519Verify } from '../../ledger/crypto.js';
import { writeBlocks, type VerifiedBlock } from './block-writer.js';
import { ArchivedTree, TreeFrontier } from './tree.js';
import { rebuildRange } from '../../ledger/chain.js';

/** Lock signatures per batch sent to the signature pool: a full block (256) goes to four. */
const SIGNATURE_BATCH = 64;

export type AcceptResult = 'archived' | 'duplicate';

/** One block as it arrives: header bytes, its signed checkpoint, its entries. */
export interface IncomingBlock {
  readonly headerBytes: Uint8Array;
  readonly checkpoint: SignedCheckpoint;
  readonly entries: readonly Uint8Array[];
}

/**
 * A run that starts past the chain's archive (blocks missing before it): the first block the
 * archive lacks, the run's first and last block, and the size its last checkpoint gives.
 * `verified`: that checkpoint describes the last block and carries the gateway's signature by the
 * key the archived chain gives it; false only when the archive holds no key of the gateway (none
 * of its chain is archived), so that nothing could be checked but the headers' agreement.
 */
export interface Ahead {
  readonly next: number;
  readonly first: number;
  readonly last: number;
  readonly size: number;
  readonly verified: boolean;
}

/**
 * What acceptRun() did: a result per block it got to, and the refusal that stopped it, if one did;
 * or, when the run starts past the chain's archive and its claim holds (checkAhead), `ahead`, and
 * nothing was written.
 */
export interface RunResult {
  readonly results: readonly AcceptResult[];
  readonly refusal?: OtiError;
  readonly ahead?: Ahead;
}


export class ArchivedChain {
  readonly origin: string;
  readonly siteId: string;
  readonly gatewayId: string;
  readonly #pool: Pool;
  readonly #trust: SiteTrust;
  readonly #sigPool: SignaturePool | undefined;
  #verifier: ChainVerifier | undefined;
  /** Locks whose stored last counter was compared in this session. */
  readonly #checkedLocks = new Set<string>();
  /** Blocks stored before this session's verifier started (its block numbers start there). */
  #base = 0;
  /** The run being archived: runs of one chain go one after the other. */
  #busy: Promise<unknown> = Promise.resolve();
  /** The tree nodes of height 8k still to complete, as of what is archived (rebuilt with the verifier). */
  #frontier = new TreeFrontier();
  /**
   * The checkpoint signature #verifyStructure has just verified (before the verifier's state is
   * touched), so that the verifier's own check of those very bytes (key, text, signature) is not
   * a second Ed25519 verification; anything else the verifier checks is verified as ever.
   */
  #verified: { key: Uint8Array; msg: Uint8Array; sig: Uint8Array } | undefined;
  readonly #preCheck: Ed25519Verify = (key, msg, sig) => {
    const ok = ed25519Verify(key, msg, sig);
    if (ok) this.#verified = { key, msg, sig };
    return ok;
  };
  readonly #ed25519: Ed25519Verify = (key, msg, sig) => {
    const v = this.#verified;
    if (v !== undefined && bytesEqual(v.sig, sig) && bytesEqual(v.key, key) && bytesEqual(v.msg, msg)) {
      this.#verified = undefined;
      return true;
    }
    return ed25519Verify(key, msg, sig);
  };

  /** `sigPool` checks lock signatures on worker threads (ledger/sigpool.ts); without it, on this thread. */
  constructor(pool: Pool, origin: string, trust: SiteTrust, sigPool?: SignaturePool) {
    const { siteId, gatewayId } = parseOrigin(origin);
    this.origin = origin;
    this.siteId = siteId;
    this.gatewayId = gatewayId;
    this.#pool = pool;
    this.#trust = trust;
    this.#sigPool = sigPool;
  }

  /**
   * Verifies and archives one block. A block already archived is a duplicate when it is the
   * same block, and equivocation (ERR_EQUIVOCATION) when another block of that number carries a
   * valid checkpoint signature of the gateway. Any other failure throws the verifier's code.
   */
  async accept(headerBytes: Uint8Array, checkpoint: SignedCheckpoint, entries: readonly Uint8Array[]): Promise<AcceptResult> {
    const r = await this.acceptRun([{ headerBytes, checkpoint, entries }]);
    if (r.refusal !== undefined) throw r.refusal;
    return r.results[0]!;
  }

  /** The number of the next block this chain's archive takes (after the run going on, if any). */
  nextBlock(): Promise<number> {
    const r = this.#busy.then(async () => {
      const verifier = await this.#ready();
      return this.#base + verifier.progress.blocks;
    });
    this.#busy = r.catch(() => undefined);
    return r;
  }

  /**
   * Verifies and archives a run of consecutive blocks (a range message), in one transaction.
   * Blocks already archived are checked as accept() checks them. The new blocks are verified
   * structurally on this thread (decoding, links, Merkle roots, checkpoint signatures, roster,
   * enrolment, counters) and their lock signatures sent to the signature pool; while those are
   * checked the rows are inserted, and the transaction commits only once every signature of
   * every block has verified. A refusal commits the blocks before the refused one (each fully
   * verified) and is returned, not thrown; a database failure is thrown and commits nothing.
   */
  acceptRun(blocks: readonly IncomingBlock[]): Promise<RunResult> {
    const run = this.#busy.then(() => this.#run(blocks));
    this.#busy = run.catch(() => undefined);
    return run;
  }

  async #run(blocks: readonly IncomingBlock[]): Promise<RunResult> {
    const verifier = await this.#ready();
    const results: AcceptResult[] = [];
    let i = 0;
    try {
      // Blocks already archived (a replay, or equivocation) come first in a run, if at all.
      for (; i < blocks.length; i++) {
        const b = blocks[i]!;
        const n = decodeBlockHeader(b.headerBytes).n;
        if (n >= this.#base + verifier.progress.blocks) break;
        results.push(await this.#already(n, b.headerBytes, b.checkpoint, verifier));
      }
    } catch (e) {
      if (e instanceof OtiError) return { results, refusal: e };
      throw e;
    }
    const next = this.#base + verifier.progress.blocks;
    if (i === 0 && blocks.length > 0) {
      // The run starts after a block the archive lacks: it cannot be verified (it links to the missing one), only what it claims.
      const first = decodeBlockHeader(blocks[0]!.headerBytes);
      if (first.n > next && first.chain === this.origin) {
        try {
          return { results, ahead: { next, ...this.#checkAhead(verifier, blocks) } };
        } catch (e) {
          if (e instanceof OtiError) return { results, refusal: e };
          throw e;
        }
      }
    }
    const fresh: VerifiedBlock[] = [];
    let refusal: OtiError | undefined;
    const frontier = this.#frontier.clone();
    try {
      for (; i < blocks.length; i++) fresh.push(await this.#verifyStructure(verifier, blocks[i]!, frontier));
    } catch (e) {
      if (!(e instanceof OtiError)) {
        this.#verifier = undefined;
        throw e;
      }
      refusal = e;
    }
    if (fresh.length === 0) {
      if (refusal !== undefined) this.#verifier = undefined;
      return { results, ...(refusal !== undefined ? { refusal } : {}) };
    }
    // Lock signatures are checked while the rows go in; the commit waits for both.
    const signatures = verifier.finish().then(
      () => undefined,
      (e: unknown) => e,
    );
    let written: number;
    try {
      written = await writeBlocks(this.#pool, fresh, Date.now(), async () => {
        const bad = await signatures;
        if (bad === undefined) return fresh.length;
        if (!(bad instanceof OtiError)) throw bad;
        // A lock signature failed: keep the blocks before the one holding it (a new transaction).
        const index = typeof bad.details?.['index'] === 'number' ? bad.details['index'] : -1;
        const keep = fresh.findIndex((b) => index >= b.header.first && index < b.header.first + b.header.count);
        // Not in these blocks: a signature of the block whose structure was refused already (it is not written anyway).
        if (keep < 0 && refusal !== undefined && index >= fresh[fresh.length - 1]!.header.first + fresh[fresh.length - 1]!.header.count) return fresh.length;
        refusal = new OtiError(bad.code, bad.message, { ...bad.details, ...(keep >= 0 ? { block: fresh[keep]!.header.n } : {}) }, { cause: bad });
        return Math.max(0, keep);
      });
    } catch (e) {
      this.#verifier = undefined;
      throw e;
    }
    for (let k = 0; k < written; k++) results.push('archived');
    if (refusal !== undefined || written < fresh.length) this.#verifier = undefined;
    else this.#frontier = frontier;
    return { results, ...(refusal !== undefined ? { refusal } : {}) };
  }

  /** Every check of a new block but its lock signatures, which go to the verifier's batches. */
  async #verifyStructure(verifier: ChainVerifier, b: IncomingBlock, frontier: TreeFrontier): Promise<VerifiedBlock> {
    const header = decodeBlockHeader(b.headerBytes);
    const next = this.#base + verifier.progress.blocks;
    const where = { origin: this.origin, block: header.n };
    if (header.chain !== this.origin) throw new OtiError('ERR_BLOCK_INVALID', `block ${header.n} belongs to ${header.chain}, not ${this.origin}`, where);
    if (header.n !== next) throw new OtiError('ERR_BLOCK_LINK', `expected block ${next} of ${this.origin}, got ${header.n}`, where);
    // A forged checkpoint is refused before the verifier's state is touched (a refusal inside it costs a rebuild).
    const key = verifier.roster.get('gateway', this.gatewayId)?.key;
    this.#verified = undefined;
    if (key !== undefined) verifyCheckpoint(b.checkpoint, this.origin, key, this.#preCheck);
    let checked;
    try {
      checked = await verifier.addBlock(b.headerBytes, b.checkpoint, b.entries);
    } catch (e) {
      // The verifier may hold part of the refused block: start again from what is stored.
      this.#verifier = undefined;
      if (e instanceof OtiError && e.details?.['block'] === undefined) throw new OtiError(e.code, e.message, { ...e.details, block: header.n }, { cause: e });
      throw e;
    }
    await this.#checkCounters(checked.entries, header.n);
    const nodes = frontier.push(checked.leaves);
    return { origin: this.origin, siteId: this.siteId, gatewayId: this.gatewayId, headerBytes: b.headerBytes, header, blockHash: blockHash(b.headerBytes), checkpoint: b.checkpoint, entries: b.entries, decoded: checked.entries, nodes };
  }

  /**
   * What a run ahead of the archive claims, checked as far as it can be without the blocks
   * missing before it (docs/ARCHIVE.md §Gaps in the intake): its headers are consecutive blocks
   * of this chain, each linked to the one before (ERR_BLOCK_INVALID, ERR_BLOCK_LINK); the last
   * block's checkpoint describes that block, its hash, root and the size its entries end at
   * (ERR_CHECKPOINT_MISMATCH); and it carries the gateway's signature by the key the archived
   * roster gives it (ERR_CHECKPOINT_SIGNATURE; a revoked gateway ERR_ROSTER). The hashes link
   * every header of the run to the signed one. Nothing of the verifier's state is touched.
   */
  #checkAhead(verifier: ChainVerifier, blocks: readonly IncomingBlock[]): Omit<Ahead, 'next'> {
    let prev: { n: number; hash: Uint8Array } | undefined;
    let header = decodeBlockHeader(blocks[0]!.headerBytes);
    for (const b of blocks) {
      header = decodeBlockHeader(b.headerBytes);
      const where = { origin: this.origin, block: header.n };
      if (header.chain !== this.origin) throw new OtiError('ERR_BLOCK_INVALID', `block ${header.n} belongs to ${header.chain}, not ${this.origin}`, where);
      if (prev !== undefined && (header.n !== prev.n + 1 || !bytesEqual(header.prev, prev.hash))) throw new OtiError('ERR_BLOCK_LINK', `block ${header.n} does not follow block ${prev.n} of the same message`, where);
      prev = { n: header.n, hash: blockHash(b.headerBytes) };
    }
    const cp = blocks[blocks.length - 1]!.checkpoint;
    const where = { origin: this.origin, block: header.n };
    const size = header.first + header.count;
    if (cp.origin !== this.origin || cp.block !== header.n || !bytesEqual(cp.blockHash, prev!.hash) || cp.size !== size || !bytesEqual(cp.root, header.root)) {
      throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the checkpoint of block ${header.n} does not describe it`, where);
    }
    const first = decodeBlockHeader(blocks[0]!.headerBytes).n;
    const gw = verifier.roster.get('gateway', this.gatewayId);
    if (gw === undefined) return { first, last: header.n, size, verified: false };
    if (gw.revoked) throw new OtiError('ERR_ROSTER', `gateway ${this.gatewayId} is revoked in its archived chain`, where);
    try {
      verifyCheckpoint(cp, this.origin, gw.key);
    } catch (e) {
      if (e instanceof OtiError) throw new OtiError(e.code, e.message, { ...e.details, block: header.n }, { cause: e });
      throw e;
    }
    return { first, last: header.n, size, verified: true };
  }

  async #already(n: number, headerBytes: Uint8Array, checkpoint: SignedCheckpoint, verifier: ChainVerifier): Promise<AcceptResult> {
    const [rows] = await this.#pool.execute('SELECT block_hash FROM blocks WHERE origin = ? AND n = ?', [this.origin, n]);
    const stored = (rows as { block_hash: Buffer }[])[0]?.block_hash;
    if (stored !== undefined && bytesEqual(stored, blockHash(headerBytes))) return 'duplicate';
    const where = { origin: this.origin, block: n };
    if (checkpoint.origin !== this.origin || checkpoint.block !== n || !bytesEqual(checkpoint.blockHash, blockHash(headerBytes))) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the checkpoint sent with block ${n} does not describe it`, where);
    const key = verifier.roster.get('gateway', this.gatewayId)?.key;
    if (key === undefined) throw new OtiError('ERR_ROSTER', `gateway ${this.gatewayId} is not enrolled in its chain`, where);
    verifyCheckpoint(checkpoint, this.origin, key);
    throw new OtiError('ERR_EQUIVOCATION', `block ${n} of ${this.origin} differs from the archived one, and both carry the gateway's signature`, { origin: this.origin, block: n });
  }

  async #checkCounters(entries: readonly { body: { kind: string } }[], block: number): Promise<void> {
    const first = new Map<string, number>();
    for (const e of entries) {
      const b = e.body as { kind: string; event?: { lock: string; ctr: number } };
      if (b.kind === 'lock-event' && b.event !== undefined && !this.#checkedLocks.has(b.event.lock) && !first.has(b.event.lock)) first.set(b.event.lock, b.event.ctr);
    }
    for (const [lock, ctr] of first) {
      const [rows] = await this.#pool.execute('SELECT MAX(ctr) AS c FROM entries WHERE origin = ? AND lock_id = ?', [this.origin, lock]);
      const last = (rows as { c: number | string | null }[])[0]?.c;
      if (last !== null && last !== undefined && ctr <= Number(last)) throw new OtiError('ERR_ENTRY_INVALID', `counter ${ctr} of lock ${lock} does not increase (last archived ${last})`, { origin: this.origin, lock, block });
    }
    for (const lock of first.keys()) this.#checkedLocks.add(lock);
  }

  async #ready(): Promise<ChainVerifier> {
    if (this.#verifier !== undefined) return this.#verifier;
    this.#checkedLocks.clear();
    const [blocks] = await this.#pool.execute('SELECT n, header, checkpoint FROM blocks WHERE origin = ? ORDER BY n DESC LIMIT 1', [this.origin]);
    const last = (blocks as { n: number | string; header: Buffer; checkpoint: string }[])[0];
    this.#base = 0;
    this.#frontier = new TreeFrontier();
    if (last === undefined) {
      this.#verifier = new ChainVerifier(this.origin, this.#verifyOptions());
      return this.#verifier;
    }
    const head = decodeBlockHeader(last.header);
    // The subtree peaks from the stored tree nodes (O(log n) reads; a node missing is worked out from what is under it and stored),
    // checked against the last block's signed root; and the frontier of the nodes still to complete.
    const tree = new ArchivedTree(this.#pool, this.origin);
    const size = head.first + head.count;
    const range = await rebuildRange(tree.reader(), size);
    if (!bytesEqual(range.root(), head.root)) throw new OtiError('ERR_STORE_CORRUPT', `the archived entries of ${this.origin} do not hash to the root of block ${head.n}`, { origin: this.origin });
    this.#frontier = await TreeFrontier.of(tree, size);
    const roster = new Roster();
    const [stmts] = await this.#pool.execute('SELECT statement FROM roster_statements WHERE origin = ? ORDER BY idx', [this.origin]);
    for (const r of stmts as { statement: Buffer }[]) {
      const s = decodeSigned(r.statement);
      checkSigned(s, this.#trust);
      roster.apply(s);
    }
    this.#base = head.n + 1;
    // Once a chain's checkpoints commit to the roster, later ones must too (as verify.ts's verifierAt says).
    const rosterCommitted = parseCheckpoint(last.checkpoint).roster !== undefined;
    this.#verifier = new ChainVerifier(this.origin, this.#verifyOptions(), { range, prevHash: blockHash(last.header), nextBlock: head.n + 1, roster, rosterCommitted });
    return this.#verifier;
  }

  #verifyOptions(): { trust: SiteTrust; pool?: SignaturePool; signatureBatch: number; ed25519: Ed25519Verify } {
    // A block's signatures in several batches, so every worker checks part of it while its rows go in.
    return { trust: this.#trust, signatureBatch: SIGNATURE_BATCH, ed25519: this.#ed25519, ...(this.#sigPool !== undefined ? { pool: this.#sigPool } : {}) };
  }

}
