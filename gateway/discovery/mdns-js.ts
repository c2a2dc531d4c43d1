/**
 * The built-in mDNS backend: a DNS-SD responder and browser for `_oti._tcp.local` in pure
 * JavaScript over multicast-dns (one UDP socket on port 5353 joined to 224.0.0.251), so it needs
 * no system daemon. It moves records; it trusts nothing (Discovery verifies every TXT record).
 *
 * Responder (RFC 6762, RFC 6763):
 *  - our records: PTR `_oti._tcp.local` → instance (shared, §10.2 no cache-flush bit), and SRV,
 *    TXT and the host's A records (unique, cache-flush bit set);
 *  - unsolicited announcements: twice one second apart on start (§8.3), then each time Discovery
 *    publishes a refreshed record (its signed timestamp must stay fresh, so it re-announces more
 *    often than §8.3 asks; with a handful of gateways per site the traffic is negligible);
 *  - answers to queries for the service type, our instance or our host name after a random
 *    20–120 ms delay (§6), all questions of that window in one response, with known-answer
 *    suppression of the PTR (§7.1);
 *  - a goodbye (every record with TTL 0, §10.1) when stopped.
 *  No probing (§8.1): instance and host names contain a digest of the gateway key, so they do
 *  not collide between gateways.
 * Browser: queries for the service type on start, after 1 s and 3 s (§5.2), and passes every TXT
 * record named `<label>._oti._tcp.local` it hears, in answers or additional records, to the sink.
 * Link up: every LINK_CHECK_MS the interfaces' IPv4 addresses are compared with the last look (an
 * interface without carrier is not listed); when one appears, the group is joined on it and the
 * query schedule and the announcements start again, so peers are found within seconds of a cable
 * or Wi-Fi coming back rather than at the next periodic announcement (RFC 6762 §8.3, §5.2).
 */
import { networkInterfaces } from 'node:os';
import type { RemoteInfo } from 'node:dgram';
import makeMdns from 'multicast-dns';
import type { Answer, Question } from 'dns-packet';
import { OtiError } from '../../ledger/base/errors.js';
import { SERVICE_TYPE } from './announcement.js';
import type { Advertisement, BackendSink, MdnsBackend } from './backend.js';

export interface JsMdnsOptions {
  /** UDP port; 5353 is mDNS (RFC 6762 §3). Tests use another port to stay apart. */
  readonly port?: number;
  /** IPv4 address of the one interface to use; all IPv4 interfaces when unset. */
  readonly interface?: string | undefined;
}

const QUERY_SCHEDULE_MS = [0, 1000, 3000];
const ANNOUNCE_REPEAT_MS = 1000;
/** How often the interfaces are looked at for a link that came up. */
const LINK_CHECK_MS = 2000;

export class JsMdnsBackend implements MdnsBackend {
  readonly #opts: JsMdnsOptions;
  #mdns: makeMdns.MulticastDNS | undefined;
  #sink: BackendSink | undefined;
  #ad: Advertisement | undefined;
  readonly #timers = new Set<NodeJS.Timeout>();
  #pendingAnswer = false;
  #links = new Set<string>();
  #linkTimer: NodeJS.Timeout | undefined;

  constructor(opts: JsMdnsOptions = {}) {
    this.#opts = opts;
  }

  /** Opens the socket; rejects with ERR_PORT_IN_USE or ERR_DRIVER_UNAVAILABLE if it cannot. */
  async start(sink: BackendSink): Promise<void> {
    this.#sink = sink;
    const iface = this.#opts.interface;
    // Binding to a unicast address would filter out multicast on Linux: bind the wildcard and
    // join the group on the chosen interface only.
    const mdns = makeMdns({ port: this.#opts.port ?? 5353, ...(iface !== undefined ? { interface: iface, bind: '0.0.0.0' } : {}), loopback: true, reuseAddr: true });
    this.#mdns = mdns;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        mdns.destroy();
        this.#mdns = undefined;
        reject(
          e.code === 'EADDRINUSE'
            ? new OtiError('ERR_PORT_IN_USE', `mDNS port ${this.#opts.port ?? 5353} is in use without SO_REUSEADDR`, { port: this.#opts.port ?? 5353 }, { cause: e })
            : new OtiError('ERR_DRIVER_UNAVAILABLE', `the mDNS socket cannot be opened: ${e.message}`, undefined, { cause: e }),
        );
      };
      mdns.once('error', onError);
      mdns.once('ready', () => {
        mdns.off('error', onError);
        resolve();
      });
    });
    mdns.on('error', (e: Error) => sink.warning(e));
    mdns.on('warning', (e: Error) => sink.warning(e));
    mdns.on('query', (q) => this.#onQuery(q.questions, q.answers));
    mdns.on('response', (r, rinfo) => this.#onResponse([...r.answers, ...r.additionals], rinfo));
    this.#browse();
    this.#links = new Set(this.#addresses());
    this.#linkTimer = setInterval(() => this.#checkLinks(), LINK_CHECK_MS);
  }

  /** Queries for the service type on the §5.2 schedule. */
  #browse(): void {
    for (const ms of QUERY_SCHEDULE_MS) this.#later(ms, () => this.#mdns?.query([{ name: SERVICE_TYPE, type: 'PTR' }]));
  }

  /** A new address means a link came up: join the group there, browse and announce again. */
  #checkLinks(): void {
    const now = new Set(this.#addresses());
    const up = [...now].some((a) => !this.#links.has(a));
    this.#links = now;
    if (!up || this.#mdns === undefined) return;
    // multicast-dns joins the group on interfaces it has not joined yet (its typings omit update).
    (this.#mdns as makeMdns.MulticastDNS & { update(): void }).update();
    this.#browse();
    if (this.#ad !== undefined) {
      this.#send(this.#ad);
      this.#later(ANNOUNCE_REPEAT_MS, () => this.#ad !== undefined && this.#send(this.#ad));
    }
  }

  publish(ad: Advertisement): void {
    const first = this.#ad === undefined;
    this.#ad = ad;
    this.#send(ad);
    if (first) this.#later(ANNOUNCE_REPEAT_MS, () => this.#ad !== undefined && this.#send(this.#ad));
  }

  async stop(goodbye?: Advertisement): Promise<void> {
    clearInterval(this.#linkTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const mdns = this.#mdns;
    this.#mdns = undefined;
    this.#ad = undefined;
    if (mdns === undefined) return;
    if (goodbye !== undefined) await new Promise<void>((resolve) => mdns.respond({ answers: this.#records(goodbye) }, () => resolve()));
    await new Promise<void>((resolve) => mdns.destroy(resolve));
  }

  #later(ms: number, f: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      f();
    }, ms);
    this.#timers.add(t);
  }

  #send(ad: Advertisement): void {
    this.#mdns?.respond({ answers: this.#records(ad) });
  }

  /** PTR, SRV, TXT and A records of an advertisement (RFC 6763 §4, §5, §6; RFC 6762 §10.2 flush bits). */
  #records(ad: Advertisement): Answer[] {
    const instance = `${ad.instance}.${SERVICE_TYPE}`;
    const host = `${ad.instance}.local`;
    const ttl = ad.ttlS;
    return [
      { name: SERVICE_TYPE, type: 'PTR', ttl, data: instance },
      { name: instance, type: 'SRV', ttl, flush: true, data: { target: host, port: ad.port, priority: 0, weight: 0 } },
      { name: instance, type: 'TXT', ttl, flush: true, data: [...ad.txt] },
      ...this.#addresses().map((a): Answer => ({ name: host, type: 'A', ttl, flush: true, data: a })),
    ];
  }

  #addresses(): string[] {
    if (this.#opts.interface !== undefined) return [this.#opts.interface];
    const all = Object.values(networkInterfaces()).flatMap((l) => l ?? []).filter((i) => i.family === 'IPv4');
    const external = all.filter((i) => !i.internal);
    return (external.length > 0 ? external : all).map((i) => i.address);
  }

  #onQuery(questions: Question[], known: Answer[]): void {
    const ad = this.#ad;
    if (ad === undefined || this.#pendingAnswer) return;
    const instance = `${ad.instance}.${SERVICE_TYPE}`.toLowerCase();
    const host = `${ad.instance}.local`.toLowerCase();
    const asked = questions.some((q) => {
      const name = q.name.toLowerCase();
      const type: string = q.type; // dns-packet decodes type 255 as 'ANY', which its typings omit
      const any = type === 'ANY';
      return (name === SERVICE_TYPE && (any || type === 'PTR')) || (name === instance && (any || type === 'SRV' || type === 'TXT')) || (name === host && (any || type === 'A'));
    });
    if (!asked) return;
    // §7.1: the asker already holds our PTR with at least half its TTL left.
    const suppressed = known.some((a) => a.type === 'PTR' && a.name.toLowerCase() === SERVICE_TYPE && a.data.toLowerCase() === instance && (a.ttl ?? 0) >= ad.ttlS / 2);
    if (suppressed && questions.every((q) => q.name.toLowerCase() === SERVICE_TYPE)) return;
    this.#pendingAnswer = true;
    this.#later(20 + Math.floor(Math.random() * 100), () => {
      this.#pendingAnswer = false;
      if (this.#ad !== undefined) this.#send(this.#ad);
    });
  }

  #onResponse(records: Answer[], rinfo: RemoteInfo): void {
    const suffix = `.${SERVICE_TYPE}`;
    for (const r of records) {
      if (r.type !== 'TXT' || !r.name.toLowerCase().endsWith(suffix)) continue;
      const instance = r.name.slice(0, -suffix.length);
      if (instance.length === 0 || instance.includes('.')) continue;
      const data = Array.isArray(r.data) ? r.data : [r.data];
      this.#sink?.sighting({
        instance,
        txt: data.map((d) => (typeof d === 'string' ? Buffer.from(d) : d)),
        ttlS: r.ttl ?? 0,
        address: rinfo.address,
        from: `${rinfo.address}:${rinfo.port}`,
      });
    }
  }
}
