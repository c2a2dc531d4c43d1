/**
 * The client side of the gateway's local HTTP API, for `oti status`, `oti events tail`,
 * `oti receipt`, `oti lock list` and statement submission. Every request is bounded in time
 * (10 s) and size (8 MiB). A connection that cannot be made is ERR_GATEWAY_UNREACHABLE (exit 3);
 * an answer with a non-2xx status is ERR_API (or ERR_NOT_FOUND for 404), with the gateway's own
 * error code in details when it sent one.
 */
import { OtiError } from '../ledger/base/errors.js';
import { str, usage, type Parsed } from './command.js';
import type { Terminal } from './terminal.js';

export const DEFAULT_API = 'http://127.0.0.1:8433';
const TIMEOUT_MS = 10_000;
const MAX_BODY = 8 * 1024 * 1024;
/**
 * Longest error message shown from an answer. The longest the gateway sends is ERR_LEDGER_LOST's
 * (gateway/sync/recovery.ts: about 330 characters and the data folder's path, which Linux bounds
 * at 4096 bytes); the bound only keeps a stray body from flooding the terminal.
 */
export const MAX_ERROR_MESSAGE = 8192;

/** What a client talks to, for its messages: the gateway's local API or the fleet archive. */
export interface ApiTarget {
  /** "the gateway" */
  readonly what: string;
  /** The option that sets the address, and its variable: "--api or $OTI_API_URL". */
  readonly address: string;
  /** How to see whether it runs. */
  readonly running: string;
  /** Where the token came from, named when it is refused (401/403). */
  readonly token: string;
}

export const GATEWAY_API: ApiTarget = { what: 'the gateway', address: '--api or $OTI_API_URL', running: 'systemctl status oti-gateway', token: '--token or OTI_API_TOKEN' };

/**
 * Why a connection could not be made, in words, from what fetch threw (its cause carries the
 * socket's errno, or, for a port the Fetch standard blocks such as 9 or 25, "bad port").
 */
export function unreachableReason(e: unknown): string {
  if ((e as Error | undefined)?.name === 'TimeoutError') return `no answer within ${TIMEOUT_MS / 1000} s`;
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused: nothing listens on that port',
    ECONNRESET: 'the connection was reset',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    ETIMEDOUT: 'the connection timed out',
    UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
    ENOTFOUND: 'unknown host name',
    EAI_AGAIN: 'the host name could not be resolved now',
  };
  if (code !== undefined) return words[code] !== undefined ? `${words[code]}, ${code}` : code;
  const message = typeof cause?.message === 'string' ? cause.message : (e as Error | undefined)?.message ?? String(e);
  if (message === 'bad port') return 'a port that fetch refuses to connect to (the Fetch standard’s blocked ports, e.g. 9, 25, 6000): use another port';
  return message;
}

export interface ApiResponse {
  readonly status: number;
  readonly type: string;
  readonly body: Uint8Array;
}

export class ApiClient {
  readonly base: string;
  readonly #token: string | undefined;
  readonly #target: ApiTarget;

  constructor(base: string, token: string | undefined, target: ApiTarget = GATEWAY_API) {
    const option = target.address.split(' ')[0] ?? '--api';
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw usage(`${option} must be an http(s) URL, not "${base}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage(`${option} must be an http or https URL`);
    this.base = url.toString().replace(/\/$/, '');
    this.#token = token;
    this.#target = target;
  }

  static from(p: Parsed, term: Terminal): ApiClient {
    return new ApiClient(str(p, 'api') ?? term.env('OTI_API_URL') ?? DEFAULT_API, str(p, 'token') ?? term.env('OTI_API_TOKEN'));
  }

  async request(method: 'GET' | 'POST', path: string, opts: { accept?: string; body?: Uint8Array; type?: string } = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
    if (this.#token !== undefined) headers['authorization'] = `Bearer ${this.#token}`;
    if (opts.type !== undefined) headers['content-type'] = opts.type;
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { method, headers, ...(opts.body !== undefined ? { body: opts.body } : {}), signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (e) {
      const t = this.#target;
      throw new OtiError('ERR_GATEWAY_UNREACHABLE', `cannot reach ${t.what} at ${this.base} (${unreachableReason(e)}): is it running? (${t.running}; ${t.address} sets the address)`, { api: this.base });
    }
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_BODY) throw new OtiError('ERR_API', `the answer of ${this.#target.what} is larger than ${MAX_BODY} bytes`);
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length > MAX_BODY) throw new OtiError('ERR_API', `the answer of ${this.#target.what} is larger than ${MAX_BODY} bytes`);
    const type = res.headers.get('content-type') ?? '';
    if (res.status < 200 || res.status > 299) throw apiError(method, path, res.status, type, body, this.#target);
    return { status: res.status, type, body };
  }

  async json(path: string): Promise<unknown> {
    const r = await this.request('GET', path);
    try {
      return JSON.parse(Buffer.from(r.body).toString('utf8')) as unknown;
    } catch {
      throw new OtiError('ERR_API', `GET ${path}: ${this.#target.what} did not answer with JSON`);
    }
  }
}

function apiError(method: string, path: string, status: number, type: string, body: Uint8Array, target: ApiTarget): OtiError {
  let code: string | undefined;
  let message: string | undefined;
  if (type.includes('json')) {
    try {
      const v = JSON.parse(Buffer.from(body).toString('utf8')) as { code?: unknown; message?: unknown; error?: unknown };
      const e = (typeof v.error === 'object' && v.error !== null ? v.error : v) as { code?: unknown; message?: unknown };
      if (typeof e.code === 'string') code = e.code;
      if (typeof e.message === 'string') message = e.message;
      else if (typeof v.error === 'string') message = v.error;
    } catch {
      // not JSON after all: the status says enough
    }
  }
  // The gateway's own code is shown unless it is the code this error carries anyway (printed once, by oti).
  const ours = status === 404 ? 'ERR_NOT_FOUND' : 'ERR_API';
  const shown = message !== undefined && message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}…` : message;
  const what = `${method} ${path}: ${target.what} answered ${status}${shown !== undefined ? `: ${shown}` : ''}${code !== undefined && code !== ours ? ` [${code}]` : ''}`;
  if (status === 401 || status === 403) return new OtiError(ours, `${what} (check ${target.token})`, { status, code });
  return new OtiError(ours, what, { status, code });
}
