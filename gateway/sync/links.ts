/**
 * The node's links, one per broker (gateway/sync/transport.ts), and the announcement of the own
 * chain's checkpoint on each of them. A link logs in with a fresh gateway credential each time it
 * (re)connects and leaves a will that sets the gateway state to offline.
 */
import { randomBytes } from 'node:crypto';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { makeGatewayCredential, type GatewayLogin } from '../broker/credentials.js';
import type { Link, SyncContext } from './context.js';

/** How long one link's checkpoint publication may hold up the next one on that link. */
const ANNOUNCE_WAIT_MS = 5000;

export interface LinkHandlers {
  message(link: Link, topic: string, payload: Buffer): void;
  connect(link: Link): Promise<void>;
  close(link: Link): void;
}

export class Links {
  readonly all: Link[] = [];
  /** Per link: a checkpoint publication has not finished (or timed out) yet; a newer one is due after it. */
  readonly #announcing = new WeakMap<Link, { dirty: boolean }>();

  constructor(
    private readonly c: SyncContext,
    private readonly h: LinkHandlers,
  ) {}

  #login(): GatewayLogin {
    const o = this.c.o;
    return o.login?.() ?? makeGatewayCredential({ siteId: o.trust.siteId, gatewayId: o.gatewayId, key: o.key, enrolment: o.enrolment, now: this.c.now() });
  }

  /** Connects a link to `url`; resolves once it has connected once or failed once (it keeps retrying). */
  connect(url: string): Promise<void> {
    const o = this.c.o;
    const t = o.transport!.connect(url, {
      clientId: `oti-sync-${o.gatewayId}-${randomBytes(4).toString('hex')}`,
      login: () => this.#login(),
      will: { topic: this.c.topics.gatewayState(o.gatewayId), payload: Buffer.from(JSON.stringify({ state: 'offline', at: this.c.now() })) },
    });
    let markSubscribed = (): void => undefined;
    const subscribed = new Promise<void>((resolve) => (markSubscribed = resolve));
    let reached = (_: boolean): void => undefined;
    const firstAttempt = new Promise<boolean>((resolve) => (reached = resolve));
    const link: Link = { url, t, subscribed, markSubscribed, firstAttempt };
    this.all.push(link);
    t.on('message', (topic, payload) => this.h.message(link, topic, payload));
    t.on('error', (e) => o.logger?.debug({ url, err: e.message }, 'sync link error'));
    t.on('close', () => this.h.close(link));
    t.on('connect', () => void this.h.connect(link));
    const connected = (): void => reached(true);
    const failed = (): void => reached(false);
    t.once('connect', connected);
    t.once('error', failed);
    return firstAttempt.then(() => {
      t.off('connect', connected);
      t.off('error', failed);
    });
  }

  has(url: string): boolean {
    return this.all.some((l) => l.url === url);
  }

  connected(): Link[] {
    return this.all.filter((l) => l.t.connected);
  }

  async publish(link: Link, topic: string, payload: Uint8Array | string, retain: boolean): Promise<void> {
    if (!link.t.connected) return;
    await link.t.publish(topic, typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: 1, retain });
  }

  async publishAll(topic: string, payload: Uint8Array | string, retain: boolean): Promise<void> {
    await Promise.all(this.all.map((l) => this.publish(l, topic, payload, retain).catch(() => undefined)));
  }

  /** Publishes a checkpoint of the own chain (retained), once it is recorded (beforeAnnounce). */
  async publishOwn(link: Link, cp: SignedCheckpoint): Promise<void> {
    await this.c.o.beforeAnnounce?.(cp);
    await this.publish(link, this.c.topics.checkpoint(this.c.o.gatewayId), cp.note, true);
  }

  /**
   * Publishes the latest checkpoint on every link, each link on its own: a link whose broker
   * went away (a QoS 1 publication then waits for its PUBACK until a reconnect that may never
   * come) must not hold up the announcements on the others, nor later ones on itself for more
   * than ANNOUNCE_WAIT_MS; bursts coalesce (one publication in flight per link, then the latest).
   * (Re)connecting links publish the current checkpoint when they subscribe (node.ts).
   */
  announce(): void {
    if (this.c.chain()?.checkpoint === undefined || this.c.stopped()) return;
    for (const link of this.all) this.#announceOn(link);
  }

  #announceOn(link: Link): void {
    const cp = this.c.chain()?.checkpoint;
    if (cp === undefined || this.c.stopped()) return;
    const busy = this.#announcing.get(link);
    if (busy !== undefined) {
      busy.dirty = true;
      return;
    }
    const state = { dirty: false };
    this.#announcing.set(link, state);
    let timer: NodeJS.Timeout | undefined;
    const published = this.publishOwn(link, cp).catch(() => undefined);
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ANNOUNCE_WAIT_MS);
      timer.unref();
    });
    void Promise.race([published, waited]).finally(() => {
      clearTimeout(timer);
      this.#announcing.delete(link);
      if (state.dirty) this.#announceOn(link);
    });
  }

  /** Ends every link (no reconnection). */
  async end(): Promise<void> {
    await Promise.all(this.all.map((l) => l.t.end().catch(() => undefined)));
  }
}
