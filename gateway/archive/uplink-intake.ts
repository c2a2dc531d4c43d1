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
import type { Logger } from 'pino';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { decodeRange } from '../sync/wire.js';
import { mqttClientOptions } from '../config/mqtt-client.js';
import { ArchivedChain, type IncomingBlock } from './archived-chain.js';
import type { SignaturePool } from '../../ledger/sigpool.js';
import type { ArchiveConfig, ArchiveSite } from './config.js';
import { acceptCosignature, refreshCoverage } from './cosignatures.js';

export interface IntakeCounts {
  archived: number;
  duplicates: number;
  refused: number;
  evidenceDropped: number;
  /** Cosignatures recorded (each a larger size than the witness had cosigned). */
  cosignatures: number;
  /** Cosignatures held back for their block or witness, and those dropped over the cap. */
  cosignaturesPending: number;
  cosignaturesDropped: number;
}

/** Cosignatures held back at most (the oldest goes first). */
const MAX_PENDING_COSIGNATURES = 4096;

interface PendingCosignature {
  readonly origin: string;
  readonly siteId: string;
  readonly witness: string;
  readonly payload: Buffer;
}

/** Errors that say the database (not the message) failed: the message is not acknowledged. */
function isTransient(e: unknown): boolean {
  return !isOtiError(e) || e.code === 'ERR_STORE_CORRUPT';
}

export class UplinkIntake {
  readonly #counts = { archived: 0, duplicates: 0, refused: 0, evidenceDropped: 0, cosignatures: 0, cosignaturesDropped: 0 };
  readonly #pending = new Map<string, PendingCosignature>();
  readonly #pool: Pool;
  readonly #cfg: ArchiveConfig;
  readonly #log: Logger;
  readonly #trust = new Map<string, ArchiveSite>();
  readonly #chains = new Map<string, ArchivedChain>();
  readonly #sigPool: SignaturePool | undefined;
  #client: MqttClient | undefined;

  /** `sigPool` checks lock signatures on worker threads; without it, on this thread. */
  constructor(pool: Pool, cfg: ArchiveConfig, log: Logger, sigPool?: SignaturePool) {
    this.#pool = pool;
    this.#sigPool = sigPool;
    this.#cfg = cfg;
    this.#log = log;
    for (const s of cfg.sites) this.#trust.set(s.siteId, s);
  }

  get counts(): IntakeCounts {
    return { ...this.#counts, cosignaturesPending: this.#pending.size };
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
      this.#counts.refused++;
      this.#log.warn({ topic: packet.topic.slice(0, 256) }, 'archive: a message on a topic that names no site and gateway, dropped');
      return;
    }
    const { siteId, gatewayId } = t;
    const origin = `oti/${siteId}/${gatewayId}`;
    try {
      if (t.witness !== undefined) await this.#cosignature(origin, siteId, t.witness, payload);
      else await this.#accept(origin, siteId, payload);
    } catch (e) {
      if (isTransient(e)) throw e;
      await this.#evidence(origin, siteId, payload, e as OtiError);
    }
  }

  async #cosignature(origin: string, siteId: string, witness: string, payload: Buffer): Promise<void> {
    const site = this.#trust.get(siteId);
    if (site === undefined) throw new OtiError('ERR_ROSTER', `site ${siteId} is not one the archive trusts (add its site.json to sites)`, { site: siteId });
    const key = `${origin} ${witness}`;
    const r = await acceptCosignature(this.#pool, origin, siteId, witness, payload, Date.now());
    this.#pending.delete(key);
    if (r === 'pending') {
      // Checked again after the site's next archived blocks; the oldest held back goes first.
      if (this.#pending.size >= MAX_PENDING_COSIGNATURES) {
        this.#pending.delete(this.#pending.keys().next().value!);
        this.#counts.cosignaturesDropped++;
      }
      this.#pending.set(key, { origin, siteId, witness, payload });
      return;
    }
    if (r === 'older') return;
    this.#counts.cosignatures++;
    await refreshCoverage(this.#pool, siteId, site.quorum);
  }

  /** Cosignatures of the site held back for their block or witness, checked again. */
  async #retryPending(siteId: string): Promise<void> {
    for (const p of [...this.#pending.values()]) {
      if (p.siteId !== siteId) continue;
      try {
        await this.#cosignature(p.origin, p.siteId, p.witness, p.payload);
      } catch (e) {
        this.#pending.delete(`${p.origin} ${p.witness}`);
        if (isTransient(e)) throw e;
        await this.#evidence(p.origin, p.siteId, p.payload, e as OtiError);
      }
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
      chain = new ArchivedChain(this.#pool, origin, trust, this.#sigPool);
      this.#chains.set(origin, chain);
    }
    let at = range.first;
    const blocks: IncomingBlock[] = [];
    for (const b of range.blocks) {
      const h = decodeBlockHeader(b.h);
      if (h.first !== at || at - range.first + h.count > range.entries.length) throw new OtiError('ERR_BLOCK_INVALID', `block ${h.n} does not fit the entries of the message`);
      blocks.push({ headerBytes: b.h, checkpoint: parseCheckpoint(b.cp), entries: range.entries.slice(at - range.first, at - range.first + h.count) });
      at += h.count;
    }
    // The message's blocks are one run: verified, then written in one transaction.
    const r = await chain.acceptRun(blocks);
    for (const x of r.results) {
      if (x === 'archived') this.#counts.archived++;
      else this.#counts.duplicates++;
    }
    if (r.results.includes('archived')) {
      // A new chain changes the site's majority; new blocks may be what held cosignatures back.
      if (decodeBlockHeader(blocks[0]!.headerBytes).n === 0) await refreshCoverage(this.#pool, siteId, trust.quorum);
      await this.#retryPending(siteId);
    }
    if (r.refusal !== undefined) throw r.refusal;
  }

  async #evidence(origin: string, siteId: string, payload: Buffer, e: OtiError): Promise<void> {
    this.#counts.refused++;
    const block = typeof e.details?.['block'] === 'number' ? e.details['block'] : null;
    this.#log.warn({ origin, code: e.code, block }, `archive: refused a block of ${origin}: ${e.code} ${e.message}`);
    const [rows] = await this.#pool.execute('SELECT COUNT(*) AS c FROM evidence WHERE origin = ?', [origin]);
    if (Number((rows as { c: number | string }[])[0]?.c ?? 0) >= this.#cfg.maxEvidencePerChain) {
      this.#counts.evidenceDropped++;
      return;
    }
    await this.#pool.execute('INSERT INTO evidence (origin, site_id, block_n, code, message, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [origin, siteId, block, e.code, e.message.slice(0, 4096), payload, Date.now()]);
  }
}
