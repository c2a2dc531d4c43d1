/**
 * Optional mDNS backend through the system's daemon (Avahi on Raspberry Pi OS), by way of the
 * `mdns` npm package (node_mdns, a binding to the DNS-SD API; on Linux it needs the Avahi
 * compatibility library, libavahi-compat-libdnssd, and a running avahi-daemon on D-Bus).
 *
 * The package is not a dependency of the project: it is loaded on start() by a dynamic import of
 * a module name held in a variable, so builds and installs never need it. When it cannot be
 * loaded (absent, or its native part fails to load), start() rejects with ERR_DRIVER_UNAVAILABLE
 * and Discovery.startWithFallback uses the built-in backend instead.
 *
 * Resolving: the package's default resolver sequence ends with a step that calls Node's
 * internal getaddrinfo binding when the DNS-SD library lacks DNSServiceGetAddrInfo (as Avahi's
 * compatibility layer does); on Node 20 that aborts the process with a native assertion
 * (agnat/node_mdns#266). So browsing uses the sequence [rst.DNSServiceResolve()] only, which
 * gives the host name, port and raw TXT record, and the address comes from node:dns lookup()
 * (the public API; `.local` names resolve through nss-mdns where it is installed).
 *
 * Refreshing: the DNS-SD API of the package cannot update a registered TXT record, so each
 * publish() registers a new advertisement and then drops the old one. Browsers see the instance
 * go and come back; a 'gone' is therefore held back for GONE_GRACE_MS and dropped if the
 * instance reappears. Known instances are resolved again every refreshMs so that their signed
 * timestamps stay fresh (the daemon reports an instance only once when it appears).
 *
 * Not tested here beyond the absent-package path: the test machines have no avahi-daemon.
 */
import { lookup } from 'node:dns/promises';
import { OtiError } from '../../ledger/base/errors.js';
import type { Advertisement, BackendSink, MdnsBackend } from './backend.js';

/** The part of the `mdns` package used here (v2.7). */
interface MdnsModule {
  tcp(name: string): unknown;
  createAdvertisement(type: unknown, port: number, options: { name: string; txtRecord: Buffer; networkInterface?: string }, callback: (error: Error | undefined) => void): NativeService;
  createBrowser(type: unknown, options: { resolverSequence: ResolverStep[]; networkInterface?: string }): NativeService;
  resolve(service: AvahiService, sequence: ResolverStep[], callback: (error: Error | undefined, service: AvahiService) => void): void;
  rst: { DNSServiceResolve(options?: { unwrapTxtRecord?: boolean }): ResolverStep };
}
type ResolverStep = (service: AvahiService, next: (error?: Error) => void) => void;
interface NativeService {
  start(): void;
  stop(): void;
  on(event: 'serviceUp' | 'serviceDown', listener: (service: AvahiService) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
}
interface AvahiService {
  name?: string;
  type?: unknown;
  replyDomain?: string;
  interfaceIndex?: number;
  flags?: number;
  host?: string;
  rawTxtRecord?: Buffer;
}

/** The package name, in a variable so that TypeScript and bundlers do not try to resolve it. */
const PACKAGE = 'mdns';
const GONE_GRACE_MS = 3000;

export interface AvahiMdnsOptions {
  /** How often known instances are resolved again. */
  readonly refreshMs: number;
  /** IPv4 address of the interface to use. */
  readonly interface?: string;
}

export class AvahiMdnsBackend implements MdnsBackend {
  readonly #opts: AvahiMdnsOptions;
  #mdns: MdnsModule | undefined;
  #sink: BackendSink | undefined;
  #ad: NativeService | undefined;
  #browser: NativeService | undefined;
  readonly #known = new Map<string, AvahiService>();
  readonly #goneTimers = new Map<string, NodeJS.Timeout>();
  #refresh: NodeJS.Timeout | undefined;

  constructor(opts: AvahiMdnsOptions) {
    this.#opts = opts;
  }

  async start(sink: BackendSink): Promise<void> {
    let mdns: MdnsModule;
    try {
      mdns = (await import(PACKAGE)) as MdnsModule;
    } catch (e) {
      throw new OtiError('ERR_DRIVER_UNAVAILABLE', `the Avahi backend needs the mdns package (with libavahi-compat-libdnssd and avahi-daemon): ${(e as Error).message}`, { backend: 'avahi' }, { cause: e });
    }
    this.#mdns = mdns;
    this.#sink = sink;
    const iface = this.#opts.interface !== undefined ? { networkInterface: this.#opts.interface } : {};
    try {
      const browser = mdns.createBrowser(mdns.tcp('oti'), { resolverSequence: this.#sequence(), ...iface });
      browser.on('serviceUp', (s) => this.#up(s));
      browser.on('serviceDown', (s) => this.#down(s));
      browser.on('error', (e) => sink.warning(e));
      browser.start();
      this.#browser = browser;
    } catch (e) {
      throw new OtiError('ERR_DRIVER_UNAVAILABLE', `the Avahi daemon cannot be reached: ${(e as Error).message}`, { backend: 'avahi' }, { cause: e });
    }
    this.#refresh = setInterval(() => {
      for (const s of this.#known.values()) this.#resolve(s);
    }, this.#opts.refreshMs);
  }

  publish(ad: Advertisement): void {
    const mdns = this.#mdns;
    if (mdns === undefined) return;
    const old = this.#ad;
    const next = mdns.createAdvertisement(mdns.tcp('oti'), ad.port, { name: ad.instance, txtRecord: txtRdata(ad.txt), ...(this.#opts.interface !== undefined ? { networkInterface: this.#opts.interface } : {}) }, (e) => {
      if (e !== undefined && e !== null) this.#sink?.warning(e);
    });
    next.on('error', (e) => this.#sink?.warning(e));
    old?.stop();
    next.start();
    this.#ad = next;
  }

  /** The daemon sends the goodbye when the registration is dropped; the signed TXT goodbye cannot be sent through it. */
  stop(): Promise<void> {
    if (this.#refresh !== undefined) clearInterval(this.#refresh);
    for (const t of this.#goneTimers.values()) clearTimeout(t);
    this.#goneTimers.clear();
    this.#known.clear();
    this.#ad?.stop();
    this.#browser?.stop();
    this.#ad = undefined;
    this.#browser = undefined;
    this.#mdns = undefined;
    return Promise.resolve();
  }

  #sequence(): ResolverStep[] {
    return [this.#mdns!.rst.DNSServiceResolve({ unwrapTxtRecord: false })];
  }

  #up(s: AvahiService): void {
    if (s.name === undefined) return;
    const t = this.#goneTimers.get(s.name);
    if (t !== undefined) clearTimeout(t);
    this.#goneTimers.delete(s.name);
    // Keep only what identifies the instance, so that a new resolve starts clean.
    this.#known.set(s.name, { name: s.name, type: s.type, replyDomain: s.replyDomain, interfaceIndex: s.interfaceIndex, flags: s.flags });
    void this.#report(s);
  }

  #down(s: AvahiService): void {
    const name = s.name;
    if (name === undefined || this.#goneTimers.has(name)) return;
    this.#goneTimers.set(
      name,
      setTimeout(() => {
        this.#goneTimers.delete(name);
        this.#known.delete(name);
        this.#sink?.gone(name);
      }, GONE_GRACE_MS),
    );
  }

  #resolve(known: AvahiService): void {
    this.#mdns?.resolve({ ...known }, this.#sequence(), (e, s) => {
      if (e !== undefined && e !== null) this.#sink?.warning(e);
      else void this.#report(s);
    });
  }

  async #report(s: AvahiService): Promise<void> {
    if (s.name === undefined || s.host === undefined || s.rawTxtRecord === undefined) return;
    try {
      const { address } = await lookup(s.host, { family: 4 });
      this.#sink?.sighting({ instance: s.name, txt: txtStrings(s.rawTxtRecord), ttlS: undefined, address, from: address });
    } catch (e) {
      this.#sink?.warning(e as Error);
    }
  }
}

/** TXT RDATA (RFC 1035 §3.3.14): each string preceded by its one-byte length. */
function txtRdata(strings: readonly Buffer[]): Buffer {
  return Buffer.concat(strings.flatMap((s) => [Buffer.of(s.length), s]));
}

/** Splits TXT RDATA into its strings; a length that overruns the data ends the list. */
function txtStrings(rdata: Buffer): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < rdata.length; ) {
    const n = rdata[i]!;
    if (i + 1 + n > rdata.length) break;
    out.push(rdata.subarray(i + 1, i + 1 + n));
    i += 1 + n;
  }
  return out;
}
