/** The outcome of one on-device check (hardware-test/doctor.ts). */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  /** Short stable name, e.g. "storage.fsync". */
  readonly name: string;
  readonly status: CheckStatus;
  /** What was found, in words. For skip: why the check did not run. */
  readonly detail: string;
  /** What to do about a fail or warn. */
  readonly remedy?: string;
  /** Measurements, for --json. */
  readonly data?: Record<string, unknown>;
}

export function result(name: string, status: CheckStatus, detail: string, remedy?: string, data?: Record<string, unknown>): CheckResult {
  return { name, status, detail, ...(remedy !== undefined ? { remedy } : {}), ...(data !== undefined ? { data } : {}) };
}

/** The message of anything thrown, with its code when it has one. */
export function why(e: unknown): string {
  const code = (e as { code?: unknown } | undefined)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof code === 'string' && !msg.includes(code) ? `${msg} (${code})` : msg;
}
