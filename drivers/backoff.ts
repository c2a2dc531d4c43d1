/**
 * Exponential backoff with jitter for reconnects: the n-th delay is drawn uniformly from
 * [d/2, d] with d = min(max, min · 2^n), so that many links that failed together (a power cut,
 * an adapter reset) do not all retry at the same instant, and no retry waits longer than `max`.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call counts as one more failed attempt. */
  next(): number {
    const d = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(d / 2 + (this.random() * d) / 2);
  }

  /** The link works again: start from the minimum next time. */
  reset(): void {
    this.attempt = 0;
  }
}
