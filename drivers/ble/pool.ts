/**
 * The BLE link pool: locks that advertise pending events wait as candidates (oldest first) for
 * one of `maxConnections` slots; a failed or lost link backs its peripheral off (exponential,
 * jittered: drivers/backoff.ts) and it is connected again when it advertises pending events
 * once more; links idle with nothing outstanding are released for other locks. Both the
 * candidates and the peripherals in backoff are bounded.
 */
import { backoffDelay } from '../backoff.js';
import { parseAdvertisement } from '../protocol.js';
import type { DriverNotice, LinkStatus } from '../driver.js';
import type { NoblePeripheral } from '../noble-types.js';
import { Link, STOP_WAIT_MS, messageOf } from './link.js';
import type { Gatt } from './gatt.js';

/** Remembered peripherals waiting for a slot, and peripherals in backoff: bounded. */
const MAX_TRACKED = 256;

interface Retry {
  readonly link: string;
  readonly attempts: number;
  readonly retryAt: number;
  readonly reason: string;
}

export interface PoolOptions {
  readonly maxConnections: number;
  readonly backoff: { readonly minMs: number; readonly maxMs: number };
  readonly gatt: Gatt;
  readonly now: () => number;
  readonly notice: (n: DriverNotice) => void;
  readonly counters: { reconnects: number };
  /** Whether new links may be opened now (the adapter is on and the driver not stopping). */
  readonly mayConnect: () => boolean;
  /** A link's fragments (inbound.ts). */
  readonly data: (link: Link, data: Uint8Array) => void;
}

export class LinkPool {
  /** Open and connecting links, by peripheral id. */
  readonly links = new Map<string, Link>();
  private readonly candidates = new Map<string, NoblePeripheral>();
  private readonly retries = new Map<string, Retry>();

  constructor(private readonly o: PoolOptions) {}

  get candidateCount(): number {
    return this.candidates.size;
  }

  /** The open link to a lock at `link` (its address), if any. */
  find(link: string): Link | undefined {
    return [...this.links.values()].find((l) => l.ref.link === link && !l.closed);
  }

  /** A peripheral was heard advertising: a candidate when it is an OTI lock with pending events. */
  advertised(p: NoblePeripheral): void {
    let adv: { readonly pending: boolean } | undefined;
    try {
      adv = parseAdvertisement(p.advertisement.manufacturerData);
    } catch {
      adv = undefined;
    }
    if (adv === undefined) return; // not an OTI lock
    if (!adv.pending) {
      this.candidates.delete(p.id);
      return;
    }
    if (this.links.has(p.id) || this.candidates.has(p.id)) {
      this.drain();
      return;
    }
    this.candidates.set(p.id, p);
    if (this.candidates.size > MAX_TRACKED) this.candidates.delete(this.candidates.keys().next().value as string);
    this.drain();
  }

  /** Connects remembered candidates, oldest first, while there are free slots. */
  drain(): void {
    if (!this.o.mayConnect()) return;
    const t = this.o.now();
    for (const [id, p] of this.candidates) {
      if (this.links.size >= this.o.maxConnections) return;
      const r = this.retries.get(id);
      if (r !== undefined && r.retryAt > t) continue;
      this.candidates.delete(id);
      if (this.links.has(id) || p.state === 'connected' || p.state === 'connecting') continue;
      this.open(p);
    }
  }

  /** Releases open links idle for `idleMs` with nothing outstanding, then fills free slots. */
  housekeeping(t: number, idleMs: number): void {
    for (const link of [...this.links.values()]) {
      if (link.state === 'open' && !link.pumping && link.outstanding === 0 && t - link.lastData >= idleMs) {
        void this.close(link, 'idle', false);
      }
    }
    this.drain();
  }

  /** Forgets the candidates and closes every link, without backoff. Resolves when they are down (bounded). */
  closeAll(reason: string): Promise<void[]> {
    this.candidates.clear();
    return Promise.all([...this.links.values()].map((l) => this.close(l, reason, false)));
  }

  status(t: number): LinkStatus[] {
    const links: LinkStatus[] = [];
    for (const l of this.links.values()) links.push({ link: l.ref.link, state: l.state, lock: l.info?.lock });
    for (const [id, r] of this.retries) {
      if (!this.links.has(id) && r.retryAt > t) links.push({ link: r.link, state: 'backoff', reason: r.reason, retryAt: r.retryAt });
    }
    return links;
  }

  /**
   * Closes a link once: forgets its partial message, releases its slot, disconnects the
   * peripheral (unless it is already down) and, after a failure, backs the peripheral off.
   * Resolves when the peripheral confirmed the disconnect or after a bounded wait.
   */
  close(link: Link, reason: string, backoff: boolean, disconnect = true): Promise<void> {
    if (link.closed) return Promise.resolve();
    link.close(reason);
    const p = link.peripheral;
    if (this.links.get(p.id) === link) this.links.delete(p.id);
    let down = Promise.resolve();
    if (disconnect && link.connected && p.state !== 'disconnected') down = this.disconnect(p);
    if (backoff) this.scheduleRetry(p.id, link.ref.link, reason);
    this.o.notice({ kind: 'link', from: link.ref, state: backoff ? 'backoff' : 'closed', detail: reason, time: this.o.now() });
    this.drain();
    return down;
  }

  private open(p: NoblePeripheral): void {
    const link = new Link(p, this.o.now(), { disconnect: this.onDisconnect, data: this.o.data });
    this.links.set(p.id, link);
    if (this.retries.has(p.id)) this.o.counters.reconnects++;
    this.o.notice({ kind: 'link', from: link.ref, state: 'connecting', detail: 'lock advertises pending events', time: this.o.now() });
    void this.setUp(link).catch((e: unknown) => this.close(link, messageOf(e), true));
  }

  private async setUp(link: Link): Promise<void> {
    const { mtu, info } = await this.o.gatt.setUp(link);
    link.state = 'open';
    link.lastData = this.o.now();
    this.retries.delete(link.peripheral.id);
    this.o.notice({ kind: 'link', from: link.ref, state: 'open', detail: `lock ${info.lock}, ATT MTU ${mtu}`, time: this.o.now() });
  }

  private readonly onDisconnect = (link: Link, reason?: unknown): void => {
    void this.close(link, `disconnected${reason === undefined ? '' : ` (reason ${String(reason)})`}`, true, false);
  };

  private disconnect(p: NoblePeripheral): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        p.removeListener('disconnect', done);
        resolve();
      };
      const timer = setTimeout(done, STOP_WAIT_MS);
      p.on('disconnect', done);
      try {
        p.disconnect();
      } catch {
        done();
      }
    });
  }

  /** Per-peripheral exponential backoff with jitter (drivers/backoff.ts). */
  private scheduleRetry(id: string, link: string, reason: string): void {
    const attempts = (this.retries.get(id)?.attempts ?? 0) + 1;
    const delay = backoffDelay(attempts - 1, this.o.backoff.minMs, this.o.backoff.maxMs);
    this.retries.delete(id);
    this.retries.set(id, { link, attempts, retryAt: this.o.now() + delay, reason });
    if (this.retries.size > MAX_TRACKED) this.retries.delete(this.retries.keys().next().value as string);
  }
}
