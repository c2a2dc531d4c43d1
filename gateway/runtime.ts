/**
 * The gateway runtime: everything `npm start` runs, started in dependency order and stopped in
 * the reverse one. The order is explicit, and each part is given what it needs when it is made:
 *
 *   identity (Gateway.start, before the Gateway exists) → store, signature pool → broker → sync
 *   (no chain yet) → discovery (its revocation check reads the rosters sync holds) → recovery of
 *   the own chain (gateway/sync/recovery.ts: peers first; read-only while the ledger is behind the
 *   last-checkpoint record) → chain → notifications → drivers → ingest → local API; plus the
 *   demo's simulated locks when configured.
 *
 * Stopping: the drivers stop taking events first (locks keep what is not acknowledged), the
 * pipeline answers what it holds, the chain is flushed, then notifications, the API, the broker
 * and the store close. The whole stop is bounded by the caller (main.ts gives it 5 s).
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { applyBundle } from './config/bundle.js';
import { Discovery } from './discovery/discovery.js';
import { SyncNode, DEFAULT_SYNC_MESSAGE_BYTES } from './sync/node.js';
import type { EvidenceView, PeerView } from './sync/view.js';
import { gatewayCredentialVerifier } from './broker/credentials.js';
import { cpus } from 'node:os';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { verifyChain } from '../ledger/verify.js';
import { fingerprint } from '../ledger/crypto.js';
import { ED25519_VERIFIER } from '../ledger/ed25519.js';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import type { LockDriver, DriverStatus } from '../drivers/driver.js';
import { SerialDriver } from '../drivers/serial.js';
import { BleDriver } from '../drivers/ble/driver.js';
import { Ingest } from './ingest.js';
import { Broker } from './broker/broker.js';
import { TopicMap } from './broker/topics.js';
import { MqttNotifier } from './notify/notifier.js';
import { HomeAssistantBridge } from './notify/homeassistant.js';
import { ExternalBroker, FanOut } from './notify/external-broker.js';
import { nextSteps } from './next-steps.js';
import { checkPortsFree, type PortUse } from './config/port-check.js';
import { loadOrCreateIdentity, ensureDataDir, type Identity } from './config/identity.js';
import { CheckpointRecord, readLastCheckpoint } from './sync/checkpoint-record.js';
import { recoverBeforeAppending } from './sync/recovery.js';
import { startWaitingApi } from './api/waiting-api.js';
import type { GatewayConfig } from './config/config.js';
import type { Logger } from './log.js';
import { Demo } from './demo.js';
import { GatewayMetrics } from './api/metrics.js';
import { HealthBoard } from './api/health.js';
import { LocalApi } from './api/server.js';
import { WebhookDispatcher, type WebhookStatus } from './notify/webhooks.js';
import { Uplink, type UplinkStatus } from './sync/uplink.js';
import { createRequire } from 'node:module';
import { readKeyringFile, readPublicPrivacyFile, type PrivacyPublicKey } from '../ledger/privacy.js';
import { PersonKeyStore, PrivacyReader, applyPrivacyEntries, applyStoredShreds, followChain } from './api/persons.js';
import { startWitnessListener, siteLogKeys } from './sync/witness-listener.js';
import { WitnessPusher, externalWitnesses } from './sync/witness-push.js';
import { Signer } from '../ledger/crypto.js';

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
  /** Per hook (docs/WEBHOOKS.md §Status): cursor, lag (`behind`), state, last attempt and error, counts. */
  readonly webhooks: readonly WebhookStatus[];
  /** The other gateways as sync sees them, and the site's sync state (docs/API.md §GET /status). */
  readonly peers?: readonly PeerView[];
  readonly sync?: { readonly quorum: number; readonly confirmed: number; readonly compromised: readonly string[]; readonly evidence: readonly EvidenceView[] };
  /** The push of the own chain to the central broker, when `uplink.url` is set (docs/ARCHIVE.md §Uplink). */
  readonly uplink?: UplinkStatus;
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

/**
 * A gateway without an identity applies its provisioning bundle if there is one (an installer
 * copied it to the SD card's boot partition). A bad, tampered or expired bundle stops start-up:
 * falling back to a development site would run an unenrolled gateway. Once an identity exists
 * the bundle is never looked at again (an old bundle that has since expired must not stop an
 * enrolled gateway).
 */
async function applyBundleOnFirstStart(config: GatewayConfig, log: Logger, passphrase: string | undefined): Promise<boolean> {
  const bundle = config.provisioning.bundle;
  if (existsSync(join(config.dataDir, 'site.json')) || !existsSync(bundle)) return false;
  const r = await applyBundle(bundle, config.dataDir, { now: Date.now(), ...(passphrase !== undefined ? { passphrase } : {}) });
  log.info({ site: r.siteId, gateway: r.gatewayId, siteKeys: r.siteKeyFingerprints, key: r.gatewayKeyFingerprint }, `provisioning bundle ${bundle} applied: gateway ${r.gatewayId} of site ${r.siteId}`);
  if (r.appliedPath === undefined) log.warn({ bundle }, `could not rename ${bundle} after applying it; delete it (it holds the gateway's private key)`);
  return true;
}

/** The ports the gateway listens on, with the configuration key that sets each. */
function listenPorts(config: GatewayConfig): PortUse[] {
  const { broker: b, api } = config;
  return [
    { key: 'broker.port', host: b.host, port: b.port },
    ...(b.tls.cert !== undefined && b.tls.key !== undefined ? [{ key: 'broker.tls.port', host: b.host, port: b.tls.port }] : []),
    { key: 'api.port', host: api.host, port: api.port },
  ];
}

export class Gateway {
  readonly startedAt = Date.now();
  private readonly closers: Array<{ name: string; close: () => Promise<void> }> = [];
  private stopping: Promise<void> | undefined;
  readonly drivers: LockDriver[] = [];
  /** Every part reports what stops it doing its job here; /health, /status and metrics read it. */
  readonly health = new HealthBoard();
  /** Aborted by stop(): a start-up that waits (for the ledger) gives up. */
  readonly #stopSignal = new AbortController();
  #chain: Chain | undefined;
  broker!: Broker;
  ingest!: Ingest;
  notifier!: MqttNotifier;
  metrics!: GatewayMetrics;
  webhooks: WebhookDispatcher | undefined;
  uplink: Uplink | undefined;
  discovery: Discovery | undefined;
  sync: SyncNode | undefined;
  apiUrl = '';
  /** On the first start (identity created or bundle applied): what to try next, to print once. */
  nextSteps: string[] | undefined;

  private constructor(
    readonly config: GatewayConfig,
    private readonly log: Logger,
    readonly identity: Identity,
    /** This start made the identity (a development site, or a bundle applied): next steps are printed. */
    private readonly firstStart: boolean,
  ) {}

  /** Starts everything; on failure, stops what had started and rethrows. */
  static async start(config: GatewayConfig, log: Logger, opts: StartOptions = {}): Promise<Gateway> {
    const { identity, firstStart } = await Gateway.loadIdentity(config, log, opts);
    const g = new Gateway(config, log, identity, firstStart);
    try {
      await g.run(opts);
    } catch (e) {
      await g.stop().catch(() => undefined);
      throw e;
    }
    return g;
  }

  /** The own chain, once start-up has opened it (ERR_LEDGER_LOST before: the ledger is not ready). */
  get chain(): Chain {
    if (this.#chain === undefined) throw new OtiError('ERR_LEDGER_LOST', 'the chain is not open (the gateway is starting or waiting for its ledger)');
    return this.#chain;
  }

  /** The data folder, a provisioning bundle applied on first start, and the identity. */
  private static async loadIdentity(config: GatewayConfig, log: Logger, opts: StartOptions): Promise<{ identity: Identity; firstStart: boolean }> {
    // Before anything is written (a development site, an applied bundle): a busy port stops here.
    await checkPortsFree(listenPorts(config));
    try {
      await ensureDataDir(config.dataDir);
    } catch (e) {
      throw new OtiError('ERR_CONFIG', `dataDir: ${(e as Error).message}`, { key: 'dataDir', allowed: 'a folder this user can create and write', got: config.dataDir, origin: 'dataDir' }, { cause: e });
    }
    const bundleApplied = await applyBundleOnFirstStart(config, log, opts.bundlePassphrase);
    const id = await loadOrCreateIdentity(config.dataDir, opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {});
    if (id.created) log.warn({ dataDir: config.dataDir }, `created a development site "${id.trust.siteId}" and gateway "${id.gatewayId}" in ${config.dataDir} (for development only: installers enrol gateways with oti)`);
    log.info({ dataDir: config.dataDir, site: id.trust.siteId, gateway: id.gatewayId, key: fingerprint(id.key.publicKey) }, `data folder ${config.dataDir}`);
    return { identity: id, firstStart: id.created || bundleApplied };
  }

  private onStop(name: string, close: () => Promise<void>): void {
    this.closers.push({ name, close });
  }

  private async run(opts: StartOptions): Promise<void> {
    const { config, log, identity: id } = this;
    const store = await this.openStore(join(config.dataDir, 'ledger'));
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
      sessions: b.sessions,
      ...(b.tls.cert !== undefined && b.tls.key !== undefined ? { tls: { port: b.tls.port, cert: b.tls.cert, key: b.tls.key, ...(b.tls.ca !== undefined ? { ca: b.tls.ca } : {}) } } : {}),
      usersFile: b.usersFile,
      // Peer gateways log in with credentials signed by their own key (gateway/broker/credentials.ts).
      verifyGatewayCredential: gatewayCredentialVerifier({ trust: id.trust, isRefused: (gw, key) => this.sync?.isRefusedGateway(gw, key) ?? false }),
      // Retained messages under another gateway's chain only for gateways on a roster this gateway holds.
      isRosterGateway: (gw) => this.sync?.isRosterGateway(gw) ?? false,
      retained: b.retained,
      login: b.login,
      haPrefix: config.notifications.homeAssistant.prefix,
      logger: log.child({ part: 'broker' }),
    });
    this.onStop('broker', () => this.broker.close());
    log.info({ host: b.host, port: this.broker.port, tlsPort: this.broker.tlsPort }, `MQTT broker listening on ${b.host}:${this.broker.port}${this.broker.tlsPort !== undefined ? ` (TLS on ${this.broker.tlsPort})` : ''}`);

    // The last checkpoint this gateway signed, recorded outside the ledger (checkpoint-record.ts).
    const origin = `oti/${id.trust.siteId}/${id.gatewayId}`;
    const lastCheckpoint = await readLastCheckpoint(config.dataDir, origin, id.key.publicKey);
    const record = new CheckpointRecord(config.dataDir, lastCheckpoint, (e) => log.warn({ err: e }, `could not write ${config.dataDir}/last-checkpoint.json (retrying; checkpoints are published once it is written)`));
    this.onStop('last-checkpoint record', () => record.close());

    // Sync: links to this gateway's broker and to each peer's; a restored or re-flashed gateway
    // first recovers its own chain from the peers, so that it never forks it.
    const externals = externalWitnesses(config.witness);
    this.sync = new SyncNode({
      externalQuorum: config.witness.externalQuorum,
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
      // A checkpoint reaches peers only once recorded: never ahead of the record.
      beforeAnnounce: (cp) => record.covering(cp.size),
    });
    const sync = this.sync;
    this.onStop('sync', () => sync.stop());
    // Discovery after sync, whose rosters its revocation check reads (no chain is open yet).
    if (config.discovery.enabled) this.discovery = await this.startDiscovery(sync);
    await withTimeout(sync.start(), 10_000);
    this.discovery?.on('peer', (p) => void sync.addBroker(`mqtt://${p.host}:${p.port}`));
    for (const p of this.discovery?.peers() ?? []) void sync.addBroker(`mqtt://${p.host}:${p.port}`);
    const recovery = await recoverBeforeAppending({
      sync,
      discovery: this.discovery,
      staticPeers: config.discovery.staticPeers.length,
      record: lastCheckpoint,
      dataDir: config.dataDir,
      publicKey: id.key.publicKey,
      waitMs: config.sync.recoverWaitMs,
      timeoutMs: config.sync.recoverTimeoutMs,
      health: this.health,
      log,
      signal: this.#stopSignal.signal,
      whileReadOnly: () => this.startWaitingApi(),
    });

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
    this.#chain = chain;
    this.onStop('chain', () => chain.close());
    // From here on the record follows the chain (after an accepted loss, from what it holds).
    if (chain.checkpoint !== undefined) record.note(chain.checkpoint);
    chain.on('block', (b) => record.note(b.checkpoint));
    if (recovery === 'loss-accepted') log.warn({ entries: chain.size }, `chain ${chain.origin} continues from ${chain.size} entries after the accepted loss`);
    // A block that cannot be written stops the gateway: acks would otherwise wait forever.
    chain.on('error', (e: Error) => opts.onFatal?.(e));
    log.info({ chain: chain.origin, entries: chain.size, blocks: chain.head.n + 1 }, `ledger ${join(config.dataDir, 'ledger')}: chain ${chain.origin} with ${chain.size} entries`);
    if (ED25519_VERIFIER.sodiumUnavailable !== undefined) log.info({ ed25519: ED25519_VERIFIER.name }, `Ed25519 verification on node:crypto (libsodium unavailable: ${ED25519_VERIFIER.sodiumUnavailable})`);
    else log.info({ ed25519: ED25519_VERIFIER.name }, 'Ed25519 verification on libsodium');
    this.verifyInBackground(chain, pool, opts.onFatal);
    sync.attachChain(chain);
    if (config.witness.http.enabled) {
      const w = config.witness.http;
      const listener = await startWitnessListener({ host: w.host, port: w.port, maxConnections: w.maxConnections, dataDir: config.dataDir, name: chain.origin, signer: new Signer(id.key.seed), keyFor: siteLogKeys(sync, chain.origin) });
      this.onStop('witness', () => listener.close());
      log.info({ url: listener.url }, `tlog-witness: POST ${listener.url}/add-checkpoint`);
    }
    if (externals.length > 0) {
      const pusher = new WitnessPusher({
        chain,
        witnesses: externals,
        timeoutMs: config.witness.pushTimeoutMs,
        beforeAnnounce: (cp) => record.covering(cp.size),
        onCosigned: (witness, size, ts) => sync.coverage.recordExternal(witness, size, ts),
        logger: log.child({ part: 'witness' }),
      });
      this.onStop('witness-push', () => Promise.resolve(pusher.close()));
      if (chain.checkpoint !== undefined) pusher.offer(chain.checkpoint);
      chain.on('block', (b) => pusher.offer(b.checkpoint));
    }
    sync.on('evidence', (e) => log.error(e, `equivocation: chain ${e.origin} is refused from now on (evidence ${e.id})`));
    // Refusals are logged by the sync node itself, rate-limited (gateway/sync/refusal-log.ts), and counted in the metrics.
    sync.on('synced', (e) => log.info(e, `replica of ${e.origin} at ${e.size} entries`));
    let lastProgress = 0;
    sync.on('progress', (p) => {
      if (Date.now() - lastProgress < 2000) return;
      lastProgress = Date.now();
      log.info(p, `catching up ${p.origin}: ${p.size} entries, ${p.remaining} to go (${Math.round(p.entriesPerSecond)}/s)`);
    });

    const privacy = await this.startPrivacy(chain, opts.privacyPassphrase);
    // Every erasure recorded in a chain held here, this gateway's own (recovered from the peers
    // after a restore) and the peers', is applied before anything is served: a person key from a
    // restored backup is destroyed and the erasure marked. Erasures arriving later with the peers'
    // chains are applied as they arrive.
    const peerOrigins = (await store.listChains()).filter((c) => c.role === 'peer').map((c) => c.origin);
    const appliedTo = new Map<string, number>();
    for (const origin of peerOrigins) appliedTo.set(origin, (await sync.replica(origin)).size);
    sync.on('synced', ({ origin, size }) => {
      void (async () => {
        const from = appliedTo.get(origin) ?? 0;
        appliedTo.set(origin, size);
        const replica = await sync.replica(origin);
        for (let i = from; i < size; i += 1024) await applyPrivacyEntries(privacy.store, await replica.cs.entryRange(i, Math.min(size, i + 1024)));
      })().catch((e: unknown) => this.stopping === undefined && log.error({ err: e, origin }, 'applying erasures from a peer chain failed'));
    });
    let destroyed = await applyStoredShreds(chain, privacy.store);
    for (const origin of peerOrigins) destroyed += await applyStoredShreds(await sync.replica(origin), privacy.store);
    if (destroyed > 0) log.info({ destroyed }, `destroyed ${destroyed} person key(s) whose erasure is recorded in the chains held here`);
    this.ingest = new Ingest({ chain, pool, queueLimit: config.ingest.queueLimit, ...(privacy.keys !== undefined ? { privacyKeyIds: privacy.keys.map((k) => k.id) } : {}) });
    this.ingest.on('fault', (e) => log.error({ err: e }, 'ingest failure'));
    this.ingest.on('unenrolled', (lock, info, from) => log.warn({ lock, fw: info?.fw, key: info?.key !== undefined ? fingerprint(info.key) : undefined, link: from.link }, `lock ${lock} is not enrolled: its events are refused until a technician enrols it (oti lock enroll)`));
    this.ingest.on('notice', (n) => {
      // A frame refused is routine (debug); a lock a technician must see to is a warning (docs/PROTOCOL.md §Flow).
      if (n.kind === 'rejected') (TECHNICIAN_CODES.has(n.code) ? log.warn : log.debug).call(log, { code: n.code, link: n.from.link }, n.detail);
      else if (n.kind === 'link') log.info({ link: n.from.link, state: n.state }, n.detail);
      else if (n.kind === 'blind') log.warn({ driver: n.driver, start: n.start, end: n.end }, `blind interval recorded: ${n.reason}`);
    });
    // Notifications go to the embedded broker, an external one, or both (gateway/notify/external-broker.ts).
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
        onRefusedCopy: (code) => this.metrics.committedCopyRefused(code),
        logger: log.child({ part: 'notify' }),
      });
      await this.notifier.start();
      this.onStop('notifications', () => this.notifier.stop());
      const notifier = this.notifier;
      this.sync.coverage.on('coverage', (ev) => notifier.coverage(ev));
      // The notifier's plain "online" on the own broker is followed by sync's fuller state.
      this.sync.refreshState();
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
    this.metrics.chainHeightsFrom(() => [{ origin: chain.origin, size: chain.size }, ...sync.storedChains().map((cs) => ({ origin: cs.origin, size: cs.head.size }))]);
    this.metrics.peersFrom(() => sync.peerViews().map((p) => ({ peer: p.gateway, state: p.state, lag: p.lag })));
    this.metrics.observeSync(sync);
    this.metrics.driversFrom(() => this.drivers.map((d) => d.status()));
    this.metrics.healthFrom(() => this.health.list());
    this.metrics.brokerFrom(() => this.broker.stats());
    if (config.webhooks.length > 0) {
      const hooks = new WebhookDispatcher({ chain, hooks: config.webhooks, cursorDir: join(config.dataDir, 'webhooks'), logger: log.child({ part: 'webhooks' }) });
      await hooks.start();
      this.webhooks = hooks;
      this.metrics.webhooksFrom(() => hooks.status());
      this.onStop('webhooks', () => hooks.stop());
      log.info({ hooks: config.webhooks.length }, `webhooks: ${config.webhooks.length} receiver(s), delivered from the chain`);
    }
    if (config.uplink.url !== undefined) {
      const up = await Uplink.start(config.uplink, { chain, dataDir: config.dataDir, logger: log.child({ part: 'uplink' }) });
      this.uplink = up;
      this.metrics.uplinkFrom(() => up.status());
      this.onStop('uplink', () => up.stop());
    }
    this.pauseWhileDiskFull(store, this.ingest);
    // Registered after the chain, so they stop before it: drivers first, then the pipeline.
    this.onStop('ingest', () => this.ingest.close());
    // Runs just before the pipeline stops: events waiting for disk space are given up (not acked, so the locks keep them).
    this.onStop('writes waiting for disk space', () => Promise.resolve(store.stopWaiting()));
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
      maxConnections: config.api.maxConnections,
      maxConnectionsPerAddress: config.api.maxConnectionsPerAddress,
      chain,
      status: () => this.status(),
      peers: () => sync.storedChains(),
      metrics: this.metrics,
      health: this.health,
      privacy: {
        token: config.api.privacyToken,
        store: privacy.store,
        ...(privacy.reader !== undefined ? { reader: privacy.reader } : {}),
        replicas: async () => Promise.all((await store.listChains()).filter((c) => c.role === 'peer').map(async (c) => sync.replica(c.origin))),
      },
      logger: log.child({ part: 'api' }),
    });
    this.onStop('local API', () => api.close());
    this.apiUrl = api.url;
    if (this.firstStart) {
      this.nextSteps = nextSteps({ site: id.trust.siteId, apiUrl: api.url, brokerHost: localHost(b.host), brokerPort: this.broker.port, usersFile: b.usersFile, development: id.created, demoWatch, cwd: process.cwd() });
    }
    log.info({ url: api.url }, `local API on ${api.url} (health, status, events, receipts, metrics)`);
  }

  /** While the ledger is lost: /health (503, with the reason) on the API's address, nothing else. */
  private async startWaitingApi(): Promise<{ close(): Promise<void> }> {
    const { config, log, health } = this;
    const api = await startWaitingApi({ host: config.api.host, port: config.api.port, health, reason: () => health.list().find((c) => c.code === 'ERR_LEDGER_LOST')?.reason ?? 'waiting for the ledger' });
    log.warn({ url: api.url }, `local API on ${api.url} answers /health with 503 (ledger lost) and nothing else until the ledger is back`);
    return api;
  }

  /**
   * Finds the site's other gateways by signed mDNS announcements (gateway/discovery/discovery.ts); nothing
   * is trusted on mDNS alone. Static peers from the configuration are handed to sync directly.
   */
  private async startDiscovery(sync: SyncNode): Promise<Discovery> {
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
        // The rosters sync holds (peer chains, and the own chain once open).
        isRevoked: (gw, key) => sync.isRefusedGateway(gw, key),
      },
      (e) => dlog.warn({ reason: e.message }, `Avahi backend unavailable (${e.message}); using the built-in mDNS responder`),
    );
    this.onStop('discovery', () => discovery.stop());
    discovery.on('peer', (p) => dlog.info({ via: p.via, gateway: p.gatewayId, host: p.host, port: p.port }, `peer ${p.gatewayId ?? p.host} at ${p.host}:${p.port} (${p.via})`));
    discovery.on('lost', (p) => dlog.info({ gateway: p.gatewayId, host: p.host }, `peer ${p.gatewayId ?? p.host} lost`));
    discovery.on('rejected', (r) => (r.reason === 'ERR_DISCOVERY_SITE' ? dlog.debug : dlog.warn).call(dlog, { code: r.reason, from: r.from, name: r.name }, r.detail));
    discovery.on('warning', (e) => dlog.debug({ err: e }, 'mDNS'));
    discovery.on('fault', (e) => dlog.error({ err: e }, `an mDNS announcement could not be checked: ${e.message}`));
    dlog.info(`announcing _oti._tcp (${config.discovery.backend}) and browsing for the site's gateways`);
    return discovery;
  }

  /**
   * Privacy (docs/PRIVACY.md): the person-key store follows the chain (a shred entry destroys the
   * key here and marks the erasure; run() applies the stored shreds before serving). With
   * <dataDir>/privacy.json only sealed credentials are accepted; with <dataDir>/privacy.key the
   * gateway can also read plaintext for holders of api.privacyToken.
   */
  private async startPrivacy(chain: Chain, passphrase: string | undefined): Promise<{ store: PersonKeyStore; keys?: readonly PrivacyPublicKey[]; reader?: PrivacyReader }> {
    const { config, log } = this;
    const siteId = this.identity.trust.siteId;
    if (config.api.privacyToken !== undefined && config.api.privacyToken === config.api.token) {
      throw new OtiError('ERR_CONFIG', 'api.privacyToken must differ from api.token', { key: 'api.privacyToken' });
    }
    const store = await PersonKeyStore.open(config.dataDir);
    const unfollow = followChain(chain, store, (e) => log.error({ err: e }, 'applying a privacy entry to the person-key store failed'));
    this.onStop('person keys', () => Promise.resolve(unfollow()));
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
    return { store, keys: keyring.publicKeys, reader: new PrivacyReader(keyring, store, chain.origin) };
  }

  /** The ports this gateway listens on, with their configuration keys. */
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

  /**
   * Opens the ledger; on a full disk, waits for space (logged once, health degraded) instead of
   * failing: a gateway restarted by its service manager would otherwise fail again and again.
   */
  private async openStore(path: string): Promise<LedgerStore> {
    let waited = false;
    const store = await LedgerStore.open(path, {
      waitForSpace: (e) => {
        waited = true;
        this.log.warn({ code: e.code, path }, `${e.message}; start-up waits for space (free some on that disk)`);
        this.health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', e.message);
      },
    });
    if (waited) {
      this.log.info({ path }, 'there is space on the disk again: start-up goes on');
      this.health.clear('disk-full');
    }
    return store;
  }

  /**
   * A full disk pauses the pipeline: the store holds the block it could not write until there
   * is space (and writes it then), the pipeline takes no more events (the locks keep them), and
   * health says why. Both resume by themselves once the store has written again.
   */
  private pauseWhileDiskFull(store: LedgerStore, ingest: Ingest): void {
    store.on('disk-full', (e) => {
      this.log.warn({ code: e.code, path: store.path }, `${e.message}; taking no new events until then (the locks keep them)`);
      this.health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', e.message);
      ingest.pause();
    });
    store.on('disk-space', () => {
      this.log.info({ path: store.path }, 'there is space on the disk again: the ledger was reopened and takes events again');
      this.health.clear('disk-full');
      ingest.resume();
    });
  }

  private verifyInBackground(chain: Chain, pool: SignaturePool, onFatal?: (e: Error) => void): void {
    const started = performance.now();
    const store = chain.cs.store;
    const generation = store.generation;
    verifyChain(chain.cs, { trust: this.identity.trust, pool, toBlock: chain.head.n }).then(
      (r) => this.log.info({ entries: r.entries, lockSignatures: r.lockSignatures, ms: Math.round(performance.now() - started) }, `verified ${r.entries} entries and ${r.lockSignatures} lock signatures`),
      (e: unknown) => {
        if (this.stopping !== undefined) return; // the pool and store were closed under it
        if (!isOtiError(e) && (store.waitingForSpace || store.generation !== generation)) {
          // The store was reopened after a full disk, closing the verification's iterators.
          this.verifyInBackground(chain, pool, onFatal);
          return;
        }
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
      webhooks: this.webhooks?.status() ?? [],
      ...(this.sync !== undefined ? { peers: this.sync.peerViews(), sync: { quorum: this.sync.quorum, confirmed: this.sync.coverage.confirmedSize, compromised: this.sync.compromised(), evidence: this.sync.evidence() } } : {}),
      ...(this.uplink !== undefined ? { uplink: this.uplink.status() } : {}),
    };
  }

  /** Stops in reverse start order; each part is stopped even if an earlier one failed. */
  stop(): Promise<void> {
    this.#stopSignal.abort();
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

/** Driver and ingest notices that need a technician (a re-keyed, revoked or newer lock, a shared line): logged as warnings. */
const TECHNICIAN_CODES: ReadonlySet<string> = new Set(['ERR_LOCK_KEY', 'ERR_LOCK_REVOKED', 'ERR_PROTOCOL_VERSION', 'ERR_LINK_SHARED']);
