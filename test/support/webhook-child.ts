/**
 * Child process for the webhook crash test (test/integration/webhooks.test.ts): appends events to
 * the chain and delivers them to a webhook receiver until it is SIGKILLed.
 *
 *   node dist/test/support/webhook-child.js <db path> <keys file> <cursor dir> <url> <secret>
 *
 * The keys file is a CrashKeys document (test/support/crash-child.ts), so every run works on the
 * same site and gateway. The child opens the chain (with genesis when new), enrols the locks not
 * enrolled yet, starts a WebhookDispatcher (one hook, fromStart, short backoff) and then keeps a
 * few appends in flight. After each append resolves it writes `ACK <index>` to stdout
 * synchronously. On any failure it writes `FAIL ...` to stderr and exits 2; it exits by itself
 * after OTI_WEBHOOK_CHILD_MAX_MS (default 60 s) in case nobody kills it.
 */
import { writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Chain } from '../../ledger/chain.js';
import { LedgerStore } from '../../ledger/store.js';
import { fromHex, keyPairFromSeed, Signer } from '../../ledger/crypto.js';
import { decodeSigned } from '../../ledger/roster.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { WebhookDispatcher } from '../../gateway/notify/webhooks.js';
import type { CrashKeys } from './crash-child.js';
import { signedEvent, type TestLock } from './site.js';

const IN_FLIGHT = 4;

function fail(what: string, e: unknown): never {
  const code = isOtiError(e) ? e.code : 'UNCODED';
  writeSync(2, `FAIL ${what}: ${code}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const [dbPath, keysPath, cursorDir, url, secret] = process.argv.slice(2);
  if (dbPath === undefined || keysPath === undefined || cursorDir === undefined || url === undefined || secret === undefined) {
    throw new Error('usage: webhook-child <db path> <keys file> <cursor dir> <url> <secret>');
  }
  const maxMs = Number(process.env['OTI_WEBHOOK_CHILD_MAX_MS'] ?? 60_000);
  setTimeout(() => fail('watchdog', new Error(`not killed within ${maxMs} ms`)), maxMs).unref();
  const keys = JSON.parse(await readFile(keysPath, 'utf8')) as CrashKeys;
  const trust = { siteId: keys.siteId, siteKeys: [fromHex('sitePublicKey', keys.sitePublicKey, 32)] };
  const store = await LedgerStore.open(dbPath);
  const chain = await Chain.open({
    store,
    trust,
    gatewayId: keys.gatewayId,
    key: keyPairFromSeed(fromHex('gatewaySeed', keys.gatewaySeed, 32)),
    genesis: decodeSigned(fromHex('gatewayStatement', keys.gatewayStatement)),
    sealDelayMs: 2,
  });
  chain.on('error', (e) => fail('chain error', e));
  const dispatcher = new WebhookDispatcher({
    chain,
    cursorDir,
    hooks: [{ url, secret, maxAttempts: 0, backoffMinMs: 10, backoffMaxMs: 50, timeoutMs: 10_000, fromStart: true }],
  });
  await dispatcher.start();

  const locks: TestLock[] = [];
  for (const l of keys.locks) {
    const statement = decodeSigned(fromHex('statement', l.statement));
    const key = keyPairFromSeed(fromHex('seed', l.seed, 32));
    locks.push({ id: l.id, key, signer: new Signer(key.seed), statement, ctr: 0 });
    if (chain.roster.get('lock', l.id) === undefined) await chain.append({ kind: 'roster', signed: statement });
    locks.at(-1)!.ctr = await chain.lastCounter(l.id);
  }

  let seq = 0;
  let inFlight = 0;
  const pump = (): void => {
    while (inFlight < IN_FLIGHT) {
      inFlight++;
      seq++;
      const lock = locks[seq % locks.length]!;
      chain.append({ kind: 'lock-event', cose: signedEvent(lock) }).then(
        (r) => {
          writeSync(1, `ACK ${r.index}\n`);
          inFlight--;
          setTimeout(pump, 2);
        },
        (e: unknown) => fail('append', e),
      );
    }
  };
  pump();
}

main().catch((e: unknown) => fail('startup', e));
