/**
 * Pulling a site's chains as a read-only peer (docs/ARCHIVE.md §Pulling from sites): the archive
 * connects to a site's broker with its own credentials and asks the gateways for ranges of their
 * chains with the sync protocol, as a gateway does (docs/PROTOCOL.md §Sync, gateway/sync/wire.ts):
 *
 *   reads   oti/<site>/chain/+/checkpoint          (retained: each gateway's signed head)
 *   reads   oti/<site>/chain/+/cosig/+             (retained: the gateways' cosignatures of each other)
 *   writes  oti/<site>/chain/<gw>/req/<requester>  a range request for <gw>'s own chain
 *   reads   oti/<site>/chain/+/range/<requester>   the answers
 *
 * and nothing else: it publishes no checkpoint, cosignature or evidence, so the broker's ACL can
 * hold it to exactly those four filters. What arrives goes through the Archiver like an uplink
 * message (every block verified before it is written; refusals kept as evidence), and so does a
 * cosignature (checked as one from the central broker, so a pulled site is confirmed too). A chain is
 * pulled from its archived size whenever its gateway's checkpoint is ahead of it: a chain the
 * uplink left with a gap (a block published before the archive's session existed) is filled in.
 *
 * One request per chain at a time, at most MAX_REQUEST_ENTRIES entries; an answer can come in
 * several messages, a block's entries spread over them (its header comes with its last
 * entries), so entries wait in a bounded buffer until their block is complete. A request
 * unanswered for STALL_MS is asked again.
 */
import { connect, type MqttClient, type IPublishPacket } from 'mqtt';
import type { Logger } from '../log.js';
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { decodeRange, encodeRange, encodeRequest, MAX_REQUEST_ENTRIES, type RangeMessage } from '../sync/wire.js';
import { mqttClientOptions } from '../config/mqtt-client.js';
import type { PullConfig } from './config.js';
import type { Archiver } from './archiver.js';

const STALL_MS = 30_000;
/** Entries of incomplete blocks buffered at most (a block holds fewer). */
const MAX_PENDING_ENTRIES = 65_536;

interface ChainPull {
  /** The size of the gateway's last checkpoint seen. */
  head: number;
  /** A pull from here archived nothing (refused, or the gateway sent nothing): not asked again until the head moves. */
  stuckAt?: number;
  request?: { id: number; from: number; timer: NodeJS.Timeout };
  /** Entries from `first` on whose block has not come yet. */
  buffer?: { first: number; entries: Uint8Array[] };
}

export interface PullStatus {
  readonly site: string;
  readonly connected: boolean;
  /** Chains whose gateway's checkpoint is ahead of the archive, and by how many entries in all. */
  readonly behindChains: number;
  readonly behindEntries: number;
  readonly requests: number;
}

export class SitePuller {
  readonly #archiver: Archiver;
  readonly #cfg: PullConfig;
  readonly #maxBytes: number;
  readonly #log: Logger;
  readonly #chains = new Map<string, ChainPull>();
  readonly #archived = new Map<string, number>();
  #client: MqttClient | undefined;
  #nextId = 1;
  #requests = 0;
  #stopped = false;

  constructor(archiver: Archiver, cfg: PullConfig, maxMessageBytes: number, log: Logger) {
    this.#archiver = archiver;
    this.#cfg = cfg;
    this.#maxBytes = maxMessageBytes;
    this.#log = log;
  }

  /** The site pulled. */
  get siteId(): string {
    return this.#cfg.siteId;
  }

  /**
   * The intake set aside a message of `origin` that ends at `size`, after blocks the archive lacks
   * (Archiver.onGap): the chain is pulled at once, as when its gateway's checkpoint moves. `size`
   * comes from a checkpoint the gateway signed; undefined when that could not be checked (the
   * pull then goes as far as the gateway's checkpoint on the site's broker says).
   */
  wake(origin: string, size: number | undefined): void {
    if (this.#stopped || this.#client?.connected !== true) return;
    const c = this.#chain(origin);
    if (size !== undefined && size > c.head) {
      c.head = size;
      delete c.stuckAt;
    }
    this.#pull(origin).catch((e: unknown) => this.#log.warn({ err: (e as Error).message, origin }, `archive pull: ${(e as Error).message}`));
  }

  status(): PullStatus {
    let behindChains = 0;
    let behindEntries = 0;
    for (const [origin, c] of this.#chains) {
      const behind = c.head - (this.#archived.get(origin) ?? 0);
      if (behind > 0) {
        behindChains++;
        behindEntries += behind;
      }
    }
    return { site: this.#cfg.siteId, connected: this.#client?.connected ?? false, behindChains, behindEntries, requests: this.#requests };
  }

  async start(): Promise<void> {
    const { url, options } = await mqttClientOptions(this.#cfg, `oti-archive-pull-${this.#cfg.siteId}`.slice(0, 128), `pull[${this.#cfg.siteId}]`);
    const client = connect(url.toString(), options);
    this.#client = client;
    const root = `oti/${this.#cfg.siteId}/chain`;
    const filters = [`${root}/+/checkpoint`, `${root}/+/cosig/+`, `${root}/+/range/${this.#cfg.requester}`];
    client.handleMessage = (packet, done) => {
      this.#handle(packet).then(
        () => done(),
        (e: unknown) => {
          this.#log.error({ err: (e as Error).message, topic: packet.topic }, `archive pull ${this.#cfg.siteId}: ${(e as Error).message}; asking again after reconnecting`);
          this.#reset();
          client.stream.destroy();
        },
      );
    };
    client.on('connect', () => {
      this.#log.info({ url: `${url.protocol}//${url.host}` }, `archive: pulling site ${this.#cfg.siteId} from ${url.protocol}//${url.host} as ${this.#cfg.requester}`);
      this.#reset();
      client.subscribe(filters, { qos: 1 });
    });
    client.on('error', (e) => this.#log.warn({ err: e.message }, `archive pull ${this.#cfg.siteId}: ${e.message}`));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#reset();
    await this.#client?.endAsync();
  }

  /** Forgets requests in flight (a reconnection: their answers are not coming). */
  #reset(): void {
    for (const c of this.#chains.values()) {
      if (c.request !== undefined) clearTimeout(c.request.timer);
      delete c.request;
      delete c.buffer;
    }
  }

  async #handle(packet: IPublishPacket): Promise<void> {
    const p = packet.topic.split('/');
    const gw = p[3] ?? '';
    if (p.length < 5 || !ID_PATTERN.test(gw)) return;
    const origin = `oti/${this.#cfg.siteId}/${gw}`;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (p[4] === 'checkpoint' && p.length === 5) {
      let size: number;
      try {
        const cp = parseCheckpoint(payload);
        if (cp.origin !== origin) return;
        size = cp.size;
      } catch {
        return; // not a checkpoint: it only would have told the archive where to pull to
      }
      const c = this.#chain(origin);
      if (size > c.head) {
        c.head = size;
        delete c.stuckAt;
      }
      await this.#pull(origin);
      return;
    }
    if (p[4] === 'range' && p.length === 6) await this.#onRange(origin, payload);
    // A gateway's cosignature of <gw>'s chain: checked and recorded as one that came through the central broker.
    if (p[4] === 'cosig' && p.length === 6 && ID_PATTERN.test(p[5]!) && payload.length > 0) await this.#archiver.cosignature(origin, this.#cfg.siteId, p[5]!, payload);
  }

  #chain(origin: string): ChainPull {
    let c = this.#chains.get(origin);
    if (c === undefined) {
      c = { head: 0 };
      this.#chains.set(origin, c);
    }
    return c;
  }

  /** Asks the chain's gateway for what the archive lacks, unless a request is in flight. */
  async #pull(origin: string): Promise<void> {
    const c = this.#chain(origin);
    if (c.request !== undefined || this.#stopped) return;
    const from = await this.#archiver.archivedSize(origin);
    this.#archived.set(origin, from);
    if (from >= c.head || c.stuckAt === from) return;
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffff_ffff) + 1;
    const timer = setTimeout(() => {
      delete c.request;
      delete c.buffer;
      this.#pull(origin).catch((e: unknown) => this.#log.warn({ err: (e as Error).message, origin }, `archive pull: ${(e as Error).message}`));
    }, STALL_MS);
    timer.unref();
    c.request = { id, from, timer };
    delete c.buffer;
    this.#requests++;
    const gw = origin.split('/')[2]!;
    // Not awaited: its PUBACK comes in behind the message being handled now (mqtt.js handles incoming packets in order).
    this.#client!.publishAsync(`oti/${this.#cfg.siteId}/chain/${gw}/req/${this.#cfg.requester}`, Buffer.from(encodeRequest({ id, chain: origin, from, to: from + MAX_REQUEST_ENTRIES })), { qos: 1 }).catch((e: unknown) => {
      this.#log.warn({ err: (e as Error).message, origin }, `archive pull: a request for ${origin} was not sent (${(e as Error).message}); asked again when it stalls`);
    });
  }

  async #onRange(origin: string, payload: Buffer): Promise<void> {
    const c = this.#chains.get(origin);
    let r: RangeMessage;
    try {
      r = decodeRange(payload, this.#maxBytes);
    } catch (e) {
      if (!isOtiError(e)) throw e;
      this.#log.warn({ origin, code: e.code }, `archive pull: an answer of ${origin} that is no range message (${e.code})`);
      return;
    }
    // Only the answer to the request in flight, about the chain it asked for.
    if (c?.request === undefined || r.id !== c.request.id || r.chain !== origin) return;
    const buf = (c.buffer ??= { first: r.first, entries: [] });
    if (r.first !== buf.first + buf.entries.length || buf.entries.length + r.entries.length > MAX_PENDING_ENTRIES) {
      this.#log.warn({ origin }, `archive pull: the answer of ${origin} does not continue what came before; asking again`);
      return this.#again(origin, c);
    }
    buf.entries.push(...r.entries);
    // The blocks complete with this message: one run, one transaction.
    const blocks: { h: Uint8Array; cp: string }[] = [];
    let used = 0;
    for (const b of r.blocks) {
      const h = decodeBlockHeader(b.h);
      if (h.first !== buf.first + used || used + h.count > buf.entries.length) {
        this.#log.warn({ origin, block: h.n }, `archive pull: block ${h.n} of ${origin} does not fit the entries before it; asking again`);
        return this.#again(origin, c);
      }
      blocks.push(b);
      used += h.count;
    }
    if (blocks.length > 0) {
      const run: RangeMessage = { id: r.id, chain: origin, first: buf.first, entries: buf.entries.slice(0, used), blocks, end: true };
      buf.first += used;
      buf.entries.splice(0, used);
      await this.#archiver.range(origin, this.#cfg.siteId, () => run, Buffer.from(encodeRange(run)));
      this.#archived.set(origin, await this.#archiver.archivedSize(origin));
    }
    // (The stall timer may have ended the request while the run was archived.)
    if (r.end && c.request?.id === r.id) {
      if ((this.#archived.get(origin) ?? 0) <= c.request.from) c.stuckAt = c.request.from;
      await this.#again(origin, c);
    }
  }

  /** Ends the request in flight and asks again from what is archived now, if the gateway is ahead. */
  async #again(origin: string, c: ChainPull): Promise<void> {
    if (c.request !== undefined) clearTimeout(c.request.timer);
    delete c.request;
    delete c.buffer;
    await this.#pull(origin);
  }
}

/** Checks that a pull's site is one the archive trusts. */
export function checkPullSites(pulls: readonly PullConfig[], trusted: ReadonlySet<string>): void {
  for (const p of pulls) {
    if (!trusted.has(p.siteId)) throw new OtiError('ERR_CONFIG', `archive configuration pull: site ${p.siteId} is not in sites (its keys are needed to verify what is pulled)`, { key: 'pull' });
  }
}
