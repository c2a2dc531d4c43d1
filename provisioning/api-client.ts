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

export interface ApiResponse {
  readonly status: number;
  readonly type: string;
  readonly body: Uint8Array;
}

export class ApiClient {
  readonly base: string;
  readonly #token: string | undefined;
  /** Where the token came from, named when the gateway refuses it (401/403). */
  readonly #tokenHint: string;

  constructor(base: string, token: string | undefined, tokenHint = '--token or OTI_API_TOKEN') {
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw usage(`--api must be an http(s) URL, not "${base}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage('--api must be an http or https URL');
    this.base = url.toString().replace(/\/$/, '');
    this.#token = token;
    this.#tokenHint = tokenHint;
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
      const cause = (e as { cause?: { code?: string } }).cause;
      const why = cause?.code ?? ((e as Error).name === 'TimeoutError' ? 'timed out' : (e as Error).message);
      throw new OtiError('ERR_GATEWAY_UNREACHABLE', `cannot reach the gateway at ${this.base} (${why}): is it running? (systemctl status oti-gateway; --api sets the address)`, { api: this.base });
    }
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_BODY) throw new OtiError('ERR_API', `the gateway's answer is larger than ${MAX_BODY} bytes`);
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length > MAX_BODY) throw new OtiError('ERR_API', `the gateway's answer is larger than ${MAX_BODY} bytes`);
    const type = res.headers.get('content-type') ?? '';
    if (res.status < 200 || res.status > 299) throw apiError(method, path, res.status, type, body, this.#tokenHint);
    return { status: res.status, type, body };
  }

  async json(path: string): Promise<unknown> {
    const r = await this.request('GET', path);
    try {
      return JSON.parse(Buffer.from(r.body).toString('utf8')) as unknown;
    } catch {
      throw new OtiError('ERR_API', `GET ${path}: the gateway did not answer with JSON`);
    }
  }
}

function apiError(method: string, path: string, status: number, type: string, body: Uint8Array, tokenHint: string): OtiError {
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
  const what = `${method} ${path}: the gateway answered ${status}${message !== undefined ? `: ${message.slice(0, 300)}` : ''}${code !== undefined && code !== ours ? ` [${code}]` : ''}`;
  if (status === 401 || status === 403) return new OtiError(ours, `${what} (check ${tokenHint})`, { status, code });
  return new OtiError(ours, what, { status, code });
}
