/**
 * The uplink: this gateway's own chain pushed, block by block, to a central MQTT broker for the
 * fleet archive (docs/ARCHIVE.md §Uplink).
 *
 * - The ledger is the outbox. A cursor file in the data folder (`uplink.cursor`) holds the next
 *   block to push; it moves only over blocks the broker has acknowledged (QoS 1 PUBACK), in
 *   chain order, so a power cut or a week offline loses nothing and a restart resumes there.
 *   Blocks acknowledged after the last cursor write are pushed again: the archive keys blocks by
 *   (origin, n), so a replay is idempotent.
 * - At most `window` blocks are unacknowledged at once (a documented cap); the rest wait in the
 *   ledger, not in memory.
 * - One topic per chain, `<prefix>/<site>/<gateway>/block`, QoS 1, so the broker keeps the
 *   chain's order. The payload is a sync range message (gateway/sync/wire.ts, docs/PROTOCOL.md
 *   §Sync) holding one block: its entries, header and checkpoint, which any verifier checks with
 *   ledger/verify.ts.
 * - The site's cosignatures of this chain (each witness's newest, as verified by sync) go to
 *   `<prefix>/<site>/<gateway>/cosig/<witness>`, QoS 1, on each connection and as they come:
 *   they are not in the ledger, so at most one per witness (MAX_WITNESSES) waits in memory. The
 *   gateway's CosignatureBook (gateway/sync/cosignatures.ts) keeps them from the start of sync
 *   on; the uplink takes those it already holds when it starts, so one verified before the uplink
 *   started is sent on the first connection, not only after the witness's next one.
 * - The uplink subscribes to nothing: nothing on the central broker can write into the site.
 */
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from '../log.js';
import { OtiError } from '../../ledger/base/errors.js';
import { writeFileAtomic } from '../../ledger/base/files.js';
import { mqttClientOptions, type MqttClientConfig } from '../config/mqtt-client.js';
import type { Chain } from '../../ledger/chain.js';
import { parseOrigin } from '../../ledger/verify.js';
import { encodeRange } from './wire.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { MAX_WITNESSES, type CosignatureBook } from './cosignatures.js';

export { MAX_WITNESSES };

/** `uplink` of the configuration (docs/CONFIGURATION.md). */
export interface UplinkConfig extends MqttClientConfig {
  readonly topicPrefix: string;
  readonly window: number;
}

export interface UplinkStatus {
  readonly url: string;
  readonly connected: boolean;
  /** The next block to push: every block before it is acknowledged by the central broker. */
  readonly next: number;
  /** Blocks of the chain not yet acknowledged (the lag). */
  readonly behind: number;
  readonly inFlight: number;
  readonly pushed: number;
  /** The last failure (a connection, a publish, the cursor file) and when it happened (ms since 1970); cleared by a (re)connection. */
  readonly lastError?: string;
  readonly lastErrorAt?: number;
}

export const CURSOR_FILE = 'uplink.cursor';
const CURSOR_MAX_BYTES = 256;

/** The uplink topic of a chain. */
export function uplinkTopic(prefix: string, origin: string): string {
  const { siteId, gatewayId } = parseOrigin(origin);
  return `${prefix}/${siteId}/${gatewayId}/block`;
}

/** Reads the cursor file: the next block to push (0 when there is none yet). */
export async function readCursor(dataDir: string): Promise<number> {
  let text: string;
  try {
    text = (await readFile(join(dataDir, CURSOR_FILE))).subarray(0, CURSOR_MAX_BYTES).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  const n = (JSON.parse(text) as { next?: unknown }).next;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new OtiError('ERR_STORE_CORRUPT', `${CURSOR_FILE} holds no block number`);
  return n;
}

export class Uplink {
  readonly #chain: Chain;
  readonly #client: MqttClient;
  readonly #topic: string;
  readonly #window: number;
  readonly #cursorPath: string;
  readonly #shownUrl: string;
  readonly #log: Logger | undefined;
  /** Every block before it is acknowledged. */
  #next: number;
  /** The next block to publish. */
  #sendNext: number;
  /** Blocks published and acknowledged beyond #next (acknowledged out of order). */
  readonly #acked = new Set<number>();
  #inFlight = 0;
  #pushed = 0;
  #lastError: { message: string; at: number } | undefined;
  #pumping = false;
  #again = false;
  #savedNext: number;
  #saving: Promise<void> = Promise.resolve();
  #stopped = false;
  readonly #onBlock = (): void => this.#pump();
  readonly #cosigTopic: (witness: string) => string;
  /** Each witness's newest cosigned note of this chain (its size and text). */
  readonly #cosigs = new Map<string, { size: number; note: string }>();
  /** Stops taking cosignatures from the gateway's CosignatureBook. */
  #unlisten: (() => void) | undefined;

  private constructor(chain: Chain, client: MqttClient, o: { topic: string; window: number; cursorPath: string; next: number; url: string; log: Logger | undefined }) {
    this.#chain = chain;
    this.#client = client;
    this.#topic = o.topic;
    this.#window = o.window;
    this.#cursorPath = o.cursorPath;
    this.#next = o.next;
    this.#sendNext = o.next;
    this.#savedNext = o.next;
    this.#shownUrl = o.url;
    this.#log = o.log;
    const base = o.topic.slice(0, -'/block'.length);
    this.#cosigTopic = (witness) => `${base}/cosig/${witness}`;
  }

  /**
   * Checks the configuration, reads the cursor and starts pushing; resolves at once, connected or
   * not. With `cosignatures` (the gateway's book), the cosignatures it holds are sent on the
   * first connection and each newer one as it comes.
   */
  static async start(c: UplinkConfig, o: { chain: Chain; dataDir: string; logger?: Logger; cosignatures?: Pick<CosignatureBook, 'newest' | 'listen'> }): Promise<Uplink> {
    const { siteId, gatewayId } = parseOrigin(o.chain.origin);
    const { url, options } = await mqttClientOptions(c, `oti-uplink-${siteId}-${gatewayId}`.slice(0, 128), 'uplink');
    const next = Math.min(await readCursor(o.dataDir), o.chain.head.n + 1);
    const client = connect(url.toString(), options);
    const shown = `${url.protocol}//${url.host}`;
    const up = new Uplink(o.chain, client, { topic: uplinkTopic(c.topicPrefix, o.chain.origin), window: c.window, cursorPath: join(o.dataDir, CURSOR_FILE), next, url: shown, log: o.logger });
    client.on('connect', () => {
      o.logger?.info({ url: shown, next: up.#next }, `uplink ${shown}: connected, pushing from block ${up.#next}`);
      // What failed before this connection (ECONNREFUSED, say) is over: /status shows no stale lastError.
      up.#lastError = undefined;
      up.#pump();
      for (const [witness, c] of up.#cosigs) up.#publishCosignature(witness, c.note);
    });
    client.on('error', (e) => {
      up.#failed(e.message);
      o.logger?.warn({ err: e.message }, `uplink ${shown}: ${e.message}`);
    });
    o.chain.on('block', up.#onBlock);
    if (o.cosignatures !== undefined) {
      for (const [witness, k] of o.cosignatures.newest()) up.cosignature(witness, k.size, k.note);
      up.#unlisten = o.cosignatures.listen((witness, k) => up.cosignature(witness, k.size, k.note));
    }
    up.#pump();
    return up;
  }

  status(): UplinkStatus {
    return {
      url: this.#shownUrl,
      connected: this.#client.connected,
      next: this.#next,
      behind: Math.max(0, this.#chain.head.n + 1 - this.#next),
      inFlight: this.#inFlight,
      pushed: this.#pushed,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError.message, lastErrorAt: this.#lastError.at } : {}),
    };
  }

  /**
   * A cosignature of this chain by `witness` (a site gateway), verified by sync: the cosigned
   * note is sent to the central broker, and kept (the newest per witness) to send again after a
   * reconnection. Older or equal sizes than the one kept are ignored.
   */
  cosignature(witness: string, size: number, note: string): void {
    if (this.#stopped || !ID_PATTERN.test(witness)) return;
    const had = this.#cosigs.get(witness);
    if (had !== undefined && had.size >= size) return;
    if (had === undefined && this.#cosigs.size >= MAX_WITNESSES) return;
    this.#cosigs.set(witness, { size, note });
    this.#publishCosignature(witness, note);
  }

  #publishCosignature(witness: string, note: string): void {
    if (!this.#client.connected) return; // sent on the next connection
    this.#client.publish(this.#cosigTopic(witness), note, { qos: 1 }, (err) => {
      if (err !== undefined && err !== null) this.#failed(err.message);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#chain.off('block', this.#onBlock);
    this.#unlisten?.();
    await this.#saving;
    await this.#client.endAsync(true);
  }

  /** Publishes blocks while the window has room; runs one at a time, again when woken meanwhile. */
  #pump(): void {
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void (async () => {
      try {
        do {
          this.#again = false;
          while (!this.#stopped && this.#client.connected && this.#inFlight < this.#window && this.#sendNext <= this.#chain.head.n) {
            await this.#publish(this.#sendNext++);
          }
        } while (this.#again && !this.#stopped);
      } catch (e) {
        this.#failed((e as Error).message);
        this.#log?.error({ err: (e as Error).message }, `uplink: ${(e as Error).message}`);
      } finally {
        this.#pumping = false;
      }
    })();
  }

  async #publish(n: number): Promise<void> {
    const cs = this.#chain;
    const block = await cs.block(n);
    const entries = await cs.entryRange(block.header.first, block.header.first + block.header.count);
    const payload = encodeRange({ id: n % 0x1_0000_0000, chain: cs.origin, first: block.header.first, entries, blocks: [{ h: block.headerBytes, cp: block.checkpoint.note }], end: true });
    this.#inFlight++;
    // mqtt.js keeps an unacknowledged QoS 1 message and sends it again after a reconnection; the callback comes with the PUBACK.
    this.#client.publish(this.#topic, Buffer.from(payload), { qos: 1 }, (err) => {
      this.#inFlight--;
      if (err !== undefined && err !== null) {
        this.#failed(err.message);
        if (n < this.#sendNext) this.#sendNext = n;
        return;
      }
      this.#pushed++;
      this.#acked.add(n);
      while (this.#acked.delete(this.#next)) this.#next++;
      this.#saveCursor();
      this.#pump();
    });
  }

  #saveCursor(): void {
    this.#saving = this.#saving.then(async () => {
      const next = this.#next;
      if (next === this.#savedNext) return;
      await writeFileAtomic(this.#cursorPath, JSON.stringify({ next }), { mode: 0o600, overwrite: true });
      this.#savedNext = next;
    }).catch((e: unknown) => {
      this.#failed((e as Error).message);
    });
  }

  #failed(message: string): void {
    this.#lastError = { message, at: Date.now() };
  }
}
