/**
 * The broker's persistent sessions, put together: the bounded session store aedes runs on
 * (gateway/broker/persistence.ts), the per-principal cap and expiry (gateway/broker/sessions.ts),
 * and principal-scoped client ids. The broker calls `open` once a client has logged in.
 *
 * Client ids are scoped to the principal: aedes keys sessions by `<role>:<identity>:<client id>`,
 * so two principals using the same client id have two sessions and never reach, take over or
 * lock out each other's. Within one principal, MQTT's takeover applies (MQTT 3.1.1 §3.1.4-2),
 * and clean session on discards the stored session (§3.1.2.4).
 */
import type { Client } from 'aedes';
import type { Logger } from '../log.js';
import type { SessionCaps } from './limits.js';
import { BoundedPersistence } from './persistence.js';
import { SessionRegistry } from './sessions.js';

export interface SessionStats {
  /** Persistent sessions held (connected or not). */
  sessions: number;
  /** Persistent sessions discarded: over a principal's cap, or offline past the expiry. */
  sessionsDiscarded: { cap: number; expired: number };
  /** Messages queued for persistent sessions, and their bytes. */
  queued: { messages: number; bytes: number };
  /** Queued messages dropped (oldest first) because a session's queue was full. */
  queueDropped: number;
}

export class BrokerSessions {
  /** The store to give aedes (its `persistence` option). */
  readonly persistence: BoundedPersistence;
  readonly #registry: SessionRegistry;
  readonly #log: Logger;
  readonly #discarded = { cap: 0, expired: 0 };
  readonly #expiryTimer: NodeJS.Timeout;

  constructor(caps: SessionCaps, log: Logger) {
    this.persistence = new BoundedPersistence({ maxMessages: caps.maxQueuedMessages, maxBytes: caps.maxQueuedBytes });
    this.#registry = new SessionRegistry({ maxPerPrincipal: caps.maxPerPrincipal, expiryMs: caps.expiryS * 1000 });
    this.#log = log;
    // Checked a few times per expiry period, at most once a minute.
    this.#expiryTimer = setInterval(() => this.#expire(), Math.min(60_000, Math.max(250, caps.expiryS * 250)));
    this.#expiryTimer.unref();
  }

  /**
   * Scopes the client's id to `owner` (`<role>:<identity>`) and opens its session: a clean one
   * discards what was stored under the id; a persistent one may discard the owner's
   * longest-offline session to stay within the cap. Resolves false when the owner is at its cap
   * with every session connected (the login is to be refused).
   */
  async open(client: Client, owner: string): Promise<boolean> {
    const id = `${owner}:${client.id}`;
    client.id = id;
    if (client.clean) {
      if (this.#registry.forget(id)) await this.persistence.dropSession(id);
      return true;
    }
    const discard = this.#registry.open(owner, id, client);
    if (discard === undefined) return false;
    for (const old of discard) await this.#discard(old, 'cap');
    client.conn.once('close', () => this.#registry.closed(id, client, Date.now()));
    return true;
  }

  stats(): SessionStats {
    return { sessions: this.#registry.size, sessionsDiscarded: { ...this.#discarded }, queued: this.persistence.queued(), queueDropped: this.persistence.dropped };
  }

  close(): void {
    clearInterval(this.#expiryTimer);
  }

  async #discard(id: string, reason: 'cap' | 'expired'): Promise<void> {
    this.#discarded[reason]++;
    this.#log.info({ clientId: id, reason }, 'MQTT persistent session discarded');
    await this.persistence.dropSession(id);
  }

  #expire(): void {
    for (const id of this.#registry.expire(Date.now())) {
      this.#discard(id, 'expired').catch((e: unknown) => this.#log.error({ clientId: id, err: (e as Error).message }, 'cannot discard an expired MQTT session'));
    }
  }
}
