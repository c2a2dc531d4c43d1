/**
 * Message notification over MQTT (docs/MQTT.md): what happened to each event, published on the
 * embedded broker for integrators and dashboards.
 *
 * - `oti/<site>/status/<lock>/<ctr>` (retained): received → committed (with its receipt) or
 *   rejected (a final refusal only; a refusal the lock will retry is not the event's fate).
 *   Issue 5's sync adds replicated and confirmed. A committed event's status only moves
 *   forward: before publishing received or rejected, the notifier asks the chain whether the
 *   event is stored; if it is, a later arrival publishes nothing and a refused later copy goes
 *   to `oti/<site>/refused/<lock>/<ctr>` instead.
 * - At start, the retained statuses and lock states are rebuilt from the chain
 *   (gateway/notify/status-rebuild.ts), since the broker keeps them in memory only.
 * - `oti/<site>/events/<lock>`: each committed event, once.
 * - `oti/<site>/lockstate/<lock>` (retained); Home Assistant discovery is gateway/notify/homeassistant.ts.
 * - `oti/<site>/locks/unenrolled/<lock>` (retained): a lock that needs enrolling.
 * - `oti/<site>/gateways/<gw>/state` (retained): online while running, offline after stop.
 *
 * MQTT notification is best effort and bounded: statuses are published from a queue of at most
 * `queueMax` items (20,000); beyond it the oldest pending notifications are dropped and counted
 * (`dropped`, GET /status, oti_notifications_dropped_total; the webhooks, driven from the chain
 * itself, are the at-least-once path). Jobs run one at a time, so each destination gets each
 * lock's notifications in order; only the embedded broker's publish is awaited (an external
 * broker queues what it is given, gateway/notify/external-broker.ts), so an external broker's
 * outage never holds the queue. Retained statuses are
 * cleared after `retentionS` seconds, and beyond `retainMax` events the oldest are cleared first,
 * so the broker's retained store stays bounded; older events remain available from the local
 * API and the receipts.
 */
import type { MqttPublisher } from './homeassistant.js';
import type { TopicMap, StatusMessage, EventMessage, LockStateMessage, UnenrolledLockMessage, RefusedCopyMessage } from '../broker/topics.js';
import type { Ingest } from '../ingest.js';
import type { Chain, AppendResult } from '../../ledger/chain.js';
import { decodeEntry } from '../../ledger/entry.js';
import type { CoverageEvent } from '../sync/witness.js';
import { toHex } from '../../ledger/crypto.js';
import type { ReceivedEvent } from '../../drivers/driver.js';
import type { Logger } from '../log.js';
import { BOLT_STATE, lastBoltState, recentLockEvents, type CommittedEvent } from './status-rebuild.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { listen } from '../../ledger/base/events.js';
import { StatusReceipts } from './status-receipts.js';

export interface NotifierOptions {
  /** The embedded broker, an external one (gateway/notify/external-broker.ts), or both. */
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
  /** Told of each refused later copy of a committed event (for oti_committed_copies_refused_total). */
  readonly onRefusedCopy?: (code: string) => void;
}

type Job = () => Promise<void>;

/** The notifier's queue runs at most this long before it lets the event loop turn. */
const YIELD_AFTER_MS = 4;

export class MqttNotifier {
  /** Notifications dropped because the queue was full. */
  dropped = 0;
  published = 0;
  /** Later copies of committed events refused (published on the refused topic). */
  refusedCopies = 0;
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
  /** Committed statuses' receipts, with what is the same for a checkpoint's events made once. */
  private readonly receipts: StatusReceipts;

  constructor(opts: NotifierOptions) {
    this.o = opts;
    this.receipts = new StatusReceipts(opts.chain);
    this.now = opts.now ?? Date.now;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  async start(): Promise<void> {
    // Queued first, so the rebuilt statuses are on the broker before anything new.
    this.enqueue(() => this.rebuild());
    this.listeners.push(
      listen(this.o.ingest, {
        received: (ev) => {
          // Looked up as the copy arrives, before it could be committed itself: was the event
          // committed before this copy came? A failed lookup counts as yes (publish nothing).
          const before = this.committedIndex(ev.lock, ev.ctr).catch(() => -1);
          this.enqueue(() => this.arrived(ev, before));
        },
        committed: (ev, r) => this.enqueue(() => this.committed(ev, r)),
        rejected: (ev, code, retry) => {
          if (!retry) this.enqueue(() => this.refused(ev, code));
        },
        unenrolled: (lock, info, from) => this.enqueue(() => this.unenrolled(lock, info, from.driver)),
      }),
    );
    await this.o.broker.publish(this.o.topics.gatewayState(this.o.gatewayId), JSON.stringify({ state: 'online', at: this.now() }), { qos: 1, retain: true });
    this.sweeper = setInterval(() => this.enqueue(() => this.sweep()), 10_000);
    this.sweeper.unref();
  }

  /**
   * Sync's coverage of this gateway's own chain (gateway/sync/witness.ts): entries [from, to) are now
   * replicated (held and verified by `peers` ≥ 1 other gateways, named in `cosigners`), or
   * confirmed by the quorum; each stage comes once per entry. Statuses are published for the
   * lock events of that range whose retained status is still kept (at most retainMax of them).
   */
  coverage(ev: CoverageEvent): void {
    this.enqueue(async () => {
      const from = Math.max(ev.from, ev.to - (this.o.retainMax ?? 1000));
      if (from >= ev.to) return;
      const raws = await this.o.chain.entryRange(from, ev.to);
      for (const raw of raws) {
        const body = decodeEntry(raw).body;
        if (body.kind !== 'lock-event') continue;
        const topic = this.o.topics.status(body.event.lock, body.event.ctr);
        if (!this.retainedSet.has(topic)) continue;
        const s = ev.state === 'replicated' ? { state: 'replicated' as const, peers: ev.peers, cosigners: [...ev.cosigners] } : { state: 'confirmed' as const, quorum: ev.quorum, cosigners: [...ev.cosigners] };
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
    let since = performance.now();
    try {
      while (this.head < this.queue.length) {
        // Jobs whose publishing completes at once chain on microtasks alone: a backlog (a block's
        // worth of committed events, or thousands after a stall) would keep the event loop from
        // the serial ports and the ledger until it is gone. Give the loop a turn every few ms.
        if (performance.now() - since > YIELD_AFTER_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          since = performance.now();
        }
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
          // A full external backlog is counted and logged (once a minute) by the external broker.
          if (!this.stopped && !isOtiError(e, 'ERR_MQTT_BACKLOG')) this.o.logger?.warn({ err: e }, 'an MQTT notification could not be published');
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async publish(topic: string, payload: unknown, retain: boolean): Promise<void> {
    await this.o.broker.publish(topic, JSON.stringify(payload), { qos: 1, retain });
  }

  private async status(lock: string, ctr: number, s: { state: 'received' } | { state: 'rejected'; code: string } | { state: 'committed'; index: number; entry: string; receipt: string }, at = this.now()): Promise<void> {
    const topic = this.o.topics.status(lock, ctr);
    const msg: StatusMessage = { id: `${lock}:${ctr}`, at, ...s };
    await this.publish(topic, msg, true);
    if (!this.retainedSet.has(topic)) {
      this.retainedSet.add(topic);
      this.retained.push({ topic, at });
      if (this.retained.length - this.retainedHead > (this.o.retainMax ?? 1000)) await this.clearOldest();
    }
  }

  /** The chain index of `<lock>:<ctr>` when the event is committed (durable) here. */
  private async committedIndex(lock: string, ctr: number): Promise<number | undefined> {
    try {
      return await this.o.chain.indexOf(`${lock}:${ctr}`);
    } catch (e) {
      // An id that cannot be in the chain (the event was refused for it).
      if (isOtiError(e, 'ERR_ARGUMENT')) return undefined;
      throw e;
    }
  }

  /**
   * An event arrived: `received`, unless it was committed before this copy arrived (a lock's
   * retry after a lost ack, or someone else's copy): its status has moved on.
   */
  private async arrived(ev: ReceivedEvent, committedBefore: Promise<number | undefined>): Promise<void> {
    if ((await committedBefore) !== undefined) return;
    await this.status(ev.lock, ev.ctr, { state: 'received' });
  }

  /**
   * A final refusal: the event's fate when the chain does not hold it; for a later copy of a
   * committed event, a message on the refused topic, leaving the committed status alone.
   */
  private async refused(ev: ReceivedEvent, code: string): Promise<void> {
    const index = await this.committedIndex(ev.lock, ev.ctr);
    if (index === undefined) {
      await this.status(ev.lock, ev.ctr, { state: 'rejected', code });
      return;
    }
    this.refusedCopies++;
    this.o.onRefusedCopy?.(code);
    await this.publish(this.o.topics.refused(ev.lock, ev.ctr), { id: `${ev.lock}:${ev.ctr}`, at: this.now(), code, index } satisfies RefusedCopyMessage, false);
  }

  /**
   * Publishes again, from the chain, what the broker lost when the gateway stopped: the
   * committed statuses of the recent events (as many and as old as retention allows) and each
   * enrolled lock's bolt state.
   */
  private async rebuild(): Promise<void> {
    const max = this.o.retainMax ?? 1000;
    const events = await recentLockEvents(this.o.chain, max, this.now() - this.o.retentionS * 1000, 4 * max);
    for (const ev of events) await this.rebuildStatus(ev);
    let locks = 0;
    for (const m of [...this.o.chain.roster.members()]) {
      if (m.role !== 'lock' || m.revoked) continue;
      const state = await lastBoltState(this.o.chain, m.id);
      if (state === undefined) continue;
      await this.publish(this.o.topics.lockState(m.id), state, true);
      locks++;
    }
    this.o.logger?.info({ statuses: events.length, lockStates: locks }, `retained statuses rebuilt from the ledger: ${events.length} events, ${locks} lock states`);
  }

  private async rebuildStatus(ev: CommittedEvent): Promise<void> {
    let receipt: string;
    try {
      receipt = base64(await this.receipts.receipt(ev.index));
    } catch (e) {
      // Not covered by a checkpoint: nothing to prove it with, so no status either.
      if (isOtiError(e, 'ERR_NOT_FOUND')) return;
      throw e;
    }
    await this.status(ev.lock, ev.ctr, { state: 'committed', index: ev.index, entry: ev.entry, receipt }, ev.time);
  }

  private async committed(ev: ReceivedEvent, r: AppendResult): Promise<void> {
    const body = r.entry.body;
    if (body.kind !== 'lock-event') return;
    const receipt = base64(await this.receipts.receipt(r.index, r.entry));
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

/** Base64 of `b` without copying it first. */
function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}
