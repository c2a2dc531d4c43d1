/**
 * Webhooks: every entry of this gateway's chain, POSTed as signed JSON to each configured URL,
 * at least once, in chain order. docs/WEBHOOKS.md is the integrator's contract (payload,
 * signature check, retry and cursor rules); this comment states the implementation's.
 *
 * The chain is the outbox. Each hook has a cursor, "the next chain index to deliver", kept in
 * `<cursorDir>/<hook id>.json` and replaced atomically (temp file, fsync, rename, fsync of the
 * folder) only after the receiver answered 2xx. A crash or power cut between the answer and the
 * rename re-delivers that one batch after restart; nothing before the cursor is ever sent again
 * and nothing after it is skipped (unless `maxAttempts` gives up on a batch, see below).
 *
 * One hook delivers one batch at a time (consecutive entries, at most BATCH_MAX_ENTRIES and about
 * BATCH_MAX_BYTES of JSON). A failed attempt (non-2xx, timeout, connection error, a chain read
 * error) is retried after an exponential backoff with jitter within [backoffMinMs, backoffMaxMs]
 * (a 429/503 Retry-After within those bounds is honoured); a retry sends the same entries again.
 * After `maxAttempts` failed attempts of one batch (when > 0) the batch is skipped: logged,
 * counted, cursor moved past it. 410 Gone disables the hook until the next start. The hooks wake
 * on the chain's 'block' event; while idle nothing runs but, during a backoff, one timer per hook.
 *
 * Secrets are never logged and never put in status(); URLs are shown without user info and with
 * the query replaced by `?…` (see redactUrl).
 */
import { entryJson, type EntryJson } from '../api/entry-json.js';
import { readBoundedFile, writeFileAtomic } from '../../ledger/base/files.js';
import { createHash, createHmac } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Chain } from '../../ledger/chain.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { receiptFor } from '../../ledger/receipt.js';
import type { WebhookConfig } from '../config/config.js';
import { silentLogger, type Logger } from '../log.js';

/** Most entries in one delivery. */
export const BATCH_MAX_ENTRIES = 100;
/** A delivery stops taking entries once its JSON would grow past this (it always holds one). */
export const BATCH_MAX_BYTES = 256 * 1024;
/** What stop() gives an in-flight POST before it aborts it. */
export const STOP_GRACE_MS = 2000;
/** Largest cursor file and secret file read. */
const CURSOR_MAX_BYTES = 4096;
const SECRET_MAX_BYTES = 4096;
/** Shortest accepted secret (the configuration's rule for `secret`, applied to secretFile too). */
const SECRET_MIN_CHARS = 16;
export const SIGNATURE_HEADER = 'x-oti-signature';
export const DELIVERY_HEADER = 'x-oti-delivery';
export const ATTEMPT_HEADER = 'x-oti-attempt';
const USER_AGENT = 'oti-gateway-webhooks/1';

/** One hook: the configuration item, plus where a hook without a cursor starts. */
export type WebhookHook = Pick<WebhookConfig, 'url' | 'maxAttempts' | 'backoffMinMs' | 'backoffMaxMs' | 'timeoutMs'> & {
  /** Exactly one of secret and secretFile. */
  readonly secret?: string | undefined;
  readonly secretFile?: string | undefined;
  /** A hook with no cursor file yet starts at index 0 instead of the chain's current end. */
  readonly fromStart?: boolean;
};

export interface WebhookDispatcherOptions {
  readonly chain: Chain;
  readonly hooks: readonly WebhookHook[];
  /** Folder of the cursor files; created (mode 0700) when missing. */
  readonly cursorDir: string;
  readonly logger?: Logger;
  readonly fetch?: typeof fetch;
  /** Clock for the signature timestamp and `deliveredAt` (ms since 1970). */
  readonly now?: () => number;
}

export interface WebhookStatus {
  /** Stable: the first 16 hex digits of SHA-256 of the URL; names the cursor file. */
  readonly id: string;
  readonly url: string;
  /** Next chain index to deliver. */
  readonly cursor: number;
  /** Entries committed but not delivered yet. */
  readonly behind: number;
  readonly state: 'idle' | 'delivering' | 'backoff' | 'disabled' | 'stopped';
  readonly lastError?: string;
  /** When the last attempt (POST) started (ms since 1970), if any since start. */
  readonly lastAttemptAt?: number;
  /** When a receiver last answered 2xx (ms since 1970), if ever since start. */
  readonly lastDeliveredAt?: number;
  /** When the next retry is due (ms since 1970), during a backoff. */
  readonly nextAttemptAt?: number;
  /** Entries delivered (2xx) since start. */
  readonly delivered: number;
  /** Failed attempts since start. */
  readonly failed: number;
  /** Entries given up on after maxAttempts since start. */
  readonly skipped: number;
}

/** One entry as delivered (docs/WEBHOOKS.md §Payload): the API's entry JSON plus its receipt. */
export type WebhookEntry = EntryJson & {
  /** The entry's receipt (ledger/receipt.ts) against the checkpoint current when it was sent, base64. */
  readonly receipt: string;
};

export interface WebhookDelivery {
  readonly chain: string;
  /** First and last chain index in this delivery, both inclusive. */
  readonly from: number;
  readonly to: number;
  readonly deliveredAt: number;
  readonly entries: readonly WebhookEntry[];
}


/** `t=<ms>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */
export function signatureHeader(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** The hook id: first 16 hex digits of SHA-256 over the URL as configured. */
export function hookId(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

/** The URL without user info, and with any query replaced by `?…` (tokens often live there). */
export function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}${u.search !== '' ? '?…' : ''}`;
}




/** Delivers the chain to every configured hook. start() once, stop() once. */
/** The folder of the webhook cursors in the data folder (one per hook: positions in the own chain). */
export const WEBHOOK_CURSOR_DIR = 'webhooks';

export class WebhookDispatcher {
  readonly #chain: Chain;
  readonly #hooks: readonly WebhookHook[];
  readonly #dir: string;
  readonly #log: Logger;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  #workers: HookWorker[] = [];
  readonly #onBlock = (): void => {
    for (const w of this.#workers) w.wake();
  };

  constructor(opts: WebhookDispatcherOptions) {
    this.#chain = opts.chain;
    this.#dir = opts.cursorDir;
    this.#log = opts.logger ?? silentLogger();
    this.#fetch = opts.fetch ?? fetch;
    this.#now = opts.now ?? Date.now;
    const ids = new Set<string>();
    opts.hooks.forEach((h, i) => {
      checkHook(h, i);
      const id = hookId(h.url);
      if (ids.has(id)) throw new OtiError('ERR_CONFIG', `webhooks[${i}] repeats the URL of an earlier hook`, { key: `webhooks[${i}].url` });
      ids.add(id);
    });
    this.#hooks = opts.hooks;
  }

  /**
   * Reads the secrets and cursors (creating a cursor at the chain's end, or at 0 with fromStart,
   * for a new hook), then starts delivering. Throws ERR_CONFIG for an unusable secret file and
   * ERR_STORE_CORRUPT for a cursor file that is malformed, belongs to another chain or points
   * past the chain's end.
   */
  async start(): Promise<void> {
    if (this.#workers.length > 0) throw new OtiError('ERR_ARGUMENT', 'the webhook dispatcher is already started');
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const workers: HookWorker[] = [];
    for (const [i, h] of this.#hooks.entries()) {
      const secret = h.secret ?? (await readSecretFile(h.secretFile!, `webhooks[${i}].secretFile`, this.#log));
      const id = hookId(h.url);
      const file = join(this.#dir, `${id}.json`);
      const stored = await readCursor(file, this.#chain.origin, this.#chain.size);
      const w = new HookWorker({ id, hook: h, secret, file, chain: this.#chain, log: this.#log, fetch: this.#fetch, now: this.#now });
      if (stored === undefined) {
        w.cursor = h.fromStart === true ? 0 : this.#chain.size;
        await w.saveCursor();
      } else {
        w.cursor = stored;
      }
      this.#log.info({ hook: id, url: w.url, cursor: w.cursor, behind: this.#chain.size - w.cursor }, 'webhook started');
      workers.push(w);
    }
    this.#workers = workers;
    this.#chain.on('block', this.#onBlock);
    for (const w of workers) w.wake();
  }

  /** Stops every hook: no new attempt; an in-flight POST gets STOP_GRACE_MS, then is aborted. */
  async stop(): Promise<void> {
    this.#chain.off('block', this.#onBlock);
    await Promise.all(this.#workers.map((w) => w.stop()));
  }

  status(): WebhookStatus[] {
    return this.#workers.map((w) => w.status());
  }
}

function checkHook(h: WebhookHook, i: number): void {
  const bad = (key: string, why: string): OtiError => new OtiError('ERR_CONFIG', `webhooks[${i}].${key} ${why}`, { key: `webhooks[${i}].${key}` });
  let u: URL;
  try {
    u = new URL(h.url);
  } catch {
    throw bad('url', 'is not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad('url', 'must be http or https');
  // fetch refuses URLs with credentials; a token belongs in the query or, better, the signature.
  if (u.username !== '' || u.password !== '') throw bad('url', 'must not contain a user name or password');
  if ((h.secret === undefined) === (h.secretFile === undefined)) throw bad('secret', 'or secretFile must be given, not both');
  if (!Number.isSafeInteger(h.maxAttempts) || h.maxAttempts < 0) throw bad('maxAttempts', 'must be an integer ≥ 0');
  for (const k of ['backoffMinMs', 'backoffMaxMs', 'timeoutMs'] as const) {
    if (!Number.isSafeInteger(h[k]) || h[k] < 1) throw bad(k, 'must be a positive integer');
  }
  if (h.backoffMinMs > h.backoffMaxMs) throw bad('backoffMinMs', 'must not exceed backoffMaxMs');
}

/** Reads a secret file (trimmed); warns when group or others can read it. Never logs the secret. */
async function readSecretFile(path: string, key: string, log: Logger): Promise<string> {
  const { bytes, mode } = await readBoundedFile(path, {
    maxBytes: SECRET_MAX_BYTES,
    private: false,
    problem: (p) =>
      p === 'missing'
        ? new OtiError('ERR_CONFIG', `${key}: cannot open ${path}: ENOENT`, { key, path })
        : new OtiError('ERR_CONFIG', `${key}: ${path} ${p === 'not-a-file' ? 'is not a regular file' : `is larger than ${SECRET_MAX_BYTES} bytes`}`, { key, path }),
  });
  const text = bytes.toString('utf8').trim();
  bytes.fill(0);
  // Readable by others is a warning here, not a refusal: the secret is the integrator's to manage.
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    log.warn({ key, path, mode: mode.toString(8) }, 'webhook secret file is readable by group or others; chmod 600 it');
  }
  if (text.length < SECRET_MIN_CHARS) throw new OtiError('ERR_CONFIG', `${key}: the secret in ${path} is shorter than ${SECRET_MIN_CHARS} characters`, { key, path });
  return text;
}

interface CursorFile {
  readonly v: 1;
  readonly chain: string;
  readonly url: string;
  readonly next: number;
}

/** The stored cursor, or undefined if there is no file. */
async function readCursor(file: string, origin: string, size: number): Promise<number | undefined> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > CURSOR_MAX_BYTES) throw corruptCursor(file, 'it is too large');
    text = buf.toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch {
    throw corruptCursor(file, 'it is not JSON');
  }
  const f = c as Partial<CursorFile> | null;
  if (f === null || typeof f !== 'object' || f.v !== 1 || typeof f.chain !== 'string' || !Number.isSafeInteger(f.next) || f.next! < 0) throw corruptCursor(file, 'it does not have the expected fields');
  if (f.chain !== origin) throw corruptCursor(file, `it belongs to chain ${f.chain}, not ${origin}`);
  if (f.next! > size) throw corruptCursor(file, `it points to index ${f.next}, past the chain's end ${size}`);
  return f.next;
}

function corruptCursor(file: string, why: string): OtiError {
  return new OtiError('ERR_STORE_CORRUPT', `webhook cursor ${file} is unusable: ${why}; delete it to restart that hook at the chain's end`, { file });
}


interface WorkerOptions {
  readonly id: string;
  readonly hook: WebhookHook;
  readonly secret: string;
  readonly file: string;
  readonly chain: Chain;
  readonly log: Logger;
  readonly fetch: typeof fetch;
  readonly now: () => number;
}

interface Batch {
  readonly from: number;
  readonly to: number;
  readonly entries: readonly WebhookEntry[];
  attempts: number;
}

type Outcome = { ok: true } | { ok: false; gone: boolean; error: string; retryAfterMs?: number };

/** One hook: its cursor, its batch in flight, its retry timer. */
class HookWorker {
  readonly id: string;
  readonly url: string;
  cursor = 0;
  readonly #o: WorkerOptions;
  #batch: Batch | undefined;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nextAttemptAt: number | undefined;
  #abort: AbortController | undefined;
  #stopped = false;
  #disabled = false;
  #lastError: string | undefined;
  #lastAttemptAt: number | undefined;
  #lastDeliveredAt: number | undefined;
  #delivered = 0;
  #failed = 0;
  #skipped = 0;

  constructor(o: WorkerOptions) {
    this.#o = o;
    this.id = o.id;
    this.url = redactUrl(o.hook.url);
  }

  status(): WebhookStatus {
    const state = this.#disabled ? 'disabled' : this.#stopped ? 'stopped' : this.#timer !== undefined ? 'backoff' : this.#running !== undefined ? 'delivering' : 'idle';
    return {
      id: this.id,
      url: this.url,
      cursor: this.cursor,
      behind: this.#o.chain.size - this.cursor,
      state,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      ...(this.#lastAttemptAt !== undefined ? { lastAttemptAt: this.#lastAttemptAt } : {}),
      ...(this.#lastDeliveredAt !== undefined ? { lastDeliveredAt: this.#lastDeliveredAt } : {}),
      ...(this.#nextAttemptAt !== undefined ? { nextAttemptAt: this.#nextAttemptAt } : {}),
      delivered: this.#delivered,
      failed: this.#failed,
      skipped: this.#skipped,
    };
  }

  /** Starts delivering if there is something to deliver and nothing is running or waiting. */
  wake(): void {
    if (this.#running !== undefined || this.#timer !== undefined || this.#stopped || this.#disabled) return;
    if (this.#batch === undefined && this.cursor >= this.#o.chain.size) return;
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      // A block that arrived after the last batch was read found #running set: look again.
      this.wake();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAttemptAt = undefined;
    const running = this.#running;
    if (running === undefined) return;
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([running, new Promise<void>((resolve) => (grace = setTimeout(resolve, STOP_GRACE_MS)))]);
    clearTimeout(grace);
    this.#abort?.abort();
    await running;
  }

  async saveCursor(): Promise<void> {
    const doc: CursorFile = { v: 1, chain: this.#o.chain.origin, url: this.url, next: this.cursor };
    await writeFileAtomic(this.#o.file, `${JSON.stringify(doc)}\n`, { mode: 0o600, overwrite: true });
  }

  /** Delivers batches until caught up, stopped, disabled or waiting for a retry. Never throws. */
  async #run(): Promise<void> {
    while (!this.#stopped && !this.#disabled) {
      let outcome: Outcome;
      try {
        this.#batch ??= await this.#nextBatch();
        if (this.#batch === undefined) return;
        outcome = await this.#post(this.#batch);
      } catch (e) {
        outcome = { ok: false, gone: false, error: isOtiError(e) ? `${e.code}: ${e.message}` : String(e) };
      }
      const batch = this.#batch;
      // A 2xx is recorded even while stopping: the receiver has the batch.
      if (outcome.ok && batch !== undefined) {
        if (!(await this.#advance(batch.to + 1))) return this.#backoff(1, undefined);
        this.#delivered += batch.entries.length;
        this.#lastDeliveredAt = this.#o.now();
        this.#lastError = undefined;
        this.#batch = undefined;
        continue;
      }
      if (outcome.ok) continue;
      if (this.#stopped) return;
      this.#failed++;
      this.#lastError = outcome.error;
      const where = batch !== undefined ? { from: batch.from, to: batch.to, attempt: batch.attempts } : {};
      if (outcome.gone) {
        this.#disabled = true;
        this.#o.log.error({ hook: this.id, url: this.url, ...where }, 'webhook receiver answered 410 Gone: hook disabled until restart');
        return;
      }
      const max = this.#o.hook.maxAttempts;
      if (batch !== undefined && max > 0 && batch.attempts >= max) {
        this.#o.log.error({ hook: this.id, url: this.url, ...where, error: outcome.error }, 'webhook batch skipped after maxAttempts failed attempts: these entries were not delivered');
        if (!(await this.#advance(batch.to + 1))) return this.#backoff(1, undefined);
        this.#skipped += batch.entries.length;
        this.#batch = undefined;
        continue;
      }
      this.#o.log.warn({ hook: this.id, url: this.url, ...where, error: outcome.error }, 'webhook delivery failed; will retry');
      return this.#backoff(batch?.attempts ?? 1, outcome.retryAfterMs);
    }
  }

  /** Moves and persists the cursor; false (logged, counted) if the cursor file cannot be written. */
  async #advance(next: number): Promise<boolean> {
    const prev = this.cursor;
    this.cursor = next;
    try {
      await this.saveCursor();
      return true;
    } catch (e) {
      // Keep the batch: it is delivered again, which at-least-once allows.
      this.cursor = prev;
      this.#failed++;
      this.#lastError = `cursor write failed: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
      this.#o.log.error({ hook: this.id, file: this.#o.file, error: this.#lastError }, 'webhook cursor could not be saved');
      return false;
    }
  }

  /** Exponential backoff with "equal jitter": a random wait in [cap/2, cap], at least backoffMinMs. */
  #backoff(attempts: number, retryAfterMs: number | undefined): void {
    const { backoffMinMs: min, backoffMaxMs: max } = this.#o.hook;
    let delay: number;
    if (retryAfterMs !== undefined) {
      delay = Math.min(max, Math.max(min, retryAfterMs));
    } else {
      const cap = Math.min(max, min * 2 ** Math.min(attempts - 1, 40));
      delay = Math.max(min, cap / 2 + Math.random() * (cap / 2));
    }
    delay = Math.round(delay);
    this.#nextAttemptAt = this.#o.now() + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#nextAttemptAt = undefined;
      this.wake();
    }, delay);
  }

  /** Reads the entries from the cursor on, up to the batch limits; undefined when caught up. */
  async #nextBatch(): Promise<Batch | undefined> {
    const chain = this.#o.chain;
    const from = this.cursor;
    const end = Math.min(chain.size, from + BATCH_MAX_ENTRIES);
    if (from >= end) return undefined;
    const entries: WebhookEntry[] = [];
    let bytes = 0;
    for (const [i, raw] of (await chain.entryRange(from, end)).entries()) {
      const e: WebhookEntry = { ...entryJson(from + i, raw), receipt: Buffer.from(await receiptFor(chain, from + i)).toString('base64') };
      bytes += JSON.stringify(e).length + 1;
      if (entries.length > 0 && bytes > BATCH_MAX_BYTES) break;
      entries.push(e);
    }
    return { from, to: from + entries.length - 1, entries, attempts: 0 };
  }

  /** One POST of `batch`, signed now. */
  async #post(batch: Batch): Promise<Outcome> {
    batch.attempts++;
    const t = this.#o.now();
    this.#lastAttemptAt = t;
    const delivery: WebhookDelivery = { chain: this.#o.chain.origin, from: batch.from, to: batch.to, deliveredAt: t, entries: batch.entries };
    const body = JSON.stringify(delivery);
    // One controller per attempt, aborted by stop() or by its own timer. Not
    // AbortSignal.any([…, AbortSignal.timeout(ms)]): on Node 20 nothing holds the timeout signal
    // strongly, so a garbage collection can drop it and the attempt then never times out.
    const abort = new AbortController();
    this.#abort = abort;
    const timer = setTimeout(() => abort.abort(new DOMException(`timeout after ${this.#o.hook.timeoutMs} ms`, 'TimeoutError')), this.#o.hook.timeoutMs);
    try {
      const res = await this.#o.fetch(this.#o.hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          [SIGNATURE_HEADER]: signatureHeader(this.#o.secret, t, body),
          [DELIVERY_HEADER]: `${delivery.chain}:${batch.from}-${batch.to}`,
          [ATTEMPT_HEADER]: String(batch.attempts),
        },
        body,
        redirect: 'manual',
        signal: abort.signal,
      });
      // The answer's body is not used; cancelling it frees the connection.
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true };
      const retryAfter = Number(res.headers.get('retry-after') ?? 'x');
      return {
        ok: false,
        gone: res.status === 410,
        error: `HTTP ${res.status}`,
        ...(Number.isSafeInteger(retryAfter) && retryAfter >= 0 && (res.status === 429 || res.status === 503) ? { retryAfterMs: retryAfter * 1000 } : {}),
      };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      const error = err.name === 'TimeoutError' ? `timeout after ${this.#o.hook.timeoutMs} ms` : err.name === 'AbortError' ? 'aborted' : (err.cause?.code ?? err.name);
      return { ok: false, gone: false, error };
    } finally {
      clearTimeout(timer);
      this.#abort = undefined;
    }
  }
}
