/**
 * Privacy at start (docs/PRIVACY.md): the person-key store that follows the chain, the site's
 * privacy keys from the data folder, and every erasure recorded in a chain held here applied
 * before anything is served (and, for the peers' chains, as they arrive).
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { OtiError } from '../../ledger/base/errors.js';
import { readKeyringFile, readPublicPrivacyFile, type PrivacyPublicKey } from '../../ledger/privacy.js';
import type { Chain } from '../../ledger/chain.js';
import type { ChainReader } from '../../ledger/reader.js';
import { PersonKeyStore, PrivacyReader, applyPrivacyEntries, applyStoredShreds, followChain } from './persons.js';
import type { Logger } from '../log.js';

/** Privacy files in the data folder (docs/PRIVACY.md): the site's privacy public keys, and optionally the keyring. */
export const PRIVACY_PUBLIC_FILE = 'privacy.json';
export const PRIVACY_KEYRING_FILE = 'privacy.key';

export interface Privacy {
  readonly store: PersonKeyStore;
  /** The site's privacy public keys, when <dataDir>/privacy.json is there: only sealed credentials are accepted. */
  readonly keys?: readonly PrivacyPublicKey[];
  /** Present when the gateway holds the keyring (<dataDir>/privacy.key): plaintext for api.privacyToken. */
  readonly reader?: PrivacyReader;
  /** Stops following the own chain. */
  readonly unfollow: () => void;
}

export interface OpenPrivacyOptions {
  readonly dataDir: string;
  readonly siteId: string;
  readonly chain: Chain;
  readonly token: string | undefined;
  readonly privacyToken: string | undefined;
  /** Passphrase of <dataDir>/privacy.key (OTI_PRIVACY_PASSPHRASE). */
  readonly passphrase: string | undefined;
  readonly log: Logger;
}

/**
 * The person-key store follows the chain (a shred entry destroys the key here and marks the
 * erasure). With <dataDir>/privacy.json only sealed credentials are accepted; with
 * <dataDir>/privacy.key the gateway can also read plaintext for holders of api.privacyToken.
 */
export async function openPrivacy(o: OpenPrivacyOptions): Promise<Privacy> {
  const { dataDir, siteId, log } = o;
  if (o.privacyToken !== undefined && o.privacyToken === o.token) {
    throw new OtiError('ERR_CONFIG', 'api.privacyToken must differ from api.token', { key: 'api.privacyToken' });
  }
  const store = await PersonKeyStore.open(dataDir);
  const unfollow = followChain(o.chain, store, (e) => log.error({ err: e }, 'applying a privacy entry to the person-key store failed'));
  try {
    const pubPath = join(dataDir, PRIVACY_PUBLIC_FILE);
    if (!existsSync(pubPath)) return { store, unfollow };
    const pub = await readPublicPrivacyFile(pubPath);
    if (pub.siteId !== siteId) throw new OtiError('ERR_CONFIG', `${pubPath} is for site ${pub.siteId}, not ${siteId}`, { key: 'dataDir' });
    const keyPath = join(dataDir, PRIVACY_KEYRING_FILE);
    if (!existsSync(keyPath)) {
      log.info({ key: Buffer.from(pub.current.id).toString('hex') }, 'privacy: only sealed credentials are accepted; this gateway cannot read them');
      return { store, keys: pub.keys, unfollow };
    }
    if (o.passphrase === undefined) throw new OtiError('ERR_KEY_PASSPHRASE_REQUIRED', `${keyPath} is encrypted: set OTI_PRIVACY_PASSPHRASE`, { path: keyPath });
    const keyring = await readKeyringFile(keyPath, o.passphrase);
    if (keyring.siteId !== siteId) throw new OtiError('ERR_CONFIG', `${keyPath} is for site ${keyring.siteId}, not ${siteId}`, { key: 'dataDir' });
    log.warn({ key: Buffer.from(keyring.current.id).toString('hex') }, 'privacy: this gateway holds the privacy keyring; readers see pseudonyms, holders of api.privacyToken see plaintext');
    return { store, keys: keyring.publicKeys, reader: new PrivacyReader(keyring, store, o.chain.origin), unfollow };
  } catch (e) {
    unfollow();
    throw e;
  }
}

/** The peers' chains as sync holds them: their replicas, and word when one has grown. */
export interface PeerReplicas {
  replica(origin: string): Promise<ChainReader>;
  on(event: 'synced', f: (e: { origin: string; size: number }) => void): unknown;
}

/**
 * Every erasure recorded in a chain held here, this gateway's own (recovered from the peers after
 * a restore) and the peers', is applied before anything is served: a person key from a restored
 * backup is destroyed and the erasure marked. Erasures arriving later with the peers' chains are
 * applied as they arrive (errors go to `onError` unless the gateway is stopping). Returns the
 * number of keys destroyed now.
 */
export async function applyErasures(o: { store: PersonKeyStore; own: ChainReader; peerOrigins: readonly string[]; peers: PeerReplicas; stopping: AbortSignal; log: Logger }): Promise<number> {
  const { store, peers, log } = o;
  const appliedTo = new Map<string, number>();
  for (const origin of o.peerOrigins) appliedTo.set(origin, (await peers.replica(origin)).head.size);
  peers.on('synced', ({ origin, size }) => {
    void (async () => {
      const from = appliedTo.get(origin) ?? 0;
      appliedTo.set(origin, size);
      const replica = await peers.replica(origin);
      for (let i = from; i < size; i += 1024) await applyPrivacyEntries(store, await replica.entryRange(i, Math.min(size, i + 1024)));
    })().catch((e: unknown) => !o.stopping.aborted && log.error({ err: e, origin }, 'applying erasures from a peer chain failed'));
  });
  let destroyed = await applyStoredShreds(o.own, store);
  for (const origin of o.peerOrigins) destroyed += await applyStoredShreds(await peers.replica(origin), store);
  if (destroyed > 0) log.info({ destroyed }, `destroyed ${destroyed} person key(s) whose erasure is recorded in the chains held here`);
  return destroyed;
}
