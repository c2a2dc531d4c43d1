/**
 * The window of a link (docs/PROTOCOL.md §Flow, window): the distinct events (lock, ctr) a
 * driver has handed to the pipeline and not yet answered. A lock may have at most hello.window
 * events sent and unanswered; a resend of an event still unanswered is the same event and does
 * not count twice. Since answers on their way to the lock still count for the lock, a lock that
 * keeps the window never has more here than it counts itself.
 */
export class Outstanding {
  private readonly counts = new Map<string, number>();

  /** Counts the event in, or returns false when it is a new one beyond `window`. */
  admit(ev: { readonly lock: string; readonly ctr: number }, window: number): boolean {
    const key = `${ev.lock}:${ev.ctr}`;
    const n = this.counts.get(key);
    if (n === undefined && this.counts.size >= window) return false;
    this.counts.set(key, (n ?? 0) + 1);
    return true;
  }

  /** One copy of the event was answered. */
  answered(ev: { readonly lock: string; readonly ctr: number }): void {
    const key = `${ev.lock}:${ev.ctr}`;
    const n = this.counts.get(key);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(key);
    else this.counts.set(key, n - 1);
  }

  clear(): void {
    this.counts.clear();
  }
}
