/**
 * Cosignatures in the archive (docs/ARCHIVE.md §Cosignatures and confirmation). The gateways of
 * a site cosign each other's checkpoints (C2SP tlog-cosignature, gateway/sync/witness.ts); a
 * cosignature reaches the central broker on `<prefix>/<site>/<gw>/cosig/<witness>` with the
 * payload of the site's `oti/<site>/chain/<gw>/cosig/<witness>`: `<gw>`'s checkpoint note with
 * `<witness>`'s cosignature line added.
 *
 * The archive checks one as any third party would, with the site's keys and its archived chains:
 *   - the note is a checkpoint of `oti/<site>/<gw>`, signed by `<gw>` with the key its archived
 *     roster gives it (ERR_CHECKPOINT_SIGNATURE otherwise);
 *   - it describes the archived block it names: block hash, root and size (a valid signature on
 *     another block of that number is ERR_EQUIVOCATION, kept as evidence like a block's);
 *   - it carries a valid cosignature by `<witness>` with the key the site's archived rosters
 *     give that gateway, which is enrolled and not revoked (ERR_ROSTER, ERR_CHECKPOINT_SIGNATURE).
 * A cosignature whose block or witness is not archived yet is held back (`pending`) and checked
 * again after the site's next archived blocks.
 *
 * Each witness's largest cosigned size per chain is kept (`cosignatures`), and the chain's
 * coverage worked out as the gateways do (gateway/sync/witness.ts CoverageTracker): entries
 * below the largest cosigned size are `replicated`; below the (quorum − 1)-th largest (at least
 * one witness) `confirmed`, where the quorum counts the origin and is the site's configured
 * `quorum` or a majority of the site's archived chains.
 */
import type { Pool } from 'mysql2/promise';
import { OtiError } from '../../ledger/base/errors.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { parseCheckpoint, verifyCheckpoint, CHECKPOINT_MAX_BYTES } from '../../ledger/checkpoint.js';
import { decodeSigned } from '../../ledger/roster.js';
import { verifyCosignature } from '../sync/witness.js';

export type CosignatureResult = 'recorded' | 'older' | 'pending';

/** Cosigned notes a little larger than a checkpoint: a few signature lines more. */
export const COSIGNATURE_MAX_BYTES = CHECKPOINT_MAX_BYTES;

/** The key a member had in chain `origin` before entry `before` (the last statement about it), or why none. */
async function memberKey(pool: Pool, where: { origin?: string; site?: string }, id: string, before: number): Promise<Uint8Array | 'revoked' | undefined> {
  const sql =
    where.origin !== undefined
      ? 'SELECT statement FROM roster_statements WHERE origin = ? AND role = \'gateway\' AND member_id = ? AND idx < ? ORDER BY idx DESC LIMIT 1'
      : 'SELECT statement FROM roster_statements WHERE site_id = ? AND role = \'gateway\' AND member_id = ? AND idx < ? ORDER BY idx DESC LIMIT 1';
  const [rows] = await pool.execute(sql, [where.origin ?? where.site!, id, before]);
  const r = (rows as { statement: Buffer }[])[0];
  if (r === undefined) return undefined;
  const s = decodeSigned(r.statement).statement;
  return s.op === 'revoke' ? 'revoked' : s.key;
}

/**
 * Checks and records the cosignature `payload` of chain `origin` by `witness` (both of `siteId`).
 * Refusals throw an OtiError with `block` in its details where one is named.
 */
export async function acceptCosignature(pool: Pool, origin: string, siteId: string, witness: string, payload: Uint8Array, nowMs: number): Promise<CosignatureResult> {
  if (payload.length > COSIGNATURE_MAX_BYTES) throw new OtiError('ERR_FRAME_TOO_LARGE', `a cosignature of ${payload.length} bytes is over ${COSIGNATURE_MAX_BYTES}`);
  const cp = parseCheckpoint(payload);
  const where = { origin, block: cp.block };
  if (cp.origin !== origin) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `a cosignature on the topic of ${origin} carries a checkpoint of ${cp.origin}`, where);
  const gatewayId = origin.split('/')[2]!;
  if (witness === gatewayId) throw new OtiError('ERR_ROSTER', `gateway ${gatewayId} cannot witness its own chain`, where);
  const [blocks] = await pool.execute('SELECT first_index, count, block_hash, root FROM blocks WHERE origin = ? AND n = ?', [origin, cp.block]);
  const block = (blocks as { first_index: number | string; count: number | string; block_hash: Buffer; root: Buffer }[])[0];
  if (block === undefined) return 'pending';
  const first = Number(block.first_index);
  // The key in force when the block starts (the verifier's rule), or the one its own entries enrol.
  const key = (await memberKey(pool, { origin }, gatewayId, first)) ?? (await memberKey(pool, { origin }, gatewayId, first + Number(block.count)));
  if (key === undefined || key === 'revoked') throw new OtiError('ERR_ROSTER', `gateway ${gatewayId} is not enrolled in its archived chain`, where);
  verifyCheckpoint(cp, origin, key);
  if (!bytesEqual(block.block_hash, cp.blockHash) || !bytesEqual(block.root, cp.root) || first + Number(block.count) !== cp.size) {
    throw new OtiError('ERR_EQUIVOCATION', `a checkpoint of block ${cp.block} of ${origin} signed by the gateway differs from the archived block`, where);
  }
  const witnessOrigin = `oti/${siteId}/${witness}`;
  // The witness's own chain says its key; failing that, any archived chain of the site.
  let wkey = await memberKey(pool, { origin: witnessOrigin }, witness, Number.MAX_SAFE_INTEGER);
  wkey ??= await memberKey(pool, { site: siteId }, witness, Number.MAX_SAFE_INTEGER);
  if (wkey === undefined) return 'pending';
  if (wkey === 'revoked') throw new OtiError('ERR_ROSTER', `witness ${witness} is revoked`, where);
  const ts = verifyCosignature(cp, witnessOrigin, wkey, Math.floor(nowMs / 1000));
  if (ts === undefined) throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `no valid cosignature by ${witness} on the checkpoint of block ${cp.block} of ${origin}`, where);
  // Only a larger size replaces what a witness cosigned (MySQL and MariaDB apply the SET list left to right: size last).
  const [res] = await pool.execute(
    `INSERT INTO cosignatures (origin, witness, site_id, size, block_n, cosigned_at, note, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE block_n = IF(VALUES(size) > size, VALUES(block_n), block_n), cosigned_at = IF(VALUES(size) > size, VALUES(cosigned_at), cosigned_at),
       note = IF(VALUES(size) > size, VALUES(note), note), received_at = IF(VALUES(size) > size, VALUES(received_at), received_at), size = GREATEST(size, VALUES(size))`,
    [origin, witness, siteId, cp.size, cp.block, ts * 1000, cp.note, nowMs],
  );
  return (res as { affectedRows: number }).affectedRows === 0 ? 'older' : 'recorded';
}

/** The coverage of one chain from its witnesses' cosigned sizes (gateway/sync/witness.ts's rule). */
export function coverage(size: number, witnessSizes: readonly number[], quorum: number): { replicated: number; confirmed: number } {
  const sizes = witnessSizes.map((s) => Math.min(s, size)).sort((a, b) => b - a);
  const needed = Math.max(1, quorum - 1);
  return { replicated: sizes[0] ?? 0, confirmed: sizes[needed - 1] ?? 0 };
}

/** Works out quorum, replicated and confirmed sizes again for every chain of the site. */
export async function refreshCoverage(pool: Pool, siteId: string, configuredQuorum: number | undefined): Promise<void> {
  const [chainRows] = await pool.execute('SELECT origin, size, quorum, replicated_size, confirmed_size FROM chains WHERE site_id = ?', [siteId]);
  const chains = chainRows as { origin: string; size: number | string; quorum: number | string; replicated_size: number | string; confirmed_size: number | string }[];
  const [cosigRows] = await pool.execute('SELECT origin, size FROM cosignatures WHERE site_id = ?', [siteId]);
  const byOrigin = new Map<string, number[]>();
  for (const r of cosigRows as { origin: string; size: number | string }[]) byOrigin.set(r.origin, [...(byOrigin.get(r.origin) ?? []), Number(r.size)]);
  const quorum = configuredQuorum ?? Math.floor(chains.length / 2) + 1;
  for (const c of chains) {
    const cov = coverage(Number(c.size), byOrigin.get(c.origin) ?? [], quorum);
    if (Number(c.quorum) === quorum && Number(c.replicated_size) === cov.replicated && Number(c.confirmed_size) === cov.confirmed) continue;
    await pool.execute('UPDATE chains SET quorum = ?, replicated_size = ?, confirmed_size = ? WHERE origin = ?', [quorum, cov.replicated, cov.confirmed, c.origin]);
  }
}

/** At start: the coverage of every site whose chains were worked out with another quorum than the configuration now gives. */
export async function refreshStaleCoverage(pool: Pool, quorumOf: (siteId: string) => number | undefined): Promise<number> {
  const [rows] = await pool.query('SELECT site_id, MIN(quorum) AS lo, MAX(quorum) AS hi, COUNT(*) AS n FROM chains GROUP BY site_id');
  let refreshed = 0;
  for (const r of rows as { site_id: string; lo: number | string; hi: number | string; n: number | string }[]) {
    const configured = quorumOf(r.site_id);
    const quorum = configured ?? Math.floor(Number(r.n) / 2) + 1;
    if (Number(r.lo) === quorum && Number(r.hi) === quorum) continue;
    await refreshCoverage(pool, r.site_id, configured);
    refreshed++;
  }
  return refreshed;
}
