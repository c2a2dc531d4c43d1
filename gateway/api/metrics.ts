/**
 * The gateway's Prometheus metrics, served by the local API at /metrics. docs/API.md §Metrics
 * lists every metric; names follow the Prometheus conventions (a unit suffix in base units,
 * `_total` for counters, snake case, one `oti_` prefix for everything including the default
 * process metrics).
 *
 * Everything lives in this instance's own prom-client Registry (never the module-global one),
 * so that two gateways in one test process do not share counters. Gauges whose value belongs to
 * another part of the gateway (queue depth, chain heights, driver and peer states) are read from
 * that part when Prometheus scrapes (prom-client `collect`), so they cannot go stale.
 *
 * One instance per process is intended: the default process metrics install a GC observer that
 * lives as long as the process.
 */
import type { UplinkStatus } from '../sync/uplink.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DriverStatus } from '../../drivers/driver.js';
import type { Ingest } from '../ingest.js';
import { listen } from '../../ledger/base/events.js';
import { ERROR_CODES } from '../../ledger/base/errors.js';
import type { HealthCondition } from './health.js';
import type { BrokerStats } from '../broker/broker.js';
import { registerWebhookMetrics } from '../notify/webhook-metrics.js';
import { registerNotificationMetrics, type NotificationsStatus } from '../notify/notification-metrics.js';
import type { WebhookStatus } from '../notify/webhooks.js';

export const METRIC_PREFIX = 'oti_';

/**
 * Ack latency buckets in seconds: from 1 ms (one small block, fsync on a fast disk) to 1 s and
 * more (an SD card under load), roughly 1-2.5-5 per decade.
 */
export const ACK_LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** One stored chain and its number of entries. */
export interface ChainHeight {
  readonly origin: string;
  readonly size: number;
}

/** One peer gateway and its state as the sync layer sees it (the states are the sync layer's). */
export interface PeerState {
  readonly peer: string;
  readonly state: string;
  /** Entries it announced that are not stored here yet (oti_peer_lag_entries). */
  readonly lag?: number;
}

/** What observeSync listens to (gateway/sync/node.ts SyncNode). */
export interface SyncEventSource {
  on(event: 'refused', f: (r: { peer: string; code: string }) => void): unknown;
  on(event: 'evidence', f: (e: { origin: string }) => void): unknown;
}

/** Driver states in which a driver can take events. */
const DRIVER_UP_STATES: ReadonlySet<DriverStatus['state']> = new Set(['running', 'degraded']);

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #received: Counter;
  readonly #committed: Counter;
  readonly #duplicates: Counter;
  readonly #rejected: Counter<'code'>;
  readonly #recorded: Counter<'kind'>;
  readonly #unenrolled: Counter;
  readonly #notices: Counter<'driver' | 'kind' | 'code'>;
  readonly #faults: Counter;
  readonly #apiRefused: Counter<'reason'>;
  readonly #copiesRefused: Counter<'code'>;
  readonly #ackLatency: Histogram;
  readonly #ingests = new Set<Ingest>();
  readonly #heights = new Map<string, number>();
  #heightProvider: () => Iterable<ChainHeight> = () => [];
  #driverProvider: () => readonly DriverStatus[] = () => [];
  #peerProvider: () => readonly PeerState[] = () => [];
  #healthProvider: () => readonly HealthCondition[] = () => [];
  #brokerProvider: (() => BrokerStats) | undefined;
  readonly #syncRefusals: Counter<'peer' | 'code'>;
  readonly #evidence: Counter<'chain'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    this.#received = new Counter({ name: 'oti_events_received_total', help: 'Lock events received from the drivers, before any check.', registers });
    this.#committed = new Counter({ name: 'oti_events_committed_total', help: 'Lock events made durable in the chain and acknowledged.', registers });
    this.#duplicates = new Counter({ name: 'oti_events_duplicate_total', help: 'Lock events already stored, acknowledged again and not stored twice.', registers });
    this.#rejected = new Counter({ name: 'oti_events_rejected_total', help: 'Lock events refused, by error code.', labelNames: ['code'], registers });
    this.#recorded = new Counter({ name: 'oti_entries_recorded_total', help: 'Gap and health entries the pipeline appended, by entry kind.', labelNames: ['kind'], registers });
    this.#unenrolled = new Counter({ name: 'oti_unenrolled_lock_reports_total', help: 'Reports of a lock that is not enrolled (at most one per lock per minute).', registers });
    this.#notices = new Counter({ name: 'oti_driver_notices_total', help: 'Driver notices (rejected frames, link changes, locks seen, blind intervals), by driver and kind; rejected ones by error code too.', labelNames: ['driver', 'kind', 'code'], registers });
    this.#faults = new Counter({ name: 'oti_ingest_faults_total', help: 'Failures in the pipeline that are not an event\'s fault (the chain could not append).', registers });
    this.#apiRefused = new Counter({ name: 'oti_api_connections_refused_total', help: 'Local API connections refused at once because a connection cap was reached, by cap (address or total).', labelNames: ['reason'], registers });
    this.#copiesRefused = new Counter({ name: 'oti_committed_copies_refused_total', help: 'Later copies of committed events refused (replays, damaged signatures), by error code; the committed status is left alone.', labelNames: ['code'], registers });
    this.#ackLatency = new Histogram({ name: 'oti_ack_latency_seconds', help: 'Time from the arrival of a lock event to its acknowledgement (durable).', buckets: [...ACK_LATENCY_BUCKETS], registers });
    const ingests = this.#ingests;
    new Gauge({
      name: 'oti_ingest_queue_depth',
      help: 'Lock events between arrival and answer.',
      registers,
      collect() {
        let depth = 0;
        for (const i of ingests) depth += i.depth;
        this.set(depth);
      },
    });
    const heights = (): Map<string, number> => {
      const all = new Map(this.#heights);
      for (const h of this.#heightProvider()) all.set(h.origin, h.size);
      return all;
    };
    new Gauge({
      name: 'oti_chain_entries',
      help: 'Entries in each stored chain (this gateway\'s own and its peers\'), by chain origin.',
      labelNames: ['chain'],
      registers,
      collect() {
        this.reset();
        for (const [chain, size] of heights()) this.set({ chain }, size);
      },
    });
    const drivers = (): readonly DriverStatus[] => this.#driverProvider();
    new Gauge({
      name: 'oti_driver_up',
      help: 'Whether each driver can take events (1 when running or degraded, else 0), labelled with its state.',
      labelNames: ['driver', 'state'],
      registers,
      collect() {
        this.reset();
        for (const d of drivers()) this.set({ driver: d.driver, state: d.state }, DRIVER_UP_STATES.has(d.state) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'oti_driver_links_open',
      help: 'Links of each driver that are open.',
      labelNames: ['driver'],
      registers,
      collect() {
        this.reset();
        for (const d of drivers()) this.set({ driver: d.driver }, d.links.filter((l) => l.state === 'open').length);
      },
    });
    const peers = (): readonly PeerState[] => this.#peerProvider();
    new Gauge({
      name: 'oti_peer_state',
      help: 'One series per known peer gateway with value 1, labelled with its sync state.',
      labelNames: ['peer', 'state'],
      registers,
      collect() {
        this.reset();
        for (const p of peers()) this.set({ peer: p.peer, state: p.state }, 1);
      },
    });
    new Gauge({
      name: 'oti_peer_lag_entries',
      help: 'Entries each peer gateway announced that are not stored here yet.',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of peers()) if (p.lag !== undefined) this.set({ peer: p.peer }, p.lag);
      },
    });
    this.#syncRefusals = new Counter({ name: 'oti_sync_refusals_total', help: 'Sync messages refused, by the peer that sent them and error code (the log shows them rate-limited).', labelNames: ['peer', 'code'], registers });
    this.#evidence = new Counter({ name: 'oti_sync_evidence_total', help: 'Equivocation evidence stored (found here or received), by chain.', labelNames: ['chain'], registers });
    const conditions = (): readonly HealthCondition[] => this.#healthProvider();
    new Gauge({
      name: 'oti_health_condition',
      help: 'One series per raised health condition with value 1, labelled with its id, level and code (none when healthy).',
      labelNames: ['condition', 'level', 'code'],
      registers,
      collect() {
        this.reset();
        for (const c of conditions()) this.set({ condition: c.id, level: c.level, code: c.code }, 1);
      },
    });
    this.#brokerMetrics(registers);
  }

  /**
   * Counts what an ingest pipeline reports and reads its queue depth at each scrape. Returns a
   * function that stops observing it.
   */
  observeIngest(ingest: Ingest): () => void {
    const stop = listen(ingest, {
      received: () => this.#received.inc(),
      committed: (_ev, _result, latencyMs) => {
        this.#committed.inc();
        this.#ackLatency.observe(Math.max(0, latencyMs) / 1000);
      },
      duplicate: () => this.#duplicates.inc(),
      rejected: (_ev, code) => this.#rejected.inc({ code }),
      recorded: (result) => this.#recorded.inc({ kind: result.entry.body.kind }),
      unenrolled: () => this.#unenrolled.inc(),
      notice: (n) => {
        const driver = n.kind === 'blind' ? n.driver : n.from.driver;
        // Codes are the registered error codes (a bounded label set); anything else counts as ERR_INTERNAL.
        if (n.kind === 'rejected') this.#notices.inc({ driver, kind: n.kind, code: Object.hasOwn(ERROR_CODES, n.code) ? n.code : 'ERR_INTERNAL' });
        else this.#notices.inc({ driver, kind: n.kind });
      },
      fault: () => this.#faults.inc(),
    });
    this.#ingests.add(ingest);
    return () => {
      stop();
      this.#ingests.delete(ingest);
    };
  }

  /** Sets the height of one chain; a provider's value for the same origin wins. */
  setChainHeight(origin: string, size: number): void {
    this.#heights.set(origin, size);
  }

  /** Reads the heights of the stored chains at each scrape (for example, own chain and peer chains). */
  chainHeightsFrom(provider: () => Iterable<ChainHeight>): void {
    this.#heightProvider = provider;
  }

  /** Reads the drivers' states at each scrape. */
  driversFrom(provider: () => readonly DriverStatus[]): void {
    this.#driverProvider = provider;
  }

  /** Reads the peers' states at each scrape (the sync layer provides them; none until then). */
  peersFrom(provider: () => readonly PeerState[]): void {
    this.#peerProvider = provider;
  }

  /** Reads the broker's sessions, queues and refusals (gateway/broker/broker.ts) at each scrape. */
  brokerFrom(provider: () => BrokerStats): void {
    this.#brokerProvider = provider;
  }

  /** The broker's figures, read at each scrape; none until brokerFrom is called. */
  #brokerMetrics(registers: Registry[]): void {
    const stats = (): BrokerStats | undefined => this.#brokerProvider?.();
    const gauge = (name: string, help: string, read: (s: BrokerStats) => number): void => {
      new Gauge({
        name, help, registers,
        collect() {
          const s = stats();
          if (s !== undefined) this.set(read(s));
        },
      });
    };
    const counter = (name: string, help: string, label: string, read: (s: BrokerStats) => Record<string, number>): void => {
      new Counter({
        name, help, labelNames: [label], registers,
        collect() {
          const s = stats();
          if (s === undefined) return;
          this.reset();
          for (const [value, n] of Object.entries(read(s))) this.inc({ [label]: value }, n);
        },
      });
    };
    gauge('oti_mqtt_sessions', 'Persistent MQTT sessions (clean session off) the broker holds, connected or not.', (s) => s.sessions);
    gauge('oti_mqtt_queued_messages', 'Messages queued on the broker for persistent sessions.', (s) => s.queued.messages);
    gauge('oti_mqtt_queued_bytes', 'Bytes (payload and topic) queued on the broker for persistent sessions.', (s) => s.queued.bytes);
    new Counter({
      name: 'oti_mqtt_queue_dropped_total', help: 'Queued MQTT messages dropped, oldest first, because a session\'s queue was full.', registers,
      collect() {
        const s = stats();
        if (s === undefined) return;
        this.reset();
        this.inc(s.queueDropped);
      },
    });
    gauge('oti_mqtt_retained_client_messages', 'Retained messages clients (peer gateways) hold on the broker; the gateway\'s own are not counted.', (s) => s.retained.messages);
    gauge('oti_mqtt_retained_client_bytes', 'Payload bytes of the retained messages clients hold on the broker.', (s) => s.retained.bytes);
    counter('oti_mqtt_publishes_refused_total', 'Client publishes the broker refused (the connection is closed), by error code.', 'code', (s) => s.publishesRefused);
    counter('oti_mqtt_retained_not_kept_total', 'Retained publishes of peer gateways passed on to live subscribers without being retained, by reason (not-on-roster: under the chain of a gateway not on the roster).', 'reason', (s) => s.retainedNotKept);
    counter('oti_mqtt_connections_refused_total', 'MQTT connections refused (closed unread) because a connection cap was reached, by cap (address: broker.maxConnectionsPerAddress, total: broker.maxConnections).', 'reason', (s) => s.connectionsRefused);
    counter('oti_mqtt_logins_refused_total', 'MQTT logins refused, by error code (ERR_MQTT_AUTH wrong credentials, ERR_MQTT_LOGIN_RATE too many failures, ERR_MQTT_BUSY too many checks waiting, ERR_MQTT_SESSIONS).', 'code', (s) => s.loginsRefused);
    counter('oti_mqtt_sessions_discarded_total', 'Persistent MQTT sessions discarded, by reason: over the principal\'s cap, or offline past the expiry.', 'reason', (s) => s.sessionsDiscarded);
  }

  /** Counts the sync layer's refusals and evidence. */
  observeSync(sync: SyncEventSource): void {
    sync.on('refused', (r) => this.#syncRefusals.inc({ peer: r.peer, code: r.code }));
    sync.on('evidence', (e) => this.#evidence.inc({ chain: e.origin }));
  }

  /** Reads the raised health conditions (gateway/api/health.ts) at each scrape. */
  healthFrom(provider: () => readonly HealthCondition[]): void {
    this.#healthProvider = provider;
  }

  /** Counts a local API connection refused by a connection cap (gateway/api/api-connection-cap.ts). */
  apiConnectionRefused(reason: 'address' | 'total'): void {
    this.#apiRefused.inc({ reason });
  }

  /** Counts a refused later copy of a committed event (gateway/notify/notifier.ts). */
  committedCopyRefused(code: string): void {
    this.#copiesRefused.inc({ code });
  }

  /** Registers the webhook gauges (gateway/notify/webhook-metrics.ts); `provider` is read at each scrape. */
  webhooksFrom(provider: () => readonly WebhookStatus[]): void {
    registerWebhookMetrics(this.registry, provider);
  }

  /** Registers the MQTT notification figures (gateway/notify/notification-metrics.ts); `provider` is read at each scrape. */
  notificationsFrom(provider: () => NotificationsStatus): void {
    registerNotificationMetrics(this.registry, provider);
  }

  /** The uplink's lag and pushes (docs/ARCHIVE.md §Uplink). */
  uplinkFrom(provider: () => UplinkStatus): void {
    const registers = [this.registry];
    new Gauge({ name: 'oti_uplink_behind_blocks', help: 'Blocks of the own chain not yet acknowledged by the central broker.', registers, collect() { this.set(provider().behind); } });
    new Gauge({ name: 'oti_uplink_pushed_blocks', help: 'Blocks acknowledged by the central broker since start.', registers, collect() { this.set(provider().pushed); } });
    new Gauge({ name: 'oti_uplink_connected', help: 'Whether the uplink is connected to the central broker (1) or not (0).', registers, collect() { this.set(provider().connected ? 1 : 0); } });
  }
}
