/**
 * The archive's HTTP API against a private MariaDB (docs/ARCHIVE.md §Queries, §Tiles): bad,
 * malformed or repeated parameters are 400 ERR_ARGUMENT naming them (an index is an entry index,
 * not a time; an origin is oti/<site>/<gateway>), a tlog path whose origin is malformed is 404
 * ERR_NOT_FOUND, HEAD answers as GET without a body, other methods are 405 with Allow, and while
 * the database is down every query is 503 ERR_DATABASE_UNAVAILABLE with Retry-After, logged once
 * however many come within a minute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { makeSite, enrollLock } from '../support/site.js';
import { makeGateway, appendEvents } from '../support/sync.js';
import { startMariaDb } from '../support/mariadb.js';
import { blockMessage } from '../support/fleet.js';
import { waitUntil } from '../support/wait.js';
import { openPool } from '../../gateway/archive/service.js';
import { migrate } from '../../gateway/archive/schema.js';
import { parseArchiveConfig } from '../../gateway/archive/config.js';
import { Archiver } from '../../gateway/archive/archiver.js';
import { ArchiveQueries } from '../../gateway/archive/queries.js';
import { ArchiveApi } from '../../gateway/archive/api.js';
import { decodeRange } from '../../gateway/sync/wire.js';
import { toHex } from '../../ledger/crypto.js';
import { silentLogger } from '../../gateway/log.js';

const SITE = 'site-api';
const TOKEN = 'archive-api-token-errors-0123';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** One request with the token (node:http, so HEAD's empty body is what came). */
function ask(port: number, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const code = (a: Answer): string => (JSON.parse(a.body.toString('utf8')) as { error: { code: string } }).error.code;

void test('archive API: coded 400s for bad and repeated parameters, 404 for a malformed tlog origin, HEAD as GET, 405 with Allow, 503 with Retry-After while the database is down', { timeout: 120_000 }, async (t) => {
  const s = makeSite(SITE);
  const g = await makeGateway(t, s, 'gw-1', { broker: false });
  await appendEvents(g, enrollLock(s, 'door'), 3);
  const origin = g.chain.origin;
  const db = await startMariaDb(t);
  const pool = await openPool({ host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database, connections: 2 });
  t.after(() => pool.end());
  await migrate(pool);
  const cfg = parseArchiveConfig({ broker: { url: 'mqtt://127.0.0.1:1' }, mysql: { user: db.user, database: db.database }, api: { tokenFile: 'token' }, sites: [{ siteId: SITE, siteKeys: s.trust.siteKeys.map((k) => toHex(k)) }], verifyThreads: 0 }, '/');
  const archiver = new Archiver(pool, cfg, silentLogger());
  for (let n = 0; n <= g.chain.head.n; n++) {
    const m = await blockMessage(g.chain, n);
    await archiver.range(origin, SITE, () => decodeRange(m, 1 << 20), m);
  }
  assert.equal(await archiver.archivedSize(origin), g.chain.head.size);
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  const api = new ArchiveApi({ queries: new ArchiveQueries(pool), token: TOKEN, pageMax: 100, counts: () => ({ ...archiver.counts, connected: true, pull: [], behind: archiver.behind() }), logger: pino({ level: 'info' }, sink) });
  const port = await api.listen('127.0.0.1', 0);
  t.after(() => api.close());
  const o = encodeURIComponent(origin);

  assert.equal((await ask(port, `/v1/receipt?origin=${o}&index=0`)).status, 200);
  // Bad parameters: 400 ERR_ARGUMENT naming them.
  for (const [path, name] of [
    [`/v1/receipt?origin=${o}&index=-1`, 'index'],
    [`/v1/receipt?origin=${o}&index=${encodeURIComponent('1 OR 1=1')}`, 'index'],
    [`/v1/receipt?origin=${o}&index=01`, 'index'],
    ['/v1/receipt?origin=nope&index=0', 'origin'],
    ['/v1/receipt?index=0', 'origin'],
    [`/v1/cosignatures?origin=${encodeURIComponent('oti/a/b/c')}`, 'origin'],
    ['/v1/cosignatures', 'origin'],
    // Repeated parameters are refused, as at the gateway's API, not taken first-wins.
    ['/v1/chains?site=a&site=b', 'site'],
    [`/v1/evidence?site=${SITE}&limit=1&limit=2`, 'limit'],
    [`/v1/receipt?origin=${o}&origin=${o}&index=0`, 'origin'],
    [`/v1/receipt?origin=${o}&index=0&index=1`, 'index'],
  ] as const) {
    const a = await ask(port, path);
    assert.deepEqual([a.status, code(a)], [400, 'ERR_ARGUMENT'], path);
    assert.match(a.body.toString('utf8'), new RegExp(name), path);
    assert.doesNotMatch(a.body.toString('utf8'), /a time in ms/, path);
  }
  // A tlog path that names no chain is not found, whatever is wrong with it.
  for (const path of ['/v1/tlog/oti/A/b/checkpoint', '/v1/tlog/nope/checkpoint', `/v1/tlog/${origin}/tile/0/x`, `/v1/tlog/oti/${SITE}/gw-none/checkpoint`]) {
    const a = await ask(port, path);
    assert.deepEqual([a.status, code(a)], [404, 'ERR_NOT_FOUND'], path);
  }

  // HEAD answers as GET, without the body.
  for (const path of [`/v1/tlog/${origin}/checkpoint`, `/v1/tlog/${origin}/tile/entries/000.p/${g.chain.head.size}`, `/v1/tlog/${origin}/tile/0/000.p/${g.chain.head.size}`, '/v1/chains']) {
    const get = await ask(port, path);
    const head = await ask(port, path, 'HEAD');
    assert.equal(get.status, 200, path);
    assert.deepEqual([head.status, head.body.length, head.headers['content-length'], head.headers['content-type'], head.headers['cache-control']], [200, 0, String(get.body.length), get.headers['content-type'], get.headers['cache-control']], path);
  }
  const post = await ask(port, '/v1/chains', 'POST');
  assert.deepEqual([post.status, code(post), post.headers['allow']], [405, 'ERR_METHOD_NOT_ALLOWED', 'GET, HEAD']);

  // The database goes down: every query is 503 with Retry-After, not 500; the intake counts still answer.
  db.proc.kill('SIGKILL');
  await waitUntil('mariadbd is gone', () => db.proc.exitCode !== null || db.proc.signalCode !== null);
  for (const path of ['/v1/chains', `/v1/evidence?site=${SITE}`, `/v1/receipt?origin=${o}&index=0`, `/v1/tlog/${origin}/checkpoint`, `/v1/events?site=${SITE}`]) {
    const a = await ask(port, path);
    assert.deepEqual([a.status, code(a), a.headers['retry-after']], [503, 'ERR_DATABASE_UNAVAILABLE', '5'], path);
  }
  assert.equal((await ask(port, '/v1/intake')).status, 200);
  // A client polling while the database is down does not flood the log: one line a minute.
  for (let i = 0; i < 20; i++) assert.equal((await ask(port, '/v1/chains')).status, 503);
  const down = lines.filter((l) => l.msg.startsWith('archive API: the database is out of reach'));
  assert.equal(down.length, 1, down.map((l) => l.msg).join('\n'));
  assert.equal(down[0]!.level, 40);
});
