/**
 * The audit of peer replicas' lock signatures (ChainReplica.audit, docs/SYNC.md §Verification),
 * run in the background while a pull stores batches and once it has ended, one run at a time per
 * replica (a run covers what was stored meanwhile); what it passed is cosigned once no pull of the
 * chain is going on (the end of a pull cosigns, not every batch of a catch-up). A failure refuses
 * that gateway's chain: nothing beyond it is cosigned, it is not pulled further, and a restart
 * finds it again. A run interrupted by something other than the chain (a signature worker died)
 * is retried later.
 */
import { parseOrigin } from '../../ledger/verify.js';
import type { SyncContext } from './context.js';

/** After an audit was interrupted by something other than the chain (a worker died), the next try; doubled up to the max. */
const AUDIT_RETRY_MS = 5000;
const AUDIT_RETRY_MAX_MS = 300_000;

/** The audit of one peer chain. */
interface AuditRecord {
  /** The run going on. */
  run: Promise<void> | undefined;
  /** Asked for again while a run was going on: run once more after it. */
  again: boolean;
  /** A retry waiting after an interruption, and the delay of the next one. */
  retry: NodeJS.Timeout | undefined;
  delay: number | undefined;
  /** The audit failed: the chain is refused. */
  failed: boolean;
  /** A run passed more while a pull was going on: cosign once the pull has ended. */
  owed: boolean;
}

export class Auditor {
  readonly #records = new Map<string, AuditRecord>();

  constructor(private readonly c: SyncContext) {}

  #record(origin: string): AuditRecord {
    let r = this.#records.get(origin);
    if (r === undefined) {
      r = { run: undefined, again: false, retry: undefined, delay: undefined, failed: false, owed: false };
      this.#records.set(origin, r);
    }
    return r;
  }

  /** Whether the audit of the chain failed (it is refused). */
  failed(origin: string): boolean {
    return this.#records.get(origin)?.failed === true;
  }

  /** Audits what is stored of the chain and not audited yet (now, after the run going on, or at the retry waiting). */
  audit(origin: string): void {
    const c = this.c;
    if (c.stopped()) return;
    const rec = this.#record(origin);
    // A run going on, or a retry waiting after an interruption: this request is served by it.
    if (rec.run !== undefined || rec.retry !== undefined) {
      if (rec.run !== undefined) rec.again = true;
      return;
    }
    rec.run = c
      .replica(origin)
      .then(async (r) => {
        const before = r.audited.size;
        const state = await r.audit();
        rec.delay = undefined;
        if (state.size > before) {
          c.emit('audited', { origin, size: state.size });
          rec.owed = true;
        }
        // During a pull, what the audit passed waits for the pull's end (its last run cosigns):
        // a long catch-up does not cosign each batch's checkpoint on its way.
        if (rec.owed && c.peers.get(origin)?.pulling === undefined) {
          rec.owed = false;
          c.cosign(origin);
        }
        if (state.failure !== undefined && !rec.failed) {
          rec.failed = true;
          c.refuse(origin, parseOrigin(origin).gatewayId, state.failure);
        }
      })
      .catch((e: unknown) => {
        if (c.stopped()) return;
        // Not the chain's fault (a signature worker died, the store failed): one retry, later
        // each time it fails again (up to AUDIT_RETRY_MAX_MS); requests meanwhile wait for it.
        const delay = Math.min(AUDIT_RETRY_MAX_MS, rec.delay ?? AUDIT_RETRY_MS);
        rec.delay = delay * 2;
        c.o.logger?.warn({ origin, err: (e as Error).message }, `audit of ${origin} interrupted, retried in ${delay / 1000} s: ${(e as Error).message}`);
        rec.again = false;
        rec.retry = setTimeout(() => {
          rec.retry = undefined;
          this.audit(origin);
        }, delay);
        rec.retry.unref();
      })
      .finally(() => {
        rec.run = undefined;
        if (rec.again) {
          rec.again = false;
          this.audit(origin);
        }
      });
  }

  /** Cancels the retries; running audits stop at their next block (their watermarks keep what was checked). */
  async stop(): Promise<void> {
    const runs: Promise<void>[] = [];
    for (const [origin, rec] of this.#records) {
      clearTimeout(rec.retry);
      rec.retry = undefined;
      if (rec.run !== undefined) {
        runs.push(rec.run);
        void this.c.replica(origin).then((r) => r.stopAudit(), () => undefined);
      }
    }
    await Promise.all(runs);
  }
}
