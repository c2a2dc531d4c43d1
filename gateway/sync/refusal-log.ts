/**
 * Rate-limited logging of repeated refusals: the first refusal of a kind (peer and error code)
 * is logged at once; more of the same kind within `windowMs` are only counted, and the next one
 * after the window is logged with the number left out ("… and 212 more like it in the last
 * 60 s"). Every refusal is still counted (oti_sync_refusals_total) and shown per peer in
 * GET /status; this only keeps a peer that repeats itself from flooding the log.
 * Memory: one record per (peer, code) seen, bounded by `maxKinds` (the oldest is forgotten).
 */

export const REFUSAL_LOG_WINDOW_MS = 60_000;
const MAX_KINDS = 1024;

interface Kind {
  lastLogged: number;
  suppressed: number;
}

export class RefusalLog {
  readonly #kinds = new Map<string, Kind>();
  readonly #windowMs: number;
  readonly #maxKinds: number;

  constructor(windowMs = REFUSAL_LOG_WINDOW_MS, maxKinds = MAX_KINDS) {
    this.#windowMs = windowMs;
    this.#maxKinds = maxKinds;
  }

  /**
   * Whether to log this refusal now, and how many of its kind were left out since the last
   * line (undefined: do not log it).
   */
  admit(peer: string, code: string, now: number): { suppressed: number } | undefined {
    const key = `${peer}\u0000${code}`;
    const k = this.#kinds.get(key);
    if (k !== undefined && now - k.lastLogged < this.#windowMs) {
      k.suppressed++;
      return undefined;
    }
    const suppressed = k?.suppressed ?? 0;
    this.#kinds.delete(key);
    this.#kinds.set(key, { lastLogged: now, suppressed: 0 });
    if (this.#kinds.size > this.#maxKinds) this.#kinds.delete(this.#kinds.keys().next().value!);
    return { suppressed };
  }
}
