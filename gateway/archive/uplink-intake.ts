/**
 * The archive's intake from the central broker: persistent MQTT sessions (clean: false, QoS 1)
 * on `<prefix>/+/+/block` and `<prefix>/+/+/cosig/+`, each taking one message at a time, handed
 * to the Archiver (archiver.ts), acknowledged (PUBACK) only once its block is committed to the
 * database or refused with evidence. A message that could not be handled because the database
 * failed is not acknowledged: the connection is dropped and the broker delivers it again after
 * the reconnection. So every verified block is archived exactly once: at least once by the
 * acknowledgement rule, at most once by the (origin, n) key.
 *
 * A refused block (it does not verify, is of a site the archive does not trust, or equivocates)
 * is kept as evidence by the Archiver, and acknowledged.
 *
 * With `broker.topics: sites` a session subscribes the topics of the trusted sites only (one
 * archive process of several, each with its partition of sites in `sites`). With
 * `broker.sessions` n > 1 (which implies `topics: sites`) the trusted sites are split over n sessions by a hash of the site
 * id (sessionOf), each subscribing its sites' topics only, so n blocks of different sites are
 * verified and written side by side while each chain still arrives in order on one session
 * (MQTT keeps order per session, and a shared subscription would not). Session 0 keeps the
 * configured client id, session k the id with `-k` appended. A session subscribes its filters
 * and, once every session's are granted, unsubscribes every other configured filter, so a
 * session made under another n (persistent subscriptions outlive the archive) stops taking what
 * another session takes, and no block goes out while no session subscribes its topic.
 */
import { connect, type MqttClient, type IPublishPacket } from 'mqtt';
import type { Logger } from '../log.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { decodeRange } from '../sync/wire.js';
import { mqttClientOptions } from '../config/mqtt-client.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { ArchiveConfig } from './config.js';
import type { Archiver } from './archiver.js';

/** Subscriptions or unsubscriptions per SUBSCRIBE/UNSUBSCRIBE packet. */
const FILTERS_PER_PACKET = 500;

/** Which of `n` sessions takes site `siteId`: FNV-1a of its id, modulo n (stable across restarts). */
export function sessionOf(siteId: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < siteId.length; i++) h = Math.imul(h ^ siteId.charCodeAt(i), 0x01000193) >>> 0;
  return h % n;
}

/**
 * The topic filters of session k of n: every site's (`all`, one session only) or those of the
 * trusted sites the session takes; `drop` is every other filter a session of this archive could
 * have subscribed.
 */
export function sessionFilters(prefix: string, siteIds: readonly string[], k: number, n: number, topics: 'all' | 'sites'): { take: string[]; drop: string[] } {
  const wildcard = [`${prefix}/+/+/block`, `${prefix}/+/+/cosig/+`];
  const ofSite = (site: string): string[] => [`${prefix}/${site}/+/block`, `${prefix}/${site}/+/cosig/+`];
  if (topics === 'all') return { take: wildcard, drop: siteIds.flatMap(ofSite) };
  const take: string[] = [];
  const drop = [...wildcard];
  for (const site of siteIds) (sessionOf(site, n) === k ? take : drop).push(...ofSite(site));
  return { take, drop };
}

export class UplinkIntake {
  readonly #archiver: Archiver;
  readonly #cfg: ArchiveConfig;
  readonly #log: Logger;
  readonly #clients: MqttClient[] = [];

  constructor(archiver: Archiver, cfg: ArchiveConfig, log: Logger) {
    this.#archiver = archiver;
    this.#cfg = cfg;
    this.#log = log;
  }

  /** Whether every session is connected. */
  get connected(): boolean {
    return this.#clients.length > 0 && this.#clients.every((c) => c.connected);
  }

  async start(): Promise<void> {
    const n = this.#cfg.broker.sessions;
    const sites = this.#cfg.sites.map((s) => s.siteId);
    for (let k = 0; k < n; k++) {
      const clientId = k === 0 ? this.#cfg.broker.clientId : `${this.#cfg.broker.clientId}-${k}`;
      const filters = sessionFilters(this.#cfg.broker.topicPrefix, sites, k, n, this.#cfg.broker.topics);
      if (filters.take.length === 0) this.#log.warn({ clientId }, `archive: intake session ${k} of ${n} has no trusted site to take`);
      await this.#session(clientId, filters, n > 1 ? `session ${k} of ${n}` : '');
    }
  }

  /** Sessions whose filters the broker has granted (SUBACK) since the start, out of all of them. */
  readonly #subscribed = new Set<MqttClient>();
  /** Run once every session holds its filters: each then drops the others'. */
  readonly #whenAllSubscribed: (() => void)[] = [];

  async #session(clientId: string, filters: { take: string[]; drop: string[] }, name: string): Promise<void> {
    const { url: brokerUrl, options } = await mqttClientOptions({ ...this.#cfg.broker, clientId }, clientId, 'broker');
    const url = brokerUrl.toString();
    const client = connect(url, { ...options, clean: false });
    this.#clients.push(client);
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
    const drop = (): void => {
      for (let i = 0; i < filters.drop.length; i += FILTERS_PER_PACKET) client.unsubscribe(filters.drop.slice(i, i + FILTERS_PER_PACKET));
    };
    client.on('connect', (ack) => {
      const what = filters.take.length <= 2 ? filters.take.join(' and ') : `the topics of ${filters.take.length / 2} sites`;
      this.#log.info({ url, clientId, sessionPresent: ack.sessionPresent }, `archive: connected to the central broker${name === '' ? '' : ` (${name})`}, taking ${what}`);
      // Also with a session present: a session made by an older archive may lack a filter, or hold another's.
      const packets: Promise<unknown>[] = [];
      for (let i = 0; i < filters.take.length; i += FILTERS_PER_PACKET) packets.push(client.subscribeAsync(filters.take.slice(i, i + FILTERS_PER_PACKET), { qos: 1 }));
      // What the session must drop (a wildcard, or sites another session now takes) is dropped only once
      // every session holds its own filters, so that no block is published while nobody subscribes it.
      void Promise.all(packets).then(
        () => {
          if (this.#subscribed.size === this.#cfg.broker.sessions) return drop();
          this.#subscribed.add(client);
          this.#whenAllSubscribed.push(drop);
          if (this.#subscribed.size === this.#cfg.broker.sessions) for (const f of this.#whenAllSubscribed.splice(0)) f();
        },
        (e: unknown) => this.#log.warn({ err: (e as Error).message, clientId }, `archive: subscribing on the central broker: ${(e as Error).message}`),
      );
    });
    client.on('error', (e) => this.#log.warn({ err: e.message, clientId }, `archive: central broker: ${e.message}`));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.endAsync()));
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
