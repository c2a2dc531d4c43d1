/**
 * Notifications to an external MQTT broker (Mosquitto, EMQX, a cloud broker), beside the embedded
 * one or instead of it (docs/MQTT.md §External broker): the same topics and payloads, published
 * by an mqtt.js client with the broker's own credentials and, for mqtts://, TLS verified against
 * `ca` (or the system CAs) with an optional client certificate.
 *
 * - The client's last will is `offline` on the gateway's state topic (retained); on every
 *   (re)connection it publishes `online` there again and emits `connect`, so the runtime can
 *   publish Home Assistant's discovery again on a broker that lost it.
 * - Nothing waits for the external broker: publish() hands the message to mqtt.js and resolves
 *   at once, so neither start-up nor the embedded broker's notifications nor ingest depend on
 *   it. mqtt.js sends in the order it was given (per lock, the notifier's order), holds what it
 *   could not send yet, and sends it after reconnecting. It reconnects every 2 s, also after a
 *   refused login (CONNACK error). Messages not yet acknowledged are at most `maxPending` (a
 *   documented cap); beyond it new ones are refused with ERR_MQTT_BACKLOG and counted as dropped.
 *   Notifications are best effort either way; the webhooks are the at-least-once path.
 * - Connection failures and drops are logged at warn the first time, then once a minute with the
 *   number left out (the same failure every 2 s would flood the log).
 * - Only topics of the map are published, as on the embedded broker.
 */
import { EventEmitter } from 'node:events';
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from '../log.js';
import { OtiError } from '../../ledger/base/errors.js';
import { mqttClientOptions, type MqttClientConfig } from '../config/mqtt-client.js';
import { RepeatLog } from '../repeat-log.js';
import type { MqttPublisher } from './homeassistant.js';
import type { TopicMap } from '../broker/topics.js';

/** `notifications.externalBroker` of the configuration (docs/CONFIGURATION.md). */
export interface ExternalBrokerConfig extends MqttClientConfig {
  readonly mode: 'beside' | 'instead';
  readonly maxPending: number;
}

/** What GET /status and /metrics show of the external broker (docs/API.md); JSON. */
export type ExternalBrokerStatus = {
  readonly url: string;
  readonly connected: boolean;
  /** Messages handed to mqtt.js and not yet acknowledged (sent, for QoS 0). */
  readonly pending: number;
  readonly maxPending: number;
  /** Messages refused with ERR_MQTT_BACKLOG since start. */
  readonly dropped: number;
};

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
  /** Repeated failures (connection, refused login, backlog) logged once a minute. */
  readonly #quiet = new RepeatLog();

  private constructor(client: MqttClient, url: string, topics: TopicMap, maxPending: number, log: Logger | undefined) {
    super();
    this.#client = client;
    this.url = url;
    this.#topics = topics;
    this.#maxPending = maxPending;
    this.#log = log;
  }

  /**
   * Checks the configuration (ERR_CONFIG naming the key; first-start.ts checks it before anything
   * is written), reads the password and TLS files, and starts connecting; resolves at once,
   * connected or not.
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
      if (up) o.logger?.warn({ url: shown, pending: ext.pending }, `external MQTT broker ${shown}: disconnected; reconnecting every ${RECONNECT_MS / 1000} s`);
      up = false;
    });
    client.on('error', (e: Error & { code?: unknown }) => ext.#warn(String(e.code ?? e.message), { err: e.message }, `external MQTT broker ${shown}: ${e.message || String(e.code)}; trying again every ${RECONNECT_MS / 1000} s`));
    client.on('message', (topic, payload) => ext.emit('message', topic, payload));
    return ext;
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  get pending(): number {
    return this.#pending;
  }

  status(): ExternalBrokerStatus {
    return { url: this.url, connected: this.connected, pending: this.#pending, maxPending: this.#maxPending, dropped: this.dropped };
  }

  /**
   * Hands the message to mqtt.js, which sends it when it can, in order; resolves at once. At
   * `maxPending` unacknowledged messages it is refused (ERR_MQTT_BACKLOG), counted and logged here.
   */
  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (this.#topics.parse(topic) === undefined) return Promise.reject(new OtiError('ERR_ARGUMENT', `${topic} is not a topic of the map`, { argument: 'topic', topic }));
    if (this.#pending >= this.#maxPending) {
      this.dropped++;
      const e = new OtiError('ERR_MQTT_BACKLOG', `${this.#pending} notifications are waiting for ${this.url}; new ones are dropped`, { url: this.url, limit: this.#maxPending });
      this.#warn(e.code, { code: e.code, dropped: this.dropped }, `external MQTT broker ${this.url}: ${e.message} (${this.dropped} so far)`);
      return Promise.reject(e);
    }
    this.#pending++;
    // The callback comes with the PUBACK (QoS 1), once written (QoS 0), or with an error when the client is closed.
    this.#client.publish(topic, payload, opts, () => this.#pending--);
    return Promise.resolve();
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

  /** A warning of kind `kind`: at once the first time, then once a minute with the number left out. */
  #warn(kind: string, fields: Record<string, unknown>, message: string): void {
    const admitted = this.#quiet.admit(this.url, kind, Date.now());
    if (admitted === undefined) return;
    const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more like it since the last such line)` : '';
    this.#log?.warn({ url: this.url, ...fields, suppressed: admitted.suppressed }, `${message}${more}`);
  }
}

/**
 * Mode `beside`: each message goes to the embedded broker, whose publish is awaited, and is handed
 * to the external one, whose backlog or outage never delays nor fails it (the external broker
 * counts and logs its own drops).
 */
export class FanOut implements MqttPublisher {
  readonly #embedded: MqttPublisher;
  readonly #external: ExternalBroker;

  constructor(embedded: MqttPublisher, external: ExternalBroker) {
    this.#embedded = embedded;
    this.#external = external;
  }

  async publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    this.#external.publish(topic, payload, opts).catch(() => undefined);
    await this.#embedded.publish(topic, payload, opts);
  }
}
