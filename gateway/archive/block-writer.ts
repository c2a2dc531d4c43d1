/**
 * Writes one verified block into the archive: the block row, a row per entry with its
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
}

type Row = (string | number | Buffer | null | boolean)[];

const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.length);

function entryRow(b: VerifiedBlock, i: number): Row {
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
  return [b.origin, b.header.first + i, b.header.n, b.siteId, b.gatewayId, body.kind, e.time, lock, ctr, type, eventTime, prov, cred, person, 'verified', buf(b.entries[i]!)];
}

async function insertMany(c: PoolConnection, sql: string, rows: Row[]): Promise<void> {
  if (rows.length === 0) return;
  await c.query(sql, [rows]);
}

/**
 * Archives a verified block. Returns false when (origin, n) was already there (a replay):
 * nothing is written then. The caller has checked that a stored block of the same number is
 * the same block.
 */
export async function writeBlock(pool: Pool, b: VerifiedBlock, now: number): Promise<boolean> {
  const c = await pool.getConnection();
  try {
    await c.beginTransaction();
    const [res] = await c.execute('INSERT IGNORE INTO blocks (origin, n, first_index, count, header, block_hash, root, checkpoint, time, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      b.origin, b.header.n, b.header.first, b.header.count, buf(b.headerBytes), buf(b.blockHash), buf(b.header.root), b.checkpoint.note, b.header.time, now,
    ]);
    if ((res as { affectedRows: number }).affectedRows === 0) {
      await c.rollback();
      return false;
    }
    await insertMany(c, 'INSERT INTO entries (origin, idx, block_n, site_id, gateway_id, kind, time, lock_id, ctr, event_type, event_time, provenance, credential, person, status, bytes) VALUES ?', b.decoded.map((_, i) => entryRow(b, i)));
    const roster: Row[] = [];
    const gaps: Row[] = [];
    for (let i = 0; i < b.decoded.length; i++) {
      const e = b.decoded[i]!;
      const idx = b.header.first + i;
      if (e.body.kind === 'roster') {
        const s = e.body.signed.statement;
        roster.push([b.origin, idx, b.siteId, s.op, s.role, s.id, buf(s.key), buf(encodeSigned(e.body.signed))]);
        if (s.role === 'lock') {
          await c.execute('INSERT INTO locks (site_id, lock_id, lock_key, unsigned_allowed, revoked) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE lock_key = VALUES(lock_key), unsigned_allowed = VALUES(unsigned_allowed), revoked = VALUES(revoked)', [
            b.siteId, s.id, buf(s.key), s.unsigned === true, s.op === 'revoke',
          ]);
        }
      } else if (e.body.kind === 'gap') {
        const g = e.body;
        gaps.push('lock' in g ? [b.origin, idx, b.siteId, e.time, g.lock, g.from, g.to, null, null, null, g.code ?? null] : [b.origin, idx, b.siteId, e.time, null, null, null, g.source, g.start, g.end, g.reason]);
      }
    }
    await insertMany(c, 'INSERT INTO roster_statements (origin, idx, site_id, op, role, member_id, member_key, statement) VALUES ?', roster);
    await insertMany(c, 'INSERT INTO gaps (origin, idx, site_id, time, lock_id, from_ctr, to_ctr, source, start_ms, end_ms, reason) VALUES ?', gaps);
    await c.execute(
      'INSERT INTO chains (origin, site_id, gateway_id, blocks, size, checkpoint, head_time, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE blocks = VALUES(blocks), size = VALUES(size), checkpoint = VALUES(checkpoint), head_time = VALUES(head_time), archived_at = VALUES(archived_at)',
      [b.origin, b.siteId, b.gatewayId, b.header.n + 1, b.header.first + b.header.count, b.checkpoint.note, b.header.time, now],
    );
    await c.commit();
    return true;
  } catch (e) {
    await c.rollback().catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}
