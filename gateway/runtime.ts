/**
 * The gateway runtime: everything `npm start` runs. This file only composes: compose() below
 * starts the parts one after the other, each through `stages.start(name, start, stop)`, so the
 * start order is the order of the lines and the stop order is its reverse (gateway/stages.ts).
 * Each part is given what it needs when it is made; what the parts do lives in the parts.
 *
 *   identity (config/first-start.ts: ports free, data folder, bundle on first start)
 *   → store, signature pool → broker → last-checkpoint record → sync (no chain yet)
 *   → discovery (its revocation check reads the rosters sync holds) → sync links
 *   → recovery of the own chain (sync/recovery.ts: peers first; read-only while the ledger is
 *     behind the last-checkpoint record) → own chain (own-chain.ts) → witness listener and pusher
 *   → privacy (erasures applied before anything is served) → ingest → notifications (external
 *     broker, MQTT notifier, Home Assistant) → metrics → webhooks → uplink → drivers → demo
 *   → local API.
 *
 * Stopping (main.ts bounds it to 5 s): the API and the drivers stop taking events first (locks
 * keep what is not acknowledged), events waiting for disk space are given up, the pipeline
 * answers what it holds, then the chain's readers (uplink, webhooks, notifications, privacy,
 * witnesses), the chain is flushed, then discovery, sync, the broker and the store close.
 */
import { join } from 'node:path';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';
import { SignaturePool } from '../ledger/sigpool.js';
import { Signer, fingerprint } from '../ledger/crypto.js';
import { chainOrigin, type Chain } from '../ledger/chain.js';
import { isOtiError } from '../ledger/base/errors.js';
import type { LockDriver, DriverStatus } from '../drivers/driver.js';
import { SerialDriver } from '../drivers/serial.js';
import { BleDriver } from '../drivers/ble/driver.js';
import { Stages } from './stages.js';
import { Ingest } from './ingest.js';
import { openStore, openOwnChain, pauseWhileDiskFull, verifyInBackground } from './own-chain.js';
import { logDiscovery, logIngest, logSync } from './event-log.js';
import { nextSteps } from './next-steps.js';
import { Demo } from './demo.js';
import type { Logger } from './log.js';
import { prepareIdentity } from './config/first-start.js';
import type { Identity } from './config/identity.js';
import type { GatewayConfig } from './config/config.js';
import { Broker } from './broker/broker.js';
import { TopicMap } from './broker/topics.js';
import { gatewayCredentialVerifier } from './broker/credentials.js';
import { Discovery } from './discovery/discovery.js';
import { SyncNode, DEFAULT_SYNC_MESSAGE_BYTES } from './sync/node.js';
import { CosignatureBook } from './sync/cosignatures.js';
import type { EvidenceView, PeerView } from './sync/view.js';
import { CheckpointRecord, readLastCheckpointRecord } from './sync/checkpoint-record.js';
import { recoverBeforeAppending } from './sync/recovery.js';
import { startWitnessListener, siteLogKeys } from './sync/witness-listener.js';
import { WitnessPusher, externalWitnesses } from './sync/witness-push.js';
import { Uplink, type UplinkStatus } from './sync/uplink.js';
import { MqttNotifier } from './notify/notifier.js';
import { HomeAssistantBridge } from './notify/homeassistant.js';
import { ExternalBroker, FanOut } from './notify/external-broker.js';
import { notificationsStatus, type NotificationsStatus } from './notify/notification-metrics.js';
import { WebhookDispatcher, WEBHOOK_CURSOR_DIR, type WebhookStatus } from './notify/webhooks.js';
import { GatewayMetrics } from './api/metrics.js';
import { HealthBoard } from './api/health.js';
import { LocalApi } from './api/server.js';
import { startWaitingApi } from './api/waiting-api.js';
import { openPrivacy, applyErasures } from './api/privacy-setup.js';

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
  /** The notifier's queue, and the external broker when one is set (docs/API.md §GET /status). */
  readonly notifications: NotificationsStatus;
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

/** The parts a running gateway reads for its status; all of them exist once start() resolves. */
interface Parts {
  readonly identity: Identity;
  readonly startedAt: number;
  readonly chain: Chain;
  readonly broker: Broker;
  readonly sync: SyncNode;
  readonly ingest: Ingest;
  readonly drivers: readonly LockDriver[];
  readonly notifier: MqttNotifier | undefined;
  readonly externalBroker: ExternalBroker | undefined;
  readonly webhooks: WebhookDispatcher | undefined;
  readonly uplink: Uplink | undefined;
  /** On the first start (identity created or bundle applied): what to try next, to print once. */
  readonly nextSteps: string[] | undefined;
}

/** What compose() works with: the identity and the means to start and stop. */
interface Composition {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly identity: Identity;
  readonly firstStart: boolean;
  readonly startedAt: number;
  readonly opts: StartOptions;
  readonly stages: Stages;
  /** Every part reports what stops it doing its job here; /health, /status and metrics read it. */
  readonly health: HealthBoard;
  /** Aborted by stop(): a start-up that waits (for the ledger) gives up, late failures are not reported. */
  readonly stopping: AbortSignal;
}

export class Gateway {
  readonly #parts: Parts;
  readonly #stages: Stages;
  readonly #stopping: AbortController;

  private constructor(parts: Parts, stages: Stages, stopping: AbortController) {
    this.#parts = parts;
    this.#stages = stages;
    this.#stopping = stopping;
  }

  /** Starts everything; on failure, stops what had started and rethrows. */
  static async start(config: GatewayConfig, log: Logger, opts: StartOptions = {}): Promise<Gateway> {
    const { identity, firstStart } = await prepareIdentity(config, log, opts);
    const stages = new Stages(log);
    const stopping = new AbortController();
    try {
      const parts = await compose({ config, log, identity, firstStart, startedAt: Date.now(), opts, stages, health: new HealthBoard(), stopping: stopping.signal });
      return new Gateway(parts, stages, stopping);
    } catch (e) {
      stopping.abort();
      await stages.stop().catch(() => undefined);
      throw e;
    }
  }

  get nextSteps(): string[] | undefined {
    return this.#parts.nextSteps;
  }

  status(): GatewayStatus {
    return gatewayStatus(this.#parts);
  }

  /** Stops in reverse start order; each part is stopped even if an earlier one failed. */
  stop(): Promise<void> {
    this.#stopping.abort();
    return this.#stages.stop();
  }
}

/** What GET /status, `oti status` and the start-up line report (docs/API.md §GET /status). */
function gatewayStatus(p: Omit<Parts, 'nextSteps'>): GatewayStatus {
  const { identity, chain, broker, ingest, drivers, notifier, externalBroker, webhooks, sync, uplink } = p;
  const cp = chain.checkpoint;
  const bs = broker.stats();
  return {
    site: identity.trust.siteId,
    gateway: identity.gatewayId,
    version: VERSION,
    key: fingerprint(identity.key.publicKey),
    startedAt: p.startedAt,
    chain: { origin: chain.origin, size: chain.size, blocks: chain.head.n + 1, checkpoint: cp?.note },
    ingest: { depth: ingest.depth },
    broker: { port: broker.port, ...(broker.tlsPort !== undefined ? { tlsPort: broker.tlsPort } : {}), clients: bs.clients },
    drivers: drivers.map((d) => d.status()),
    notifications: notificationsStatus(notifier, externalBroker),
    webhooks: webhooks?.status() ?? [],
    peers: sync.peerViews(),
    sync: { quorum: sync.quorum, confirmed: sync.coverage.confirmedSize, compromised: sync.compromised(), evidence: sync.evidence() },
    ...(uplink !== undefined ? { uplink: uplink.status() } : {}),
  };
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

/** The drivers the configuration asks for: every serial port, and BLE unless disabled. */
function configuredDrivers(config: GatewayConfig, gatewayId: string): LockDriver[] {
  const drivers: LockDriver[] = config.serial.ports.map(
    (p) => new SerialDriver({ path: p.path, baudRate: p.baudRate, maxFrameBytes: p.maxFrameBytes, reconnectMinMs: p.reconnectMinMs, reconnectMaxMs: p.reconnectMaxMs, gatewayId, window: config.ingest.window }),
  );
  if (config.ble.enabled) drivers.push(new BleDriver({ gatewayId, window: config.ingest.window, maxConnections: config.ble.maxConnections, scanWatchdogMs: config.ble.scanWatchdogMs }));
  return drivers;
}

/** Starts the parts in order (see the top of this file); returns what status() reads. */
async function compose(c: Composition): Promise<Parts> {
  const { config, log, identity: id, stages, health, opts } = c;
  const b = config.broker;

  const store = await stages.start('store', () => openStore(join(config.dataDir, 'ledger'), health, log), (s) => s.close());
  // Elastic: signatures are checked on the main thread while the load is light, on worker
  // threads (started then, stopped when idle) when it is not (ledger/sigpool.ts).
  const pool = await stages.start('signature pool', () => new SignaturePool(Math.max(1, Math.min(4, cpus().length - 1)), { elastic: { inlineMaxPerS: 2000, idleMs: 60_000 } }), (p) => p.close());

  // The broker checks peer gateways' logins against the rosters sync holds, and sync links to the
  // broker's port: the broker is started first and reads sync's rosters once sync exists (no
  // gateway is refused, and none is on a roster, before that).
  let rosters: SyncNode | undefined;
  const topics = new TopicMap(id.trust.siteId, config.notifications.homeAssistant.prefix);
  const broker = await stages.start(
    'broker',
    () =>
      Broker.start({
        site: id.trust.siteId,
        host: b.host,
        port: b.port,
        allowAnonymous: b.allowAnonymous,
        maxMessageBytes: b.maxMessageBytes,
        maxConnections: b.maxConnections,
        maxConnectionsPerAddress: b.maxConnectionsPerAddress,
        rateLimit: b.rateLimit,
        sessions: b.sessions,
        ...(b.tls.cert !== undefined && b.tls.key !== undefined ? { tls: { port: b.tls.port, cert: b.tls.cert, key: b.tls.key, ...(b.tls.ca !== undefined ? { ca: b.tls.ca } : {}) } } : {}),
        usersFile: b.usersFile,
        // Peer gateways log in with credentials signed by their own key (gateway/broker/credentials.ts).
        verifyGatewayCredential: gatewayCredentialVerifier({ trust: id.trust, isRefused: (gw, key) => rosters?.isRefusedGateway(gw, key) ?? false }),
        // Retained messages under another gateway's chain only for gateways on a roster this gateway holds.
        isRosterGateway: (gw) => rosters?.isRosterGateway(gw) ?? false,
        retained: b.retained,
        login: b.login,
        haPrefix: config.notifications.homeAssistant.prefix,
        logger: log.child({ part: 'broker' }),
      }),
    (br) => br.close(),
  );
  log.info({ host: b.host, port: broker.port, tlsPort: broker.tlsPort }, `MQTT broker listening on ${b.host}:${broker.port}${broker.tlsPort !== undefined ? ` (TLS on ${broker.tlsPort})` : ''}`);

  // The last checkpoint this gateway signed, recorded outside the ledger (sync/checkpoint-record.ts).
  const lastRecord = await readLastCheckpointRecord(config.dataDir, chainOrigin(id.trust.siteId, id.gatewayId), id.key.publicKey);
  const lastCheckpoint = lastRecord?.checkpoint;
  const record = await stages.start(
    'last-checkpoint record',
    () => new CheckpointRecord(config.dataDir, lastCheckpoint, (e) => log.warn({ err: e }, `could not write ${config.dataDir}/last-checkpoint.json (retrying; checkpoints are published once it is written)`)),
    (r) => r.close(),
  );

  // Sync: links to this gateway's broker and to each peer's; the chain is attached once open.
  const sync = await stages.start(
    'sync',
    () =>
      new SyncNode({
        externalQuorum: config.witness.externalQuorum,
        store,
        trust: id.trust,
        gatewayId: id.gatewayId,
        key: id.key,
        enrolment: id.enrolment,
        pool,
        brokers: [`mqtt://${localHost(b.host)}:${broker.port}`, ...config.discovery.staticPeers.map((p) => `mqtt://${p.host}:${p.port}`)],
        maxMessageBytes: Math.min(b.maxMessageBytes, DEFAULT_SYNC_MESSAGE_BYTES),
        ...(config.sync.quorum !== undefined ? { quorum: config.sync.quorum } : {}),
        lockSignatures: config.sync.lockSignatures,
        logger: log.child({ part: 'sync' }),
        // A checkpoint reaches peers only once recorded: never ahead of the record.
        beforeAnnounce: (cp) => record.covering(cp.size),
      }),
    (s) => s.stop(),
  );
  rosters = sync;

  // Discovery after sync, whose rosters its revocation check reads (no chain is open yet). It
  // finds the site's other gateways by signed mDNS announcements (nothing is trusted on mDNS
  // alone); static peers from the configuration are handed to sync directly.
  let discovery: Discovery | undefined;
  if (config.discovery.enabled) {
    const dlog = log.child({ part: 'discovery' });
    discovery = await stages.start(
      'discovery',
      () =>
        Discovery.startWithFallback(
          {
            trust: id.trust,
            gatewayId: id.gatewayId,
            key: id.key,
            enrolment: id.enrolment,
            brokerPort: broker.port,
            backend: config.discovery.backend,
            staticPeers: config.discovery.staticPeers,
            // The rosters sync holds (peer chains, and the own chain once open).
            isRevoked: (gw, key) => sync.isRefusedGateway(gw, key),
          },
          (e) => dlog.warn({ reason: e.message }, `Avahi backend unavailable (${e.message}); using the built-in mDNS responder`),
        ),
      (d) => d.stop(),
    );
    logDiscovery(discovery, dlog);
    dlog.info(`announcing _oti._tcp (${config.discovery.backend}) and browsing for the site's gateways`);
  }
  await withTimeout(sync.start(), 10_000);
  discovery?.on('peer', (p) => void sync.addBroker(`mqtt://${p.host}:${p.port}`));
  for (const p of discovery?.peers() ?? []) void sync.addBroker(`mqtt://${p.host}:${p.port}`);

  // A restored or re-flashed gateway first recovers its own chain from the peers, so that it never forks it.
  const recovery = await recoverBeforeAppending({
    sync,
    discovery,
    staticPeers: config.discovery.staticPeers.length,
    record: lastCheckpoint,
    recordSeenByPeers: lastRecord?.seenByPeers === true,
    dataDir: config.dataDir,
    publicKey: id.key.publicKey,
    waitMs: config.sync.recoverWaitMs,
    timeoutMs: config.sync.recoverTimeoutMs,
    adopt: (cp) => record.note(cp, { seenByPeers: true }),
    health,
    log,
    signal: c.stopping,
    // While the ledger is lost: /health (503, with the reason) on the API's address, nothing else.
    whileReadOnly: async () => {
      const api = await startWaitingApi({ host: config.api.host, port: config.api.port, health, reason: () => health.list().find((h) => h.code === 'ERR_LEDGER_LOST')?.reason ?? 'waiting for the ledger' });
      log.warn({ url: api.url }, `local API on ${api.url} answers /health with 503 (ledger lost) and nothing else until the ledger is back`);
      return api;
    },
  });

  const chain = await stages.start('chain', () => openOwnChain({ config, identity: id, store, pool, record, recovery, log }), (ch) => ch.close());
  // A block that cannot be written stops the gateway: acks would otherwise wait forever.
  chain.on('error', (e: Error) => opts.onFatal?.(e));
  verifyInBackground({ store, chain, pool, identity: id, log, stopping: c.stopping, onFatal: opts.onFatal });
  // Verified cosignature lines of the own chain's checkpoints, for receipts and the uplink (gateway/sync/cosignatures.ts):
  // taken from before the chain is attached, when sync checks the cosignatures that waited for it.
  const cosignatures = new CosignatureBook();
  sync.on('cosigned', (c) => cosignatures.cosigned(c));
  sync.attachChain(chain);
  if (config.witness.http.enabled) {
    const w = config.witness.http;
    const listener = await stages.start(
      'witness',
      () => startWitnessListener({ host: w.host, port: w.port, maxConnections: w.maxConnections, dataDir: config.dataDir, name: chain.origin, signer: new Signer(id.key.seed), keyFor: siteLogKeys(sync, chain.origin) }),
      (l) => l.close(),
    );
    log.info({ url: listener.url }, `tlog-witness: POST ${listener.url}/add-checkpoint`);
  }
  const externals = externalWitnesses(config.witness);
  if (externals.length > 0) {
    const pusher = await stages.start(
      'witness-push',
      () =>
        new WitnessPusher({
          chain,
          witnesses: externals,
          timeoutMs: config.witness.pushTimeoutMs,
          beforeAnnounce: (cp) => record.covering(cp.size),
          onCosigned: (witness, size, ts, cosigned) => {
            sync.coverage.recordExternal(witness, size, ts);
            const w = externals.find((x) => x.name === witness);
            if (w !== undefined) cosignatures.add(cosigned, w.name, w.key);
          },
          logger: log.child({ part: 'witness' }),
        }),
      (p) => p.close(),
    );
    if (chain.checkpoint !== undefined) pusher.offer(chain.checkpoint);
    chain.on('block', (bl) => pusher.offer(bl.checkpoint));
  }
  logSync(sync, log);

  const privacy = await stages.start(
    'person keys',
    () => openPrivacy({ dataDir: config.dataDir, siteId: id.trust.siteId, chain, token: config.api.token, privacyToken: config.api.privacyToken, passphrase: opts.privacyPassphrase, log }),
    (p) => p.unfollow(),
  );
  const peerOrigins = (await store.listChains()).filter((ch) => ch.role === 'peer').map((ch) => ch.origin);
  await applyErasures({ store: privacy.store, own: chain, peerOrigins, peers: sync, stopping: c.stopping, log });

  const ingest = new Ingest({ chain, pool, queueLimit: config.ingest.queueLimit, ...(privacy.keys !== undefined ? { privacyKeyIds: privacy.keys.map((k) => k.id) } : {}) });
  logIngest(ingest, log);
  const metrics = new GatewayMetrics();

  // Notifications go to the embedded broker, an external one, or both (gateway/notify/external-broker.ts).
  const mqttOut = config.notifications.mqtt.enabled;
  const extConfig = config.notifications.externalBroker;
  const extUrl = extConfig.url;
  let ext: ExternalBroker | undefined;
  if (mqttOut && extUrl !== undefined) {
    ext = await stages.start('external broker', () => ExternalBroker.start({ ...extConfig, url: extUrl }, { topics, gatewayId: id.gatewayId, logger: log.child({ part: 'external-broker' }) }), (e) => e.close());
    log.info({ url: ext.url, mode: extConfig.mode }, `notifications go to the external MQTT broker ${ext.url} ${extConfig.mode === 'instead' ? 'instead of' : 'beside'} the embedded one`);
  }
  const out = ext === undefined ? broker : extConfig.mode === 'instead' ? ext : new FanOut(broker, ext);
  let notifier: MqttNotifier | undefined;
  if (mqttOut) {
    const n = await stages.start(
      'notifications',
      async () => {
        const made = new MqttNotifier({
          broker: out,
          topics,
          chain,
          ingest,
          gatewayId: id.gatewayId,
          retentionS: config.notifications.statusRetentionS,
          retainMax: config.notifications.statusRetainMax,
          onRefusedCopy: (code) => metrics.committedCopyRefused(code),
          logger: log.child({ part: 'notify' }),
        });
        await made.start();
        return made;
      },
      (made) => made.stop(),
    );
    notifier = n;
    sync.coverage.on('coverage', (ev) => n.coverage(ev));
    // The notifier's plain "online" on the own broker is followed by sync's fuller state.
    sync.refreshState();
  }
  if (mqttOut && config.notifications.homeAssistant.enabled) {
    const ha = await stages.start(
      'Home Assistant',
      async () => {
        const bridge = new HomeAssistantBridge({ out, topics, chain, ingest, gatewayId: id.gatewayId, logger: log.child({ part: 'homeassistant' }) });
        await bridge.start();
        return bridge;
      },
      (bridge) => bridge.stop(),
    );
    if (out !== ext) await broker.onMessage(topics.haStatus(), (payload) => ha.birth(payload.toString('utf8')));
    if (ext !== undefined) {
      await ext.onMessage(topics.haStatus(), (payload) => ha.birth(payload.toString('utf8')));
      // A broker that restarted may have lost the retained configs: publish them again.
      ext.on('connect', () => ha.birth('online'));
    }
  }

  const drivers: LockDriver[] = [];
  metrics.observeIngest(ingest);
  metrics.chainHeightsFrom(() => [{ origin: chain.origin, size: chain.size }, ...sync.storedChains().map((cs) => ({ origin: cs.origin, size: cs.head.size }))]);
  metrics.peersFrom(() => sync.peerViews().map((p) => ({ peer: p.gateway, state: p.state, lag: p.lag })));
  metrics.observeSync(sync);
  metrics.driversFrom(() => drivers.map((d) => d.status()));
  metrics.healthFrom(() => health.list());
  metrics.brokerFrom(() => broker.stats());
  if (mqttOut) metrics.notificationsFrom(() => notificationsStatus(notifier, ext));
  let webhooks: WebhookDispatcher | undefined;
  if (config.webhooks.length > 0) {
    const hooks = await stages.start(
      'webhooks',
      async () => {
        const d = new WebhookDispatcher({ chain, hooks: config.webhooks, cursorDir: join(config.dataDir, WEBHOOK_CURSOR_DIR), logger: log.child({ part: 'webhooks' }) });
        await d.start();
        return d;
      },
      (d) => d.stop(),
    );
    webhooks = hooks;
    metrics.webhooksFrom(() => hooks.status());
    log.info({ hooks: config.webhooks.length }, `webhooks: ${config.webhooks.length} receiver(s), delivered from the chain`);
  }
  let uplink: Uplink | undefined;
  if (config.uplink.url !== undefined) {
    const up = await stages.start('uplink', () => Uplink.start(config.uplink, { chain, dataDir: config.dataDir, logger: log.child({ part: 'uplink' }), cosignatures }), (u) => u.stop());
    uplink = up;
    metrics.uplinkFrom(() => up.status());
  }
  pauseWhileDiskFull(store, ingest, health, log);
  // Registered after the chain's readers, so they stop before them: drivers first, then the pipeline.
  stages.onStop('ingest', () => ingest.close());
  // Runs just before the pipeline stops: events waiting for disk space are given up (not acked, so the locks keep them).
  stages.onStop('writes waiting for disk space', () => store.stopWaiting());

  /** Starts a driver and feeds it to the pipeline. Unavailable drivers stay listed in status. */
  const addDriver = async (d: LockDriver): Promise<void> => {
    drivers.push(d);
    // Registered before start(): a driver that fails half-way is stopped all the same.
    stages.onStop(`driver ${d.id}`, () => d.stop());
    await d.start();
    ingest.attach(d);
    log.info({ driver: d.id }, `driver ${d.id} started`);
  };
  for (const d of configuredDrivers(config, id.gatewayId)) {
    try {
      await addDriver(d);
    } catch (e) {
      // BLE where there is no usable adapter: reported, and the gateway runs on.
      if (!(d instanceof BleDriver) || !isOtiError(e, 'ERR_DRIVER_UNAVAILABLE')) throw e;
      log.warn({ driver: d.id, reason: e.message }, `BLE driver unavailable: ${e.message}; the gateway runs on without it`);
    }
  }
  if (!config.ble.enabled) log.info('BLE driver disabled by configuration (ble.enabled=false)');
  let demoWatch: string | undefined;
  if (config.demo.locks > 0) {
    const demo = await stages.start('demo', () => Demo.start({ config, identity: id, chain, log: log.child({ part: 'demo' }), brokerPort: broker.port }), (d) => d.stop());
    for (const d of demo.drivers) await addDriver(d);
    log.info(`demo: watch the notifications with: ${demo.watch}`);
    demoWatch = demo.watch;
  }

  const parts = { identity: id, startedAt: c.startedAt, chain, broker, sync, ingest, drivers, notifier, externalBroker: ext, webhooks, uplink };
  const api = await stages.start(
    'local API',
    () =>
      LocalApi.start({
        host: config.api.host,
        port: config.api.port,
        token: config.api.token,
        maxConnections: config.api.maxConnections,
        maxConnectionsPerAddress: config.api.maxConnectionsPerAddress,
        chain,
        cosignatures,
        status: () => gatewayStatus(parts),
        peers: () => sync.storedChains(),
        metrics,
        health,
        privacy: {
          token: config.api.privacyToken,
          store: privacy.store,
          ...(privacy.reader !== undefined ? { reader: privacy.reader } : {}),
          replicas: async () => Promise.all((await store.listChains()).filter((ch) => ch.role === 'peer').map(async (ch) => sync.replica(ch.origin))),
        },
        logger: log.child({ part: 'api' }),
      }),
    (a) => a.close(),
  );
  const steps = c.firstStart ? nextSteps({ site: id.trust.siteId, apiUrl: api.url, brokerHost: localHost(b.host), brokerPort: broker.port, usersFile: b.usersFile, development: id.created, demoWatch, cwd: process.cwd() }) : undefined;
  log.info({ url: api.url }, `local API on ${api.url} (health, status, events, receipts, metrics)`);
  return { ...parts, nextSteps: steps };
}
