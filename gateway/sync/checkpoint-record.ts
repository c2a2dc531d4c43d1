/**
 * The last-checkpoint record: `<data>/last-checkpoint.json`, next to the identity and outside the
 * LevelDB folder, says that this gateway's chain existed and how long it was, so that a gateway
 * whose ledger was deleted, lost or replaced by an older copy never opens a new chain of the
 * same origin (docs/SYNC.md §Recovery, docs/DECISIONS.md §The last-checkpoint record).
 *
 *   { "format": "oti-last-checkpoint", "version": 1, "checkpoint": "<signed checkpoint note>",
 *     "seenByPeers": true }
 *
 * `seenByPeers` (only when true) says that a checkpoint of this chain beyond what the ledger held
 * was seen retained on a peer's broker, so peers hold a checkpoint that covers the lost entries: a
 * gateway waiting for them tells the operator to retire the id rather than accept the loss
 * (gateway/sync/recovery.ts, `oti ledger accept-loss`). The chain's next checkpoint drops it.
 *
 * The checkpoint is the chain's own, signed by the gateway key, so the record cannot be made to
 * claim another chain or size without that key; it is checked on every start.
 *
 * The guarantee: the record is at least as far as every checkpoint this gateway published to its
 * peers. Publication waits for it (`covering`), and the record is written at most every
 * RECORD_MIN_INTERVAL_MS, the newest checkpoint each time (one write in flight, atomically:
 * temporary file, fsync, rename, fsync of the folder), not once per block.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCheckpoint, verifyCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { writeFileAtomic } from '../../ledger/base/files.js';

export const LAST_CHECKPOINT_FILE = 'last-checkpoint.json';
const FORMAT = 'oti-last-checkpoint';
const VERSION = 1;
const MAX_BYTES = 16 * 1024;
/** Writes are at least this far apart; publication waits at most this long plus one write. */
export const RECORD_MIN_INTERVAL_MS = 100;
/** After a failed write (a full disk, say), the next try. */
const RETRY_MS = 1000;

/**
 * Reads and checks the record: undefined when there is none. A record that is malformed, for
 * another chain or not signed by `publicKey` stops start-up (ERR_CHECKPOINT_FORMAT or
 * ERR_CHECKPOINT_SIGNATURE, naming the file): guessing would risk a fork.
 */
export async function readLastCheckpoint(dataDir: string, origin: string, publicKey: Uint8Array): Promise<SignedCheckpoint | undefined> {
  return (await readLastCheckpointRecord(dataDir, origin, publicKey))?.checkpoint;
}

/** readLastCheckpoint, with whether the record says that peers saw it (`seenByPeers`). */
export async function readLastCheckpointRecord(dataDir: string, origin: string, publicKey: Uint8Array): Promise<{ checkpoint: SignedCheckpoint; seenByPeers: boolean } | undefined> {
  const path = join(dataDir, LAST_CHECKPOINT_FILE);
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const bad = (why: string): OtiError => new OtiError('ERR_CHECKPOINT_FORMAT', `${path} ${why}; restore it from a backup or, if this gateway's chain is really gone, move it aside`, { path });
  if (raw.length > MAX_BYTES) throw bad(`is larger than ${MAX_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw bad('is not valid JSON');
  }
  const d = doc as { format?: unknown; version?: unknown; checkpoint?: unknown; seenByPeers?: unknown };
  if (d.format !== FORMAT || d.version !== VERSION || typeof d.checkpoint !== 'string') throw bad(`is not an ${FORMAT} version ${VERSION}`);
  let cp: SignedCheckpoint;
  try {
    cp = parseCheckpoint(d.checkpoint);
    verifyCheckpoint(cp, origin, publicKey);
  } catch (e) {
    if (isOtiError(e)) throw new OtiError(e.code, `${path}: ${e.message}`, { path }, { cause: e });
    throw e;
  }
  if (cp.origin !== origin) throw bad(`is for ${cp.origin}, not ${origin}`);
  return { checkpoint: cp, seenByPeers: d.seenByPeers === true };
}

export class CheckpointRecord {
  readonly #path: string;
  readonly #onError: (e: Error) => void;
  #written: SignedCheckpoint | undefined;
  #writtenSeen = false;
  #latest: SignedCheckpoint | undefined;
  #latestSeen = false;
  #running: Promise<void> | undefined;
  #stopped = false;
  #closing = false;
  readonly #waiters = new Set<{ size: number; resolve: () => void }>();

  /** `written`: the record on disk now (readLastCheckpoint). `onError` hears failed writes (retried). */
  constructor(dataDir: string, written: SignedCheckpoint | undefined, onError: (e: Error) => void) {
    this.#path = join(dataDir, LAST_CHECKPOINT_FILE);
    this.#written = written;
    this.#onError = onError;
  }

  /** The checkpoint on disk. */
  get written(): SignedCheckpoint | undefined {
    return this.#written;
  }

  /** Records `cp` (the newest wins; writes are coalesced); `seenByPeers` marks it as seen on a peer's broker. */
  note(cp: SignedCheckpoint, opts: { seenByPeers?: boolean } = {}): void {
    if (this.#stopped) return;
    this.#latest = cp;
    this.#latestSeen = opts.seenByPeers === true;
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
  }

  /** Resolves once the record on disk is at least `size` entries (never, once stopped). */
  covering(size: number): Promise<void> {
    if ((this.#written?.size ?? -1) >= size) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.add({ size, resolve }));
  }

  /** Writes what is noted and stops; waiters of a size never written stay waiting. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#running;
    this.#stopped = true;
  }

  async #drain(): Promise<void> {
    while (this.#latest !== undefined && (this.#latest !== this.#written || this.#latestSeen !== this.#writtenSeen) && !this.#stopped) {
      const cp = this.#latest;
      const seen = this.#latestSeen;
      try {
        await writeFileAtomic(this.#path, `${JSON.stringify({ format: FORMAT, version: VERSION, checkpoint: cp.note, ...(seen ? { seenByPeers: true } : {}) })}\n`, { mode: 0o600, overwrite: true });
      } catch (e) {
        this.#onError(e as Error);
        if (this.#closing) return;
        await sleep(RETRY_MS);
        continue;
      }
      this.#written = cp;
      this.#writtenSeen = seen;
      for (const w of this.#waiters) {
        if (w.size > cp.size) continue;
        this.#waiters.delete(w);
        w.resolve();
      }
      if (!this.#closing) await sleep(RECORD_MIN_INTERVAL_MS);
    }
  }
}

/** The size in a record file, unchecked (undefined without a readable one); checked at start. */
async function recordedSize(dataDir: string): Promise<number | undefined> {
  try {
    const doc = JSON.parse(await readFile(join(dataDir, LAST_CHECKPOINT_FILE), 'utf8')) as { checkpoint?: unknown };
    return typeof doc.checkpoint === 'string' ? parseCheckpoint(doc.checkpoint).size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * After a restore into `to` of a data folder that was `from`: when both are the same gateway and
 * `from` recorded a longer chain, its record is kept (copied over the restored one), so that the
 * restored, older ledger is recovered from peers before anything is appended rather than forking
 * the chain. Returns the size kept, or undefined when the restored record stays.
 */
export async function keepNewerRecord(from: string, to: string): Promise<number | undefined> {
  const same = async (): Promise<boolean> => {
    try {
      const [a, b] = await Promise.all([readFile(join(from, 'site.json'), 'utf8'), readFile(join(to, 'site.json'), 'utf8')]);
      const x = JSON.parse(a) as Record<string, unknown>;
      const y = JSON.parse(b) as Record<string, unknown>;
      return x['siteId'] === y['siteId'] && x['gatewayId'] === y['gatewayId'];
    } catch {
      return false;
    }
  };
  const older = await recordedSize(from);
  if (older === undefined || !(await same()) || older <= ((await recordedSize(to)) ?? -1)) return undefined;
  await writeFileAtomic(join(to, LAST_CHECKPOINT_FILE), await readFile(join(from, LAST_CHECKPOINT_FILE)), { mode: 0o600, overwrite: true });
  return older;
}
