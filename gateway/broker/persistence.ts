/**
 * The broker's session store: aedes-persistence's in-memory store (retained messages,
 * subscriptions, wills, inbound QoS 2 state), with its outgoing queues replaced by bounded ones.
 *
 * aedes keeps, per persistent session (clean session off), every QoS 1 or 2 message routed to it
 * until the client acknowledges it, connected or not (aedes.js `enqueueOffline`, lib/client.js
 * `publish`). The stock store lets that queue grow without limit, so a client that subscribes
 * with clean session off and never comes back makes the gateway hold every later event. Here
 * each session's queue holds at most `maxMessages` messages and `maxBytes` bytes (payload and
 * topic); a message that would go over drops the oldest ones first, and every drop is counted.
 * A dropped message that was in flight to a connected client may still be acknowledged; that
 * acknowledgement then clears nothing, as for any unknown packet id.
 *
 * Retained payloads are kept in buffers of the store's own, reused as topics are replaced or
 * cleared (`storeRetained`).
 *
 * `dropSession` forgets everything stored for one client id (queue, subscriptions, will, inbound
 * QoS 2 state), for sessions discarded by the broker (gateway/broker/sessions.ts).
 *
 * The contract is aedes-persistence's (its abstract test suite runs against this class in
 * test/unit/mqtt-persistence.test.ts).
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

/** The part of an aedes packet this store reads. */
export interface StoredPacket {
  cmd: string;
  brokerId?: string;
  brokerCounter?: number;
  messageId?: number;
  topic?: string;
  payload?: Buffer | string;
}

interface ClientRef {
  readonly id: string;
}

interface SubscriptionRef {
  readonly clientId: string;
}

/** aedes-persistence's asynchronous in-memory store, as far as this file uses it. */
interface AsyncMemoryPersistence {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: StoredPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: readonly string[]): Readable;
  addSubscriptions(client: ClientRef, subs: readonly { topic: string; qos: number }[]): Promise<void>;
  cleanSubscriptions(client: ClientRef): Promise<void>;
  subscriptionsByClient(client: ClientRef): Promise<unknown[]>;
  subscriptionsByTopic(topic: string): Promise<unknown[]>;
  delWill(client: ClientRef): Promise<unknown>;
  cleanIncoming(client: ClientRef): Promise<void>;
}

const require = createRequire(import.meta.url);
// aedes-persistence ships no types for its asynchronous class; the interface above names what is used.
const memory = require('aedes-persistence/asyncPersistence.js') as (new () => AsyncMemoryPersistence) & { Packet: new (p: StoredPacket) => StoredPacket };

export interface QueueLimits {
  /** Most messages one session's queue holds. */
  readonly maxMessages: number;
  /** Most bytes (payload and topic) one session's queue holds. */
  readonly maxBytes: number;
}

interface Queue {
  packets: StoredPacket[];
  bytes: number;
}

/** Retained payloads are kept in buffers of a multiple of this size, reused by size. */
const RETAINED_CLASS_BYTES = 256;
/** Larger retained payloads get a buffer of their own, not reused. */
const RETAINED_POOLED_MAX = 16 * 1024;
/** Most bytes of free buffers kept for reuse. */
const RETAINED_FREE_MAX = 1 << 20;

/** Retained messages as they go out: payloads copied (the stored buffers are reused later). */
async function* copied(stored: AsyncIterable<StoredPacket>): AsyncGenerator<StoredPacket> {
  for await (const p of stored) yield typeof p.payload === 'object' ? { ...p, payload: Buffer.from(p.payload) } : p;
}

function sizeOf(p: StoredPacket): number {
  const payload = p.payload === undefined ? 0 : typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : p.payload.length;
  return payload + (p.topic?.length ?? 0);
}

export class BoundedPersistence extends memory {
  readonly #limits: QueueLimits;
  readonly #queues = new Map<string, Queue>();
  #dropped = 0;
  /** The buffer each retained topic's payload is a view of (storeRetained). */
  readonly #retainedBuffers = new Map<string, Buffer>();
  /** Buffers of replaced retained payloads, by size, for the next ones. */
  readonly #freeBuffers = new Map<number, Buffer[]>();
  #freeBytes = 0;
  /** Retained streams not yet closed: while any is open, replaced buffers are not reused. */
  #openRetainedStreams = 0;
  /** A stream dropped unfinished (aedes unpipes it when its subscriber goes away) stops counting once collected. */
  readonly #streamsGone = new FinalizationRegistry<undefined>(() => {
    this.#openRetainedStreams--;
  });

  constructor(limits: QueueLimits) {
    super();
    this.#limits = limits;
  }

  /** Messages dropped from full queues since start. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Messages and bytes held in all queues now. */
  queued(): { messages: number; bytes: number } {
    let messages = 0;
    let bytes = 0;
    for (const q of this.#queues.values()) {
      messages += q.packets.length;
      bytes += q.bytes;
    }
    return { messages, bytes };
  }

  /** Messages held for one client id. */
  queueLength(clientId: string): number {
    return this.#queues.get(clientId)?.packets.length ?? 0;
  }

  outgoingEnqueue(sub: SubscriptionRef, packet: StoredPacket): Promise<void> {
    this.#enqueue(sub.clientId, packet);
    return Promise.resolve();
  }

  outgoingEnqueueCombi(subs: readonly SubscriptionRef[], packet: StoredPacket): Promise<void> {
    for (const sub of subs) this.#enqueue(sub.clientId, packet);
    return Promise.resolve();
  }

  /**
   * Gives a queued message its packet id as it goes out (same broker and counter), or replaces
   * the message holding that packet id (a PUBLISH becoming a PUBREL in QoS 2). A message dropped
   * meanwhile is not an error: it goes out once, untracked.
   */
  outgoingUpdate(client: ClientRef, packet: StoredPacket): Promise<void> {
    this.#update(client.id, packet);
    return Promise.resolve();
  }

  #update(clientId: string, packet: StoredPacket): void {
    const q = this.#queues.get(clientId);
    if (q === undefined) return;
    for (let i = 0; i < q.packets.length; i++) {
      const held = q.packets[i] as StoredPacket;
      if (held.brokerId === packet.brokerId && held.brokerCounter === packet.brokerCounter) {
        held.messageId = packet.messageId;
        return;
      }
      if (held.brokerId !== packet.brokerId && packet.messageId !== undefined && held.messageId === packet.messageId) {
        q.bytes += sizeOf(packet) - sizeOf(held);
        q.packets[i] = packet;
        return;
      }
    }
  }

  /** Removes and returns the message with this packet id (acknowledged); undefined when none. */
  outgoingClearMessageId(client: ClientRef, packet: StoredPacket): Promise<StoredPacket | undefined> {
    return Promise.resolve(this.#clear(client.id, packet));
  }

  #clear(clientId: string, packet: StoredPacket): StoredPacket | undefined {
    const q = this.#queues.get(clientId);
    if (q === undefined || packet === null || typeof packet !== 'object') return undefined;
    const i = q.packets.findIndex((p) => p.messageId !== undefined && p.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [held] = q.packets.splice(i, 1) as [StoredPacket];
    q.bytes -= sizeOf(held);
    if (q.packets.length === 0) this.#queues.delete(clientId);
    return held;
  }

  outgoingStream(client: ClientRef): Readable {
    return Readable.from([...(this.#queues.get(client.id)?.packets ?? [])]);
  }

  /**
   * A retained message is kept until it is replaced, so its payload is copied out of whatever it
   * came in (a view into Node's 8 KB allocation pool or a connection's read buffer would keep all
   * of that alive: 1,000 pool slabs of 8 KB for payloads of 1–2 KB) into a buffer of this store's
   * own, and that buffer is reused once its topic is replaced or cleared. The gateway retains two
   * statuses per event (received, then committed) and clears the oldest: allocating each copy
   * anew was about 2,000 malloc() calls a second of 1–2 KB that lived until V8's next full
   * collection, half of the main malloc heap's peak at 1,000 events/s, and left that heap
   * fragmented (docs/DECISIONS.md, §The malloc heap at 1,000 events/s). A stored buffer is never
   * handed out: retained streams give copies, since a delivery may sit in a session's queue
   * after its topic was replaced. Nor is a buffer reused while a retained stream is open: the
   * packets a stream has read ahead (up to its high-water mark, while a slow subscriber holds it
   * back) are copied only as they go out.
   */
  override storeRetained(packet: StoredPacket): Promise<void> {
    const topic = packet.topic ?? '';
    const old = this.#retainedBuffers.get(topic);
    if (old !== undefined) {
      this.#retainedBuffers.delete(topic);
      this.#release(old);
    }
    const p = packet.payload;
    if (typeof p !== 'object' || p.length === 0) return super.storeRetained(packet);
    const own = this.#take(p.length);
    own.set(p);
    this.#retainedBuffers.set(topic, own);
    return super.storeRetained({ ...packet, payload: own.subarray(0, p.length) });
  }

  override createRetainedStream(pattern: string): Readable {
    return this.#copying(super.createRetainedStream(pattern));
  }

  override createRetainedStreamCombi(patterns: readonly string[]): Readable {
    return this.#copying(super.createRetainedStreamCombi(patterns));
  }

  /** A stream of copies of `stored`'s packets, counted as open until it closes. */
  #copying(stored: Readable): Readable {
    this.#openRetainedStreams++;
    const out = Readable.from(copied(stored));
    const token = {};
    this.#streamsGone.register(out, undefined, token);
    out.once('close', () => {
      this.#streamsGone.unregister(token);
      this.#openRetainedStreams--;
    });
    return out;
  }

  /** A buffer of at least `bytes`, from the free ones of its size class when there is one. */
  #take(bytes: number): Buffer {
    const size = Math.ceil(bytes / RETAINED_CLASS_BYTES) * RETAINED_CLASS_BYTES;
    const reused = size <= RETAINED_POOLED_MAX ? this.#freeBuffers.get(size)?.pop() : undefined;
    if (reused !== undefined) {
      this.#freeBytes -= size;
      return reused;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Keeps a replaced payload's buffer for reuse, up to RETAINED_FREE_MAX bytes in all, unless a retained stream is open. */
  #release(buf: Buffer): void {
    const size = buf.length;
    if (this.#openRetainedStreams > 0 || size > RETAINED_POOLED_MAX || this.#freeBytes + size > RETAINED_FREE_MAX) return;
    let list = this.#freeBuffers.get(size);
    if (list === undefined) {
      list = [];
      this.#freeBuffers.set(size, list);
    }
    list.push(buf);
    this.#freeBytes += size;
  }

  /** Forgets everything stored for a client id (a discarded session). */
  async dropSession(clientId: string): Promise<void> {
    const ref = { id: clientId };
    this.#queues.delete(clientId);
    await this.cleanSubscriptions(ref);
    await this.delWill(ref);
    await this.cleanIncoming(ref);
  }

  #enqueue(clientId: string, packet: StoredPacket): void {
    let q = this.#queues.get(clientId);
    if (q === undefined) {
      q = { packets: [], bytes: 0 };
      this.#queues.set(clientId, q);
    }
    const copy = new memory.Packet(packet);
    const size = sizeOf(copy);
    let drop = 0;
    let bytes = q.bytes;
    while (drop < q.packets.length && (q.packets.length - drop + 1 > this.#limits.maxMessages || bytes + size > this.#limits.maxBytes)) {
      bytes -= sizeOf(q.packets[drop] as StoredPacket);
      drop++;
    }
    if (drop > 0) q.packets.splice(0, drop);
    this.#dropped += drop;
    // A message larger than the whole byte cap is itself dropped.
    if (size > this.#limits.maxBytes) {
      q.bytes = bytes;
      this.#dropped++;
      if (q.packets.length === 0) this.#queues.delete(clientId);
      return;
    }
    q.packets.push(copy);
    q.bytes = bytes + size;
  }
}
