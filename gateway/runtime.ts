/**
 * The gateway runtime: everything `npm start` runs, started in dependency order and stopped in
 * the reverse one.
 *
 *   identity → ledger (store, chain, signature pool) → broker → notifications → drivers → ingest
 *   → local API; plus the demo's simulated locks when configured.
 *
 * Stopping: the drivers stop taking events first (locks keep what is not acknowledged), the
 * pipeline answers what it holds, the chain is flushed, then notifications, the API, the broker
 * and the store close. The whole stop is bounded by the caller (main.ts gives it 5 s).
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { applyBundle } from './bundle.js';
import { Discovery } from './discovery.js';
import { SyncNode, DEFAULT_SYNC_MESSAGE_BYTES } from './sync.js';
import { gatewayCredentialVerifier } from './credentials.js';
import { bytesEqual } from '../ledger/encoding.js';
import { cpus } from 'node:os';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { verifyChain } from '../ledger/verify.js';
import { fingerprint } from '../ledger/crypto.js';
import { ED25519_VERIFIER } from '../ledger/ed25519.js';
import { OtiError, isOtiError } from '../ledger/errors.js';
import type { LockDriver, DriverStatus } from '../drivers/driver.js';
import { SerialDriver } from '../drivers/serial.js';
import { BleDriver } from '../drivers/ble.js';
import { Ingest } from './ingest.js';
import { Broker } from './broker.js';
import { TopicMap } from './topics.js';
import { MqttNotifier } from './notify.js';
import { HomeAssistantBridge } from './homeassistant.js';
import { ExternalBroker, FanOut } from './mqtt-out.js';
import { nextSteps } from './next-steps.js';
import { checkPortsFree, type PortUse } from './port-check.js';
import { loadOrCreateIdentity, ensureDataDir, type Identity } from './identity.js';
import type { GatewayConfig } from './config.js';
import type { Logger } from './log.js';
import { Demo } from './demo.js';
import { GatewayMetrics } from './metrics.js';
import { HealthBoard } from './health.js';
import { LocalApi } from './api.js';
import { WebhookDispatcher } from './webhooks.js';
import { createRequire } from 'node:module';
import { readKeyringFile, readPublicPrivacyFile, type PrivacyPublicKey } from '../ledger/privacy.js';
import { PersonKeyStore, PrivacyReader, applyPrivacyEntry, applyStoredShreds, followChain } from './persons.js';
import { decodeEntry } from '../ledger/entry.js';

/** Privacy files in the data folder (docs/PRIVACY.md): the site's privacy public keys, and optionally the keyring. */
export const PRIVACY_PUBLIC_FILE = 'privacy.json';
export const PRIVACY_KEYRING_FILE = 'privacy.key';

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

export interface GatewayStatus {
  readonly site: string;
  readonly gateway: string;
  readonly version: string;
  readonly key: string;
  readonly startedAt: number;
  readonly chain: { readonly origin: string; readonly size: number; readonly blocks: number; readonly checkpoint: string | undefined };
  readonly ingest: { readonly depth: number };
  readonly broker: { readonly port: number; readonly tlsPort?: number; readonly clients: number };
  readonly drivers: readonly DriverStatus[];
  readonly notifications: { readonly pending: number; readonly dropped: number };
  readonly webhooks: readonly { readonly url: string; readonly cursor: number; readonly behind: number; readonly state: string }[];
}

export interface StartOptions {
  /** Passphrase of an encrypted gateway key file (OTI_KEY_PASSPHRASE). */
  readonly passphrase?: string;
  /** Passphrase of an encrypted key inside the provisioning bundle (OTI_BUNDLE_PASSPHRASE). */
  readonly bundlePassphrase?: string;
  /** Passphrase of <dataDir>/privacy.key, the privacy keyring, if one is there (OTI_PRIVACY_PASSPHRASE). */
  readonly privacyPassphrase?: string;
  /** Called when the chain fails verification or cannot be written: the gateway must stop. */
  readonly onFatal?: (e: Error) => void;
}

/** The address this process reaches its own broker at. */
function localHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}

/** Resolves when `p` does or after `ms`, whichever is first (a peer that never answers). */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export class Gateway {
  readonly startedAt = Date.now();
  private readonly closers: Array<{ name: string; close: () => Promise<void> }> = [];
  private stopping: Promise<void> | undefined;
  readonly drivers: LockDriver[] = [];
  /** Every part reports what stops it doing its job here; /health, /status and metrics read it. */
  readonly health = new HealthBoard();
  identity!: Identity;
  chain!: Chain;
  broker!: Broker;
  ingest!: Ingest;
  notifier!: MqttNotifier;
  metrics!: GatewayMetrics;
  webhooks: WebhookDispatcher | undefined;
  discovery: Discovery | undefined;
  sync: SyncNode | undefined;
  apiUrl = '';
  /** On the first start (identity created or bundle applied): what to try next, to print once. */
  nextSteps: string[] | undefined;

  private constructor(
    readonly config: GatewayConfig,
    private readonly log: Logger,
  ) {}

  /** Starts everything; on failure, stops what had started and rethrows. */
  static async start(config: GatewayConfig, log: Logger, opts: StartOptions = {}): Promise<Gateway> {
    const g = new Gateway(config, log);
    try {
      await g.run(opts);
    } catch (e) {
      await g.stop().catch(() => undefined);
      throw e;
    }
    return g;
  }

  private onStop(name: string, close: () => Promise<void>): void {
    this.closers.push({ name, close });
  }

  private async run(opts: StartOptions): Promise<void> {
    const { config, log } = this;
    // Before anything is written (a development site, an applied bundle): a busy port stops here.
    await checkPortsFree(this.listenPorts());
    try {
      await ensureDataDir(config.dataDir);
    } catch (e) {
      throw new OtiError('ERR_CONFIG', `dataDir: ${(e as Error).message}`, { key: 'dataDir', allowed: 'a folder this user can create and write', got: config.dataDir, origin: 'dataDir' }, { cause: e });
    }
    const bundleApplied = await this.applyBundleOnFirstStart(opts.bundlePassphrase);
    const id = await loadOrCreateIdentity(config.dataDir, opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {});
    this.identity = id;
    if (id.created) log.warn({ dataDir: config.dataDir }, `created a development site "${id.trust.siteId}" and gateway "${id.gatewayId}" in ${config.dataDir} (for development only: installers enrol gateways with oti)`);
    log.info({ dataDir: config.dataDir, site: id.trust.siteId, gateway: id.gatewayId, key: fingerprint(id.key.publicKey) }, `data folder ${config.dataDir}`);

    const store = await LedgerStore.open(join(config.dataDir, 'ledger'));
    this.onStop('store', () => store.close());
    // Elastic: signatures are checked on the main thread while the load is light, on worker
    // threads (started then, stopped when idle) when it is not (ledger/sigpool.ts).
    const pool = new SignaturePool(Math.max(1, Math.min(4, cpus().length - 1)), { elastic: { inlineMaxPerS: 2000, idleMs: 60_000 } });
    this.onStop('signature pool', () => pool.close());

    const topics = new TopicMap(id.trust.siteId, config.notifications.homeAssistant.prefix);
    const b = config.broker;
    this.broker = await Broker.start({
      site: id.trust.siteId,
      host: b.host,
      port: b.port,
      allowAnonymous: b.allowAnonymous,
      maxMessageBytes: b.maxMessageBytes,
      rateLimit: b.rateLimit,
      ...(b.tls.cert !== undefined && b.tls.key !== undefined ? { tls: { port: b.tls.port, cert: b.tls.cert, key: b.tls.key, ...(b.tls.ca !== undefined ? { ca: b.tls.ca } : {}) } } : {}),
      usersFile: b.usersFile,
      // Peer gateways log in with credentials signed by their own key (gateway/credentials.ts).
      verifyGatewayCredential: gatewayCredentialVerifier({ trust: id.trust, isRefused: (gw, key) => this.sync?.isRefusedGateway(gw, key) ?? false }),
      haPrefix: config.notifications.homeAssistant.prefix,
      logger: log.child({ part: 'broker' }),
    });
    this.onStop('broker', () => this.broker.close());
    log.info({ host: b.host, port: this.broker.port, tlsPort: this.broker.tlsPort }, `MQTT broker listening on ${b.host}:${this.broker.port}${this.broker.tlsPort !== undefined ? ` (TLS on ${this.broker.tlsPort})` : ''}`);

    if (config.discovery.enabled) await this.startDiscovery();

    // Sync: links to this gateway's broker and to each peer's; a restored or re-flashed gateway
    // first recovers its own chain from the peers, so that it never forks it.
    this.sync = new SyncNode({
      store,
      trust: id.trust,
      gatewayId: id.gatewayId,
      key: id.key,
      enrolment: id.enrolment,
      pool,
      brokers: [`mqtt://${localHost(b.host)}:${this.broker.port}`, ...config.discovery.staticPeers.map((p) => `mqtt://${p.host}:${p.port}`)],
      maxMessageBytes: Math.min(b.maxMessageBytes, DEFAULT_SYNC_MESSAGE_BYTES),
      ...(config.sync.quorum !== undefined ? { quorum: config.sync.quorum } : {}),
      lockSignatures: config.sync.lockSignatures,
      logger: log.child({ part: 'sync' }),
    });
    const sync = this.sync;
    this.onStop('sync', () => sync.stop());
    await withTimeout(sync.start(), 10_000);
    this.discovery?.on('peer', (p) => void sync.addBroker(`mqtt://${p.host}:${p.port}`));
    for (const p of this.discovery?.peers() ?? []) void sync.addBroker(`mqtt://${p.host}:${p.port}`);
    await this.recoverOwnChain(sync);

    const chain = await Chain.open({
      store,
      trust: id.trust,
      gatewayId: id.gatewayId,
      key: id.key,
      genesis: id.enrolment,
      pool,
      sealDelayMs: config.ingest.sealDelayMs,
      maxBlockEntries: config.ingest.maxBlockEntries,
    });
    this.chain = chain;
    this.onStop('chain', () => chain.close());
    // A block that cannot be written stops the gateway: acks would otherwise wait forever.
    chain.on('error', (e: Error) => opts.onFatal?.(e));
    log.info({ chain: chain.origin, entries: chain.size, blocks: chain.head.n + 1 }, `ledger ${join(config.dataDir, 'ledger')}: chain ${chain.origin} with ${chain.size} entries`);
    if (ED25519_VERIFIER.sodiumUnavailable !== undefined) log.info({ ed25519: ED25519_VERIFIER.name }, `Ed25519 verification on node:crypto (libsodium unavailable: ${ED25519_VERIFIER.sodiumUnavailable})`);
    else log.info({ ed25519: ED25519_VERIFIER.name }, 'Ed25519 verification on libsodium');
    this.verifyInBackground(pool, opts.onFatal);
    sync.attachChain(chain);
    sync.on('evidence', (e) => log.error(e, `equivocation: chain ${e.origin} is refused from now on (evidence ${e.id})`));
    // An older checkpoint is what a broker that was cut off still retains: refused, not alarming.
    sync.on('refused', (r) => (r.code === 'ERR_SYNC_STALE' ? log.debug : log.warn).call(log, { origin: r.origin, peer: r.peer, code: r.code }, `sync refused ${r.origin ?? 'a message'} from ${r.peer}: ${r.message}`));
    sync.on('synced', (e) => log.info(e, `replica of ${e.origin} at ${e.size} entries`));
    let lastProgress = 0;
    sync.on('progress', (p) => {
      if (Date.now() - lastProgress < 2000) return;
      lastProgress = Date.now();
      log.info(p, `catching up ${p.origin}: ${p.size} entries, ${p.remaining} to go (${Math.round(p.entriesPerSecond)}/s)`);
    });

    const privacy = await this.startPrivacy(opts.privacyPassphrase);
    // Erasures recorded by other gateways reach this one with their chains: a person key held
    // here (from a restored backup, say) is destroyed too. Only entries that arrive from now on
    // are looked at (those stored earlier were looked at when they arrived), and only while this
    // gateway holds any person key at all.
    const appliedTo = new Map<string, number>();
    for (const { origin, role } of await store.listChains()) if (role === 'peer') appliedTo.set(origin, (await sync.replica(origin)).size);
    sync.on('synced', ({ origin, size }) => {
      void (async () => {
        const from = appliedTo.get(origin) ?? 0;
        appliedTo.set(origin, size);
        if (from >= size || (await privacy.store.list()).length === 0) return;
        const replica = await sync.replica(origin);
        for (let i = from; i < size; i += 1024) {
          for (const raw of await replica.cs.entryRange(i, Math.min(size, i + 1024))) await applyPrivacyEntry(privacy.store, decodeEntry(raw));
        }
      })().catch((e: unknown) => log.error({ err: e, origin }, 'applying erasures from a peer chain failed'));
    });
    this.ingest = new Ingest({ chain, pool, queueLimit: config.ingest.queueLimit, ...(privacy.keys !== undefined ? { privacyKeyIds: privacy.keys.map((k) => k.id) } : {}) });
    this.ingest.on('fault', (e) => log.error({ err: e }, 'ingest failure'));
    this.ingest.on('unenrolled', (lock, info, from) => log.warn({ lock, fw: info?.fw, key: info?.key !== undefined ? fingerprint(info.key) : undefined, link: from.link }, `lock ${lock} is not enrolled: its events are refused until a technician enrols it (oti lock enroll)`));
    this.ingest.on('notice', (n) => {
      if (n.kind === 'rejected') log.debug({ code: n.code, link: n.from.link }, n.detail);
      else if (n.kind === 'link') log.info({ link: n.from.link, state: n.state }, n.detail);
      else if (n.kind === 'blind') log.warn({ driver: n.driver, start: n.start, end: n.end }, `blind interval recorded: ${n.reason}`);
    });
    // Notifications go to the embedded broker, an external one, or both (gateway/mqtt-out.ts).
    const ext = config.notifications.mqtt.enabled ? await this.startExternalBroker(topics, id.gatewayId) : undefined;
    const out = ext === undefined ? this.broker : config.notifications.externalBroker.mode === 'instead' ? ext : new FanOut([this.broker, ext]);
    if (config.notifications.mqtt.enabled) {
      this.notifier = new MqttNotifier({
        broker: out,
        topics,
        chain,
        ingest: this.ingest,
        gatewayId: id.gatewayId,
        retentionS: config.notifications.statusRetentionS,
        retainMax: config.notifications.statusRetainMax,
        logger: log.child({ part: 'notify' }),
      });
      await this.notifier.start();
      this.onStop('notifications', () => this.notifier.stop());
      const notifier = this.notifier;
      this.sync.coverage.on('coverage', (ev) => notifier.coverage(ev));
    }
    if (config.notifications.mqtt.enabled && config.notifications.homeAssistant.enabled) {
      const ha = new HomeAssistantBridge({ out, topics, chain, ingest: this.ingest, gatewayId: id.gatewayId, logger: log.child({ part: 'homeassistant' }) });
      await ha.start();
      if (out !== ext) await this.broker.onMessage(topics.haStatus(), (payload) => ha.birth(payload.toString('utf8')));
      if (ext !== undefined) {
        await ext.onMessage(topics.haStatus(), (payload) => ha.birth(payload.toString('utf8')));
        // A broker that restarted may have lost the retained configs: publish them again.
        ext.on('connect', () => ha.birth('online'));
      }
      this.onStop('Home Assistant', () => ha.stop());
    }
    this.metrics = new GatewayMetrics();
    this.metrics.observeIngest(this.ingest);
    this.metrics.chainHeightsFrom(() => [{ origin: chain.origin, size: chain.size }]);
    this.metrics.driversFrom(() => this.drivers.map((d) => d.status()));
    this.metrics.healthFrom(() => this.health.list());
    if (config.webhooks.length > 0) {
      const hooks = new WebhookDispatcher({ chain, hooks: config.webhooks, cursorDir: join(config.dataDir, 'webhooks'), logger: log.child({ part: 'webhooks' }) });
      await hooks.start();
      this.webhooks = hooks;
      this.onStop('webhooks', () => hooks.stop());
      log.info({ hooks: config.webhooks.length }, `webhooks: ${config.webhooks.length} receiver(s), delivered from the chain`);
    }
    // Registered after the chain, so they stop before it: drivers first, then the pipeline.
    this.onStop('ingest', () => this.ingest.close());
    await this.startDrivers();
    let demoWatch: string | undefined;
    if (config.demo.locks > 0) {
      const demo = await Demo.start({ config, identity: id, chain, log: log.child({ part: 'demo' }), brokerPort: this.broker.port });
      this.onStop('demo', () => demo.stop());
      for (const d of demo.drivers) await this.addDriver(d);
      log.info(`demo: watch the notifications with: ${demo.watch}`);
      demoWatch = demo.watch;
    }
    const api = await LocalApi.start({
      host: config.api.host,
      port: config.api.port,
      token: config.api.token,
      chain,
      status: () => this.status(),
      metrics: this.metrics,
      health: this.health,
      privacy: { token: config.api.privacyToken, store: privacy.store, ...(privacy.reader !== undefined ? { reader: privacy.reader } : {}) },
      logger: log.child({ part: 'api' }),
    });
    this.onStop('local API', () => api.close());
    this.apiUrl = api.url;
    if (id.created || bundleApplied) {
      this.nextSteps = nextSteps({ site: id.trust.siteId, apiUrl: api.url, brokerHost: localHost(b.host), brokerPort: this.broker.port, usersFile: b.usersFile, development: id.created, demoWatch, cwd: process.cwd() });
    }
    log.info({ url: api.url }, `local API on ${api.url} (health, status, events, receipts, metrics)`);
  }

  /**
   * A gateway without an identity applies its provisioning bundle if there is one (an installer
   * copied it to the SD card's boot partition). A bad, tampered or expired bundle stops start-up:
   * falling back to a development site would run an unenrolled gateway. Once an identity exists
   * the bundle is never looked at again (an old bundle that has since expired must not stop an
   * enrolled gateway).
   */
  /** True when a bundle was applied. */
  private async applyBundleOnFirstStart(passphrase: string | undefined): Promise<boolean> {
    const bundle = this.config.provisioning.bundle;
    if (existsSync(join(this.config.dataDir, 'site.json')) || !existsSync(bundle)) return false;
    const r = await applyBundle(bundle, this.config.dataDir, { now: Date.now(), ...(passphrase !== undefined ? { passphrase } : {}) });
    this.log.info({ site: r.siteId, gateway: r.gatewayId, siteKeys: r.siteKeyFingerprints, key: r.gatewayKeyFingerprint }, `provisioning bundle ${bundle} applied: gateway ${r.gatewayId} of site ${r.siteId}`);
    if (r.appliedPath === undefined) this.log.warn({ bundle }, `could not rename ${bundle} after applying it; delete it (it holds the gateway's private key)`);
    return true;
  }

  /**
   * Finds the site's other gateways by signed mDNS announcements (gateway/discovery.ts); nothing
   * is trusted on mDNS alone. Static peers from the configuration are handed to sync directly.
   */
  private async startDiscovery(): Promise<void> {
    const { config, identity: id, log } = this;
    const dlog = log.child({ part: 'discovery' });
    const discovery = await Discovery.startWithFallback(
      {
        trust: id.trust,
        gatewayId: id.gatewayId,
        key: id.key,
        enrolment: id.enrolment,
        brokerPort: this.broker.port,
        backend: config.discovery.backend,
        staticPeers: config.discovery.staticPeers,
        isRevoked: (gw, key) => {
          const m = this.chain.roster.get('gateway', gw);
          return m !== undefined && (m.revoked || !bytesEqual(m.key, key));
        },
      },
      (e) => dlog.warn({ reason: e.message }, `Avahi backend unavailable (${e.message}); using the built-in mDNS responder`),
    );
    this.discovery = discovery;
    this.onStop('discovery', () => discovery.stop());
    discovery.on('peer', (p) => dlog.info({ via: p.via, gateway: p.gatewayId, host: p.host, port: p.port }, `peer ${p.gatewayId ?? p.host} at ${p.host}:${p.port} (${p.via})`));
    discovery.on('lost', (p) => dlog.info({ gateway: p.gatewayId, host: p.host }, `peer ${p.gatewayId ?? p.host} lost`));
    discovery.on('rejected', (r) => (r.reason === 'ERR_DISCOVERY_SITE' ? dlog.debug : dlog.warn).call(dlog, { code: r.reason, from: r.from, name: r.name }, r.detail));
    discovery.on('warning', (e) => dlog.debug({ err: e }, 'mDNS'));
    dlog.info(`announcing _oti._tcp (${config.discovery.backend}) and browsing for the site's gateways`);
  }

  /**
   * Asks the peers for this gateway's own chain before it appends anything. Peers are the
   * static ones and those discovery finds within `sync.recoverWaitMs`; with none, start-up goes on.
   */
  private async recoverOwnChain(sync: SyncNode): Promise<void> {
    const { config, log } = this;
    const none = (): boolean => config.discovery.staticPeers.length === 0 && (this.discovery?.peers().length ?? 0) === 0;
    if (none() && this.discovery !== undefined && config.sync.recoverWaitMs > 0) {
      log.info(`looking for the site's other gateways for up to ${config.sync.recoverWaitMs} ms before opening the chain, in case they hold a newer copy of it (sync.recoverWaitMs)`);
    }
    const end = Date.now() + config.sync.recoverWaitMs;
    while (none() && this.discovery !== undefined && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    if (none()) return;
    const r = await sync.recoverOwnChain({ timeoutMs: config.sync.recoverTimeoutMs });
    if (r.after > r.before) log.warn(r, `recovered this gateway's own chain from peers: ${r.before} → ${r.after} entries (restored from a backup or re-flashed?)`);
    else log.info({ peers: r.peers, size: r.after }, `own chain checked with ${r.peers.length} peer(s): nothing newer`);
  }

  /**
   * Privacy (docs/PRIVACY.md): the person-key store follows the chain (a shred entry destroys the
   * key here; stored shreds are applied again at start, in case of a crash in between). With
   * <dataDir>/privacy.json only sealed credentials are accepted; with <dataDir>/privacy.key the
   * gateway can also read plaintext for holders of api.privacyToken.
   */
  private async startPrivacy(passphrase: string | undefined): Promise<{ store: PersonKeyStore; keys?: readonly PrivacyPublicKey[]; reader?: PrivacyReader }> {
    const { config, log, chain } = this;
    const siteId = this.identity.trust.siteId;
    if (config.api.privacyToken !== undefined && config.api.privacyToken === config.api.token) {
      throw new OtiError('ERR_CONFIG', 'api.privacyToken must differ from api.token', { key: 'api.privacyToken' });
    }
    const store = await PersonKeyStore.open(config.dataDir);
    const unfollow = followChain(chain, store, (e) => log.error({ err: e }, 'applying a privacy entry to the person-key store failed'));
    this.onStop('person keys', () => Promise.resolve(unfollow()));
    applyStoredShreds(chain, store).then(
      (n) => {
        if (n > 0) log.info({ destroyed: n }, `destroyed ${n} person key(s) whose erasure was recorded in the chain`);
      },
      (e: unknown) => log.error({ err: e }, 'applying stored erasures failed'),
    );
    const pubPath = join(config.dataDir, PRIVACY_PUBLIC_FILE);
    if (!existsSync(pubPath)) return { store };
    const pub = await readPublicPrivacyFile(pubPath);
    if (pub.siteId !== siteId) throw new OtiError('ERR_CONFIG', `${pubPath} is for site ${pub.siteId}, not ${siteId}`, { key: 'dataDir' });
    const keyPath = join(config.dataDir, PRIVACY_KEYRING_FILE);
    if (!existsSync(keyPath)) {
      log.info({ key: Buffer.from(pub.current.id).toString('hex') }, 'privacy: only sealed credentials are accepted; this gateway cannot read them');
      return { store, keys: pub.keys };
    }
    if (passphrase === undefined) throw new OtiError('ERR_KEY_PASSPHRASE_REQUIRED', `${keyPath} is encrypted: set OTI_PRIVACY_PASSPHRASE`, { path: keyPath });
    const keyring = await readKeyringFile(keyPath, passphrase);
    if (keyring.siteId !== siteId) throw new OtiError('ERR_CONFIG', `${keyPath} is for site ${keyring.siteId}, not ${siteId}`, { key: 'dataDir' });
    log.warn({ key: Buffer.from(keyring.current.id).toString('hex') }, 'privacy: this gateway holds the privacy keyring; readers see pseudonyms, holders of api.privacyToken see plaintext');
    return { store, keys: keyring.publicKeys, reader: new PrivacyReader(keyring, store) };
  }

  /** The ports this gateway listens on, with their configuration keys. */
  private listenPorts(): PortUse[] {
    const { broker: b, api } = this.config;
    return [
      { key: 'broker.port', host: b.host, port: b.port },
      ...(b.tls.cert !== undefined && b.tls.key !== undefined ? [{ key: 'broker.tls.port', host: b.host, port: b.tls.port }] : []),
      { key: 'api.port', host: api.host, port: api.port },
    ];
  }

  /** The external broker of `notifications.externalBroker`, when a URL is set; closed after the notifications stop. */
  private async startExternalBroker(topics: TopicMap, gatewayId: string): Promise<ExternalBroker | undefined> {
    const c = this.config.notifications.externalBroker;
    if (c.url === undefined) return undefined;
    const ext = await ExternalBroker.start({ ...c, url: c.url }, { topics, gatewayId, logger: this.log.child({ part: 'external-broker' }) });
    this.onStop('external broker', () => ext.close());
    this.log.info({ url: ext.url, mode: c.mode }, `notifications go to the external MQTT broker ${ext.url} ${c.mode === 'instead' ? 'instead of' : 'beside'} the embedded one`);
    return ext;
  }

  private async startDrivers(): Promise<void> {
    const { config, log } = this;
    for (const p of config.serial.ports) {
      await this.addDriver(
        new SerialDriver({
          path: p.path,
          baudRate: p.baudRate,
          maxFrameBytes: p.maxFrameBytes,
          reconnectMinMs: p.reconnectMinMs,
          reconnectMaxMs: p.reconnectMaxMs,
          gatewayId: this.identity.gatewayId,
          window: config.ingest.window,
        }),
      );
    }
    if (config.ble.enabled) {
      const ble = new BleDriver({ gatewayId: this.identity.gatewayId, window: config.ingest.window, maxConnections: config.ble.maxConnections, scanWatchdogMs: config.ble.scanWatchdogMs });
      try {
        await this.addDriver(ble);
      } catch (e) {
        if (!isOtiError(e, 'ERR_DRIVER_UNAVAILABLE')) throw e;
        log.warn({ driver: ble.id, reason: e.message }, `BLE driver unavailable: ${e.message}; the gateway runs on without it`);
      }
    } else {
      log.info('BLE driver disabled by configuration (ble.enabled=false)');
    }
  }

  /** Starts a driver and feeds it to the pipeline. Unavailable drivers stay listed in status. */
  private async addDriver(d: LockDriver): Promise<void> {
    this.drivers.push(d);
    this.onStop(`driver ${d.id}`, () => d.stop());
    await d.start();
    this.ingest.attach(d);
    this.log.info({ driver: d.id }, `driver ${d.id} started`);
  }

  private verifyInBackground(pool: SignaturePool, onFatal?: (e: Error) => void): void {
    const started = performance.now();
    const chain = this.chain;
    verifyChain(chain.cs, { trust: this.identity.trust, pool, toBlock: chain.head.n }).then(
      (r) => this.log.info({ entries: r.entries, lockSignatures: r.lockSignatures, ms: Math.round(performance.now() - started) }, `verified ${r.entries} entries and ${r.lockSignatures} lock signatures`),
      (e: unknown) => {
        if (this.stopping !== undefined) return; // the pool and store were closed under it
        onFatal?.(e as Error);
      },
    );
  }

  status(): GatewayStatus {
    const cp = this.chain.checkpoint;
    const bs = this.broker.stats();
    return {
      site: this.identity.trust.siteId,
      gateway: this.identity.gatewayId,
      version: VERSION,
      key: fingerprint(this.identity.key.publicKey),
      startedAt: this.startedAt,
      chain: { origin: this.chain.origin, size: this.chain.size, blocks: this.chain.head.n + 1, checkpoint: cp?.note },
      ingest: { depth: this.ingest.depth },
      broker: { port: this.broker.port, ...(this.broker.tlsPort !== undefined ? { tlsPort: this.broker.tlsPort } : {}), clients: bs.clients },
      drivers: this.drivers.map((d) => d.status()),
      notifications: { pending: this.notifier?.pending ?? 0, dropped: this.notifier?.dropped ?? 0 },
      webhooks: (this.webhooks?.status() ?? []).map((h) => ({ url: h.url, cursor: h.cursor, behind: h.behind, state: h.state })),
    };
  }

  /** Stops in reverse start order; each part is stopped even if an earlier one failed. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      let first: unknown;
      for (const c of this.closers.reverse()) {
        try {
          await c.close();
        } catch (e) {
          this.log.error({ err: e, part: c.name }, `stopping ${c.name} failed`);
          first ??= e;
        }
      }
      if (first !== undefined) throw first;
    })();
    return this.stopping;
  }
}
