/**
 * The archive's tables (docs/ARCHIVE.md §Schema), for MariaDB 10.6+ and MySQL 8: InnoDB,
 * utf8mb4, no engine-specific syntax. Migrations are numbered and applied in order, each once,
 * recorded in `archive_schema`; a database newer than this code is refused.
 *
 * A block is the unit of writing: its row in `blocks` and the rows of its entries go in one
 * transaction, and (origin, n) / (origin, idx) are primary keys, so a block is archived exactly
 * once however often it arrives.
 */
import type { Pool } from 'mysql2/promise';
import { OtiError } from '../../ledger/base/errors.js';

const ORIGIN = 'VARCHAR(160) CHARACTER SET ascii NOT NULL';
const ID = 'VARCHAR(64) CHARACTER SET ascii';

/** Migration n is MIGRATIONS[n - 1]. Append only: a shipped migration never changes. */
export const MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE sites (site_id ${ID} NOT NULL PRIMARY KEY, site_keys TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE chains (origin ${ORIGIN} PRIMARY KEY, site_id ${ID} NOT NULL, gateway_id ${ID} NOT NULL,
       blocks BIGINT NOT NULL, size BIGINT NOT NULL, checkpoint TEXT NOT NULL, head_time BIGINT NOT NULL, archived_at BIGINT NOT NULL,
       KEY chains_site (site_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE blocks (origin ${ORIGIN}, n BIGINT NOT NULL, first_index BIGINT NOT NULL, count INT NOT NULL,
       header VARBINARY(512) NOT NULL, block_hash BINARY(32) NOT NULL, root BINARY(32) NOT NULL, checkpoint TEXT NOT NULL,
       time BIGINT NOT NULL, archived_at BIGINT NOT NULL, PRIMARY KEY (origin, n)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE entries (origin ${ORIGIN}, idx BIGINT NOT NULL, block_n BIGINT NOT NULL, site_id ${ID} NOT NULL, gateway_id ${ID} NOT NULL,
       kind VARCHAR(16) CHARACTER SET ascii NOT NULL, time BIGINT NOT NULL, lock_id ${ID} NULL, ctr BIGINT NULL,
       event_type VARCHAR(32) CHARACTER SET ascii NULL, event_time BIGINT NULL, provenance VARCHAR(16) CHARACTER SET ascii NULL,
       credential VARBINARY(128) NULL, person BINARY(16) NULL, status VARCHAR(16) CHARACTER SET ascii NOT NULL,
       bytes VARBINARY(8192) NOT NULL,
       PRIMARY KEY (origin, idx), KEY entries_site_time (site_id, time, origin, idx), KEY entries_lock_time (lock_id, time, origin, idx),
       KEY entries_lock_ctr (origin, lock_id, ctr)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE roster_statements (origin ${ORIGIN}, idx BIGINT NOT NULL, site_id ${ID} NOT NULL, op VARCHAR(8) CHARACTER SET ascii NOT NULL,
       role VARCHAR(8) CHARACTER SET ascii NOT NULL, member_id ${ID} NOT NULL, member_key BINARY(32) NOT NULL, statement VARBINARY(1024) NOT NULL,
       PRIMARY KEY (origin, idx), KEY roster_member (origin, role, member_id, idx)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE locks (site_id ${ID} NOT NULL, lock_id ${ID} NOT NULL, lock_key BINARY(32) NOT NULL, unsigned_allowed BOOLEAN NOT NULL,
       revoked BOOLEAN NOT NULL, PRIMARY KEY (site_id, lock_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE gaps (origin ${ORIGIN}, idx BIGINT NOT NULL, site_id ${ID} NOT NULL, time BIGINT NOT NULL, lock_id ${ID} NULL,
       from_ctr BIGINT NULL, to_ctr BIGINT NULL, source VARCHAR(64) NULL, start_ms BIGINT NULL, end_ms BIGINT NULL, reason VARCHAR(255) NULL,
       PRIMARY KEY (origin, idx), KEY gaps_site_time (site_id, time, origin, idx)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    `CREATE TABLE evidence (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, origin VARCHAR(255) NOT NULL, site_id VARCHAR(255) NOT NULL,
       block_n BIGINT NULL, code VARCHAR(64) CHARACTER SET ascii NOT NULL, message TEXT NOT NULL, payload MEDIUMBLOB NOT NULL,
       received_at BIGINT NOT NULL, KEY evidence_site (site_id, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  ],
  // 2: cosignatures and each chain's coverage (docs/ARCHIVE.md §Cosignatures and confirmation); stored tree nodes (§Tiles).
  [
    `CREATE TABLE cosignatures (origin ${ORIGIN}, witness ${ID} NOT NULL, site_id ${ID} NOT NULL, size BIGINT NOT NULL, block_n BIGINT NOT NULL,
       cosigned_at BIGINT NOT NULL, note TEXT NOT NULL, received_at BIGINT NOT NULL,
       PRIMARY KEY (origin, witness), KEY cosignatures_site (site_id, origin)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    'ALTER TABLE chains ADD COLUMN quorum INT NOT NULL DEFAULT 0, ADD COLUMN replicated_size BIGINT NOT NULL DEFAULT 0, ADD COLUMN confirmed_size BIGINT NOT NULL DEFAULT 0',
    // Nodes of height 8, 16, … of each chain's Merkle tree, kept once worked out (gateway/archive/tree.ts).
    `CREATE TABLE tree_nodes (origin ${ORIGIN}, height TINYINT UNSIGNED NOT NULL, idx BIGINT NOT NULL, hash BINARY(32) NOT NULL,
       PRIMARY KEY (origin, height, idx)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  ],
  // 3: evidence counted per chain and code (its cap, docs/ARCHIVE.md §Verification) and per chain (GET /v1/chains) on an index.
  ['ALTER TABLE evidence ADD KEY evidence_origin_code (origin, code)'],
];

/** Brings the database to the newest schema; returns its version. */
export async function migrate(pool: Pool): Promise<number> {
  await pool.query('CREATE TABLE IF NOT EXISTS archive_schema (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) ENGINE=InnoDB');
  const [rows] = await pool.query('SELECT COALESCE(MAX(version), 0) AS v FROM archive_schema');
  const have = Number((rows as { v: number | string }[])[0]?.v ?? 0);
  if (have > MIGRATIONS.length) throw new OtiError('ERR_CONFIG', `the archive database is at schema ${have}, newer than this archive (${MIGRATIONS.length}); run a newer archive`, { key: 'mysql.database' });
  for (let v = have + 1; v <= MIGRATIONS.length; v++) {
    // MySQL and MariaDB commit DDL implicitly: each statement stands alone, and the version row comes last.
    for (const ddl of MIGRATIONS[v - 1]!) await pool.query(ddl);
    await pool.execute('INSERT INTO archive_schema (version, applied_at) VALUES (?, ?)', [v, Date.now()]);
  }
  return MIGRATIONS.length;
}
