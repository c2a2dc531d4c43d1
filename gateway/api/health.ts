/**
 * The gateway's health conditions: one board that every part reports to when it cannot do its
 * job (the disk is full, the ledger is read-only, a required driver is down), and that /health,
 * /status and the metrics read. A condition has a stable id (one per cause, so a part raising it
 * twice does not duplicate it), a level, a coded reason and the time it began; the part that
 * raised it clears it when the cause is gone.
 *
 * Levels: `degraded` means the gateway runs but cannot do everything (for example it takes no new
 * events while the disk is full, and resumes by itself); `unavailable` means it cannot serve its
 * purpose until someone acts. Either makes /health answer 503 (docs/API.md §GET /health).
 */
import { EventEmitter } from 'node:events';
import type { ErrorCode } from '../../ledger/base/errors.js';

export type HealthLevel = 'degraded' | 'unavailable';

export interface HealthCondition {
  /** Stable per cause, e.g. `disk-full`, `ledger-read-only`, `driver:serial:/dev/ttyUSB0`. */
  readonly id: string;
  readonly level: HealthLevel;
  readonly code: ErrorCode;
  /** One sentence for a person: what is wrong and, where there is one, the remedy. */
  readonly reason: string;
  /** Epoch milliseconds when the condition was first raised (kept when it is raised again). */
  readonly since: number;
}

export interface HealthEvents {
  /** A condition was raised for the first time, or its level, code or reason changed. */
  raised: [condition: HealthCondition];
  cleared: [condition: HealthCondition];
}

export class HealthBoard extends EventEmitter<HealthEvents> {
  readonly #conditions = new Map<string, HealthCondition>();

  /** Raises (or updates) a condition; returns true when it is new. */
  raise(id: string, level: HealthLevel, code: ErrorCode, reason: string): boolean {
    const old = this.#conditions.get(id);
    if (old !== undefined && old.level === level && old.code === code && old.reason === reason) return false;
    const c: HealthCondition = { id, level, code, reason, since: old?.since ?? Date.now() };
    this.#conditions.set(id, c);
    this.emit('raised', c);
    return old === undefined;
  }

  /** Clears a condition; returns true when it was raised. */
  clear(id: string): boolean {
    const c = this.#conditions.get(id);
    if (c === undefined) return false;
    this.#conditions.delete(id);
    this.emit('cleared', c);
    return true;
  }

  has(id: string): boolean {
    return this.#conditions.has(id);
  }

  /** The raised conditions, oldest first. */
  list(): HealthCondition[] {
    return [...this.#conditions.values()].sort((a, b) => a.since - b.since);
  }

  /** `ok` with no condition, else the worst level raised. */
  get status(): 'ok' | HealthLevel {
    let status: 'ok' | HealthLevel = 'ok';
    for (const c of this.#conditions.values()) {
      if (c.level === 'unavailable') return 'unavailable';
      status = 'degraded';
    }
    return status;
  }
}
