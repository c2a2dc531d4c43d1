/**
 * The production sync transport: one mqtt.js client per link (gateway/sync/transport.ts states
 * the contract). mqtt.js reconnects a dropped link every second; each reconnection logs in with a
 * fresh credential, as a clean session whose subscriptions the node makes again.
 */
import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { SyncLink, SyncLinkEvents, SyncLinkOptions, SyncQos, SyncTransport } from './transport.js';

export class MqttTransport implements SyncTransport {
  /** `extra`: mqtt.js options for every link (TLS `ca`, `rejectUnauthorized`, …); they win over the defaults. */
  constructor(private readonly extra: Partial<IClientOptions> = {}) {}

  connect(url: string, opts: SyncLinkOptions): SyncLink {
    return new MqttLink(url, opts, this.extra);
  }
}

class MqttLink extends EventEmitter<SyncLinkEvents> implements SyncLink {
  readonly #client: MqttClient;

  constructor(
    readonly url: string,
    opts: SyncLinkOptions,
    extra: Partial<IClientOptions>,
  ) {
    super();
    const login = opts.login();
    const client = connect(url, {
      clientId: opts.clientId,
      username: login.username,
      password: login.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      clean: true,
      resubscribe: false,
      will: { topic: opts.will.topic, payload: opts.will.payload, qos: 1, retain: true },
      ...extra,
    });
    this.#client = client;
    // A credential is fresh for 10 minutes: each reconnection logs in with a new one.
    client.on('reconnect', () => {
      client.options.password = opts.login().password;
    });
    client.on('message', (topic, payload, packet) => this.emit('message', topic, payload, packet.retain));
    client.on('error', (e) => this.emit('error', e));
    client.on('close', () => this.emit('close'));
    client.on('connect', () => this.emit('connect'));
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  async subscribe(filters: readonly string[], qos: SyncQos): Promise<void> {
    await this.#client.subscribeAsync([...filters], { qos });
  }

  async publish(topic: string, payload: Buffer | string, opts: { qos: SyncQos; retain: boolean }): Promise<void> {
    await this.#client.publishAsync(topic, payload, { qos: opts.qos, retain: opts.retain });
  }

  async end(): Promise<void> {
    await this.#client.endAsync(true);
  }
}
