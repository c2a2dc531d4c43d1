/**
 * `npm start`: the gateway process. At this stage it opens (or creates) the gateway's identity
 * and ledger in the data folder (Chain.open verifies the last block before anything is served),
 * reports the ledger's state, verifies the whole chain in the background (minutes on a long
 * chain, so it does not hold up start-up) and keeps the ledger open until SIGINT/SIGTERM, when
 * it flushes and closes it. A chain that fails verification stops the gateway. Later parts of the runtime
 * (drivers, broker, sync, API) start from here too.
 *
 * Data folder: $OTI_DATA_DIR, else ./data.
 */
import { resolve, join } from 'node:path';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { verifyChain } from '../ledger/verify.js';
import { fingerprint, toHex } from '../ledger/crypto.js';
import { isOtiError } from '../ledger/errors.js';
import { loadOrCreateIdentity } from './identity.js';

async function main(): Promise<void> {
  const dataDir = resolve(process.env['OTI_DATA_DIR'] ?? 'data');
  const id = await loadOrCreateIdentity(dataDir, process.env['OTI_KEY_PASSPHRASE'] !== undefined ? { passphrase: process.env['OTI_KEY_PASSPHRASE'] } : {});
  if (id.created) console.log(`created a development site "${id.trust.siteId}" and gateway "${id.gatewayId}" in ${dataDir}`);
  console.log(`data folder: ${dataDir}`);
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  const pool = new SignaturePool();
  let chain: Chain | undefined;
  let stopping = false;
  try {
    chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment, pool });
    const cp = chain.checkpoint;
    const locks = [...chain.roster.members()].filter((m) => m.role === 'lock' && !m.revoked).length;
    console.log(`site ${id.trust.siteId}, gateway ${id.gatewayId} (key ${fingerprint(id.key.publicKey)})`);
    console.log(`chain ${chain.origin}: ${chain.size} entries in ${chain.head.n + 1} blocks, ${locks} locks enrolled`);
    if (cp !== undefined) console.log(`checkpoint: size ${cp.size}, root ${toHex(cp.root)}`);
    console.log('ledger open; press Ctrl+C to stop');
    const started = performance.now();
    const upTo = chain.head.n;
    verifyChain(chain.cs, { trust: id.trust, pool, toBlock: upTo }).then(
      (report) => console.log(`verified ${report.entries} entries and ${report.lockSignatures} lock signatures in ${Math.round(performance.now() - started)} ms`),
      (e: unknown) => {
        if (stopping) return; // the pool and store were closed under it
        console.error(`oti-gateway: the chain does not verify: ${(e as Error).message}${isOtiError(e) ? ` [${e.code}]` : ''}`);
        process.exit(1);
      },
    );
  } catch (e) {
    await chain?.close().catch(() => undefined);
    await pool.close();
    await store.close();
    throw e;
  }
  const open = chain;
  const stop = async (signal: string): Promise<void> => {
    stopping = true;
    console.log(`${signal}: flushing the ledger and stopping`);
    const timer = setTimeout(() => {
      console.error('stop took longer than 5 s; exiting');
      process.exit(1);
    }, 5000);
    timer.unref();
    await open.close();
    await pool.close();
    await store.close();
    process.exit(0);
  };
  process.once('SIGINT', (s) => void stop(s));
  process.once('SIGTERM', (s) => void stop(s));
  // Keep the process alive until a signal arrives.
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: unknown) => {
  if (isOtiError(e)) console.error(`oti-gateway: ${e.message} [${e.code}]`);
  else console.error('oti-gateway:', e);
  process.exit(1);
});
