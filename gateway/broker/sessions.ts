/**
 * Persistent MQTT sessions (clean session off) and who holds them: at most `maxPerPrincipal`
 * per principal (role and identity), each forgotten `expiryMs` after its client went away.
 *
 * A principal opening one session more than its cap discards its session that has been offline
 * longest; when all of them are connected, the new one is refused. A session whose client id
 * comes back with clean session on is discarded too (MQTT 3.1.1 §3.1.2.4). This file only
 * decides; the broker forgets the discarded sessions' state (gateway/broker/persistence.ts).
 */

interface Session {
  readonly principal: string;
  /** The connection holding it, or undefined while it is offline. */
  holder: object | undefined;
  offlineSince: number;
}

export interface SessionLimits {
  readonly maxPerPrincipal: number;
  readonly expiryMs: number;
}

export class SessionRegistry {
  readonly #limits: SessionLimits;
  readonly #sessions = new Map<string, Session>();

  constructor(limits: SessionLimits) {
    this.#limits = limits;
  }

  /** Persistent sessions held now, connected or not. */
  get size(): number {
    return this.#sessions.size;
  }

  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  /**
   * `holder` of `principal` connects to persistent session `id`. Returns the ids of sessions to
   * discard to make room (possibly none), or undefined when the principal is at its cap with
   * every session connected (the connection is to be refused).
   */
  open(principal: string, id: string, holder: object): string[] | undefined {
    const existing = this.#sessions.get(id);
    if (existing !== undefined) {
      existing.holder = holder;
      return [];
    }
    const own = [...this.#sessions.entries()].filter(([, s]) => s.principal === principal);
    const discard: string[] = [];
    for (const [oldId] of own.filter(([, s]) => s.holder === undefined).sort(([, a], [, b]) => a.offlineSince - b.offlineSince)) {
      if (own.length - discard.length < this.#limits.maxPerPrincipal) break;
      discard.push(oldId);
    }
    if (own.length - discard.length >= this.#limits.maxPerPrincipal) return undefined;
    for (const d of discard) this.#sessions.delete(d);
    this.#sessions.set(id, { principal, holder, offlineSince: 0 });
    return discard;
  }

  /** `holder`'s connection to `id` ended; the session waits offline (unless another connection took it over). */
  closed(id: string, holder: object, now: number): void {
    const s = this.#sessions.get(id);
    if (s === undefined || s.holder !== holder) return;
    s.holder = undefined;
    s.offlineSince = now;
  }

  /** Forgets `id` (its client came back with clean session on); true when it was held. */
  forget(id: string): boolean {
    return this.#sessions.delete(id);
  }

  /** Removes and returns the sessions offline for longer than the expiry. */
  expire(now: number): string[] {
    const gone: string[] = [];
    for (const [id, s] of this.#sessions) {
      if (s.holder === undefined && now - s.offlineSince >= this.#limits.expiryMs) gone.push(id);
    }
    for (const id of gone) this.#sessions.delete(id);
    return gone;
  }
}
