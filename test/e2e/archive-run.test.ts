/**
 * A run of blocks (one range message) through the archive's path on a real MariaDB: rows go in
 * while the lock signatures are checked on a signature thread, and nothing is committed before
 * all of them verify. A gateway that signed a block holding a forged lock event (its chain is
 * otherwise perfect: links, roots, checkpoint signatures) gets the blocks before it archived, that
 * block refused with ERR_LOCK_SIGNATURE naming it, and nothing after it; sent again, it is refused
 * again and the archived blocks are duplicates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir, makeSite, enrollGateway, enrollLock, signedEvent } from '../support/site.js';
import { startMariaDb } from '../support/mariadb.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { SignaturePool } from '../../ledger/sigpool.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { migrate } from '../../gateway/archive/schema.js';
import { openPool } from '../../gateway/archive/service.js';
import { ArchivedChain, type IncomingBlock } from '../../gateway/archive/archived-chain.js';
import { decodeBlockHeader, encodeBlockHeader } from '../../ledger/block.js';

void test('archive: a run commits only fully verified blocks; a block with a forged lock signature is refused with the blocks after it, those before it are archived once', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-archive-run-');
  const db = await startMariaDb(t);
  const pool = await openPool({ host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database, connections: 2 });
  t.after(() => pool.end());
  await migrate(pool);
  const sigPool = new SignaturePool(1);
  t.after(() => sigPool.close());

  // A gateway chain: the lock enrolled, good events, one event whose signature is not the lock's (appended as preverified, so the gateway signed its block), more good events.
  const s = makeSite('site-run');
  const gw = enrollGateway(s, 'gw-run');
  const store = await LedgerStore.open(join(dir, 'ledger'));
  const chain = await Chain.open({ store, trust: s.trust, gatewayId: 'gw-run', key: gw.key, genesis: gw.statement });
  t.after(async () => {
    await chain.close();
    await store.close();
  });
  const lock = enrollLock(s, 'lock-run');
  await chain.append({ kind: 'roster', signed: lock.statement });
  for (let i = 0; i < 3; i++) await chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true });
  lock.ctr++;
  const forged = coseSign1(new Signer(generateKeyPair().seed), encodeLockEvent({ lock: lock.id, ctr: lock.ctr, time: Date.now(), type: 'unlocked' }));
  const bad = await chain.append({ kind: 'lock-event', cose: forged }, { preverified: true });
  for (let i = 0; i < 2; i++) await chain.append({ kind: 'lock-event', cose: signedEvent(lock) }, { preverified: true });
  await chain.flush();

  const blocks: (IncomingBlock & { n: number; first: number })[] = [];
  for (let n = 0; n <= chain.head.n; n++) {
    const b = await chain.block(n);
    blocks.push({ n, first: b.header.first, headerBytes: b.headerBytes, checkpoint: b.checkpoint, entries: await chain.entryRange(b.header.first, b.header.first + b.header.count) });
  }
  const badBlock = blocks.find((b) => bad.index >= b.first && bad.index < b.first + b.entries.length)!;
  assert.ok(badBlock.n >= 1 && badBlock.n < blocks.length - 1, 'the forged event is in a block between others');

  const counts = async (): Promise<{ blocks: number; entries: number }> => {
    const [b] = await pool.query('SELECT COUNT(*) AS n FROM blocks WHERE origin = ?', [chain.origin]);
    const [e] = await pool.query('SELECT COUNT(*) AS n FROM entries WHERE origin = ?', [chain.origin]);
    return { blocks: Number((b as { n: number }[])[0]!.n), entries: Number((e as { n: number }[])[0]!.n) };
  };

  // The same blocks up to the forged one, whose header is made to name another root (its checkpoint still the gateway's):
  // refused for its structure (ERR_BLOCK_INVALID) after its entries, the forged signature among them, went to the signature
  // thread. The blocks before it are archived all the same (in a second database of the same server).
  const root = await db.root();
  await root.query('CREATE DATABASE oti_tampered');
  await root.end();
  const pool2 = await openPool({ socket: db.socket, user: 'root', database: 'oti_tampered', connections: 2 });
  t.after(() => pool2.end());
  await migrate(pool2);
  const tampered = { ...badBlock, headerBytes: encodeBlockHeader({ ...decodeBlockHeader(badBlock.headerBytes), root: new Uint8Array(32) }) };
  const t1 = await new ArchivedChain(pool2, chain.origin, s.trust, sigPool).acceptRun([...blocks.slice(0, badBlock.n), tampered]);
  assert.deepEqual(t1.results, blocks.slice(0, badBlock.n).map(() => 'archived'));
  assert.deepEqual([t1.refusal?.code, t1.refusal?.details?.['block']], ['ERR_BLOCK_INVALID', badBlock.n]);
  const [t1rows] = await pool2.query('SELECT COUNT(*) AS n FROM blocks');
  assert.equal(Number((t1rows as { n: number }[])[0]!.n), badBlock.n);

  const archived = new ArchivedChain(pool, chain.origin, s.trust, sigPool);
  const run = await archived.acceptRun(blocks);
  assert.deepEqual(run.results, blocks.slice(0, badBlock.n).map(() => 'archived'));
  assert.equal(run.refusal?.code, 'ERR_LOCK_SIGNATURE');
  assert.equal(run.refusal.details?.['block'], badBlock.n);
  assert.equal(run.refusal.details?.['index'], bad.index);
  assert.deepEqual(await counts(), { blocks: badBlock.n, entries: badBlock.first });

  // Again, from the refused block on: refused again, nothing written. The archived blocks are duplicates.
  const again = await archived.acceptRun(blocks.slice(badBlock.n));
  assert.deepEqual([again.results, again.refusal?.code], [[], 'ERR_LOCK_SIGNATURE']);
  assert.deepEqual(await archived.acceptRun(blocks.slice(0, badBlock.n)), { results: blocks.slice(0, badBlock.n).map(() => 'duplicate') });
  // A fresh archive process (a restart) rebuilds its state from the tables and says the same.
  const restarted = new ArchivedChain(pool, chain.origin, s.trust, sigPool);
  assert.equal((await restarted.acceptRun([badBlock])).refusal?.code, 'ERR_LOCK_SIGNATURE');
  assert.equal(await restarted.accept(blocks[0]!.headerBytes, blocks[0]!.checkpoint, blocks[0]!.entries), 'duplicate');
  assert.deepEqual(await counts(), { blocks: badBlock.n, entries: badBlock.first });
});
