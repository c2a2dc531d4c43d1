/**
 * The archive's intake from the central broker: a persistent MQTT session (clean: false, QoS 1)
 * on `<prefix>/+/+/block`, one message at a time, acknowledged (PUBACK) only once its block is
 * committed to the database or refused with evidence. A message that could not be handled
 * because the database failed is not acknowledged: the connection is dropped and the broker
 * delivers it again after the reconnection. So every verified block is archived exactly once:
 * at least once by the acknowledgement rule, at most once by the (origin, n) key.
 *
 * A refused block (it does not verify, is of a site the archive does not trust, or equivocates)
 * is kept as evidence (`evidence` table, up to maxEvidencePerChain rows per chain), and the
 * chain's archive stays where it was: other chains are not affected.
 */
import { connect, type MqttClient, type IPublishPacket } from 'mqtt';
import type { Pool } from 'mysql2/promise';
import type { Logger } from '../log.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import type { SiteTrust } from '../../ledger/roster.js';
import { decodeRange } from '../sync/wire.js';
import { mqttClientOptions } from '../config/mqtt-client.js';
import { ArchivedChain } from './archived-chain.js';
import type { ArchiveConfig } from './config.js';

export interface IntakeCounts {
  archived: number;
  duplicates: number;
  refused: number;
  evidenceDropped: number;
}

/** Errors that say the database (not the message) failed: the message is not acknowledged. */
function isTransient(e: unknown): boolean {
  return !isOtiError(e) || e.code === 'ERR_STORE_CORRUPT';
}

export class UplinkIntake {
  readonly counts: IntakeCounts = { archived: 0, duplicates: 0, refused: 0, evidenceDropped: 0 };
  readonly #pool: Pool;
  readonly #cfg: ArchiveConfig;
  readonly #log: Logger;
  readonly #trust = new Map<string, SiteTrust>();
  readonly #chains = new Map<string, ArchivedChain>();
  #client: MqttClient | undefined;

  constructor(pool: Pool, cfg: ArchiveConfig, log: Logger) {
    this.#pool = pool;
    this.#cfg = cfg;
    this.#log = log;
    for (const s of cfg.sites) this.#trust.set(s.siteId, s);
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  async start(): Promise<void> {
    const { url: brokerUrl, options } = await mqttClientOptions(this.#cfg.broker, this.#cfg.broker.clientId, 'broker');
    const url = brokerUrl.toString();
    const client = connect(url, { ...options, clean: false });
    this.#client = client;
    const filter = `${this.#cfg.broker.topicPrefix}/+/+/block`;
    client.handleMessage = (packet, done) => {
      this.#handle(packet).then(
        () => done(),
        (e: unknown) => {
          this.#log.error({ err: (e as Error).message, topic: packet.topic }, `archive: could not handle a block (${(e as Error).message}); the broker will deliver it again`);
          // No PUBACK: drop the connection so the broker sends the message again after the reconnection.
          client.stream.destroy();
        },
      );
    };
    client.on('connect', (ack) => {
      this.#log.info({ url, sessionPresent: ack.sessionPresent }, `archive: connected to the central broker, taking ${filter}`);
      if (!ack.sessionPresent) client.subscribe(filter, { qos: 1 });
    });
    client.on('error', (e) => this.#log.warn({ err: e.message }, `archive: central broker: ${e.message}`));
  }

  async stop(): Promise<void> {
    await this.#client?.endAsync();
  }

  async #handle(packet: IPublishPacket): Promise<void> {
    const parts = packet.topic.split('/');
    const [siteId, gatewayId] = parts.slice(-3, -1) as [string, string];
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (parts.length < 4 || !ID_PATTERN.test(siteId) || !ID_PATTERN.test(gatewayId)) {
      this.counts.refused++;
      this.#log.warn({ topic: packet.topic.slice(0, 256) }, 'archive: a message on a topic that names no site and gateway, dropped');
      return;
    }
    const origin = `oti/${siteId}/${gatewayId}`;
    try {
      await this.#accept(origin, siteId, payload);
    } catch (e) {
      if (isTransient(e)) throw e;
      await this.#evidence(origin, siteId, payload, e as OtiError);
    }
  }

  async #accept(origin: string, siteId: string, payload: Buffer): Promise<void> {
    const trust = this.#trust.get(siteId);
    if (trust === undefined) throw new OtiError('ERR_ROSTER', `site ${siteId} is not one the archive trusts (add its site.json to sites)`, { site: siteId });
    if (payload.length > this.#cfg.maxMessageBytes) throw new OtiError('ERR_FRAME_TOO_LARGE', `an uplink message of ${payload.length} bytes is over maxMessageBytes (${this.#cfg.maxMessageBytes})`);
    const range = decodeRange(payload, this.#cfg.maxMessageBytes);
    if (range.chain !== origin) throw new OtiError('ERR_BLOCK_INVALID', `a message of chain ${range.chain} on the topic of ${origin}`);
    let chain = this.#chains.get(origin);
    if (chain === undefined) {
      chain = new ArchivedChain(this.#pool, origin, trust);
      this.#chains.set(origin, chain);
    }
    let at = range.first;
    for (const b of range.blocks) {
      const h = decodeBlockHeader(b.h);
      if (h.first !== at || at - range.first + h.count > range.entries.length) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} does not fit the entries of the message`);
      const entries = range.entries.slice(at - range.first, at - range.first + h.count);
      const r = await chain.accept(b.h, parseCheckpoint(b.cp), entries);
      if (r === 'archived') this.counts.archived++;
      else this.counts.duplicates++;
      at += h.count;
    }
  }

  async #evidence(origin: string, siteId: string, payload: Buffer, e: OtiError): Promise<void> {
    this.counts.refused++;
    const block = typeof e.details?.['block'] === 'number' ? e.details['block'] : null;
    this.#log.warn({ origin, code: e.code, block }, `archive: refused a block of ${origin}: ${e.code} ${e.message}`);
    const [rows] = await this.#pool.execute('SELECT COUNT(*) AS c FROM evidence WHERE origin = ?', [origin]);
    if (Number((rows as { c: number | string }[])[0]?.c ?? 0) >= this.#cfg.maxEvidencePerChain) {
      this.counts.evidenceDropped++;
      return;
    }
    await this.#pool.execute('INSERT INTO evidence (origin, site_id, block_n, code, message, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [origin, siteId, block, e.code, e.message.slice(0, 4096), payload, Date.now()]);
  }
}
