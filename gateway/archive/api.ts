/**
 * The archive's HTTP API (node:http, GET and HEAD only; docs/ARCHIVE.md §Queries). Every request
 * needs `Authorization: Bearer <token>` (the token file's first line), compared in constant time.
 * Errors are JSON `{ "error": { "code", "message" } }` with a code of ledger/base/errors.ts: a bad
 * or repeated query parameter 400 ERR_ARGUMENT, a tlog path that names no archived chain or tile
 * 404 ERR_NOT_FOUND, the database out of reach 503 ERR_DATABASE_UNAVAILABLE with Retry-After
 * (logged at most once a minute, with how many more were answered so: a client polling while the
 * database is down does not flood the log).
 *
 *   GET /v1/events?site=&lock=&type=&from=&to=&after=&limit=   (site or lock required)
 *   GET /v1/gaps?site=&from=&to=&after=&limit=
 *   GET /v1/chains[?site=]
 *   GET /v1/cosignatures?origin=                              (each witness's largest cosigned checkpoint)
 *   GET /v1/evidence?site=&limit=
 *   GET /v1/receipt?origin=&index=[&size=][&format=tlog-proof]  (application/cbor, or a C2SP tlog-proof; with the cosignatures held)
 *   GET /v1/intake                                             (what the intake counted)
 *   GET /v1/tlog/<origin>/checkpoint, /v1/tlog/<origin>/tile/… (C2SP tlog-tiles of every archived chain)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { parseOrigin } from '../../ledger/verify.js';
import { parseTilePath, TILE_WIDTH } from '../../ledger/tiles.js';
import { decodeReceipt } from '../../ledger/receipt.js';
import { encodeTlogProof } from '../../ledger/tlog-proof.js';
import { checkId, checkIndex, checkOrigin, checkTime, databaseUnavailable, type ArchiveQueries } from './queries.js';
import type { BehindChain, IntakeCounts } from './archiver.js';
import type { PullStatus } from './site-puller.js';
import { RepeatLog } from '../repeat-log.js';

const MAX_URL_BYTES = 2048;
const TLOG_PREFIX = '/v1/tlog/';
/** Full tiles never change; partial ones and the checkpoint move as the chain grows (as the gateway's tlog routes say). */
const IMMUTABLE_CACHE = 'private, max-age=31536000, immutable';
const SHORT_CACHE = 'private, max-age=5';
const DEFAULT_LIMIT = 100;
/** Seconds a client is told to wait while the database is out of reach. */
const RETRY_AFTER_S = 5;
const METHODS = 'GET, HEAD';

export interface ArchiveApiOptions {
  readonly queries: ArchiveQueries;
  readonly token: string;
  readonly pageMax: number;
  readonly counts: () => IntakeCounts & { connected: boolean; pull: readonly PullStatus[]; behind: readonly BehindChain[] };
  readonly logger: Logger;
}

/** The HTTP status of each code a request may be answered with; any other is 500 (something stored, or the archive, failed). */
const STATUS: Partial<Record<string, number>> = { ERR_UNAUTHORIZED: 401, ERR_NOT_FOUND: 404, ERR_METHOD_NOT_ALLOWED: 405, ERR_ARGUMENT: 400, ERR_PROOF_RANGE: 400, ERR_DATABASE_UNAVAILABLE: 503 };

/** The one value of query parameter `name`, or undefined; ERR_ARGUMENT when it is given more than once (as the gateway's API). */
function param(q: URLSearchParams, name: string): string | undefined {
  const all = q.getAll(name);
  if (all.length > 1) throw new OtiError('ERR_ARGUMENT', `query parameter ${name} must be given at most once`, { argument: name });
  return all[0];
}

export class ArchiveApi {
  readonly #server: Server;
  readonly #o: ArchiveApiOptions;
  readonly #tokenHash: Buffer;
  /** 503s for the database out of reach are logged once a minute (and how many were left out). */
  readonly #downLog = new RepeatLog();

  constructor(o: ArchiveApiOptions) {
    this.#o = o;
    this.#tokenHash = createHash('sha256').update(o.token).digest();
    this.#server = createServer((req, res) => void this.#serve(req, res));
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : port;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new OtiError('ERR_METHOD_NOT_ALLOWED', 'the archive API answers GET and HEAD only');
      this.#authorize(req);
      if ((req.url ?? '').length > MAX_URL_BYTES) throw new OtiError('ERR_ARGUMENT', `the request target is over ${MAX_URL_BYTES} bytes`);
      const url = new URL(req.url ?? '/', 'http://archive');
      const q = (k: string): string | undefined => param(url.searchParams, k);
      if (url.pathname.startsWith(TLOG_PREFIX)) return await this.#tlog(res, url.pathname.slice(TLOG_PREFIX.length));
      const limit = this.#limit(q('limit'));
      const site = checkId('site', q('site'));
      switch (url.pathname) {
        case '/v1/events':
          return json(res, await this.#o.queries.events({ ...opt('site', site), ...opt('lock', checkId('lock', q('lock'))), ...opt('type', q('type')), ...opt('from', checkTime('from', q('from'))), ...opt('to', checkTime('to', q('to'))), ...opt('after', q('after')), limit }));
        case '/v1/gaps':
          if (site === undefined) throw new OtiError('ERR_ARGUMENT', 'site: required');
          return json(res, await this.#o.queries.gaps({ site, ...opt('from', checkTime('from', q('from'))), ...opt('to', checkTime('to', q('to'))), ...opt('after', q('after')), limit }));
        case '/v1/chains': {
          // A chain behind a gap in the intake says so (docs/ARCHIVE.md §Gaps in the intake).
          const behind = new Map(this.#o.counts().behind.map((b) => [b.origin, b]));
          const chains = await this.#o.queries.chains(site);
          return json(res, { chains: chains.map((c) => withBehind(c, behind.get(String(c['origin'])))) });
        }
        case '/v1/cosignatures':
          return json(res, { cosignatures: await this.#o.queries.cosignatures(checkOrigin('origin', q('origin'))) });
        case '/v1/evidence':
          if (site === undefined) throw new OtiError('ERR_ARGUMENT', 'site: required');
          return json(res, { evidence: await this.#o.queries.evidence({ site, limit }) });
        case '/v1/receipt': {
          const origin = checkOrigin('origin', q('origin'));
          const index = checkIndex('index', q('index'));
          if (index === undefined) throw new OtiError('ERR_ARGUMENT', 'index: required');
          const sizeText = q('size');
          if (sizeText !== undefined && !/^[1-9]\d{0,15}$/.test(sizeText)) throw new OtiError('ERR_ARGUMENT', 'size: must be a tree size (a positive whole number)');
          const size = sizeText === undefined ? undefined : Number(sizeText);
          const format = q('format') ?? 'cbor';
          if (format !== 'cbor' && format !== 'tlog-proof') throw new OtiError('ERR_ARGUMENT', 'format: must be cbor or tlog-proof');
          const bytes = await this.#o.queries.receipt(origin, index, size !== undefined ? { size } : {});
          const body = format === 'cbor' ? bytes : Buffer.from(encodeTlogProof(decodeReceipt(bytes)), 'utf8');
          res.writeHead(200, { 'content-type': format === 'cbor' ? 'application/cbor' : 'text/plain; charset=utf-8', 'content-length': body.length });
          res.end(body);
          return;
        }
        case '/v1/intake':
          return json(res, this.#o.counts());
        default:
          throw new OtiError('ERR_NOT_FOUND', `no endpoint ${url.pathname}`);
      }
    } catch (e) {
      const down = !isOtiError(e) && databaseUnavailable(e);
      const err = isOtiError(e) ? e : down ? new OtiError('ERR_DATABASE_UNAVAILABLE', `the archive cannot reach its database now (${String((e as { code?: unknown }).code)}); try again in ${RETRY_AFTER_S} s`) : new OtiError('ERR_INTERNAL', 'the archive failed to answer');
      const status = STATUS[err.code] ?? 500;
      if (down) {
        const admitted = this.#downLog.admit('database', err.code, Date.now());
        const more = admitted !== undefined && admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more such answers since the last such line)` : '';
        if (admitted !== undefined) this.#o.logger.warn({ err: (e as Error).message, code: err.code, suppressed: admitted.suppressed }, `archive API: the database is out of reach (${(e as Error).message}); answered 503${more}`);
      } else if (status >= 500) this.#o.logger.error({ err: (e as Error).message, code: err.code }, `archive API: ${(e as Error).message}`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(status, {
        'content-type': 'application/json',
        ...(status === 401 ? { 'www-authenticate': 'Bearer realm="oti-archive"' } : {}),
        ...(status === 405 ? { allow: METHODS } : {}),
        ...(status === 503 ? { 'retry-after': String(RETRY_AFTER_S) } : {}),
      });
      res.end(JSON.stringify({ error: { code: err.code, message: err.message } }));
    }
  }

  /** `<origin>/checkpoint` or `<origin>/<tile path>` (ledger/tiles.ts), the origin as it is: oti/<site>/<gateway>. */
  async #tlog(res: ServerResponse, path: string): Promise<void> {
    const parts = path.split('/');
    const origin = parts.slice(0, 3).join('/');
    const rest = parts.slice(3).join('/');
    try {
      parseOrigin(origin);
    } catch {
      throw new OtiError('ERR_NOT_FOUND', 'no chain here: the path is /v1/tlog/oti/<site>/<gateway>/ and a tile path or checkpoint');
    }
    if (rest === 'checkpoint') {
      const note = await this.#o.queries.tlogCheckpoint(origin);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(note), 'cache-control': SHORT_CACHE });
      res.end(note);
      return;
    }
    const r = parseTilePath(rest);
    if (r === undefined) throw new OtiError('ERR_NOT_FOUND', 'not a tile path: tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>], oti/blocks/<N>[.p/<W>] or checkpoint');
    const body = await this.#o.queries.tlogTile(origin, r);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': r.width === TILE_WIDTH ? IMMUTABLE_CACHE : SHORT_CACHE });
    res.end(body);
  }

  #authorize(req: IncomingMessage): void {
    const m = /^Bearer ([\x21-\x7e]+)$/i.exec(req.headers.authorization ?? '');
    const sent = m === null ? undefined : createHash('sha256').update(m[1]!).digest();
    if (sent === undefined || !timingSafeEqual(sent, this.#tokenHash)) throw new OtiError('ERR_UNAUTHORIZED', 'a valid bearer token is required');
  }

  #limit(v: string | undefined): number {
    if (v === undefined) return Math.min(DEFAULT_LIMIT, this.#o.pageMax);
    if (!/^\d{1,6}$/.test(v) || Number(v) < 1 || Number(v) > this.#o.pageMax) throw new OtiError('ERR_ARGUMENT', `limit: must be from 1 to ${this.#o.pageMax}`);
    return Number(v);
  }
}

function opt<T>(k: string, v: T | undefined): { [x: string]: T } {
  return v === undefined ? {} : { [k]: v };
}

/** A chain row of /v1/chains, with `behind` when the intake found a gap in it. */
function withBehind(c: Record<string, unknown>, b: BehindChain | undefined): Record<string, unknown> {
  if (b === undefined) return c;
  return { ...c, behind: { next: b.next, seen: b.seen, setAside: b.setAside, since: b.since, remedy: b.remedy } };
}

/** (A HEAD request gets the same status and headers; node:http sends no body for it.) */
function json(res: ServerResponse, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}
