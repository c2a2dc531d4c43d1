/**
 * Counters of one lock that the gateway refused for good (a nack with retry false), so that when
 * the lock's `oldest` later skips them the chain records them as refused by the gateway (a gap
 * with the code) and not as lost at the lock (docs/PROTOCOL.md §Flow, refusals and gaps).
 * Bounded: the most recent REFUSALS_KEPT counters per lock; held in memory only.
 */
export const REFUSALS_KEPT = 256;

export interface GapRun {
  readonly from: number;
  readonly to: number;
  /** The refusal code, for counters the gateway refused; absent for counters lost at the lock. */
  readonly code?: string;
}

export class RefusedCounters {
  private readonly codes = new Map<number, string>();

  note(ctr: number, code: string): void {
    this.codes.delete(ctr);
    this.codes.set(ctr, code);
    if (this.codes.size > REFUSALS_KEPT) this.codes.delete(this.codes.keys().next().value as number);
  }

  /** Splits the missing counters from..to into runs: lost (no code) or refused with one code. */
  split(from: number, to: number): GapRun[] {
    const runs: GapRun[] = [];
    const refused = [...this.codes.keys()].filter((c) => c >= from && c <= to).sort((a, b) => a - b);
    let next = from;
    for (const c of refused) {
      const code = this.codes.get(c)!;
      if (c > next) runs.push({ from: next, to: c - 1 });
      const last = runs.at(-1);
      if (last !== undefined && last.code === code && last.to === c - 1) runs[runs.length - 1] = { from: last.from, to: c, code };
      else runs.push({ from: c, to: c, code });
      next = c + 1;
    }
    if (next <= to) runs.push({ from: next, to });
    for (const c of refused) this.codes.delete(c);
    return runs;
  }
}
