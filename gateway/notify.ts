/**
 * Message notification over MQTT (docs/MQTT.md): what happened to each event, published on the
 * embedded broker for integrators and dashboards.
 *
 * - `oti/<site>/status/<lock>/<ctr>` (retained): received → committed (with its receipt) or
 *   rejected (a final refusal only; a refusal the lock will retry is not the event's fate).
 *   Issue 5's sync adds replicated and confirmed.
 * - `oti/<site>/events/<lock>`: each committed event, once.
 * - `oti/<site>/lockstate/<lock>` (retained); Home Assistant discovery is gateway/homeassistant.ts.
 * - `oti/<site>/locks/unenrolled/<lock>` (retained): a lock that needs enrolling.
 * - `oti/<site>/gateways/<gw>/state` (retained): online while running, offline after stop.
 *
 * MQTT notification is best effort and bounded: statuses are published from a queue of at most
 * `queueMax` items; beyond it the oldest pending notifications are dropped and counted (the
 * webhooks, driven from the chain itself, are the at-least-once path). Retained statuses are
 * cleared after `retentionS` seconds, and beyond `retainMax` events the oldest are cleared first,
 * so the broker's retained store stays bounded; older events remain available from the local
 * API and the receipts.
 */
import type { MqttPublisher } from './homeassistant.js';
import type { TopicMap, StatusMessage, EventMessage, LockStateMessage, UnenrolledLockMessage } from './topics.js';
import type { Ingest } from './ingest.js';
import type { Chain, AppendResult } from '../ledger/chain.js';
import { receiptFor } from '../ledger/receipt.js';
import { decodeEntry } from '../ledger/entry.js';
import type { CoverageEvent } from './witness.js';
import { toHex } from '../ledger/crypto.js';
import type { ReceivedEvent } from '../drivers/driver.js';
import type { Logger } from 'pino';

export interface NotifierOptions {
  /** The embedded broker, an external one (gateway/mqtt-out.ts), or both. */
  readonly broker: MqttPublisher;
  readonly topics: TopicMap;
  readonly chain: Chain;
  readonly ingest: Ingest;
  readonly gatewayId: string;
  readonly retentionS: number;
  /** Retained per-event statuses kept at most (default 1,000). */
  readonly retainMax?: number;
  /** Notifications waiting to be published at most (default 20,000). */
  readonly queueMax?: number;
  readonly logger?: Logger;
  readonly now?: () => number;
}

type Job = () => Promise<void>;

const BOLT_STATE: Partial<Record<string, LockStateMessage['state']>> = { locked: 'LOCKED', unlocked: 'UNLOCKED', jammed: 'JAMMED' };

export class MqttNotifier {
  /** Notifications dropped because the queue was full. */
  dropped = 0;
  published = 0;
  private readonly o: NotifierOptions;
  private readonly now: () => number;
  private readonly queue: Job[] = [];
  private head = 0;
  private running = false;
  private stopped = false;
  /** Retained status topics in publication order, for retention. */
  private readonly retained: { topic: string; at: number }[] = [];
  private retainedHead = 0;
  private readonly retainedSet = new Set<string>();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly listeners: Array<() => void> = [];

  constructor(opts: NotifierOptions) {
    this.o = opts;
    this.now = opts.now ?? Date.now;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  async start(): Promise<void> {
    const { ingest } = this.o;
    const on = <A extends unknown[]>(emitter: { on(e: string, f: (...a: A) => void): unknown; off(e: string, f: (...a: A) => void): unknown }, event: string, f: (...a: A) => void): void => {
      emitter.on(event, f);
      this.listeners.push(() => emitter.off(event, f));
    };
    on(ingest, 'received', (ev: ReceivedEvent) => this.enqueue(() => this.status(ev.lock, ev.ctr, { state: 'received' })));
    on(ingest, 'committed', (ev: ReceivedEvent, r: AppendResult) => this.enqueue(() => this.committed(ev, r)));
    on(ingest, 'rejected', (ev: ReceivedEvent, code: string, retry: boolean) => {
      if (!retry) this.enqueue(() => this.status(ev.lock, ev.ctr, { state: 'rejected', code }));
    });
    on(ingest, 'unenrolled', (lock: string, info: { key?: Uint8Array; fw: string } | undefined, from: { driver: string }) =>
      this.enqueue(() => this.unenrolled(lock, info, from.driver)),
    );
    await this.o.broker.publish(this.o.topics.gatewayState(this.o.gatewayId), JSON.stringify({ state: 'online', at: this.now() }), { qos: 1, retain: true });
    this.sweeper = setInterval(() => this.enqueue(() => this.sweep()), 10_000);
    this.sweeper.unref();
  }

  /**
   * Sync's coverage of this gateway's own chain (gateway/witness.ts): entries [from, to) are now
   * replicated to `peers` gateways, or confirmed by the quorum. Statuses are published for the
   * lock events of that range whose retained status is still kept (at most retainMax of them).
   */
  coverage(ev: CoverageEvent): void {
    this.enqueue(async () => {
      const from = Math.max(ev.from, ev.to - (this.o.retainMax ?? 1000));
      if (from >= ev.to) return;
      const raws = await this.o.chain.cs.entryRange(from, ev.to);
      for (const raw of raws) {
        const body = decodeEntry(raw).body;
        if (body.kind !== 'lock-event') continue;
        const topic = this.o.topics.status(body.event.lock, body.event.ctr);
        if (!this.retainedSet.has(topic)) continue;
        const s = ev.state === 'replicated' ? { state: 'replicated' as const, peers: ev.peers } : { state: 'confirmed' as const, quorum: ev.quorum, cosigners: [...ev.cosigners] };
        await this.publish(topic, { id: `${body.event.lock}:${body.event.ctr}`, at: this.now(), ...s } satisfies StatusMessage, true);
      }
    });
  }

  /** Publishes what is queued (for up to `waitMs`), then the offline state. */
  async stop(waitMs = 1000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweeper);
    for (const off of this.listeners.splice(0)) off();
    const end = this.now() + waitMs;
    while (this.running && this.now() < end) await new Promise((r) => setTimeout(r, 10));
    await this.o.broker
      .publish(this.o.topics.gatewayState(this.o.gatewayId), JSON.stringify({ state: 'offline', at: this.now() }), { qos: 1, retain: true })
      .catch(() => undefined);
  }

  private enqueue(job: Job): void {
    if (this.stopped) return;
    const max = this.o.queueMax ?? 20_000;
    if (this.queue.length - this.head >= max) {
      this.head++;
      this.dropped++;
    }
    this.queue.push(job);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.head < this.queue.length) {
        const job = this.queue[this.head] as Job;
        this.queue[this.head++] = undefined as unknown as Job;
        if (this.head > 4096 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        try {
          await job();
          this.published++;
        } catch (e) {
          if (!this.stopped) this.o.logger?.warn({ err: e }, 'an MQTT notification could not be published');
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async publish(topic: string, payload: unknown, retain: boolean): Promise<void> {
    await this.o.broker.publish(topic, JSON.stringify(payload), { qos: 1, retain });
  }

  private async status(lock: string, ctr: number, s: { state: 'received' } | { state: 'rejected'; code: string } | { state: 'committed'; index: number; entry: string; receipt: string }): Promise<void> {
    const topic = this.o.topics.status(lock, ctr);
    const msg: StatusMessage = { id: `${lock}:${ctr}`, at: this.now(), ...s };
    await this.publish(topic, msg, true);
    if (!this.retainedSet.has(topic)) {
      this.retainedSet.add(topic);
      this.retained.push({ topic, at: this.now() });
      if (this.retained.length - this.retainedHead > (this.o.retainMax ?? 1000)) await this.clearOldest();
    }
  }

  private async committed(ev: ReceivedEvent, r: AppendResult): Promise<void> {
    const body = r.entry.body;
    if (body.kind !== 'lock-event') return;
    const receipt = Buffer.from(await receiptFor(this.o.chain, r.index)).toString('base64');
    const entry = toHex(r.leafHash);
    await this.status(ev.lock, ev.ctr, { state: 'committed', index: r.index, entry, receipt });
    const msg: EventMessage = {
      id: r.id,
      lock: body.event.lock,
      ctr: body.event.ctr,
      type: body.event.type,
      lockTime: body.event.time,
      gateway: this.o.gatewayId,
      chain: this.o.chain.origin,
      index: r.index,
      entry,
      provenance: body.prov,
      block: r.block,
    };
    await this.publish(this.o.topics.event(ev.lock), msg, false);
    const bolt = BOLT_STATE[body.event.type];
    if (bolt !== undefined) await this.publish(this.o.topics.lockState(ev.lock), { state: bolt, id: r.id, at: this.now() } satisfies LockStateMessage, true);
  }

  private async unenrolled(lock: string, info: { key?: Uint8Array; fw: string } | undefined, driver: string): Promise<void> {
    const msg: UnenrolledLockMessage = {
      lock,
      key: info?.key === undefined ? null : toHex(info.key),
      fw: info?.fw ?? 'unknown',
      link: driver === 'ble' ? 'ble' : 'serial',
      seenAt: this.now(),
    };
    await this.publish(this.o.topics.unenrolled(lock), msg, true);
  }

  /** Clears retained statuses older than the retention time. */
  private async sweep(): Promise<void> {
    const cutoff = this.now() - this.o.retentionS * 1000;
    while (this.retainedHead < this.retained.length && (this.retained[this.retainedHead] as { at: number }).at < cutoff) await this.clearOldest();
  }

  private async clearOldest(): Promise<void> {
    const r = this.retained[this.retainedHead];
    if (r === undefined) return;
    this.retained[this.retainedHead++] = undefined as unknown as { topic: string; at: number };
    if (this.retainedHead > 4096 && this.retainedHead * 2 > this.retained.length) {
      this.retained.splice(0, this.retainedHead);
      this.retainedHead = 0;
    }
    this.retainedSet.delete(r.topic);
    // An empty retained message removes the retained one (MQTT 3.1.1 §3.3.1.3).
    await this.o.broker.publish(r.topic, '', { qos: 0, retain: true });
  }
}
