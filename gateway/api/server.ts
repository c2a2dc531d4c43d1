/**
 * The gateway's local HTTP API (node:http, GET only): health, status, the chain's entries with
 * filters and cursor pagination, receipts, and Prometheus metrics. docs/API.md is the reference
 * for every endpoint, parameter, status code and error code; this file implements it.
 *
 * - Bound to loopback by default. When a token is configured, every endpoint but /health needs
 *   `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme in any case, RFC 9110 §11.1),
 *   compared in constant time; a missing or
 *   wrong token gets 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3). A non-loopback address
 *   without a token is refused at start (ERR_CONFIG).
 * - Bounded: the request target is at most MAX_URL_BYTES, headers and requests time out (checked
 *   every TIMEOUT_CHECK_MS), open connections are capped in all and per remote address
 *   (gateway/api/api-connection-cap.ts), and a
 *   listing scans at most SCAN_BUDGET entries per request, reading the chain in ranges of
 *   SCAN_RANGE entries, so no request loads the chain into memory.
 * - Every error is JSON `{ "error": { "code", "message", "details"? } }` with a code of
 *   ledger/base/errors.ts. The token is never logged, nor any request header.
 */
import { handleRosterPost, rosterListing, rosterStatus, ROSTER_POST_MAX_BYTES } from './roster-admin.js';
import { entryJson, type EntryJson, type JsonValue } from './entry-json.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isLoopbackHost } from '../config/config.js';
import { capApiConnections, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS } from './api-connection-cap.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.js';
import type { HealthBoard } from './health.js';
import type { Chain } from '../../ledger/chain.js';
import type { ChainReader } from '../../ledger/reader.js';
import { ENTRY_KINDS, type EntryKind } from '../../ledger/entry.js';
import { EVENT_TYPES, type EventType } from '../../ledger/lockevent.js';
import { decodeReceipt, encodeReceipt, receiptFor } from '../../ledger/receipt.js';
import type { CosignatureBook } from '../sync/cosignatures.js';
import { consistencyJson, sizeParam, receiptFormat } from './proof-api.js';
import { encodeTlogProof } from '../../ledger/tlog-proof.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import type { DriverStatus } from '../../drivers/driver.js';
import type { GatewayMetrics } from './metrics.js';
import { decodeEntry } from '../../ledger/entry.js';
import type { WebhookStatus } from '../notify/webhooks.js';
import type { UplinkStatus } from '../sync/uplink.js';
import { privacyRoute, PERSON_POST_MAX_BYTES, type PrivacyApiOptions } from './persons.js';
import { TLOG_PREFIX, tlogRoute } from './tlog-routes.js';
import { HttpError, clientAborted, toHttpError } from './http-error.js';

/** Longest request target (path and query) accepted, in bytes. */
export const MAX_URL_BYTES = 2048;
/** Most entries one /events request reads before it answers with a cursor to go on from. */
export const SCAN_BUDGET = 10_000;
/** Entries read from the store at a time while scanning. */
export const SCAN_RANGE = 256;
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * How often Node.js checks the header and request timeouts of open connections. Its default
 * (30 s) let a slow client keep a connection for up to 40 s against a 10 s header limit.
 */
const TIMEOUT_CHECK_MS = 1_000;
const MAX_HEADER_BYTES = 8192;

/** JSON values, for the parts of /status that other modules provide. */

export type { EntryJson, JsonValue };

/** What the runtime reports for /status; the API adds the chain's part itself. */
export interface GatewayStatusJson {
  readonly gateway: string;
  readonly site: string;
  readonly version: string;
  /** When the gateway started (ms since 1970). */
  readonly startedAt: number;
  readonly drivers: readonly DriverStatus[];
  readonly broker?: JsonValue;
  readonly peers?: JsonValue;
  /** Per webhook: cursor, lag, state, last attempt and error (gateway/notify/webhooks.ts WebhookStatus). */
  readonly webhooks?: readonly WebhookStatus[];
  /** Site-wide sync state: quorum, confirmed size, compromised gateways, stored evidence. */
  readonly sync?: JsonValue;
  /** The uplink to the central broker, when configured: cursor, lag (`behind`), connection (docs/ARCHIVE.md §Uplink). */
  readonly uplink?: UplinkStatus;
  readonly notifications?: JsonValue; // the MQTT notifier's queue, the external broker (notify/notification-metrics.ts)
}

export interface LocalApiOptions {
  readonly host: string;
  /** 0 picks a free port (see LocalApi.url). */
  readonly port: number;
  readonly token?: string | undefined;
  readonly chain: Chain;
  /** Verified cosignature lines of the chain's checkpoints, added to the checkpoint of a receipt. */
  readonly cosignatures?: CosignatureBook;
  readonly status: () => GatewayStatusJson;
  readonly metrics: GatewayMetrics;
  /** The peers' chains stored here, listed by /chains and readable with /events?chain=. */
  readonly peers?: () => readonly ChainReader[];
  /** Drivers (by id) that must be running or degraded for /health to be ok. Default: none. */
  readonly requiredDrivers?: readonly string[];
  /** The gateway's health conditions (gateway/api/health.ts), shown by /health and /status. */
  readonly health?: HealthBoard;
  /** Open connections in all (default DEFAULT_MAX_CONNECTIONS); more get 503 ERR_TOO_MANY_CONNECTIONS. */
  readonly maxConnections?: number;
  /** Open connections from one remote address (default DEFAULT_MAX_CONNECTIONS_PER_ADDRESS). */
  readonly maxConnectionsPerAddress?: number;
  readonly logger?: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  /**
   * Privacy (docs/PRIVACY.md §Roles): with a keyring here, entries show pseudonyms to every
   * reader and plaintext only to holders of the privacy token, which alone reaches /privacy/.
   */
  readonly privacy?: PrivacyApiOptions;
}

/** Who the caller is: an ordinary reader, or a privacy reader (api.privacyToken). */
type Role = 'reader' | 'privacy';

function badParam(param: string, allowed: string): HttpError {
  return new HttpError(400, 'ERR_ARGUMENT', `query parameter ${param} must be ${allowed}`, { param });
}

interface Reply {
  readonly status: number;
  readonly type: string;
  readonly body: string | Uint8Array;
  readonly headers?: Record<string, string>;
}

function json(value: unknown, status = 200): Reply {
  return { status, type: 'application/json; charset=utf-8', body: JSON.stringify(value) };
}

export class LocalApi {
  readonly #server: Server;
  readonly #opts: LocalApiOptions;
  readonly #tokenHash: Buffer | undefined;
  readonly #privacyTokenHash: Buffer | undefined;
  readonly #onChainError: (e: Error) => void;
  #chainError: Error | undefined;
  #url = '';

  private constructor(server: Server, opts: LocalApiOptions) {
    this.#server = server;
    this.#opts = opts;
    this.#tokenHash = opts.token === undefined ? undefined : sha256(opts.token);
    this.#privacyTokenHash = opts.privacy?.token === undefined ? undefined : sha256(opts.privacy.token);
    this.#onChainError = (e) => {
      this.#chainError = e;
      opts.logger?.error({ code: isOtiError(e) ? e.code : undefined }, 'the chain failed; /health reports unavailable');
    };
  }

  /**
   * Starts listening. Rejects with ERR_CONFIG for a non-loopback host without a token and with
   * ERR_PORT_IN_USE when the port is taken.
   */
  static async start(opts: LocalApiOptions): Promise<LocalApi> {
    if ((opts.token === undefined || opts.token === '') && !isLoopbackHost(opts.host)) {
      throw new OtiError('ERR_CONFIG', `the API on ${opts.host} (not a loopback address) needs a token`, { key: 'api.token' });
    }
    const server = createServer({
      maxHeaderSize: MAX_HEADER_BYTES,
      requestTimeout: REQUEST_TIMEOUT_MS,
      headersTimeout: HEADERS_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_MS,
    });
    capApiConnections(server, {
      total: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      perAddress: opts.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
      onRefused: (reason, address) => {
        opts.metrics.apiConnectionRefused(reason);
        opts.logger?.debug({ reason, address }, 'API connection refused: too many open connections');
      },
    });
    // Node.js applies the header limit only once a request's first byte has come: a connection
    // that sends nothing would stay open for good. An idle timer closes it after the same 10 s;
    // while a request is answered, after REQUEST_TIMEOUT_MS without progress either way (a
    // client that stops reading its answer); between requests, keepAliveTimeout applies.
    server.timeout = HEADERS_TIMEOUT_MS;
    const api = new LocalApi(server, opts);
    server.on('request', (req, res) => {
      req.socket.setTimeout(REQUEST_TIMEOUT_MS);
      void api.#serve(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        if (e.code === 'EADDRINUSE') reject(new OtiError('ERR_PORT_IN_USE', `port ${opts.port} on ${opts.host} is already in use (api.port)`, { key: 'api.port', host: opts.host, port: opts.port }, { cause: e }));
        else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') reject(new OtiError('ERR_CONFIG', `cannot listen on ${opts.host}: ${e.code} (api.host)`, { key: 'api.host', host: opts.host }, { cause: e }));
        else reject(e);
      };
      server.once('error', onError);
      server.listen(opts.port, opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (e) => opts.logger?.error({ code: (e as NodeJS.ErrnoException).code }, 'API server error'));
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new OtiError('ERR_CONFIG', 'the API server has no TCP address');
    api.#url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
    opts.chain.on('error', api.#onChainError);
    opts.logger?.debug({ url: api.#url, auth: api.#tokenHash !== undefined }, 'local API listening');
    return api;
  }

  /** The base URL the API listens on, e.g. http://127.0.0.1:8433. */
  get url(): string {
    return this.#url;
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    this.#opts.chain.off('error', this.#onChainError);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    let reply: Reply;
    let headers: Record<string, string> = {};
    try {
      reply = await this.#route(req, target);
    } catch (e) {
      // A client that hangs up before its body ends is not our failure, and there is no one to answer.
      if (clientAborted(req, e)) {
        this.#opts.logger?.debug({ method: req.method, path: safePath(target) }, 'API request aborted by the client');
        return;
      }
      const err = e instanceof HttpError ? e : toHttpError(e);
      if (err.status >= 500) this.#opts.logger?.error({ code: err.code, path: safePath(target), err: e }, 'API request failed');
      headers = err.headers;
      reply = json({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } }, err.status);
    }
    this.#opts.logger?.debug({ method: req.method, path: safePath(target), status: reply.status }, 'API request');
    if (res.destroyed) return;
    res.writeHead(reply.status, { 'content-type': reply.type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...reply.headers, ...headers });
    res.end(reply.body);
  }

  async #route(req: IncomingMessage, target: string): Promise<Reply> {
    if (Buffer.byteLength(target, 'utf8') > MAX_URL_BYTES) throw new HttpError(414, 'ERR_ARGUMENT', `the request target is longer than ${MAX_URL_BYTES} bytes`, { param: 'url' });
    let url: URL;
    try {
      url = new URL(target, 'http://api.invalid');
    } catch {
      throw new HttpError(400, 'ERR_ARGUMENT', 'the request target is not a valid URL', { param: 'url' });
    }
    const path = url.pathname;
    // Everything is read-only except submitting a site-signed roster statement.
    const allow = path === '/roster' ? 'GET, POST' : path.startsWith('/privacy/') ? 'GET, POST' : 'GET';
    if (!allow.split(', ').includes(String(req.method))) {
      throw new HttpError(405, 'ERR_METHOD_NOT_ALLOWED', `method ${String(req.method).slice(0, 16)} is not allowed here`, { method: String(req.method).slice(0, 16) }, { allow });
    }
    if (path === '/health') return this.#health();
    const role = this.#authorize(req);
    if (path.startsWith('/privacy/')) return this.#privacy(req, path, role);
    if (path === '/roster' && req.method === 'POST') return this.#rosterPost(req);
    if (path === '/roster') return json(rosterListing(this.#opts.chain.roster));
    if (path === '/status') return json(this.#status());
    if (path === '/metrics') {
      const m = this.#opts.metrics.registry;
      return { status: 200, type: m.contentType, body: await m.metrics() };
    }
    if (path === '/chains') return json({ chains: this.#chains() });
    if (path === '/events') return json(await this.#events(url.searchParams, role));
    if (path.startsWith(TLOG_PREFIX)) return tlogRoute(path, [this.#opts.chain, ...(this.#opts.peers?.() ?? [])]);
    const entry = /^\/events\/([^/]+)$/.exec(path);
    if (entry !== null) return json(await this.#entry(decodeId(entry[1]!), role));
    const receipt = /^\/receipts\/([^/]+)$/.exec(path);
    if (receipt !== null) return this.#receipt(decodeId(receipt[1]!), req.headers.accept, url.searchParams);
    if (path === '/proof/consistency') return json(await consistencyJson(this.#store(url.searchParams.get('chain')), url.searchParams));
    throw new HttpError(404, 'ERR_NOT_FOUND', 'no such endpoint', { path: safePath(path) });
  }

  /** POST /roster: one CBOR signed roster statement (from `oti lock enroll` and the like). */
  async #rosterPost(req: IncomingMessage): Promise<Reply> {
    const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim();
    if (type !== 'application/cbor') throw new HttpError(415, 'ERR_ARGUMENT', 'the body must be application/cbor (a signed roster statement)', { param: 'content-type' });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > ROSTER_POST_MAX_BYTES) throw new HttpError(413, 'ERR_ENCODING_TOO_LARGE', `the body is larger than ${ROSTER_POST_MAX_BYTES} bytes`, { param: 'body' });
      chunks.push(c as Buffer);
    }
    try {
      const recorded = await handleRosterPost(this.#opts.chain, new Uint8Array(Buffer.concat(chunks)));
      return json(recorded, recorded.index === null ? 200 : 201);
    } catch (e) {
      if (!isOtiError(e)) throw e;
      const rule = e.code === 'ERR_ROSTER' ? e.details?.['rule'] : undefined;
      throw new HttpError(rosterStatus(e), e.code, e.message, typeof rule === 'string' ? { rule } : undefined);
    }
  }

  #authorize(req: IncomingMessage): Role {
    // The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are Bearer.
    const m = /^Bearer ([\x21-\x7e]+)$/i.exec(req.headers.authorization ?? '');
    // Both sides hashed to 32 bytes: the comparison takes the same time whatever the length or
    // content of what was sent.
    const sent = m === null ? undefined : sha256(m[1]!);
    if (sent !== undefined && this.#privacyTokenHash !== undefined && timingSafeEqual(sent, this.#privacyTokenHash)) return 'privacy';
    const want = this.#tokenHash;
    if (want === undefined) return 'reader';
    if (sent === undefined || !timingSafeEqual(sent, want)) {
      throw new HttpError(401, 'ERR_UNAUTHORIZED', 'a valid bearer token is required', undefined, { 'www-authenticate': 'Bearer realm="oti-gateway"' });
    }
    return 'reader';
  }

  /** /privacy/...: privacy readers only (gateway/api/persons.ts). */
  async #privacy(req: IncomingMessage, path: string, role: Role): Promise<Reply> {
    const o = this.#opts.privacy;
    if (o === undefined || role !== 'privacy') {
      throw new HttpError(401, 'ERR_UNAUTHORIZED', 'the privacy token (api.privacyToken) is required', undefined, { 'www-authenticate': 'Bearer realm="oti-gateway-privacy"' });
    }
    const body = async (): Promise<Uint8Array> => {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > PERSON_POST_MAX_BYTES) throw new HttpError(413, 'ERR_ENCODING_TOO_LARGE', `the body is larger than ${PERSON_POST_MAX_BYTES} bytes`, { param: 'body' });
        chunks.push(c as Buffer);
      }
      return new Uint8Array(Buffer.concat(chunks));
    };
    try {
      const r = await privacyRoute(this.#opts.chain, o, String(req.method), path, body);
      return json(r.json, r.status);
    } catch (e) {
      if (isOtiError(e, 'ERR_PRIVACY_ERASED')) throw new HttpError(410, e.code, e.message, e.details);
      if (isOtiError(e, 'ERR_PRIVACY_NO_KEY')) throw new HttpError(409, e.code, e.message, e.details);
      if (isOtiError(e, 'ERR_PRIVACY_OPEN')) throw new HttpError(409, e.code, e.message);
      if (isOtiError(e) && e.code.startsWith('ERR_ENCODING_')) throw new HttpError(400, e.code, e.message);
      throw e;
    }
  }

  /**
   * An entry as its reader may see it: as stored for ordinary readers, with pseudonyms and person
   * fields for privacy readers. Ordinary readers get no pseudonym: with one lock's key they could
   * seal chosen PINs and read the pseudonyms back, a dictionary attack (docs/PRIVACY.md §Limits).
   */
  async #view(e: EntryJson, bytes: Uint8Array, role: Role, origin?: string): Promise<EntryJson> {
    const reader = this.#opts.privacy?.reader;
    return reader === undefined || role !== 'privacy' ? e : reader.annotate(e, decodeEntry(bytes), true, origin);
  }

  /**
   * 200 when the chain is writable, every required driver can take events and no health
   * condition is raised; else 503 with the problems (condition ids) and the conditions themselves.
   */
  #health(): Reply {
    const problems: string[] = [];
    if (this.#chainError !== undefined) problems.push('chain');
    const required = this.#opts.requiredDrivers ?? [];
    if (required.length > 0) {
      const drivers = new Map(this.#opts.status().drivers.map((d) => [d.driver, d.state]));
      for (const id of required) {
        const state = drivers.get(id);
        if (state !== 'running' && state !== 'degraded') problems.push(`driver:${id}`);
      }
    }
    const board = this.#opts.health;
    const conditions = board?.list() ?? [];
    if (problems.length === 0 && conditions.length === 0) return json({ status: 'ok' });
    const status = problems.length > 0 ? 'unavailable' : (board?.status ?? 'degraded');
    return json({ status, problems: [...problems, ...conditions.map((c) => c.id)], conditions }, 503);
  }

  #status(): Record<string, unknown> {
    const s = this.#opts.status();
    const chain = this.#opts.chain;
    return {
      gateway: s.gateway,
      site: s.site,
      version: s.version,
      uptimeSeconds: Math.max(0, Math.floor((Date.now() - s.startedAt) / 1000)),
      chain: { origin: chain.origin, size: chain.size, blocks: chain.head.n + 1, checkpoint: chain.checkpoint?.note ?? null, failed: this.#chainError !== undefined },
      drivers: s.drivers,
      health: { status: this.#opts.health?.status ?? 'ok', conditions: this.#opts.health?.list() ?? [] },
      ...(s.broker !== undefined ? { broker: s.broker } : {}),
      ...(s.peers !== undefined ? { peers: s.peers } : {}),
      webhooks: s.webhooks ?? [],
      ...(s.sync !== undefined ? { sync: s.sync } : {}),
      ...(s.uplink !== undefined ? { uplink: s.uplink } : {}),
      notifications: s.notifications,
    };
  }

  #chains(): { origin: string; role: string; size: number }[] {
    const own = this.#opts.chain;
    return [own, ...(this.#opts.peers?.() ?? [])].map((c) => ({ origin: c.origin, role: c.role, size: c.head.size }));
  }

  /** The chain a request names with `chain=` (own chain when absent). */
  #store(origin: string | null): ChainReader {
    const own = this.#opts.chain;
    if (origin === null || origin === own.origin) return own;
    const peer = this.#opts.peers?.().find((c) => c.origin === origin);
    if (peer === undefined) throw new HttpError(404, 'ERR_NOT_FOUND', 'no such chain is stored here', { param: 'chain' });
    return peer;
  }

  async #events(q: URLSearchParams, role: Role): Promise<{ items: EntryJson[]; next: number | null }> {
    const f = parseEventQuery(q);
    const cs = this.#store(f.chain);
    const size = cs.head.size;
    const items: EntryJson[] = [];
    // [lo, hi) is what is left to scan; asc walks up from lo, desc down from hi.
    let lo = f.order === 'asc' ? (f.after === undefined ? 0 : f.after + 1) : 0;
    let hi = f.order === 'desc' ? (f.after === undefined ? size : Math.min(f.after, size)) : size;
    let budget = SCAN_BUDGET;
    while (lo < hi && budget > 0 && items.length < f.limit) {
      const n = Math.min(SCAN_RANGE, budget, hi - lo);
      const from = f.order === 'asc' ? lo : hi - n;
      const range = await cs.entryRange(from, from + n);
      for (let k = 0; k < range.length && items.length < f.limit; k++) {
        const j = f.order === 'asc' ? k : range.length - 1 - k;
        const index = from + j;
        budget--;
        if (f.order === 'asc') lo = index + 1;
        else hi = index;
        const e = entryJson(index, range[j]!);
        if (matches(e, f)) items.push(await this.#view(e, range[j]!, role, cs.origin));
      }
    }
    return { items, next: lo < hi ? (f.order === 'asc' ? lo - 1 : hi) : null };
  }

  async #indexOf(id: string): Promise<number> {
    let index: number | undefined;
    try {
      index = await this.#opts.chain.indexOf(id);
    } catch (e) {
      if (isOtiError(e, 'ERR_ARGUMENT')) throw new HttpError(400, 'ERR_ARGUMENT', e.message, { param: 'id' });
      throw e;
    }
    if (index === undefined) throw new HttpError(404, 'ERR_NOT_FOUND', `no entry ${id} in this gateway's chain`, { id });
    return index;
  }

  async #entry(id: string, role: Role): Promise<EntryJson> {
    const index = await this.#indexOf(id);
    const bytes = await this.#opts.chain.entry(index);
    return { ...(await this.#view(entryJson(index, bytes), bytes, role)), entry: Buffer.from(bytes).toString('base64') };
  }

  /** The receipt with the cosignature lines kept for its checkpoint added to the note (they verify on their own; step 5 ignores them). */
  #cosigned(receipt: Uint8Array): Uint8Array {
    const book = this.#opts.cosignatures;
    if (book === undefined) return receipt;
    const parts = decodeReceipt(receipt);
    const note = book.attach(parts.checkpoint);
    return note === parts.checkpoint ? receipt : encodeReceipt({ ...parts, checkpoint: note });
  }

  async #receipt(id: string, accept: string | undefined, q: URLSearchParams): Promise<Reply> {
    const index = await this.#indexOf(id);
    const size = sizeParam(q, 'size', this.#opts.chain.head.size);
    const format = receiptFormat(q, accept);
    const bytes = this.#cosigned(await receiptFor(this.#opts.chain, index, size !== undefined ? { size } : {}));
    if (format === 'cbor') return { status: 200, type: 'application/cbor', body: bytes };
    if (format === 'tlog-proof') return { status: 200, type: 'text/plain; charset=utf-8', body: encodeTlogProof(decodeReceipt(bytes)) };
    const note = decodeReceipt(bytes).checkpoint;
    return json({ id, index, size: parseCheckpoint(note).size, checkpoint: note, receipt: Buffer.from(bytes).toString('base64') });
  }
}

interface EventQuery {
  readonly chain: string | null;
  readonly lock: string | undefined;
  readonly type: EventType | undefined;
  readonly kind: EntryKind | undefined;
  readonly since: number | undefined;
  readonly until: number | undefined;
  readonly after: number | undefined;
  readonly limit: number;
  readonly order: 'asc' | 'desc';
}

const QUERY_PARAMS = new Set(['chain', 'lock', 'type', 'kind', 'since', 'until', 'after', 'limit', 'order']);

/** Parses and checks /events parameters; each may appear once. */
function parseEventQuery(q: URLSearchParams): EventQuery {
  for (const k of new Set(q.keys())) {
    if (!QUERY_PARAMS.has(k)) throw new HttpError(400, 'ERR_ARGUMENT', 'unknown query parameter', { param: k.slice(0, 64) });
    if (q.getAll(k).length > 1) throw badParam(k, 'given at most once');
  }
  const one = <T extends string>(name: string, allowed: readonly T[]): T | undefined => {
    const v = q.get(name);
    if (v === null) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw badParam(name, `one of ${allowed.join(', ')}`);
    return v as T;
  };
  const lock = q.get('lock') ?? undefined;
  if (lock !== undefined && !ID_PATTERN.test(lock)) throw badParam('lock', 'a lock id');
  const chain = q.get('chain');
  if (chain !== null && chain.length > 256) throw badParam('chain', 'a chain origin');
  const since = timeParam(q, 'since');
  const until = timeParam(q, 'until');
  if (since !== undefined && until !== undefined && until <= since) throw badParam('until', 'later than since');
  return {
    chain,
    lock,
    type: one('type', EVENT_TYPES),
    kind: one('kind', ENTRY_KINDS),
    since,
    until,
    after: intParam(q, 'after', 0, Number.MAX_SAFE_INTEGER),
    limit: intParam(q, 'limit', 1, MAX_LIMIT) ?? DEFAULT_LIMIT,
    order: one('order', ['asc', 'desc'] as const) ?? 'asc',
  };
}

function intParam(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  const n = /^(0|[1-9][0-9]{0,15})$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw badParam(name, `an integer from ${min} to ${max}`);
  return n;
}

/** Milliseconds since 1970, or an RFC 3339 date-time with a time zone. */
function timeParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (/^(0|[1-9][0-9]{0,15})$/.test(v)) {
    const n = Number(v);
    if (Number.isSafeInteger(n)) return n;
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t) && t >= 0) return t;
  }
  throw badParam(name, 'milliseconds since 1970 or an RFC 3339 date-time such as 2024-05-01T12:00:00Z');
}

function matches(e: EntryJson, f: EventQuery): boolean {
  if (f.kind !== undefined && e.kind !== f.kind) return false;
  if (f.type !== undefined && e['type'] !== f.type) return false;
  if (f.lock !== undefined && e['lock'] !== f.lock) return false;
  if (f.since !== undefined && e.time < f.since) return false;
  if (f.until !== undefined && e.time >= f.until) return false;
  return true;
}

function decodeId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'ERR_ARGUMENT', 'the entry id is not valid percent-encoding', { param: 'id' });
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The path without its query, cut short, for logs. */
function safePath(target: string): string {
  return target.split('?', 1)[0]!.slice(0, 128);
}
