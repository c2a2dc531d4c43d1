/**
 * Answering range requests (docs/PROTOCOL.md §Sync): for any chain held here (the own chain, or
 * a peer chain of the site not refused), the signed head, the root at the requested size with a
 * consistency proof to the head, then entries and whole blocks in messages within the size bound.
 * One request is served at a time per requester; a newer one waiting replaces an older one.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { consistencyProof, rangeHash } from '../../ledger/merkle.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import type { ChainReader } from '../../ledger/reader.js';
import { parseOrigin } from '../../ledger/verify.js';
import type { SyncContext } from './context.js';
import type { Links } from './links.js';
import type { Link } from './context.js';
import { BLOCK_FRAMING_BYTES, ENTRY_FRAMING_BYTES, RANGE_OVERHEAD_BYTES, decodeRequest, encodeRange } from './wire.js';

/** Entries read from the store at once when serving a range (whole blocks, not past the request). */
const SERVE_READ_ENTRIES = 4096;
/**
 * Range messages of one request published and not yet acknowledged (QoS 1 PUBACK), at most.
 * Waiting for each acknowledgement before the next message left the pull idle for a broker
 * round trip per message; the broker delivers a client's messages on a topic in order (MQTT
 * 3.1.1 §4.6, every topic an Ordered Topic), so the requester still gets them in sequence.
 */
const SERVE_IN_FLIGHT = 4;

export class Server {
  readonly #serving = new Map<string, { busy: boolean; next: { link: Link; payload: Buffer } | undefined }>();

  constructor(
    private readonly c: SyncContext,
    private readonly links: Links,
    private readonly maxBytes: number,
  ) {}

  /** Queues a request from `requester` (the newest waiting one wins). */
  queue(link: Link, requester: string, payload: Buffer): void {
    let s = this.#serving.get(requester);
    if (s === undefined) {
      s = { busy: false, next: undefined };
      this.#serving.set(requester, s);
    }
    s.next = { link, payload };
    if (s.busy) return;
    s.busy = true;
    void (async () => {
      while (s.next !== undefined && !this.c.stopped()) {
        const job = s.next;
        s.next = undefined;
        await this.c.guard(requester, () => this.#serve(job.link, requester, job.payload));
      }
      s.busy = false;
    })();
  }

  /** The store and latest checkpoint of a chain this gateway can serve. */
  async #source(origin: string): Promise<{ cs: ChainReader; head: SignedCheckpoint } | undefined> {
    const c = this.c;
    if (c.refused(origin) || c.evidenceWaits(origin)) return undefined;
    if (origin === c.origin) {
      const chain = c.chain();
      if (chain !== undefined) {
        const head = chain.checkpoint;
        if (head === undefined) return undefined;
        // What is served is as good as published: recorded first (beforeAnnounce).
        await c.o.beforeAnnounce?.(head);
        return { cs: chain, head };
      }
    }
    let p: ReturnType<typeof parseOrigin>;
    try {
      p = parseOrigin(origin);
    } catch {
      return undefined;
    }
    if (p.siteId !== c.o.trust.siteId) return undefined;
    const chains = await c.o.store.listChains();
    if (!chains.some((x) => x.origin === origin)) return undefined;
    const r = await c.replica(origin);
    return r.checkpoint === undefined ? undefined : { cs: r, head: r.checkpoint };
  }

  async #serve(link: Link, requester: string, payload: Buffer): Promise<void> {
    const req = decodeRequest(payload);
    const topic = this.c.topics.syncRange(this.c.o.gatewayId, requester);
    const send = (bytes: Uint8Array): Promise<void> => this.links.publish(link, topic, bytes, false);
    const src = await this.#source(req.chain);
    if (src === undefined) return send(encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true }));
    const { cs, head } = src;
    const size = head.size;
    if (req.from >= size) {
      const proofPart = req.from === size ? { root: head.root, proof: [] } : {};
      return send(encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true, head: head.note, ...proofPart }));
    }
    let block = req.from === 0 ? await cs.block(0) : await cs.blockOf(req.from);
    const firstExtras = req.from > 0 ? { head: head.note, root: await rangeHash(cs, 0, req.from), proof: await consistencyProof(cs, req.from, size) } : { head: head.note };
    // A size that is no block boundary here: the requester holds another tree of this chain (a
    // fork by a second copy of its gateway). Blocks cannot start there, but the root at that size
    // and its proof to the head can: with them the requester holds evidence instead of retrying.
    if (block.header.first !== req.from) return send(encodeRange({ id: req.id, chain: req.chain, first: req.from, entries: [], blocks: [], end: true, ...firstExtras }));
    const budget = this.maxBytes - RANGE_OVERHEAD_BYTES;
    let msg: { first: number; entries: Uint8Array[]; blocks: { h: Uint8Array; cp: string }[]; bytes: number } = { first: req.from, entries: [], blocks: [], bytes: 0 };
    let sentFirst = false;
    // Publications not yet acknowledged, oldest first; the first failure ends the serving (thrown
    // at the next wait), as a failed publication did when each was awaited.
    const inFlight: Promise<void>[] = [];
    let failure: { e: unknown } | undefined;
    const settle = async (): Promise<void> => {
      await inFlight.shift();
      if (failure !== undefined) throw failure.e;
    };
    const flush = async (end: boolean): Promise<void> => {
      const extras = sentFirst ? {} : firstExtras;
      sentFirst = true;
      const sent = send(encodeRange({ id: req.id, chain: req.chain, first: msg.first, entries: msg.entries, blocks: msg.blocks, end, ...extras }));
      inFlight.push(sent.catch((e: unknown) => void (failure ??= { e })));
      msg = { first: msg.first + msg.entries.length, entries: [], blocks: [], bytes: 0 };
      while (inFlight.length >= (end ? 1 : SERVE_IN_FLIGHT)) await settle();
    };
    // Blocks come from one iterator and entries in reads of many blocks at once (up to
    // SERVE_READ_ENTRIES, not past the request), not one store read of each per block: a
    // gateway's blocks under light load hold a few entries each.
    const lastBlock = head.block;
    const more = lastBlock > block.header.n ? cs.blocks(block.header.n + 1, lastBlock) : undefined;
    let read: Uint8Array[] = [];
    let readFirst = req.from;
    try {
      for (;;) {
        const h = block.header;
        const end = h.first + h.count;
        if (h.first < readFirst || end > readFirst + read.length) {
          readFirst = h.first;
          read = await cs.entryRange(h.first, Math.min(size, Math.max(end, Math.min(req.to, h.first + SERVE_READ_ENTRIES))));
          if (read.length < h.count) throw new OtiError('ERR_STORE_CORRUPT', `entries of block ${h.n} of ${req.chain} are missing`);
        }
        for (let i = h.first - readFirst; i < end - readFirst; i++) {
          const e = read[i]!;
          if (msg.bytes + e.length + ENTRY_FRAMING_BYTES > budget && msg.entries.length > 0) await flush(false);
          msg.entries.push(e);
          msg.bytes += e.length + ENTRY_FRAMING_BYTES;
        }
        const cpNote = block.checkpoint.note;
        const extra = block.headerBytes.length + cpNote.length + BLOCK_FRAMING_BYTES;
        if (msg.bytes + extra > budget) await flush(false);
        msg.blocks.push({ h: block.headerBytes, cp: cpNote });
        msg.bytes += extra;
        if (h.n >= lastBlock || end >= req.to || this.c.stopped() || more === undefined) break;
        const next = await more.next();
        if (next.done === true || next.value.header.n !== h.n + 1) throw new OtiError('ERR_STORE_CORRUPT', `block ${h.n + 1} of ${req.chain} is missing below its head`);
        block = next.value;
      }
    } finally {
      await more?.return(undefined);
    }
    await flush(true);
  }
}
