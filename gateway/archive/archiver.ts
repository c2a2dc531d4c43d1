/**
 * What the archive does with what arrives, whichever way it came (the central broker's uplink
 * messages, gateway/archive/uplink-intake.ts; ranges pulled from a site, site-puller.ts): one
 * ArchivedChain per chain origin, so runs of one chain go one after the other; cosignatures
 * checked and held back until their block or witness is archived (cosignatures.ts); refusals kept
 * as evidence (`evidence` table, up to maxEvidencePerChain rows per chain and code, so that one
 * kind of refusal cannot crowd out another), the chain's archive staying where it was and other
 * chains not affected.
 *
 * A message whose blocks come after one the archive lacks (the central broker dropped some, or they
 * were published before the archive's session existed) is a gap, not misbehaviour, once what it
 * claims holds (ArchivedChain checkAhead: its last checkpoint describes its last block and carries
 * the gateway's signature; a message that fails that is refused as evidence like any other): it
 * is set aside (acknowledged, not stored, not evidence), the chain is listed as behind (behind())
 * up to the block the message ends at, logged at most once a minute, and the listeners (a site
 * puller) are told, so that a pull brings the missing blocks at once. The mark goes once the chain
 * is archived past that block. When the archive holds no key of the gateway (none of its chain),
 * the signature cannot be checked: the mark then says `verified: false`, does not tell a puller
 * how far to pull, goes once any block of the chain is archived (later claims are then checked),
 * and lapses UNVERIFIED_GAP_MS after the last message that made it.
 *
 * Methods throw only what says the database failed (isTransient): the caller must not
 * acknowledge the message then. A refusal is recorded and returned normally.
 */
import type { Pool } from 'mysql2/promise';
import type { Logger } from '../log.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import type { SignaturePool } from '../../ledger/sigpool.js';
import type { RangeMessage } from '../sync/wire.js';
import { ArchivedChain, type Ahead, type IncomingBlock } from './archived-chain.js';
import type { ArchiveConfig, ArchiveSite } from './config.js';
import { acceptCosignature, refreshCoverage } from './cosignatures.js';

export interface IntakeCounts {
  archived: number;
  duplicates: number;
  refused: number;
  evidenceDropped: number;
  /** Cosignatures recorded (each a larger size than the witness had cosigned). */
  cosignatures: number;
  /** Cosignatures held back for their block or witness, and those dropped over the cap. */
  cosignaturesPending: number;
  cosignaturesDropped: number;
  /** Chains behind a gap now, and the blocks set aside since the start because they came after one. */
  behindChains: number;
  setAside: number;
}

/** A chain whose archive lacks blocks that later blocks came after (docs/ARCHIVE.md §Gaps in the intake). */
export interface BehindChain {
  readonly origin: string;
  readonly site: string;
  /** The first block the archive lacks (every block before it is archived). */
  readonly next: number;
  /** The highest block number seen after the gap, and the chain size it ends at (as its checkpoint says). */
  readonly seen: number;
  readonly seenSize: number;
  /** Whether that checkpoint carries the gateway's signature (false: the archive holds no key of the gateway yet). */
  readonly verified: boolean;
  /** When an unverified mark lapses unless another message renews it (ms since 1970); absent when verified. */
  readonly until?: number;
  /** Blocks set aside since the gap was found. */
  readonly setAside: number;
  /** When the gap was found (ms since 1970). */
  readonly since: number;
  /** What brings the missing blocks. */
  readonly remedy: string;
}

/**
 * Told of each message set aside after a gap: the chain, its site, and the size the chain's
 * gateway signed that far (undefined when no signature could be checked: pull to what the site says).
 */
export type GapListener = (origin: string, siteId: string, size: number | undefined) => void;

/** A chain behind a gap is logged at most this often. */
const GAP_LOG_MS = 60_000;

/** How long a mark whose checkpoint could not be checked (no key of the gateway archived) lasts after its last message. */
export const UNVERIFIED_GAP_MS = 5 * 60_000;

export interface ArchiverOptions {
  /** Checks lock signatures on worker threads; without it, on this thread. */
  readonly sigPool?: SignaturePool;
  /** The clock of the gap marks (ms since 1970; tests move it). */
  readonly now?: () => number;
}

/** How long a block ahead of its chain's archive waits for the chain to move (see #awaitTurn). */
const AHEAD_WAIT_MS = 10_000;

/** Cosignatures held back at most (the oldest goes first). */
const MAX_PENDING_COSIGNATURES = 4096;

interface PendingCosignature {
  readonly origin: string;
  readonly siteId: string;
  readonly witness: string;
  readonly payload: Buffer;
}

/** Errors that say the database (not the message) failed: the message is not acknowledged. */
export function isTransient(e: unknown): boolean {
  return !isOtiError(e) || e.code === 'ERR_STORE_CORRUPT';
}

export class Archiver {
  readonly #counts = { archived: 0, duplicates: 0, refused: 0, evidenceDropped: 0, cosignatures: 0, cosignaturesDropped: 0, setAside: 0 };
  /** Chains behind a gap, with when their state was last logged. */
  readonly #behind = new Map<string, BehindChain & { loggedAt: number; loggedSetAside: number }>();
  readonly #gapListeners = new Set<GapListener>();
  /** Sites the archive pulls (their gaps are filled by a pull). */
  readonly #pulled: ReadonlySet<string>;
  readonly #pending = new Map<string, PendingCosignature>();
  /** Chains whose next block did not come within AHEAD_WAIT_MS, with the block they wait for. */
  readonly #stuck = new Map<string, number>();
  readonly #pool: Pool;
  readonly #cfg: ArchiveConfig;
  readonly #log: Logger;
  readonly #trust = new Map<string, ArchiveSite>();
  readonly #chains = new Map<string, ArchivedChain>();
  readonly #sigPool: SignaturePool | undefined;
  readonly #now: () => number;

  constructor(pool: Pool, cfg: ArchiveConfig, log: Logger, opts: ArchiverOptions = {}) {
    this.#pool = pool;
    this.#pulled = new Set(cfg.pull.map((p) => p.siteId));
    this.#sigPool = opts.sigPool;
    this.#now = opts.now ?? Date.now;
    this.#cfg = cfg;
    this.#log = log;
    for (const s of cfg.sites) this.#trust.set(s.siteId, s);
  }

  get counts(): IntakeCounts {
    this.#lapse();
    return { ...this.#counts, cosignaturesPending: this.#pending.size, behindChains: this.#behind.size };
  }

  /** The chains behind a gap now, by origin. */
  behind(): BehindChain[] {
    this.#lapse();
    return [...this.#behind.values()].map(({ loggedAt: _a, loggedSetAside: _b, ...c }) => c).sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0));
  }

  /** Calls `f` for every message set aside after a gap; returns what stops that. */
  onGap(f: GapListener): () => void {
    this.#gapListeners.add(f);
    return () => this.#gapListeners.delete(f);
  }

  /** A message that names no chain: counted, nothing else. */
  dropped(): void {
    this.#counts.refused++;
  }

  /** The archived size of a chain (0 when none of it is). */
  async archivedSize(origin: string): Promise<number> {
    const [rows] = await this.#pool.execute('SELECT size FROM chains WHERE origin = ?', [origin]);
    return Number((rows as { size: number | string }[])[0]?.size ?? 0);
  }

  #site(siteId: string): ArchiveSite {
    const site = this.#trust.get(siteId);
    if (site === undefined) throw new OtiError('ERR_ROSTER', `site ${siteId} is not one the archive trusts (add its site.json to siteFiles, or its id and keys to sites)`, { site: siteId });
    return site;
  }

  /** Verifies and archives the blocks of a range message (`payload`, kept as evidence if refused). */
  async range(origin: string, siteId: string, range: () => RangeMessage, payload: Buffer): Promise<void> {
    try {
      const site = this.#site(siteId);
      await this.#blocks(origin, site, range());
    } catch (e) {
      if (isTransient(e)) throw e;
      await this.#evidence(origin, siteId, payload, e as OtiError, 'a block');
    }
  }

  /** Checks and records a cosignature (`payload`: the cosigned note). */
  async cosignature(origin: string, siteId: string, witness: string, payload: Buffer): Promise<void> {
    try {
      await this.#cosignature(origin, siteId, witness, payload);
    } catch (e) {
      if (isTransient(e)) throw e;
      await this.#evidence(origin, siteId, payload, e as OtiError, 'a cosignature');
    }
  }

  async #blocks(origin: string, site: ArchiveSite, range: RangeMessage): Promise<void> {
    if (range.chain !== origin) throw new OtiError('ERR_BLOCK_INVALID', `a message of chain ${range.chain} on the topic of ${origin}`);
    let chain = this.#chains.get(origin);
    if (chain === undefined) {
      chain = new ArchivedChain(this.#pool, origin, site, this.#sigPool);
      this.#chains.set(origin, chain);
    }
    let at = range.first;
    const blocks: IncomingBlock[] = [];
    for (const b of range.blocks) {
      const h = decodeBlockHeader(b.h);
      if (h.first !== at || at - range.first + h.count > range.entries.length) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} does not fit the entries of the message`);
      blocks.push({ headerBytes: b.h, checkpoint: parseCheckpoint(b.cp), entries: range.entries.slice(at - range.first, at - range.first + h.count) });
      at += h.count;
    }
    if (blocks.length === 0) return;
    await this.#awaitTurn(origin, chain, decodeBlockHeader(blocks[0]!.headerBytes).n);
    // The message's blocks are one run: verified, then written in one transaction.
    const r = await chain.acceptRun(blocks);
    if (r.ahead !== undefined) return this.#gap(origin, site.siteId, r.ahead);
    for (const x of r.results) {
      if (x === 'archived') this.#counts.archived++;
      else this.#counts.duplicates++;
    }
    if (r.results.includes('archived')) {
      if (this.#behind.has(origin)) this.#moved(origin, await chain.nextBlock());
      // A new chain changes the site's majority; new blocks may be what held cosignatures back.
      if (decodeBlockHeader(blocks[0]!.headerBytes).n === 0) await refreshCoverage(this.#pool, site.siteId, site.quorum);
      await this.#retryPending(site.siteId);
    }
    if (r.refusal !== undefined) throw r.refusal;
  }

  /** A run that starts after blocks the archive lacks (its claim checked): set aside, the chain listed as behind, the listeners told. */
  #gap(origin: string, siteId: string, a: Ahead): void {
    this.#counts.setAside++;
    this.#lapse();
    const now = this.#now();
    const had = this.#behind.get(origin);
    // An unverified claim never raises (nor replaces) what a signed one says; a signed one replaces an unverified one.
    const keep = had !== undefined && had.verified && !a.verified;
    const merge = had !== undefined && had.verified === a.verified;
    const pulled = this.#pulled.has(siteId);
    const remedy = pulled
      ? `being pulled from site ${siteId}'s broker (pull)`
      : `configure pull for site ${siteId} (docs/ARCHIVE.md §Pulling from sites); the central broker dropped them or never had them (its queue for the archive's session, e.g. Mosquitto max_queued_messages, was full while the archive was down, or they were published before that session existed)`;
    const c = {
      origin,
      site: siteId,
      next: a.next,
      seen: keep ? had.seen : merge ? Math.max(a.last, had.seen) : a.last,
      seenSize: keep ? had.seenSize : merge ? Math.max(a.size, had.seenSize) : a.size,
      verified: keep || a.verified,
      ...(keep || a.verified ? {} : { until: now + UNVERIFIED_GAP_MS }),
      setAside: (had?.setAside ?? 0) + 1,
      since: had?.since ?? now,
      remedy,
      loggedAt: had?.loggedAt ?? 0,
      loggedSetAside: had?.loggedSetAside ?? 0,
    };
    if (now - c.loggedAt >= GAP_LOG_MS) {
      const unverified = c.verified ? '' : ` (unverified: the archive holds no key of ${origin}'s gateway yet; the mark lapses ${UNVERIFIED_GAP_MS / 60_000} min after the last such block)`;
      this.#log.warn({ origin, next: c.next, seen: c.seen, verified: c.verified, setAside: c.setAside - c.loggedSetAside }, `archive: ${origin} is behind: block ${c.next} and later are missing, blocks up to ${c.seen} came after them${unverified} (${c.setAside - c.loggedSetAside} set aside since the last such line, not archived, not evidence); ${remedy}`);
      c.loggedAt = now;
      c.loggedSetAside = c.setAside;
    }
    this.#behind.set(origin, c);
    for (const f of this.#gapListeners) f(origin, siteId, c.verified ? c.seenSize : undefined);
  }

  /** Unverified marks not renewed in time go (a forged block of a chain the archive holds nothing of). */
  #lapse(): void {
    const now = this.#now();
    for (const [origin, c] of this.#behind) {
      if (c.until === undefined || now < c.until) continue;
      this.#behind.delete(origin);
      this.#log.info({ origin, seen: c.seen }, `archive: ${origin} is no longer shown behind: no block of it came to confirm the unverified block ${c.seen} within ${UNVERIFIED_GAP_MS / 60_000} min`);
    }
  }

  /**
   * A chain behind a gap archived blocks: no longer behind once past what came after the gap; an
   * unverified mark goes at once (the gateway's key is archived now: a later block's claim is checked).
   */
  #moved(origin: string, next: number): void {
    const c = this.#behind.get(origin);
    if (c === undefined) return;
    if (next > c.seen || !c.verified) {
      this.#behind.delete(origin);
      this.#log.info({ origin, next }, `archive: ${origin} is no longer behind: archived up to block ${next - 1} (${c.setAside} block(s) had been set aside)`);
    } else {
      this.#behind.set(origin, { ...c, next });
    }
  }

  async #cosignature(origin: string, siteId: string, witness: string, payload: Buffer): Promise<void> {
    const site = this.#site(siteId);
    const key = `${origin} ${witness}`;
    const r = await acceptCosignature(this.#pool, origin, siteId, witness, payload, Date.now());
    this.#pending.delete(key);
    if (r === 'pending') {
      // Checked again after the site's next archived blocks; the oldest held back goes first.
      if (this.#pending.size >= MAX_PENDING_COSIGNATURES) {
        this.#pending.delete(this.#pending.keys().next().value!);
        this.#counts.cosignaturesDropped++;
      }
      this.#pending.set(key, { origin, siteId, witness, payload });
      return;
    }
    if (r === 'older') return;
    this.#counts.cosignatures++;
    await refreshCoverage(this.#pool, siteId, site.quorum);
  }

  /**
   * A block ahead of its chain's archive (blocks missing before it) waits for them as long as the
   * chain moves, and AHEAD_WAIT_MS more: another intake session or a pull may be bringing them (after `broker.sessions`
   * changed, a session may still hold older blocks of a site now taken by another). If they do
   * not come, the block is set aside as a gap (#gap), and later blocks of that chain do not wait
   * again until it moves.
   */
  async #awaitTurn(origin: string, chain: ArchivedChain, n: number): Promise<void> {
    let next = await chain.nextBlock();
    if (n <= next || this.#stuck.get(origin) === next) return;
    let until = Date.now() + AHEAD_WAIT_MS;
    while (n > next && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
      const now = await chain.nextBlock();
      // While the chain moves, something is bringing the blocks before this one: wait on.
      if (now > next) until = Date.now() + AHEAD_WAIT_MS;
      next = now;
    }
    if (n > next) this.#stuck.set(origin, next);
    else this.#stuck.delete(origin);
  }

  /** Cosignatures of the site held back for their block or witness, checked again. */
  async #retryPending(siteId: string): Promise<void> {
    for (const p of [...this.#pending.values()]) {
      if (p.siteId !== siteId) continue;
      try {
        await this.#cosignature(p.origin, p.siteId, p.witness, p.payload);
      } catch (e) {
        this.#pending.delete(`${p.origin} ${p.witness}`);
        if (isTransient(e)) throw e;
        await this.#evidence(p.origin, p.siteId, p.payload, e as OtiError, 'a cosignature');
      }
    }
  }

  /** Keeps a refusal as evidence, up to maxEvidencePerChain rows per chain and code (the first ones: a later flood of one code leaves the others room). */
  async #evidence(origin: string, siteId: string, payload: Buffer, e: OtiError, what: 'a block' | 'a cosignature'): Promise<void> {
    this.#counts.refused++;
    const block = typeof e.details?.['block'] === 'number' ? e.details['block'] : null;
    this.#log.warn({ origin, code: e.code, block }, `archive: refused ${what} of ${origin}: ${e.code} ${e.message}`);
    const [rows] = await this.#pool.execute('SELECT COUNT(*) AS c FROM evidence WHERE origin = ? AND code = ?', [origin, e.code]);
    if (Number((rows as { c: number | string }[])[0]?.c ?? 0) >= this.#cfg.maxEvidencePerChain) {
      this.#counts.evidenceDropped++;
      return;
    }
    await this.#pool.execute('INSERT INTO evidence (origin, site_id, block_n, code, message, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [origin, siteId, block, e.code, e.message.slice(0, 4096), payload, Date.now()]);
  }
}
