/**
 * A gateway data folder as an installer leaves it: a bundle from the site authority applied
 * (gateway/config/bundle.ts), optionally a lock enrolled in its chain, and an app user in its broker's
 * users file (for mosquitto_sub). For tests that run the real gateway process on a site of
 * several gateways. devGateway: the same for one development gateway (its own dev site, as
 * `npm start` makes on a first run) with locks door-0, door-1, … enrolled.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createBundle, applyBundle } from '../../gateway/config/bundle.js';
import { loadOrCreateIdentity, type Identity } from '../../gateway/config/identity.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { generateKeyPair, Signer, type KeyPair } from '../../ledger/crypto.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import type { TestSite } from './site.js';
import { freePort, writeGatewayConfig } from './gateway-process.js';

export const APP_USER = { username: 'watcher', password: 'watcher-password-123' } as const;

export interface EnrolledGateway {
  readonly id: string;
  readonly dataDir: string;
  /** A copy of its bundle, kept for applying it again (applying consumes the bundle file). */
  readonly bundle: string;
  /** The lock enrolled in its chain (when asked for). */
  readonly lock?: { readonly id: string; readonly key: KeyPair };
}

export async function enrolledGateway(dir: string, s: TestSite, id: string, opts: { lock?: string } = {}): Promise<EnrolledGateway> {
  const dataDir = join(dir, id);
  const { bundle } = await createBundle({ site: s.site, siteId: s.siteId, siteKeys: s.trust.siteKeys, gatewayId: id, validForMs: 86_400_000, now: Date.now() });
  const bundlePath = join(dir, `${id}.bundle.json`);
  await writeFile(bundlePath, JSON.stringify(bundle));
  const kept = `${bundlePath}.keep`;
  await writeFile(kept, JSON.stringify(bundle));
  await applyBundle(bundlePath, dataDir, { now: Date.now() });
  await addMqttUser(join(dataDir, 'mqtt-users.json'), APP_USER.username, 'app', APP_USER.password);
  if (opts.lock === undefined) return { id, dataDir, bundle: kept };
  const key = generateKeyPair();
  const ident = await loadOrCreateIdentity(dataDir);
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  const chain = await Chain.open({ store, trust: ident.trust, gatewayId: id, key: ident.key, genesis: ident.enrolment });
  await chain.append({ kind: 'roster', signed: signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id: opts.lock, key: key.publicKey, time: Date.now() }) });
  await chain.close();
  await store.close();
  return { id, dataDir, bundle: kept, lock: { id: opts.lock, key } };
}

/** An enrolled gateway of a loopback site (loopbackSite): its configuration file and its ports. */
export interface LoopbackGateway extends EnrolledGateway {
  readonly config: string;
  readonly broker: number;
  readonly api: number;
}

/**
 * The gateways `ids` of one site on 127.0.0.1, enrolled: each with a broker and an API port of its
 * own and every other one as a static peer (discovery off), its configuration written to
 * `<dir>/<id>.yaml`. `prepare` runs on each data folder before its configuration is written;
 * `more` adds top-level configuration sections to a gateway's.
 */
export async function loopbackSite(dir: string, s: TestSite, ids: readonly string[], o: { prepare?: (g: EnrolledGateway) => Promise<void>; more?: (id: string) => Record<string, unknown> } = {}): Promise<LoopbackGateway[]> {
  const ports = await Promise.all(ids.map(async () => ({ broker: await freePort(), api: await freePort() })));
  const gws: LoopbackGateway[] = [];
  for (const [i, id] of ids.entries()) {
    const g = await enrolledGateway(dir, s, id);
    await o.prepare?.(g);
    const staticPeers = ports.filter((_, j) => j !== i).map((p) => ({ host: '127.0.0.1', port: p.broker }));
    const config = await writeGatewayConfig(join(dir, `${id}.yaml`), {
      dataDir: g.dataDir,
      broker: { host: '127.0.0.1', port: ports[i]!.broker },
      api: { port: ports[i]!.api },
      serialPorts: [],
      more: { discovery: { enabled: false, staticPeers }, ...o.more?.(id) },
    });
    gws.push({ ...g, config, broker: ports[i]!.broker, api: ports[i]!.api });
  }
  return gws;
}

/** A development gateway's data folder (its own dev site) with `locks` locks door-0… enrolled in its chain, offline, as an installer prepares it. */
export async function devGateway(dataDir: string, locks: number): Promise<{ id: Identity; lockKeys: KeyPair[] }> {
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const lockKeys = Array.from({ length: locks }, () => generateKeyPair());
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment });
  for (const [i, k] of lockKeys.entries()) {
    await chain.append({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op: 'enroll', role: 'lock', id: `door-${i}`, key: k.publicKey, time: Date.now() }) });
  }
  await chain.close();
  await store.close();
  return { id, lockKeys };
}
