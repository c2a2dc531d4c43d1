/**
 * Rate-limited logging of a line that repeats: the first of a kind (a source and a code: a peer
 * and its refusal, a serial link and its frame error, the external broker and its connection
 * error) is logged at once; more of the same kind within `windowMs` are only counted, and the
 * next one after the window is logged with the number left out ("… and 212 more like it in the
 * last 60 s"). What is counted elsewhere (metrics, GET /status) is still counted; this only keeps
 * a source that repeats itself from flooding the log.
 * Memory: one record per (source, code) seen, bounded by `maxKinds` (the oldest is forgotten).
 */

export const REPEAT_LOG_WINDOW_MS = 60_000;
const MAX_KINDS = 1024;

interface Kind {
  lastLogged: number;
  suppressed: number;
}

export class RepeatLog {
  readonly #kinds = new Map<string, Kind>();
  readonly #windowMs: number;
  readonly #maxKinds: number;

  constructor(windowMs = REPEAT_LOG_WINDOW_MS, maxKinds = MAX_KINDS) {
    this.#windowMs = windowMs;
    this.#maxKinds = maxKinds;
  }

  /**
   * Whether to log this refusal now, and how many of its kind were left out since the last
   * line (undefined: do not log it).
   */
  admit(source: string, code: string, now: number): { suppressed: number } | undefined {
    const key = `${source}\u0000${code}`;
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
