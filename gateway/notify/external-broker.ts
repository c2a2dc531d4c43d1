/**
 * Notifications to an external MQTT broker (Mosquitto, EMQX, a cloud broker), beside the embedded
 * one or instead of it (docs/MQTT.md §External broker): the same topics and payloads, published
 * by an mqtt.js client with the broker's own credentials and, for mqtts://, TLS verified against
 * `ca` (or the system CAs) with an optional client certificate.
 *
 * - The client's last will is `offline` on the gateway's state topic (retained); on every
 *   (re)connection it publishes `online` there again and emits `connect`, so the runtime can
 *   publish Home Assistant's discovery again on a broker that lost it.
 * - Start-up never waits for the external broker: the gateway runs while it is unreachable, and
 *   mqtt.js reconnects every few seconds. Messages published meanwhile wait in mqtt.js's queue;
 *   at most `maxPending` of them (a documented cap), beyond which new ones are refused with
 *   ERR_MQTT_BACKLOG and counted as dropped. Notifications are best effort either way; the
 *   webhooks are the at-least-once path.
 * - Only topics of the map are published, as on the embedded broker.
 */
import { EventEmitter } from 'node:events';
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from '../log.js';
import { OtiError } from '../../ledger/base/errors.js';
import { mqttClientOptions, type MqttClientConfig } from '../config/mqtt-client.js';
import type { MqttPublisher } from './homeassistant.js';
import type { TopicMap } from '../broker/topics.js';

/** `notifications.externalBroker` of the configuration (docs/CONFIGURATION.md). */
export interface ExternalBrokerConfig extends MqttClientConfig {
  readonly mode: 'beside' | 'instead';
  readonly maxPending: number;
}

/** mqtt.js reconnects this often (gateway/config/mqtt-client.ts); said in the log. */
const RECONNECT_MS = 2000;
const CONNECT_TIMEOUT_MS = 10_000;
const CLOSE_GRACE_MS = 1000;

export class ExternalBroker extends EventEmitter<{ connect: []; message: [topic: string, payload: Buffer] }> implements MqttPublisher {
  readonly url: string;
  /** Notifications refused because `maxPending` were waiting. */
  dropped = 0;
  #pending = 0;
  readonly #client: MqttClient;
  readonly #maxPending: number;
  readonly #topics: TopicMap;
  readonly #log: Logger | undefined;

  private constructor(client: MqttClient, url: string, topics: TopicMap, maxPending: number, log: Logger | undefined) {
    super();
    this.#client = client;
    this.url = url;
    this.#topics = topics;
    this.#maxPending = maxPending;
    this.#log = log;
  }

  /**
   * Checks the configuration (ERR_CONFIG naming the key), reads the password and TLS files, and
   * starts connecting; resolves at once, connected or not.
   */
  static async start(c: ExternalBrokerConfig & { url: string }, o: { topics: TopicMap; gatewayId: string; logger?: Logger }): Promise<ExternalBroker> {
    const { url, options } = await mqttClientOptions(c, `oti-${o.topics.site}-${o.gatewayId}`.slice(0, 128), 'notifications.externalBroker');
    const state = o.topics.gatewayState(o.gatewayId);
    const will = { topic: state, payload: Buffer.from(JSON.stringify({ state: 'offline', at: Date.now() })), qos: 1 as const, retain: true };
    const client = connect(url.toString(), { ...options, connectTimeout: CONNECT_TIMEOUT_MS, will });
    const shown = `${url.protocol}//${url.host}`;
    const ext = new ExternalBroker(client, shown, o.topics, c.maxPending, o.logger);
    let up = false;
    client.on('connect', () => {
      up = true;
      o.logger?.info({ url: shown }, `external MQTT broker ${shown}: connected`);
      client.publish(state, JSON.stringify({ state: 'online', at: Date.now() }), { qos: 1, retain: true });
      ext.emit('connect');
    });
    client.on('close', () => {
      if (up) o.logger?.warn({ url: shown }, `external MQTT broker ${shown}: disconnected; reconnecting every ${RECONNECT_MS / 1000} s`);
      up = false;
    });
    client.on('error', (e) => o.logger?.warn({ url: shown, err: e.message }, `external MQTT broker ${shown}: ${e.message}`));
    client.on('message', (topic, payload) => ext.emit('message', topic, payload));
    return ext;
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  get pending(): number {
    return this.#pending;
  }

  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (this.#topics.parse(topic) === undefined) return Promise.reject(new OtiError('ERR_ARGUMENT', `${topic} is not a topic of the map`, { argument: 'topic', topic }));
    if (this.#pending >= this.#maxPending) {
      this.dropped++;
      return Promise.reject(new OtiError('ERR_MQTT_BACKLOG', `${this.#pending} notifications are waiting for ${this.url}; this one is dropped`, { url: this.url, limit: this.#maxPending }));
    }
    this.#pending++;
    return this.#client
      .publishAsync(topic, payload, opts)
      .then(() => undefined)
      .finally(() => this.#pending--);
  }

  /** Subscribes (again after each reconnection) to `topic`, delivered as `message` events. */
  async onMessage(topic: string, handler: (payload: Buffer) => void): Promise<void> {
    this.on('message', (t, payload) => {
      if (t === topic) handler(payload);
    });
    this.#client.subscribe(topic, { qos: 0 }, (e) => {
      if (e) this.#log?.warn({ url: this.url, topic, err: e.message }, 'external MQTT broker: subscription failed');
    });
    await Promise.resolve();
  }

  /** Sends what is in flight (up to 1 s) and disconnects. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#client.endAsync(false), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    await this.#client.endAsync(true);
  }
}

/** Publishes to every target; fails (after all were tried) with the first failure. */
export class FanOut implements MqttPublisher {
  readonly #targets: readonly MqttPublisher[];

  constructor(targets: readonly MqttPublisher[]) {
    this.#targets = targets;
  }

  async publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    const results = await Promise.allSettled(this.#targets.map((t) => t.publish(topic, payload, opts)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}
