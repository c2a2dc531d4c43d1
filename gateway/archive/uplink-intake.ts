/**
 * The archive's intake from the central broker: a persistent MQTT session (clean: false, QoS 1)
 * on `<prefix>/+/+/block` and `<prefix>/+/+/cosig/+`, one message at a time, handed to the
 * Archiver (archiver.ts), acknowledged (PUBACK) only once its block is
 * committed to the database or refused with evidence. A message that could not be handled
 * because the database failed is not acknowledged: the connection is dropped and the broker
 * delivers it again after the reconnection. So every verified block is archived exactly once:
 * at least once by the acknowledgement rule, at most once by the (origin, n) key.
 *
 * A refused block (it does not verify, is of a site the archive does not trust, or equivocates)
 * is kept as evidence by the Archiver, and acknowledged.
 */
import { connect, type MqttClient, type IPublishPacket } from 'mqtt';
import type { Logger } from '../log.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { decodeRange } from '../sync/wire.js';
import { mqttClientOptions } from '../config/mqtt-client.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { ArchiveConfig } from './config.js';
import type { Archiver } from './archiver.js';

export class UplinkIntake {
  readonly #archiver: Archiver;
  readonly #cfg: ArchiveConfig;
  readonly #log: Logger;
  #client: MqttClient | undefined;

  constructor(archiver: Archiver, cfg: ArchiveConfig, log: Logger) {
    this.#archiver = archiver;
    this.#cfg = cfg;
    this.#log = log;
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  async start(): Promise<void> {
    const { url: brokerUrl, options } = await mqttClientOptions(this.#cfg.broker, this.#cfg.broker.clientId, 'broker');
    const url = brokerUrl.toString();
    const client = connect(url, { ...options, clean: false });
    this.#client = client;
    const filters = [`${this.#cfg.broker.topicPrefix}/+/+/block`, `${this.#cfg.broker.topicPrefix}/+/+/cosig/+`];
    client.handleMessage = (packet, done) => {
      this.#handle(packet).then(
        () => done(),
        (e: unknown) => {
          this.#log.error({ err: (e as Error).message, topic: packet.topic }, `archive: could not handle a message (${(e as Error).message}); the broker will deliver it again`);
          // No PUBACK: drop the connection so the broker sends the message again after the reconnection.
          client.stream.destroy();
        },
      );
    };
    client.on('connect', (ack) => {
      this.#log.info({ url, sessionPresent: ack.sessionPresent }, `archive: connected to the central broker, taking ${filters.join(' and ')}`);
      // Also with a session present: a session made by an older archive may lack the cosignature filter.
      client.subscribe(filters, { qos: 1 });
    });
    client.on('error', (e) => this.#log.warn({ err: e.message }, `archive: central broker: ${e.message}`));
  }

  async stop(): Promise<void> {
    await this.#client?.endAsync();
  }

  /** `<prefix>/<site>/<gw>/block` or `<prefix>/<site>/<gw>/cosig/<witness>`, else undefined. */
  #parseTopic(topic: string): { siteId: string; gatewayId: string; witness?: string } | undefined {
    const prefix = `${this.#cfg.broker.topicPrefix}/`;
    if (!topic.startsWith(prefix)) return undefined;
    const [siteId = '', gatewayId = '', kind, witness, ...more] = topic.slice(prefix.length).split('/');
    if (!ID_PATTERN.test(siteId) || !ID_PATTERN.test(gatewayId) || more.length > 0) return undefined;
    if (kind === 'block' && witness === undefined) return { siteId, gatewayId };
    if (kind === 'cosig' && witness !== undefined && ID_PATTERN.test(witness)) return { siteId, gatewayId, witness };
    return undefined;
  }

  async #handle(packet: IPublishPacket): Promise<void> {
    const t = this.#parseTopic(packet.topic);
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (t === undefined) {
      this.#archiver.dropped();
      this.#log.warn({ topic: packet.topic.slice(0, 256) }, 'archive: a message on a topic that names no site and gateway, dropped');
      return;
    }
    const { siteId, gatewayId } = t;
    const origin = `oti/${siteId}/${gatewayId}`;
    if (t.witness !== undefined) return this.#archiver.cosignature(origin, siteId, t.witness, payload);
    const max = this.#cfg.maxMessageBytes;
    return this.#archiver.range(origin, siteId, () => {
      if (payload.length > max) throw new OtiError('ERR_FRAME_TOO_LARGE', `an uplink message of ${payload.length} bytes is over maxMessageBytes (${max})`);
      return decodeRange(payload, max);
    }, payload);
  }
}
