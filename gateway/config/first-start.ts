/**
 * Before the gateway starts anything: its ports are free, its data folder exists, a provisioning
 * bundle is applied on the first start, and its identity is loaded (or, on a development machine,
 * created). Nothing is written before the checks (ports, the external brokers' settings and
 * files), so a wrong setting leaves no trace.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { OtiError } from '../../ledger/base/errors.js';
import { fingerprint } from '../../ledger/crypto.js';
import { applyBundle } from './bundle.js';
import { checkPortsFree, type PortUse } from './port-check.js';
import { mqttClientOptions } from './mqtt-client.js';
import { loadOrCreateIdentity, ensureDataDir, type Identity } from './identity.js';
import type { GatewayConfig } from './config.js';
import type { Logger } from '../log.js';

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
export function listenPorts(config: GatewayConfig): PortUse[] {
  const { broker: b, api } = config;
  return [
    { key: 'broker.port', host: b.host, port: b.port },
    ...(b.tls.cert !== undefined && b.tls.key !== undefined ? [{ key: 'broker.tls.port', host: b.host, port: b.tls.port }] : []),
    { key: 'api.port', host: api.host, port: api.port },
  ];
}

/**
 * The settings of the brokers the gateway connects to as a client (URL scheme, certificate and
 * key together, password, CA and key files readable and private): ERR_CONFIG naming the key.
 * Checked here, before anything is written; each client reads them again when it starts.
 */
async function checkBrokerClients(config: GatewayConfig): Promise<void> {
  const ext = config.notifications.externalBroker;
  if (config.notifications.mqtt.enabled && ext.url !== undefined) await mqttClientOptions(ext, 'check', 'notifications.externalBroker');
  if (config.uplink.url !== undefined) await mqttClientOptions(config.uplink, 'check', 'uplink');
}

/** The data folder, a provisioning bundle applied on first start, and the identity. `firstStart`: this start made the identity. */
export async function prepareIdentity(config: GatewayConfig, log: Logger, opts: { passphrase?: string; bundlePassphrase?: string }): Promise<{ identity: Identity; firstStart: boolean }> {
  // Before anything is written (a development site, an applied bundle): a busy port or a wrong broker setting stops here.
  await checkPortsFree(listenPorts(config));
  await checkBrokerClients(config);
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
