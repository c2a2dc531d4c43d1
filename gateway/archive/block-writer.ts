/**
 * Writes verified blocks into the archive: the block row, a row per entry with its
 * kind-specific columns, its roster statements (and the locks they describe), its gaps, and the
 * chain's new state, all in one transaction. Encrypted personal fields are written as the
 * ciphertext the chain holds (the entry bytes); credentials as the sealed or opaque reference
 * the lock sent. Only parameterised statements: no value is ever spliced into SQL text.
 */
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { Entry } from '../../ledger/entry.js';
import type { BlockHeader } from '../../ledger/block.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { encodeSigned } from '../../ledger/roster.js';
import type { TreeNode } from './tree.js';

export interface VerifiedBlock {
  readonly origin: string;
  readonly siteId: string;
  readonly gatewayId: string;
  readonly headerBytes: Uint8Array;
  readonly header: BlockHeader;
  readonly blockHash: Uint8Array;
  readonly checkpoint: SignedCheckpoint;
  readonly entries: readonly Uint8Array[];
  readonly decoded: readonly Entry[];
  /** The tree nodes of height 8k its entries complete (gateway/archive/tree.ts). */
  readonly nodes: readonly TreeNode[];
}

type Value = string | number | Buffer | Uint8Array | null | boolean;
type Row = Value[];

const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.length);

/** The columns of entry `i` of `b` that vary from row to row (ENTRY_COLUMNS from idx on), appended to `out`. */
function pushEntryValues(out: Value[], b: VerifiedBlock, i: number): void {
  const e = b.decoded[i]!;
  const body = e.body;
  let lock: string | null = null;
  let ctr: number | null = null;
  let type: string | null = null;
  let eventTime: number | null = null;
  let prov: string | null = null;
  let cred: Buffer | null = null;
  let person: Buffer | null = null;
  if (body.kind === 'lock-event') {
    lock = body.event.lock;
    ctr = body.event.ctr;
    type = body.event.type;
    eventTime = body.event.time;
    prov = body.prov;
    cred = body.event.cred === undefined ? null : buf(body.event.cred);
  } else if (body.kind === 'gap' && 'lock' in body) {
    lock = body.lock;
  } else if (body.kind === 'privacy') {
    person = buf(body.person);
  }
  out.push(b.header.first + i, b.header.n, body.kind, e.time, lock, ctr, type, eventTime, prov, cred, person, b.entries[i]!);
}

/** Rows of one multi-row INSERT at most, and its bytes at most (well under max_allowed_packet's 16 MiB). */
const STATEMENT_ROWS = 1000;
const STATEMENT_BYTES = 4 * 1024 * 1024;

async function insertMany(c: PoolConnection, sql: string, rows: Row[], bytesOf: (r: Row) => number = () => 64): Promise<void> {
  let from = 0;
  while (from < rows.length) {
    let to = from;
    let bytes = 0;
    while (to < rows.length && to - from < STATEMENT_ROWS && (to === from || bytes + bytesOf(rows[to]!) <= STATEMENT_BYTES)) bytes += bytesOf(rows[to++]!);
    await c.query(sql, [rows.slice(from, to)]);
    from = to;
  }
}

/**
 * Entry rows. In a run of RUN_COLUMNS_FROM entries or more, the columns the same for every row of
 * the run (the chain's origin, site and gateway; the status) come from session variables set once
 * per transaction (one round trip more) and 12 parameters a row remain instead of 16: mysql2
 * encodes a quarter fewer, the longest strings not at all (half the client's CPU for the rows;
 * the server's per row measured the same, docs/DECISIONS.md). A shorter run, where that round
 * trip would cost more than it saves, sends all 16.
 */
const ENTRY_COLUMNS = 'origin, site_id, gateway_id, status, idx, block_n, kind, time, lock_id, ctr, event_type, event_time, provenance, credential, person, bytes';
const RUN_ROW = "(@oti_origin,@oti_site,@oti_gateway,'verified',?,?,?,?,?,?,?,?,?,?,?,?)";
const FULL_ROW = '(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)';
const RUN_COLUMNS_FROM = 64;
/** Rows of one prepared entries INSERT: a few fixed sizes, so each connection prepares a few statements only. */
const PREPARED_ROWS = [128, 32, 8, 1] as const;
const insertSql = (n: number, row: string): string => `INSERT INTO entries (${ENTRY_COLUMNS}) VALUES ${Array.from({ length: n }, () => row).join(',')}`;
const runSql = new Map<number, string>(PREPARED_ROWS.map((n) => [n, insertSql(n, RUN_ROW)]));
const fullSql = new Map<number, string>(PREPARED_ROWS.map((n) => [n, insertSql(n, FULL_ROW)]));

/**
 * The entry rows of the blocks (consecutive, of one chain) through prepared statements (binary
 * protocol: the entry bytes go as they are, nothing to escape or parse), each statement's
 * parameters put straight into one array (no array per row).
 */
async function insertEntries(c: PoolConnection, blocks: readonly VerifiedBlock[]): Promise<void> {
  const total = blocks.reduce((n, b) => n + b.decoded.length, 0);
  if (total === 0) return;
  const first = blocks[0]!;
  const run = total >= RUN_COLUMNS_FROM;
  if (run) await c.execute('SET @oti_origin = ?, @oti_site = ?, @oti_gateway = ?', [first.origin, first.siteId, first.gatewayId]);
  let k = 0;
  let i = 0;
  for (let at = 0; at < total; ) {
    const n = PREPARED_ROWS.find((r) => r <= total - at)!;
    const values: Value[] = [];
    for (let r = 0; r < n; r++) {
      while (i === blocks[k]!.decoded.length) {
        k++;
        i = 0;
      }
      if (!run) values.push(first.origin, first.siteId, first.gatewayId, 'verified');
      pushEntryValues(values, blocks[k]!, i++);
    }
    await c.execute((run ? runSql : fullSql).get(n)!, values);
    at += n;
  }
}

/** Inserts every row of the blocks (consecutive blocks of one chain); false when one was already there. */
async function insertBlocks(c: PoolConnection, blocks: readonly VerifiedBlock[], now: number): Promise<boolean> {
  const [res] = await c.query('INSERT IGNORE INTO blocks (origin, n, first_index, count, header, block_hash, root, checkpoint, time, archived_at) VALUES ?', [
    blocks.map((b) => [b.origin, b.header.n, b.header.first, b.header.count, buf(b.headerBytes), buf(b.blockHash), buf(b.header.root), b.checkpoint.note, b.header.time, now]),
  ]);
  if ((res as { affectedRows: number }).affectedRows !== blocks.length) return false;
  const roster: Row[] = [];
  const gaps: Row[] = [];
  const locks = new Map<string, Row>();
  for (const b of blocks) {
    for (let i = 0; i < b.decoded.length; i++) {
      const e = b.decoded[i]!;
      const idx = b.header.first + i;
      if (e.body.kind === 'roster') {
        const s = e.body.signed.statement;
        roster.push([b.origin, idx, b.siteId, s.op, s.role, s.id, buf(s.key), buf(encodeSigned(e.body.signed))]);
        // The last statement about a lock in the run is its state.
        if (s.role === 'lock') locks.set(s.id, [b.siteId, s.id, buf(s.key), s.unsigned === true, s.op === 'revoke']);
      } else if (e.body.kind === 'gap') {
        const g = e.body;
        gaps.push('lock' in g ? [b.origin, idx, b.siteId, e.time, g.lock, g.from, g.to, null, null, null, g.code ?? null] : [b.origin, idx, b.siteId, e.time, null, null, null, g.source, g.start, g.end, g.reason]);
      }
    }
  }
  await insertEntries(c, blocks);
  await insertMany(c, 'INSERT INTO roster_statements (origin, idx, site_id, op, role, member_id, member_key, statement) VALUES ?', roster, (r) => 2 * (r[7] as Buffer).length + 256);
  await insertMany(c, 'INSERT INTO gaps (origin, idx, site_id, time, lock_id, from_ctr, to_ctr, source, start_ms, end_ms, reason) VALUES ?', gaps, () => 1024);
  const nodes = blocks.flatMap((b) => b.nodes.map((n) => [b.origin, n.height, n.idx, buf(n.hash)]));
  if (nodes.length > 0) await c.query('INSERT IGNORE INTO tree_nodes (origin, height, idx, hash) VALUES ?', [nodes]);
  if (locks.size > 0) {
    await c.query('INSERT INTO locks (site_id, lock_id, lock_key, unsigned_allowed, revoked) VALUES ? ON DUPLICATE KEY UPDATE lock_key = VALUES(lock_key), unsigned_allowed = VALUES(unsigned_allowed), revoked = VALUES(revoked)', [[...locks.values()]]);
  }
  const last = blocks[blocks.length - 1]!;
  await c.execute(
    'INSERT INTO chains (origin, site_id, gateway_id, blocks, size, checkpoint, head_time, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE blocks = VALUES(blocks), size = VALUES(size), checkpoint = VALUES(checkpoint), head_time = VALUES(head_time), archived_at = VALUES(archived_at)',
    [last.origin, last.siteId, last.gatewayId, last.header.n + 1, last.header.first + last.header.count, last.checkpoint.note, last.header.time, now],
  );
  return true;
}

/**
 * Archives verified blocks (consecutive, of one chain) in one transaction. `beforeCommit` runs
 * once the rows are in, before the commit: it says how many of the blocks may be committed (the
 * caller's last checks, e.g. lock signatures still being verified, end there). When that is
 * fewer than all, the transaction is rolled back and that prefix written again in a new one.
 * Returns how many blocks were committed. Throws (and commits nothing) when the database fails
 * or a block is already there (another writer got it first: the caller finds it a duplicate
 * when the block comes again).
 */
export async function writeBlocks(pool: Pool, blocks: readonly VerifiedBlock[], now: number, beforeCommit: () => Promise<number> = () => Promise.resolve(blocks.length)): Promise<number> {
  const c = await pool.getConnection();
  try {
    await c.beginTransaction();
    let inserted = false;
    let failed: { e: unknown } | undefined;
    try {
      inserted = await insertBlocks(c, blocks, now);
    } catch (e) {
      failed = { e };
    }
    // Whatever the database did, the caller's checks are awaited (none is left unobserved).
    const keep = await beforeCommit();
    if (failed !== undefined) throw failed.e;
    if (!inserted) throw new Error(`a block of ${blocks[0]!.origin} from ${blocks[0]!.header.n} on was archived meanwhile`);
    if (keep === blocks.length) {
      await c.commit();
      return keep;
    }
    await c.rollback();
    if (keep === 0) return 0;
    await c.beginTransaction();
    if (!(await insertBlocks(c, blocks.slice(0, keep), now))) throw new Error(`a block of ${blocks[0]!.origin} from ${blocks[0]!.header.n} on was archived meanwhile`);
    await c.commit();
    return keep;
  } catch (e) {
    await c.rollback().catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}
