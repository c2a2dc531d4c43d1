/**
 * An in-memory sync transport: several SyncNodes in one process joined through named brokers
 * that keep retained messages, with faults a test can inject (drop, delay, duplicate, hold and
 * release in another order, cut a link and restore it). It keeps the contract of
 * gateway/sync/transport.ts as mqtt.js and aedes give it to the node (docs/DECISIONS.md §Sync
 * transport seam); what it does not model is stated there too (sizes, ACLs, credentials).
 *
 *   const net = new PipeNetwork();
 *   net.addBroker('pipe://a');
 *   new SyncNode({ …, brokers: ['pipe://a'], transport: net.transport('gw-a') });
 *
 * Deliveries are asynchronous (one macrotask per message), in publication order per receiving
 * link unless a fault says otherwise; a message queued for a connection that is cut is lost, as
 * on TCP.
 */
import { EventEmitter } from 'node:events';
import type { SyncLink, SyncLinkEvents, SyncLinkOptions, SyncQos, SyncTransport } from './transport.js';

/** One message on its way from a broker to one subscribed link. */
export interface PipeMessage {
  readonly broker: string;
  /** The node that published it (its transport's name; 'will' for a will). */
  readonly from: string;
  /** The node it is delivered to. */
  readonly to: string;
  readonly topic: string;
  readonly payload: Buffer;
  /** Delivered from the broker's retained store on subscription. */
  readonly retained: boolean;
}

/** What happens to a message: delivered, lost, delivered twice, later, or held until release(). */
export type PipeAction = 'deliver' | 'drop' | 'duplicate' | 'hold' | { readonly delayMs: number };
export type PipeFault = (m: PipeMessage) => PipeAction;

interface Held {
  readonly link: PipeLink;
  readonly epoch: number;
  readonly m: PipeMessage;
}

class PipeBroker {
  readonly retained = new Map<string, Buffer>();
  readonly links = new Set<PipeLink>();
  constructor(readonly url: string) {}
}

export class PipeNetwork {
  readonly #brokers = new Map<string, PipeBroker>();
  readonly #faults: PipeFault[] = [];
  readonly #held: Held[] = [];
  /** Cut pairs: `${url}\n${node}`, or `${url}\n*` for every node. */
  readonly #cut = new Set<string>();
  readonly #waiting = new Set<PipeLink>();

  /** Adds a broker (a URL nodes can link to); links waiting for it connect. */
  addBroker(url: string): void {
    if (!this.#brokers.has(url)) this.#brokers.set(url, new PipeBroker(url));
    this.#wake();
  }

  /** The transport of one node; `name` identifies it in faults and cuts. */
  transport(name: string): SyncTransport {
    return { connect: (url, opts) => new PipeLink(this, name, url, opts) };
  }

  /** Adds a fault; each message goes through the faults in order, the first that does not deliver decides. Returns its remover. */
  fault(f: PipeFault): () => void {
    this.#faults.push(f);
    return () => {
      const i = this.#faults.indexOf(f);
      if (i >= 0) this.#faults.splice(i, 1);
    };
  }

  /** Messages held by a 'hold' fault. */
  held(): PipeMessage[] {
    return this.#held.map((h) => h.m);
  }

  /** Delivers the held messages, in the order held or reversed; those whose connection went are lost. */
  release(order: 'fifo' | 'reverse' = 'fifo'): number {
    const all = this.#held.splice(0);
    if (order === 'reverse') all.reverse();
    for (const h of all) this.#enqueue(h.link, h.epoch, h.m);
    return all.length;
  }

  /** Cuts the links of `node` (every node when omitted) to broker `url`; they reconnect once restored. */
  cut(url: string, node?: string): void {
    this.#cut.add(`${url}\n${node ?? '*'}`);
    const b = this.#brokers.get(url);
    for (const l of [...(b?.links ?? [])]) if (node === undefined || l.node === node) this.detach(l, true);
  }

  restore(url: string, node?: string): void {
    this.#cut.delete(`${url}\n${node ?? '*'}`);
    this.#wake();
  }

  /** The retained message of a topic on a broker. */
  retainedOn(url: string, topic: string): Buffer | undefined {
    return this.#brokers.get(url)?.retained.get(topic);
  }

  /** Links currently connected to `url` (of `node`, or all). */
  connectedTo(url: string, node?: string): number {
    return [...(this.#brokers.get(url)?.links ?? [])].filter((l) => node === undefined || l.node === node).length;
  }

  // ---- for PipeLink ----

  reachable(url: string, node: string): PipeBroker | undefined {
    if (this.#cut.has(`${url}\n*`) || this.#cut.has(`${url}\n${node}`)) return undefined;
    return this.#brokers.get(url);
  }

  wait(link: PipeLink): void {
    this.#waiting.add(link);
  }

  forget(link: PipeLink): void {
    this.#waiting.delete(link);
  }

  /** Ends a connection; unless it ended cleanly, the broker publishes the link's will (MQTT 3.1.1 §3.1.2.5). */
  detach(link: PipeLink, withWill: boolean): void {
    const b = link.broker;
    if (b === undefined) return;
    b.links.delete(link);
    link.dropped();
    if (withWill) this.publish(b, 'will', link.will.topic, link.will.payload, true);
    if (!link.ended) this.#waiting.add(link);
  }

  publish(b: PipeBroker, from: string, topic: string, payload: Buffer, retain: boolean): void {
    // MQTT 3.1.1 §3.3.1.3: a retained message replaces the topic's; an empty one removes it.
    if (retain) {
      if (payload.length === 0) b.retained.delete(topic);
      else b.retained.set(topic, payload);
    }
    for (const l of b.links) if (l.matches(topic)) this.route(l, { broker: b.url, from, to: l.node, topic, payload, retained: false });
  }

  route(link: PipeLink, m: PipeMessage): void {
    const epoch = link.epoch;
    let action: PipeAction = 'deliver';
    for (const f of this.#faults) {
      action = f(m);
      if (action !== 'deliver') break;
    }
    if (action === 'drop') return;
    if (action === 'hold') this.#held.push({ link, epoch, m });
    else if (typeof action === 'object') setTimeout(() => this.#enqueue(link, epoch, m), action.delayMs);
    else {
      this.#enqueue(link, epoch, m);
      if (action === 'duplicate') this.#enqueue(link, epoch, m);
    }
  }

  #enqueue(link: PipeLink, epoch: number, m: PipeMessage): void {
    setImmediate(() => link.deliver(epoch, m));
  }

  #wake(): void {
    for (const l of [...this.#waiting]) {
      if (this.reachable(l.url, l.node) === undefined) continue;
      this.#waiting.delete(l);
      setImmediate(() => l.attempt());
    }
  }
}

interface Queued {
  readonly topic: string;
  readonly payload: Buffer;
  readonly retain: boolean;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

class PipeLink extends EventEmitter<SyncLinkEvents> implements SyncLink {
  broker: PipeBroker | undefined;
  /** Counts connections: a message queued for an earlier one is not delivered. */
  epoch = 0;
  ended = false;
  readonly will: { topic: string; payload: Buffer };
  #filters: string[][] = [];
  readonly #offline: Queued[] = [];

  constructor(
    private readonly net: PipeNetwork,
    readonly node: string,
    readonly url: string,
    private readonly opts: SyncLinkOptions,
  ) {
    super();
    this.will = { topic: opts.will.topic, payload: opts.will.payload };
    setImmediate(() => this.attempt());
  }

  get connected(): boolean {
    return this.broker !== undefined;
  }

  attempt(): void {
    if (this.ended || this.broker !== undefined) return;
    this.opts.login(); // as mqtt.js does: a fresh credential for each connection attempt
    const b = this.net.reachable(this.url, this.node);
    if (b === undefined) {
      this.net.wait(this);
      this.emit('error', new Error(`pipe: ${this.url} is not reachable from ${this.node}`));
      return;
    }
    this.broker = b;
    this.epoch++;
    b.links.add(this);
    this.emit('connect');
    // Publications made while offline go out once connected again.
    for (const q of this.#offline.splice(0)) {
      this.net.publish(b, this.node, q.topic, q.payload, q.retain);
      q.resolve();
    }
  }

  /** The connection went (cut, or ended): a clean session forgets the subscriptions. */
  dropped(): void {
    this.broker = undefined;
    this.epoch++;
    this.#filters = [];
    this.emit('close');
  }

  matches(topic: string): boolean {
    const levels = topic.split('/');
    return this.#filters.some((f) => matchFilter(f, levels));
  }

  deliver(epoch: number, m: PipeMessage): void {
    if (epoch !== this.epoch || this.broker === undefined) return;
    this.emit('message', m.topic, m.payload, m.retained);
  }

  async subscribe(filters: readonly string[], _qos: SyncQos): Promise<void> {
    const b = this.broker;
    if (b === undefined) throw new Error(`pipe: ${this.url} is not connected`);
    await Promise.resolve(); // the SUBACK
    if (this.broker !== b) throw new Error(`pipe: ${this.url} disconnected while subscribing`);
    const added = filters.map((f) => f.split('/'));
    this.#filters.push(...added);
    // MQTT 3.1.1 §3.3.1.3: the retained messages matching a new subscription follow the SUBACK.
    for (const [topic, payload] of b.retained) {
      const levels = topic.split('/');
      if (added.some((f) => matchFilter(f, levels))) this.net.route(this, { broker: b.url, from: 'retained', to: this.node, topic, payload, retained: true });
    }
  }

  publish(topic: string, payload: Buffer | string, opts: { qos: SyncQos; retain: boolean }): Promise<void> {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
    if (this.ended) return Promise.reject(new Error('pipe: link ended'));
    const b = this.broker;
    if (b === undefined) {
      return new Promise((resolve, reject) => this.#offline.push({ topic, payload: bytes, retain: opts.retain, resolve, reject }));
    }
    this.net.publish(b, this.node, topic, bytes, opts.retain);
    return Promise.resolve();
  }

  end(): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    this.net.forget(this);
    // Like mqtt.js end(true): the connection is dropped without a DISCONNECT, so the will goes out.
    this.net.detach(this, true);
    for (const q of this.#offline.splice(0)) q.reject(new Error('pipe: link ended'));
    return Promise.resolve();
  }
}

/** MQTT 3.1.1 §4.7: `+` matches one level, `#` (last) the rest, the parent level included. */
function matchFilter(filter: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i];
    if (f === '#') return true;
    if (i >= topic.length) return false;
    if (f !== '+' && f !== topic[i]) return false;
  }
  return filter.length === topic.length;
}
