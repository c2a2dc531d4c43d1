/**
 * Webhook gauges for /metrics (docs/API.md §Metrics, docs/WEBHOOKS.md §Status), read from the
 * dispatcher's status() at each scrape. One series per hook, labelled with its id (the cursor
 * file's name; /status maps it to the redacted URL).
 */
import { Gauge, type Registry } from 'prom-client';
import type { WebhookStatus } from './webhooks.js';

type Read = (h: WebhookStatus) => number | undefined;

const GAUGES: readonly { name: string; help: string; read: Read }[] = [
  { name: 'oti_webhook_cursor', help: 'Next chain index each webhook delivers.', read: (h) => h.cursor },
  { name: 'oti_webhook_behind_entries', help: 'Entries committed but not yet delivered to each webhook (its lag).', read: (h) => h.behind },
  { name: 'oti_webhook_failing', help: '1 while the last attempt of each webhook failed (lastError set) or the hook is disabled, else 0.', read: (h) => (h.lastError !== undefined || h.state === 'disabled' ? 1 : 0) },
  { name: 'oti_webhook_last_attempt_timestamp_seconds', help: 'When each webhook last started an attempt (absent before the first).', read: (h) => (h.lastAttemptAt !== undefined ? h.lastAttemptAt / 1000 : undefined) },
  { name: 'oti_webhook_delivered_entries', help: 'Entries each webhook delivered (2xx) since start.', read: (h) => h.delivered },
  { name: 'oti_webhook_failed_attempts', help: 'Failed attempts of each webhook since start.', read: (h) => h.failed },
  { name: 'oti_webhook_skipped_entries', help: 'Entries each webhook gave up on after maxAttempts since start.', read: (h) => h.skipped },
];

/** Registers the webhook gauges on `registry`; `hooks` is read at each scrape. */
export function registerWebhookMetrics(registry: Registry, hooks: () => readonly WebhookStatus[]): void {
  for (const g of GAUGES) {
    new Gauge({
      name: g.name,
      help: g.help,
      labelNames: ['hook'],
      registers: [registry],
      collect() {
        this.reset();
        for (const h of hooks()) {
          const v = g.read(h);
          if (v !== undefined) this.set({ hook: h.id }, v);
        }
      },
    });
  }
}
