/**
 * A flipped byte in a LevelDB table file (.ldb), as a failing SD card would leave it: every
 * report names the stored block that fails and why, with its code — the library's verifier, the
 * real `oti verify`, and the real gateway process (which stops, and logs nothing else as an error:
 * no "Iterator is not open" from the parts whose reads the stop cut short).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig } from '../support/gateway-process.js';
import { oti } from '../support/oti-cli.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { verifyChain } from '../../ledger/verify.js';
import { isOtiError } from '../../ledger/base/errors.js';

/** A gateway's data folder with a chain of about 190 blocks, all of it in .ldb table files. */
async function dataFolder(dataDir: string): Promise<{ origin: string; signatures: Map<number, string> }> {
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const lock = generateKeyPair();
  const signer = new Signer(lock.seed);
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment, maxBlockEntries: 16 });
  await chain.append({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op: 'enroll', role: 'lock', id: 'door-1', key: lock.publicKey, time: Date.now() }) });
  await Promise.all(Array.from({ length: 3000 }, (_, i) => chain.append({ kind: 'lock-event', cose: coseSign1(signer, encodeLockEvent({ lock: 'door-1', ctr: i + 1, time: 1_700_000_000_000 + i, type: 'unlocked' })) })));
  // The signature (base64, the note's last line) of each block's checkpoint.
  const signatures = new Map<number, string>();
  for await (const b of chain.blocks(0)) signatures.set(b.header.n, /([A-Za-z0-9+/]+=*)\n$/.exec(b.checkpoint.note)![1]!);
  await chain.close();
  await store.close();
  // Opened again: LevelDB writes what its log holds into a table file.
  await (await LedgerStore.open(join(dataDir, 'ledger'))).close();
  return { origin: chain.origin, signatures };
}

/**
 * Flips the last byte ('=' becomes '<') of an early block's checkpoint signature where it lies in
 * a table file; returns the block. An early block fails the gateway's verification while its other
 * readers of the chain are still busy (the case where they used to report "Iterator is not open").
 */
async function flipSignatureByte(ledger: string, signatures: Map<number, string>): Promise<number> {
  for (const name of (await readdir(ledger)).filter((f) => f.endsWith('.ldb'))) {
    const bytes = await readFile(join(ledger, name));
    for (const [n, sig] of signatures) {
      if (n < 1) continue;
      const at = bytes.indexOf(Buffer.from(sig, 'latin1'));
      if (at < 0) continue;
      bytes[at + sig.length - 1]! ^= 0x01;
      await writeFile(join(ledger, name), bytes);
      return n;
    }
  }
  throw new Error('no checkpoint signature found verbatim in the table files');
}

void test('a flipped byte in an .ldb file is reported with the block it breaks, by the verifier, oti verify and the gateway', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-ldb-');
  const dataDir = join(dir, 'data');
  const { origin, signatures } = await dataFolder(dataDir);
  const block = await flipSignatureByte(join(dataDir, 'ledger'), signatures);
  const named = new RegExp(`stored block ${block} of ${origin.replaceAll('/', '\\/')}: its checkpoint: signature is not standard padded base64`);

  // The library's verifier.
  {
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    try {
      const cs = await store.chain(origin, 'self');
      await assert.rejects(verifyChain(cs, { trust: (await loadOrCreateIdentity(dataDir)).trust }), (e: unknown) => isOtiError(e, 'ERR_CHECKPOINT_FORMAT') && named.test(e.message));
    } finally {
      await store.close();
    }
  }

  // The real oti verify.
  const r = await oti(['verify', '--data', dataDir]);
  assert.equal(r.code, 1);
  assert.match(r.stdout + r.stderr, named);
  assert.match(r.stdout + r.stderr, /ERR_CHECKPOINT_FORMAT/);

  // The real gateway: its background verification stops it, naming the block, and nothing else is logged as an error.
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), { dataDir, broker: { host: '127.0.0.1', port: await freePort() }, api: { port: await freePort() }, serialPorts: [], more: { discovery: { enabled: false } } });
  const gw = startGateway(['--config', config]);
  t.after(() => gw.proc.kill('SIGKILL'));
  assert.equal(await gw.exited, 1);
  const errors = gw.logs.filter((l) => l.level >= 50);
  assert.equal(errors.length, 1, `one error logged: ${errors.map((l) => l.msg).join(' | ')}`);
  assert.match(errors[0]!.msg, named);
  assert.equal(errors[0]!.code, 'ERR_CHECKPOINT_FORMAT');
});
