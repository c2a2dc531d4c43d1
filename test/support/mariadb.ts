/**
 * A private MariaDB (Debian's mariadb-server) for one test: its own data folder made by
 * mariadb-install-db in a temp dir, mariadbd on 127.0.0.1 at a free port and on a socket in that
 * folder, a database and a real user with a password (what the archive is given in the field).
 * Stopped, and its folder removed, on teardown.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createConnection, type Connection } from 'mysql2/promise';
import { freePort } from './gateway-process.js';

export interface TestMariaDb {
  readonly port: number;
  readonly socket: string;
  readonly database: string;
  readonly user: string;
  readonly passwordFile: string;
  /** A root connection over the socket, for the test's own checks. */
  root(): Promise<Connection>;
  /** The server process (a test may kill it). */
  readonly proc: ChildProcess;
}

/** Where cleanups go: a node:test TestContext, or a benchmark's own list. */
export interface Teardown {
  after(fn: () => unknown): void;
}

export async function startMariaDb(t: Teardown, database = 'oti_archive', opts: { bufferPool?: string } = {}): Promise<TestMariaDb> {
  const dir = await mkdtemp(join(tmpdir(), 'oti-mariadb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const data = join(dir, 'data');
  const socket = join(dir, 'mariadb.sock');
  // Temporary tables in a folder of this instance's own: with the default (/tmp), two instances
  // bootstrapping at once removed each other's (mariadb-install-db: "Could not remove temporary table").
  const temp = join(dir, 'tmp');
  await mkdir(temp);
  await promisify(execFile)('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--user=root', `--tmpdir=${temp}`], { maxBuffer: 16 * 1024 * 1024 });
  const port = await freePort();
  const proc = spawn('mariadbd', ['--no-defaults', `--datadir=${data}`, `--socket=${socket}`, `--port=${port}`, '--bind-address=127.0.0.1', '--user=root', `--tmpdir=${temp}`, `--pid-file=${join(dir, 'mariadb.pid')}`, `--innodb-buffer-pool-size=${opts.bufferPool ?? '32M'}`, '--skip-name-resolve', '--log-error='], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  });
  const root = (): Promise<Connection> => createConnection({ socketPath: socket, user: 'root' });
  const deadline = Date.now() + 60_000;
  let conn: Connection | undefined;
  while (conn === undefined) {
    try {
      conn = await root();
    } catch {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`mariadbd did not start: ${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const user = 'oti_archive';
  const password = 'archive-password-1';
  await conn.query(`CREATE DATABASE ${database} CHARACTER SET utf8mb4`);
  await conn.query(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY '${password}'`);
  await conn.query(`GRANT ALL PRIVILEGES ON ${database}.* TO '${user}'@'127.0.0.1'`);
  await conn.end();
  const passwordFile = join(dir, 'mysql-password');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  return { port, socket, database, user, passwordFile, root, proc };
}
