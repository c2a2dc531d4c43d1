/**
 * MQTT notification figures for /metrics (docs/API.md §Metrics), read at each scrape from what
 * GET /status shows under `notifications`: the notifier's queue and, when one is set, the
 * external broker's connection and backlog (docs/MQTT.md §External broker).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ExternalBroker, ExternalBrokerStatus } from './external-broker.js';
import type { MqttNotifier } from './notifier.js';

/** GET /status `notifications` (a type, not an interface: it is JSON for the API). */
export type NotificationsStatus = {
  /** Notifications waiting in the notifier's queue (at most 20,000). */
  readonly pending: number;
  /** Notifications dropped, oldest first, because that queue was full. */
  readonly dropped: number;
  readonly externalBroker?: ExternalBrokerStatus;
};

/** What the notifier and the external broker (either may be off) report now. */
export function notificationsStatus(notifier: MqttNotifier | undefined, ext: ExternalBroker | undefined): NotificationsStatus {
  return { pending: notifier?.pending ?? 0, dropped: notifier?.dropped ?? 0, ...(ext !== undefined ? { externalBroker: ext.status() } : {}) };
}

/** Registers the notification gauges and counters on `registry`; `read` is called at each scrape. */
export function registerNotificationMetrics(registry: Registry, read: () => NotificationsStatus): void {
  const registers = [registry];
  const gauge = (name: string, help: string, value: (s: NotificationsStatus) => number | undefined): void => {
    new Gauge({
      name, help, registers,
      collect() {
        const v = value(read());
        if (v !== undefined) this.set(v);
      },
    });
  };
  const counter = (name: string, help: string, value: (s: NotificationsStatus) => number | undefined): void => {
    new Counter({
      name, help, registers,
      collect() {
        const v = value(read());
        this.reset();
        if (v !== undefined) this.inc(v);
      },
    });
  };
  gauge('oti_notifications_pending', 'MQTT notifications waiting in the notifier\'s queue.', (s) => s.pending);
  counter('oti_notifications_dropped_total', 'MQTT notifications dropped, oldest first, because the notifier\'s queue was full.', (s) => s.dropped);
  gauge('oti_external_broker_connected', 'Whether the external MQTT broker is connected (1) or not (0); absent without one.', (s) => (s.externalBroker === undefined ? undefined : s.externalBroker.connected ? 1 : 0));
  gauge('oti_external_broker_pending_messages', 'Notifications handed to the external MQTT broker\'s client and not yet acknowledged (at most notifications.externalBroker.maxPending).', (s) => s.externalBroker?.pending);
  counter('oti_external_broker_dropped_total', 'Notifications refused with ERR_MQTT_BACKLOG because maxPending were waiting for the external MQTT broker.', (s) => s.externalBroker?.dropped);
}
