/**
 * The gateway as a C2SP tlog-witness: `POST /add-checkpoint` on a listener of its own
 * (witness.http.*), so the site's gateways and any standard log client can get this gateway's
 * cosignature through the standard protocol. docs/SYNC.md §Witnessing over HTTP.
 *
 * The logs it witnesses are the site's chains it replicates (their gateway key comes from the
 * verified replica); what it last cosigned per log is kept in <data>/witness-state.json, written
 * atomically before the answer, and requests are handled one at a time so that the check of the
 * old size and the update are atomic (the race the spec warns about cannot happen).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { readBoundedFile, writeFileAtomic } from '../../ledger/base/files.js';
import type { Signer } from '../../ledger/crypto.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { cosign } from './witness.js';
import type { SyncNode } from './node.js';
import { parseOrigin } from '../../ledger/verify.js';
import { listenHttp } from '../api/http-listen.js';
import { ADD_CHECKPOINT_MAX_BYTES, answerAddCheckpoint, parseAddCheckpoint, type WitnessAnswer, type WitnessedTree } from './tlog-witness.js';

export const WITNESS_STATE_FILE = 'witness-state.json';
const STATE_FORMAT = 'oti-witness-state';
const STATE_MAX_BYTES = 1024 * 1024;

export interface WitnessListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly maxConnections: number;
  readonly dataDir: string;
  /** This witness's key name (its chain origin) and key. */
  readonly name: string;
  readonly signer: Signer;
  /** The public key of a log this witness accepts, or undefined for an unknown origin. */
  readonly keyFor: (origin: string) => Promise<Uint8Array | undefined>;
  readonly now?: () => number;
  readonly onAnswer?: (origin: string | undefined, status: number) => void;
}

export interface WitnessListener {
  readonly url: string;
  close(): Promise<void>;
}

/** What was cosigned per origin, persisted as JSON: { format, v: 1, logs: { origin: { size, root } } }. */
class WitnessState {
  readonly #path: string;
  readonly #logs: Map<string, WitnessedTree>;

  private constructor(path: string, logs: Map<string, WitnessedTree>) {
    this.#path = path;
    this.#logs = logs;
  }

  static async load(dataDir: string): Promise<WitnessState> {
    const path = join(dataDir, WITNESS_STATE_FILE);
    const logs = new Map<string, WitnessedTree>();
    try {
      const { bytes } = await readBoundedFile(path, { maxBytes: STATE_MAX_BYTES, private: false, problem: (p) => new OtiError('ERR_STORE_CORRUPT', `${path}: ${p}`) });
      const doc = JSON.parse(bytes.toString('utf8')) as { format?: unknown; v?: unknown; logs?: Record<string, { size: number; root: string }> };
      if (doc.format !== STATE_FORMAT || doc.v !== 1 || typeof doc.logs !== 'object' || doc.logs === null) throw new OtiError('ERR_STORE_CORRUPT', `${path} is not a witness state file`);
      for (const [origin, t] of Object.entries(doc.logs)) logs.set(origin, { size: t.size, root: new Uint8Array(Buffer.from(t.root, 'base64')) });
    } catch (e) {
      if (!(isOtiError(e, 'ERR_STORE_CORRUPT') && e.message.endsWith(': missing'))) throw e;
    }
    return new WitnessState(path, logs);
  }

  get(origin: string): WitnessedTree | undefined {
    return this.#logs.get(origin);
  }

  async set(origin: string, t: WitnessedTree): Promise<void> {
    const next = new Map(this.#logs).set(origin, t);
    const logs = Object.fromEntries([...next].map(([o, v]) => [o, { size: v.size, root: Buffer.from(v.root).toString('base64') }]));
    await writeFileAtomic(this.#path, JSON.stringify({ format: STATE_FORMAT, v: 1, logs }, null, 2), { mode: 0o644, overwrite: true });
    this.#logs.set(origin, t);
  }
}

export async function startWitnessListener(o: WitnessListenerOptions): Promise<WitnessListener> {
  const state = await WitnessState.load(o.dataDir);
  const now = o.now ?? Date.now;
  let queue: Promise<unknown> = Promise.resolve();
  const cosignLine = (cp: SignedCheckpoint): string => cosign(cp, o.signer, o.name, Math.floor(now() / 1000)).note.slice(cp.note.length);

  const handle = async (body: Buffer): Promise<{ answer: WitnessAnswer; origin: string | undefined }> => {
    let req;
    try {
      req = parseAddCheckpoint(body);
    } catch (e) {
      if (!isOtiError(e)) throw e;
      return { answer: { status: 400, type: 'text/plain; charset=utf-8', body: `${e.message} [${e.code}]\n` }, origin: undefined };
    }
    const origin = req.checkpoint.origin;
    const answer = answerAddCheckpoint(req, await o.keyFor(origin), state.get(origin), cosignLine);
    if (answer.record !== undefined) await state.set(origin, answer.record);
    return { answer, origin };
  };

  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, (req, res) => {
    void (async () => {
      let answer: WitnessAnswer | { status: number; type: string; body: string };
      let origin: string | undefined;
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/add-checkpoint') answer = { status: 404, type: 'text/plain; charset=utf-8', body: 'only POST /add-checkpoint is served here\n' };
      else if (req.method !== 'POST') answer = { status: 405, type: 'text/plain; charset=utf-8', body: 'add-checkpoint takes POST\n' };
      else {
        const body = await readBody(req);
        if (body === undefined) answer = { status: 413, type: 'text/plain; charset=utf-8', body: `the body is larger than ${ADD_CHECKPOINT_MAX_BYTES} bytes\n` };
        else {
          // One request at a time: the old-size check and the persisted update are atomic.
          const done = queue.then(() => handle(body));
          queue = done.catch(() => undefined);
          try {
            ({ answer, origin } = await done);
          } catch (e) {
            answer = { status: 500, type: 'text/plain; charset=utf-8', body: `${(e as Error).message}\n` };
          }
        }
      }
      o.onAnswer?.(origin, answer.status);
      if (res.destroyed) return;
      res.writeHead(answer.status, { 'content-type': answer.type, 'cache-control': 'no-store' });
      res.end(answer.body);
    })();
  });
  server.maxConnections = o.maxConnections;
  return listenHttp(server, o.host, o.port, 'witness.http.port');
}

/** The body, or undefined when it is larger than a request can be (the rest is not read). */
async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > ADD_CHECKPOINT_MAX_BYTES) return undefined;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The logs a gateway witnesses: the site chains it replicates, under the gateway key of the
 * verified replica; not its own chain, nor one refused after equivocation.
 */
export function siteLogKeys(sync: SyncNode, ownOrigin: string): (origin: string) => Promise<Uint8Array | undefined> {
  return async (origin) => {
    if (origin === ownOrigin || sync.blocked.has(origin)) return undefined;
    if (!sync.storedChains().some((cs) => cs.origin === origin)) return undefined;
    return (await sync.replica(origin)).gatewayKey(parseOrigin(origin).gatewayId);
  };
}
