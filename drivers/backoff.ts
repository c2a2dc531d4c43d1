/**
 * Exponential backoff with jitter for reconnects: the n-th delay is drawn uniformly from
 * [d/2, d] with d = min(max, min · 2^n), so that many links that failed together (a power cut,
 * an adapter reset) do not all retry at the same instant, and no retry waits longer than `max`.
 */
/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random() * d) / 2);
}

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call counts as one more failed attempt. */
  next(): number {
    return backoffDelay(this.attempt++, this.minMs, this.maxMs, this.random);
  }

  /** The link works again: start from the minimum next time. */
  reset(): void {
    this.attempt = 0;
  }
}
