/**
 * The questions people ask the archive (docs/ARCHIVE.md §Queries): events by site, lock, time
 * range and type; coverage gaps by site and period; a lock's history (events of one lock); the
 * chain state per site; evidence; and a receipt for any archived entry.
 *
 * Every listing is keyset-paginated on (time, origin, idx) with an opaque cursor, at most
 * `pageMax` rows a page, each page one indexed range scan. Parameters are checked here (ids
 * against the id pattern, times as whole numbers) and always bound as statement parameters.
 */
import type { Pool } from 'mysql2/promise';
import { OtiError } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { EVENT_TYPES } from '../../ledger/lockevent.js';
import { consistencyProof, inclusionProof, type NodeReader } from '../../ledger/merkle.js';
import type { TileResource } from '../../ledger/tiles.js';
import { ArchivedTree } from './tree.js';
import { parseCheckpoint, withSignature, CHECKPOINT_MAX_BYTES, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { decodeEntry } from '../../ledger/entry.js';
import { encodeReceipt } from '../../ledger/receipt.js';
import { RosterTree } from '../../ledger/roster-commitment.js';
import { Roster, decodeSigned } from '../../ledger/roster.js';
import { parseOrigin } from '../../ledger/verify.js';
import { compareNames } from '../sync/cosignatures.js';

/** A note carries at most 16 signature lines (docs/PROTOCOL.md §Checkpoints). */
const MAX_NOTE_SIGNATURES = 16;

export interface Page<T> {
  readonly items: readonly T[];
  /** Give it as `after` for the next page; absent on the last page. */
  readonly next?: string;
}

export interface EventQuery {
  readonly site?: string;
  readonly lock?: string;
  readonly type?: string;
  readonly from?: number;
  readonly to?: number;
  readonly after?: string;
  readonly limit: number;
}

export interface ArchivedEvent {
  readonly origin: string;
  readonly index: number;
  readonly block: number;
  readonly site: string;
  readonly gateway: string;
  readonly time: number;
  readonly lock: string;
  readonly ctr: number;
  readonly type: string;
  readonly eventTime: number;
  readonly provenance: string;
  /** The credential reference as the lock sent it (sealed at a site with a privacy key), hex. */
  readonly credential?: string;
  /** `verified` (archived), `replicated` (a witness cosigned a checkpoint covering it) or `confirmed` (the site's quorum did). */
  readonly status: string;
}

function usage(key: string, why: string): OtiError {
  return new OtiError('ERR_ARGUMENT', `${key}: ${why}`, { argument: key });
}

export function checkId(key: string, v: string | undefined): string | undefined {
  if (v !== undefined && !ID_PATTERN.test(v)) throw usage(key, 'must be an id (a-z, 0-9, . _ -, at most 64)');
  return v;
}

export function checkTime(key: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,16}$/.test(v)) throw usage(key, 'must be a time in ms since 1970');
  return Number(v);
}

/** A chain origin, oti/<site>/<gateway>. */
export function checkOrigin(key: string, v: string | undefined): string {
  if (v === undefined) throw usage(key, 'required: a chain origin, oti/<site>/<gateway>');
  try {
    parseOrigin(v);
  } catch {
    throw usage(key, 'must be a chain origin, oti/<site>/<gateway>');
  }
  return v;
}

/** An entry's index in its chain: a whole number from 0. */
export function checkIndex(key: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(0|[1-9]\d{0,15})$/.test(v) || !Number.isSafeInteger(Number(v))) throw usage(key, 'must be an entry index (a whole number from 0)');
  return Number(v);
}

/** mysql2's codes of a server that is down or unreachable, or a connection lost (not a statement that failed). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_SERVER_SHUTDOWN', 'ER_CON_COUNT_ERROR', 'ER_TOO_MANY_USER_CONNECTIONS']);

/** Whether `e` says the database cannot be reached now (so asking again later may succeed). */
export function databaseUnavailable(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as { code?: unknown; fatal?: unknown };
  return (typeof x.code === 'string' && UNREACHABLE.has(x.code)) || x.fatal === true;
}

interface Cursor {
  readonly time: number;
  readonly origin: string;
  readonly idx: number;
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.time, c.origin, c.idx])).toString('base64url');
}

function decodeCursor(s: string | undefined): Cursor | undefined {
  if (s === undefined) return undefined;
  try {
    const [time, origin, idx] = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown[];
    if (typeof time === 'number' && typeof origin === 'string' && typeof idx === 'number' && Number.isSafeInteger(time) && Number.isSafeInteger(idx)) {
      parseOrigin(origin);
      return { time, origin, idx };
    }
  } catch {
    // falls through to the refusal
  }
  throw usage('after', 'is not a cursor this archive gave');
}

/** WHERE fragments shared by the listings: fixed SQL text, values in `args`. */
function keyset(after: Cursor | undefined, where: string[], args: (string | number)[]): void {
  if (after === undefined) return;
  where.push('(time > ? OR (time = ? AND (origin > ? OR (origin = ? AND idx > ?))))');
  args.push(after.time, after.time, after.origin, after.origin, after.idx);
}

function range(q: { from?: number; to?: number }, where: string[], args: (string | number)[]): void {
  if (q.from !== undefined) {
    where.push('time >= ?');
    args.push(q.from);
  }
  if (q.to !== undefined) {
    where.push('time < ?');
    args.push(q.to);
  }
}

function page<R extends { time: number | string; origin: string; idx: number | string }, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
  const more = rows.length > limit;
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items: items.map(map), ...(more && last !== undefined ? { next: encodeCursor({ time: Number(last.time), origin: last.origin, idx: Number(last.idx) }) } : {}) };
}

export class ArchiveQueries {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async events(q: EventQuery): Promise<Page<ArchivedEvent>> {
    if (q.site === undefined && q.lock === undefined) throw usage('site', 'give a site or a lock');
    if (q.type !== undefined && !(EVENT_TYPES as readonly string[]).includes(q.type)) throw usage('type', `must be one of ${EVENT_TYPES.join(', ')}`);
    const where = ["kind = 'lock-event'"];
    const args: (string | number)[] = [];
    if (q.site !== undefined) {
      where.push('site_id = ?');
      args.push(q.site);
    }
    if (q.lock !== undefined) {
      where.push('lock_id = ?');
      args.push(q.lock);
    }
    if (q.type !== undefined) {
      where.push('event_type = ?');
      args.push(q.type);
    }
    range(q, where, args);
    keyset(decodeCursor(q.after), where, args);
    const sql = `SELECT origin, idx, block_n, site_id, gateway_id, time, lock_id, ctr, event_type, event_time, provenance, credential, status FROM entries WHERE ${where.join(' AND ')} ORDER BY time, origin, idx LIMIT ${q.limit + 1}`;
    const [rows] = await this.#pool.execute(sql, args);
    type R = { origin: string; idx: string | number; block_n: string | number; site_id: string; gateway_id: string; time: string | number; lock_id: string; ctr: string | number; event_type: string; event_time: string | number; provenance: string; credential: Buffer | null; status: string };
    const cov = await this.#coverage([...new Set((rows as R[]).slice(0, q.limit).map((r) => r.origin))]);
    const state = (origin: string, idx: number): string => {
      const c = cov.get(origin);
      return c === undefined ? 'verified' : idx < c.confirmed ? 'confirmed' : idx < c.replicated ? 'replicated' : 'verified';
    };
    return page(rows as R[], q.limit, (r) => ({
      origin: r.origin,
      index: Number(r.idx),
      block: Number(r.block_n),
      site: r.site_id,
      gateway: r.gateway_id,
      time: Number(r.time),
      lock: r.lock_id,
      ctr: Number(r.ctr),
      type: r.event_type,
      eventTime: Number(r.event_time),
      provenance: r.provenance,
      ...(r.credential !== null ? { credential: r.credential.toString('hex') } : {}),
      status: state(r.origin, Number(r.idx)),
    }));
  }

  async gaps(q: { site: string; from?: number; to?: number; after?: string; limit: number }): Promise<Page<Record<string, unknown>>> {
    const where = ['site_id = ?'];
    const args: (string | number)[] = [q.site];
    range(q, where, args);
    keyset(decodeCursor(q.after), where, args);
    const [rows] = await this.#pool.execute(`SELECT origin, idx, time, lock_id, from_ctr, to_ctr, source, start_ms, end_ms, reason FROM gaps WHERE ${where.join(' AND ')} ORDER BY time, origin, idx LIMIT ${q.limit + 1}`, args);
    type R = { origin: string; idx: number | string; time: number | string; lock_id: string | null; from_ctr: number | string | null; to_ctr: number | string | null; source: string | null; start_ms: number | string | null; end_ms: number | string | null; reason: string | null };
    return page(rows as R[], q.limit, (r) =>
      r.lock_id !== null
        ? { origin: r.origin, index: Number(r.idx), time: Number(r.time), lock: r.lock_id, from: Number(r.from_ctr), to: Number(r.to_ctr), ...(r.reason !== null ? { code: r.reason } : {}) }
        : { origin: r.origin, index: Number(r.idx), time: Number(r.time), source: r.source, start: Number(r.start_ms), end: Number(r.end_ms), reason: r.reason },
    );
  }

  /** The replicated and confirmed sizes of chains (docs/ARCHIVE.md §Cosignatures and confirmation). */
  async #coverage(origins: readonly string[]): Promise<Map<string, { replicated: number; confirmed: number }>> {
    const out = new Map<string, { replicated: number; confirmed: number }>();
    if (origins.length === 0) return out;
    const [rows] = await this.#pool.query('SELECT origin, replicated_size, confirmed_size FROM chains WHERE origin IN (?)', [origins]);
    for (const r of rows as { origin: string; replicated_size: number | string; confirmed_size: number | string }[]) out.set(r.origin, { replicated: Number(r.replicated_size), confirmed: Number(r.confirmed_size) });
    return out;
  }

  /**
   * Per chain of the site (or of every site): blocks, size, last checkpoint, when it was archived,
   * evidence held, the confirmation quorum, the replicated and confirmed sizes, and each
   * cosigner's largest cosigned size and its time.
   */
  async chains(site: string | undefined): Promise<Record<string, unknown>[]> {
    const [rows] = await this.#pool.execute(
      `SELECT c.origin, c.site_id, c.gateway_id, c.blocks, c.size, c.checkpoint, c.head_time, c.archived_at, c.quorum, c.replicated_size, c.confirmed_size,
         (SELECT COUNT(*) FROM evidence e WHERE e.origin = c.origin) AS evidence
       FROM chains c ${site === undefined ? '' : 'WHERE c.site_id = ?'} ORDER BY c.origin LIMIT 10000`,
      site === undefined ? [] : [site],
    );
    const [cosigs] = await this.#pool.execute(`SELECT origin, witness, size, cosigned_at FROM cosignatures ${site === undefined ? '' : 'WHERE site_id = ?'} ORDER BY origin, witness LIMIT 100000`, site === undefined ? [] : [site]);
    const cosigners = new Map<string, { gateway: string; size: number; time: number }[]>();
    for (const w of cosigs as { origin: string; witness: string; size: number | string; cosigned_at: number | string }[]) {
      cosigners.set(w.origin, [...(cosigners.get(w.origin) ?? []), { gateway: w.witness, size: Number(w.size), time: Number(w.cosigned_at) }]);
    }
    type R = { origin: string; site_id: string; gateway_id: string; blocks: number | string; size: number | string; checkpoint: string; head_time: number | string; archived_at: number | string; quorum: number | string; replicated_size: number | string; confirmed_size: number | string; evidence: number | string };
    return (rows as R[]).map((r) => ({
      origin: r.origin, site: r.site_id, gateway: r.gateway_id, blocks: Number(r.blocks), size: Number(r.size), checkpoint: r.checkpoint, headTime: Number(r.head_time), archivedAt: Number(r.archived_at), evidence: Number(r.evidence),
      quorum: Number(r.quorum), replicated: Number(r.replicated_size), confirmed: Number(r.confirmed_size), cosigners: cosigners.get(r.origin) ?? [],
    }));
  }

  /** The cosigned checkpoint notes of a chain, one per witness (its largest), as the witnesses signed them. */
  async cosignatures(origin: string): Promise<Record<string, unknown>[]> {
    const [rows] = await this.#pool.execute('SELECT witness, size, block_n, cosigned_at, note, received_at FROM cosignatures WHERE origin = ? ORDER BY witness LIMIT 1000', [origin]);
    type R = { witness: string; size: number | string; block_n: number | string; cosigned_at: number | string; note: string; received_at: number | string };
    return (rows as R[]).map((r) => ({ witness: r.witness, size: Number(r.size), block: Number(r.block_n), time: Number(r.cosigned_at), note: r.note, receivedAt: Number(r.received_at) }));
  }

  async evidence(q: { site: string; limit: number }): Promise<Record<string, unknown>[]> {
    const [rows] = await this.#pool.execute(`SELECT id, origin, block_n, code, message, received_at, LENGTH(payload) AS bytes FROM evidence WHERE site_id = ? ORDER BY id DESC LIMIT ${q.limit}`, [q.site]);
    type R = { id: number | string; origin: string; block_n: number | string | null; code: string; message: string; received_at: number | string; bytes: number | string };
    return (rows as R[]).map((r) => ({ id: Number(r.id), origin: r.origin, ...(r.block_n !== null ? { block: Number(r.block_n) } : {}), code: r.code, message: r.message, receivedAt: Number(r.received_at), bytes: Number(r.bytes) }));
  }

  /**
   * The receipt of entry `index` of chain `origin` (ledger/receipt.ts), as a gateway builds it
   * (ledger/receipt.ts receiptFor, gateway/api/server.ts): the entry, its inclusion proof in a
   * checkpoint signed by the gateway, the gateway's and the lock's site-signed statements and
   * roster proofs as of that checkpoint, and, when the checkpoint is older than the last archived
   * one, `newer`: the last archived checkpoint and the consistency proof to it.
   *
   * The checkpoint's note carries the cosignature lines the archive holds for it (docs/ARCHIVE.md
   * §Receipts): each witness's largest cosigned checkpoint is kept (`cosignatures`), and a line
   * only fits a checkpoint of the size it cosigned. With `size`, the checkpoint of that size (a
   * block ends there), with the lines of the witnesses whose kept size it is. Without, the size
   * that covers the entry and that the most witnesses cosigned (the larger one on a tie), else the
   * last archived checkpoint, without lines.
   */
  async receipt(origin: string, index: number, opts: { size?: number } = {}): Promise<Uint8Array> {
    const { siteId, gatewayId } = parseOrigin(origin);
    const head = await this.#chainHead(origin);
    if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size < 1 || opts.size > head.size)) throw usage('size', `must be a tree size from 1 to ${head.size}`);
    if (index >= head.size) throw new OtiError('ERR_NOT_FOUND', `entry ${index} of ${origin} is not archived`);
    const [cosigRows] = await this.#pool.execute('SELECT witness, size, block_n, note FROM cosignatures WHERE origin = ? AND size > ? ORDER BY witness LIMIT 1000', [origin, index]);
    const cosigs = (cosigRows as { witness: string; size: number | string; block_n: number | string; note: string }[]).map((r) => ({ witness: r.witness, size: Number(r.size), block: Number(r.block_n), note: r.note }));
    const size = opts.size ?? bestCosignedSize(cosigs) ?? head.size;
    if (index >= size) throw new OtiError('ERR_NOT_FOUND', `entry ${index} is not covered by the checkpoint of size ${size}`, { size });
    const plain = size === head.size ? head.checkpoint : await this.#checkpointOfSize(origin, size, cosigs.find((c) => c.size === size)?.block);
    const cp = parseCheckpoint(plain);
    const note = withCosignatures(cp, siteId, cosigs.filter((c) => c.size === size));
    const newer = size < head.size ? { checkpoint: head.checkpoint, proof: await consistencyProof(this.#reader(origin), size, head.size) } : undefined;
    const [entryRows] = await this.#pool.execute('SELECT bytes FROM entries WHERE origin = ? AND idx = ?', [origin, index]);
    const entryBytes = (entryRows as { bytes: Buffer }[])[0]?.bytes;
    if (entryBytes === undefined) throw new OtiError('ERR_NOT_FOUND', `entry ${index} of ${origin} is not archived`);
    const entry = decodeEntry(entryBytes);
    const lockId = entry.body.kind === 'lock-event' ? entry.body.event.lock : undefined;
    // The members' whole histories as of the checkpoint, and (when it commits to the roster,
    // docs/PROTOCOL.md §Roster commitment) where they sit in the committed tree: what a gateway's receipt carries.
    const tree = await this.#rosterTree(origin, cp.size);
    const gateway = tree.member('gateway', gatewayId)?.history;
    if (gateway === undefined) throw new OtiError('ERR_STORE_CORRUPT', `gateway ${gatewayId} is not in the archived roster of ${origin}`);
    const lock = lockId === undefined ? undefined : tree.member('lock', lockId)?.history;
    if (lockId !== undefined && lock === undefined) throw new OtiError('ERR_STORE_CORRUPT', `lock ${lockId} is not in the archived roster of ${origin}`);
    return encodeReceipt({
      entry: new Uint8Array(entryBytes), index, proof: await inclusionProof(this.#reader(origin), index, cp.size), checkpoint: note, gateway: [...gateway],
      ...(lock !== undefined ? { lock: [...lock] } : {}),
      ...(cp.roster !== undefined ? { gatewayAt: await tree.proof('gateway', gatewayId) } : {}),
      ...(cp.roster !== undefined && lockId !== undefined ? { lockAt: await tree.proof('lock', lockId) } : {}),
      ...(newer !== undefined ? { newer } : {}),
    });
  }

  /** The signed checkpoint of the block that ends at `size` (its number when known), or ERR_NOT_FOUND when no block ends there. */
  async #checkpointOfSize(origin: string, size: number, block?: number): Promise<string> {
    let n = block;
    if (n === undefined) {
      const [rows] = await this.#pool.execute('SELECT block_n FROM entries WHERE origin = ? AND idx = ?', [origin, size - 1]);
      const r = (rows as { block_n: number | string }[])[0];
      n = r === undefined ? undefined : Number(r.block_n);
    }
    const [rows] = n === undefined ? [[]] : await this.#pool.execute('SELECT first_index, count, checkpoint FROM blocks WHERE origin = ? AND n = ?', [origin, n]);
    const b = (rows as { first_index: number | string; count: number | string; checkpoint: string }[])[0];
    if (b === undefined || Number(b.first_index) + Number(b.count) !== size) throw new OtiError('ERR_NOT_FOUND', `there is no signed checkpoint of size ${size} of ${origin} (a checkpoint exists where a block ends)`, { size });
    return b.checkpoint;
  }

  /** The chain's roster as of its first `size` entries, as a roster commitment tree. */
  async #rosterTree(origin: string, size: number): Promise<RosterTree> {
    const [rows] = await this.#pool.execute('SELECT statement FROM roster_statements WHERE origin = ? AND idx < ? ORDER BY idx', [origin, size]);
    const roster = new Roster();
    for (const r of rows as { statement: Buffer }[]) roster.apply(decodeSigned(r.statement));
    return new RosterTree(roster);
  }

  /** Tree nodes from the archived entries and the stored nodes (gateway/archive/tree.ts). */
  #reader(origin: string): NodeReader {
    return new ArchivedTree(this.#pool, origin).reader();
  }

  /** The last archived checkpoint of a chain, what its tiles are consistent with. */
  async tlogCheckpoint(origin: string): Promise<string> {
    return (await this.#chainHead(origin)).checkpoint;
  }

  /** One C2SP tlog-tiles resource of an archived chain (docs/ARCHIVE.md §Tiles). */
  async tlogTile(origin: string, r: TileResource): Promise<Uint8Array> {
    const head = await this.#chainHead(origin);
    return new ArchivedTree(this.#pool, origin).tile(r, head.size, head.blocks);
  }

  async #chainHead(origin: string): Promise<{ checkpoint: string; size: number; blocks: number }> {
    const [rows] = await this.#pool.execute('SELECT checkpoint, size, blocks FROM chains WHERE origin = ?', [origin]);
    const r = (rows as { checkpoint: string; size: number | string; blocks: number | string }[])[0];
    if (r === undefined) throw new OtiError('ERR_NOT_FOUND', `chain ${origin} is not archived`);
    return { checkpoint: r.checkpoint, size: Number(r.size), blocks: Number(r.blocks) };
  }
}

/** The size the most kept cosignatures are of (the larger one on a tie); undefined when there are none. */
export function bestCosignedSize(cosigs: readonly { size: number }[]): number | undefined {
  const count = new Map<number, number>();
  for (const c of cosigs) count.set(c.size, (count.get(c.size) ?? 0) + 1);
  let best: [number, number] | undefined;
  for (const [size, n] of count) if (best === undefined || n > best[1] || (n === best[1] && size > best[0])) best = [size, n];
  return best?.[0];
}

/**
 * The note of `cp` with the cosignature line of each of `cosigs` (cosigned notes of that very
 * checkpoint, as kept in `cosignatures`, already verified) appended in the byte order of the
 * lines' names: the line named after the witness's chain (`oti/<site>/<witness>`), only from a
 * note whose signed text is the checkpoint's, within 16 signature lines and CHECKPOINT_MAX_BYTES,
 * as the gateway's CosignatureBook adds them (gateway/sync/cosignatures.ts). (Sorted here, not by
 * the database, whose collation orders `-`, `.` and `_` otherwise.)
 */
export function withCosignatures(cp: SignedCheckpoint, siteId: string, cosigs: readonly { witness: string; note: string }[]): string {
  let out = cp;
  for (const c of [...cosigs].sort((a, b) => compareNames(a.witness, b.witness))) {
    let kept: SignedCheckpoint;
    try {
      kept = parseCheckpoint(c.note);
    } catch {
      continue;
    }
    const name = `oti/${siteId}/${c.witness}`;
    // The one line of that name the archive verified when it took the note (gateway/archive/cosignatures.ts).
    const lines = kept.signatures.filter((s) => s.name === name);
    const line = lines.length === 1 ? lines[0]! : undefined;
    if (kept.text !== cp.text || line === undefined || out.signatures.some((s) => s.name === name) || out.signatures.length >= MAX_NOTE_SIGNATURES) continue;
    const next = withSignature(out, line);
    if (Buffer.byteLength(next.note, 'utf8') > CHECKPOINT_MAX_BYTES) break;
    out = next;
  }
  return out.note;
}
