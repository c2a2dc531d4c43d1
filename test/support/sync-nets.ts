/**
 * The networks the sync conformance suite (sync-conformance.ts) runs on, behind one shape:
 * brokers, the SyncNode options that put a node on the network, faults on the messages delivered
 * to a node, and cutting the links of a node to a broker.
 *
 * - pipeNet: the in-memory pipe (gateway/sync/transport-pipe.ts); no sockets, no processes.
 * - tcpNet: real aedes brokers (gateway/broker/broker.ts) on 127.0.0.1, with signed gateway
 *   credentials, reached over mqtt.js. Each node reaches each broker through its own TCP proxy,
 *   so a cut is a real one (the sockets are destroyed, new ones refused until restored); faults
 *   act on the messages mqtt.js hands the node (a wrapper around the MQTT transport).
 */
import { once } from 'node:events';
import { createServer, connect as connectTcp, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { Broker } from '../../gateway/broker/broker.js';
import { gatewayCredentialVerifier } from '../../gateway/broker/credentials.js';
import type { SyncNode, SyncOptions } from '../../gateway/sync/node.js';
import { MqttTransport } from '../../gateway/sync/transport-mqtt.js';
import { PipeNetwork, type PipeAction, type PipeFault, type PipeMessage } from '../../gateway/sync/transport-pipe.js';
import type { SyncLink, SyncLinkEvents, SyncQos, SyncTransport } from '../../gateway/sync/transport.js';
import type { TestSite } from './site.js';

export type NetFault = PipeFault;
export type NetMessage = Pick<PipeMessage, 'broker' | 'to' | 'topic' | 'payload'>;

export interface SyncNet {
  readonly name: string;
  /** Starts a broker for gateway `owner` (its embedded broker); returns its URL. */
  broker(owner: string): Promise<string>;
  /** Makes the brokers at `urls` reachable for node `node` (before it links to them). */
  join(node: string, urls: readonly string[]): Promise<void>;
  /** The SyncNode options that put node `node` on this network. */
  options(node: string): Partial<SyncOptions>;
  /** Every message delivered to a node passes the faults in order; returns the remover. */
  fault(f: NetFault): () => void;
  /** Delivers the messages held by a 'hold' fault (in the order held, or reversed). */
  release(order?: 'fifo' | 'reverse'): number;
  /** Cuts the links of `node` to the broker at `url` (new connections refused until restore). */
  cut(url: string, node: string): void;
  restore(url: string, node: string): void;
}

/**
 * `nodes`: the site's sync nodes by gateway id, for the brokers' credential checks
 * (set as the gateways start), as test/support/sync.ts's makeGateway does.
 */
export type SyncNetFactory = (t: TestContext, site: TestSite, nodes: Map<string, SyncNode>) => Promise<SyncNet>;

export const pipeNet: SyncNetFactory = async () => {
  const net = new PipeNetwork();
  await Promise.resolve();
  return {
    name: 'in-memory pipe',
    broker: async (owner) => {
      const url = `pipe://${owner}`;
      net.addBroker(url);
      return Promise.resolve(url);
    },
    join: () => Promise.resolve(),
    options: (node) => ({ transport: net.transport(node) }),
    fault: (f) => net.fault(f),
    release: (order) => net.release(order),
    cut: (url, node) => net.cut(url, node),
    restore: (url, node) => net.restore(url, node),
  };
};

export const tcpNet: SyncNetFactory = async (t, site, nodes) => {
  const faults: NetFault[] = [];
  const held: { deliver: () => void }[] = [];
  const proxies = new Map<string, Proxy>();
  const key = (url: string, node: string): string => `${url}\n${node}`;
  t.after(async () => {
    for (const p of proxies.values()) await p.close();
  });
  await Promise.resolve();
  return {
    name: 'aedes over TCP',
    broker: async (owner) => {
      const broker = await Broker.start({
        site: site.siteId,
        host: '127.0.0.1',
        port: 0,
        allowAnonymous: false,
        maxMessageBytes: 512 * 1024,
        rateLimit: { messagesPerSecond: 5000, burst: 5000 },
        verifyGatewayCredential: gatewayCredentialVerifier({ trust: site.trust, isRefused: (gw, k) => nodes.get(owner)?.isRefusedGateway(gw, k) ?? false }),
        isRosterGateway: (gw) => nodes.get(owner)?.isRosterGateway(gw) ?? false,
      });
      t.after(() => broker.close());
      return `mqtt://127.0.0.1:${broker.port}`;
    },
    join: async (node, urls) => {
      for (const url of urls) {
        if (proxies.has(key(url, node))) continue;
        proxies.set(key(url, node), await Proxy.start(Number(new URL(url).port)));
      }
    },
    options: (node) => {
      const inner = new MqttTransport();
      const transport: SyncTransport = {
        connect: (url, opts) => {
          const p = proxies.get(key(url, node));
          if (p === undefined) throw new Error(`tcpNet: join(${node}, [${url}]) first`);
          return new FaultyLink(inner.connect(`mqtt://127.0.0.1:${p.port}`, opts), url, node, faults, held);
        },
      };
      return { transport };
    },
    fault: (f) => {
      faults.push(f);
      return () => {
        const i = faults.indexOf(f);
        if (i >= 0) faults.splice(i, 1);
      };
    },
    release: (order = 'fifo') => {
      const all = held.splice(0);
      if (order === 'reverse') all.reverse();
      for (const h of all) h.deliver();
      return all.length;
    },
    cut: (url, node) => proxies.get(key(url, node))?.cut(),
    restore: (url, node) => proxies.get(key(url, node))?.restore(),
  };
};

/** A link whose incoming messages pass the faults (the same actions as the pipe's). */
class FaultyLink implements SyncLink {
  readonly #inner: SyncLink;
  readonly #listeners = new Map<unknown, (topic: string, payload: Buffer, retained: boolean) => void>();

  constructor(
    inner: SyncLink,
    readonly url: string,
    private readonly node: string,
    private readonly faults: NetFault[],
    private readonly held: { deliver: () => void }[],
  ) {
    this.#inner = inner;
  }

  get connected(): boolean {
    return this.#inner.connected;
  }

  subscribe(filters: readonly string[], qos: SyncQos): Promise<void> {
    return this.#inner.subscribe(filters, qos);
  }

  publish(topic: string, payload: Buffer | string, opts: { qos: SyncQos; retain: boolean }): Promise<void> {
    return this.#inner.publish(topic, payload, opts);
  }

  end(): Promise<void> {
    return this.#inner.end();
  }

  #wrap<K extends keyof SyncLinkEvents>(event: K, listener: (...args: SyncLinkEvents[K]) => void): (...args: SyncLinkEvents[K]) => void {
    if (event !== 'message') return listener;
    let w = this.#listeners.get(listener);
    if (w === undefined) {
      const deliver = listener as unknown as (topic: string, payload: Buffer, retained: boolean) => void;
      w = (topic, payload, retained) => {
        const m = { broker: this.url, from: '?', to: this.node, topic, payload, retained };
        let action: PipeAction = 'deliver';
        for (const f of this.faults) {
          action = f(m);
          if (action !== 'deliver') break;
        }
        const go = (): void => deliver(topic, payload, retained);
        if (action === 'drop') return;
        if (action === 'hold') this.held.push({ deliver: () => setImmediate(go) });
        else if (typeof action === 'object') setTimeout(go, action.delayMs);
        else {
          go();
          if (action === 'duplicate') setImmediate(go);
        }
      };
      this.#listeners.set(listener, w);
    }
    return w as unknown as (...args: SyncLinkEvents[K]) => void;
  }

  on<K extends keyof SyncLinkEvents>(event: K, listener: (...args: SyncLinkEvents[K]) => void): this {
    this.#inner.on(event, this.#wrap(event, listener));
    return this;
  }

  once<K extends keyof SyncLinkEvents>(event: K, listener: (...args: SyncLinkEvents[K]) => void): this {
    this.#inner.once(event, this.#wrap(event, listener));
    return this;
  }

  off<K extends keyof SyncLinkEvents>(event: K, listener: (...args: SyncLinkEvents[K]) => void): this {
    this.#inner.off(event, this.#wrap(event, listener));
    return this;
  }
}

/** A TCP proxy on 127.0.0.1 to one port; cut() destroys its connections and refuses new ones until restore(). */
class Proxy {
  readonly #sockets = new Set<Socket>();
  #cut = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<Proxy> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const proxy = new Proxy(server, (server.address() as { port: number }).port);
    server.on('connection', (s) => proxy.#accept(s, target));
    return proxy;
  }

  #accept(client: Socket, target: number): void {
    if (this.#cut) {
      client.destroy();
      return;
    }
    const upstream = connectTcp(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
