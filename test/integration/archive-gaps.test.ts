/**
 * What the archive does with blocks that arrive after a gap, and how its evidence is capped, on a
 * private MariaDB (docs/ARCHIVE.md §Gaps in the intake, §Verification), the Archiver driven in
 * this process with the uplink messages of a real chain:
 *
 * - a block ahead of the archived chain (blocks missing before it, as after the central broker
 *   dropped some) is set aside: acknowledged, not refused, not evidence; the chain is listed as
 *   behind with the remedy, and a gap listener (a site puller) is told the size to pull to; once
 *   the missing blocks come (a pull's run), the chain is no longer behind;
 * - a forged block ahead (a real block renumbered, its checkpoint left naming the real one; or a
 *   checkpoint that describes it signed by another key) is refused as evidence, and the chain is
 *   not shown behind nor a puller told;
 * - a block ahead of a chain the archive holds nothing of (no key of its gateway to check with) is
 *   shown behind as unverified, with no size for a puller; the mark lapses after
 *   UNVERIFIED_GAP_MS, and goes once blocks of the chain are archived;
 * - evidence is capped per chain and code: forged checkpoints beyond the cap are counted, not
 *   stored, and the chain's equivocation after them is stored all the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock } from '../support/site.js';
import { makeGateway, appendEvents } from '../support/sync.js';
import { startMariaDb } from '../support/mariadb.js';
import { blockMessage, equivocating, forgedAhead, forgedNext } from '../support/fleet.js';
import { openPool } from '../../gateway/archive/service.js';
import { migrate } from '../../gateway/archive/schema.js';
import { parseArchiveConfig } from '../../gateway/archive/config.js';
import { Archiver, UNVERIFIED_GAP_MS } from '../../gateway/archive/archiver.js';
import { decodeRange, encodeRange, type RangeMessage } from '../../gateway/sync/wire.js';
import { generateKeyPair, Signer, toHex } from '../../ledger/crypto.js';
import { silentLogger } from '../../gateway/log.js';

const SITE = 'site-gaps';

void test('archive: blocks after a gap are set aside and the chain shown behind (not evidence) until the missing blocks come; evidence is capped per chain and code, so an equivocation is stored after a flood of forgeries', { timeout: 120_000 }, async (t) => {
  const s = makeSite(SITE);
  const g = await makeGateway(t, s, 'gw-1', { broker: false });
  const lock = enrollLock(s, 'door');
  while (g.chain.head.n < 7) await appendEvents(g, lock, 2);
  const origin = g.chain.origin;
  const msgs: Buffer[] = [];
  for (let n = 0; n <= g.chain.head.n; n++) msgs.push(await blockMessage(g.chain, n));

  const db = await startMariaDb(t);
  const pool = await openPool({ host: '127.0.0.1', port: db.port, user: db.user, passwordFile: db.passwordFile, database: db.database, connections: 2 });
  t.after(() => pool.end());
  await migrate(pool);
  const cfg = parseArchiveConfig({ broker: { url: 'mqtt://127.0.0.1:1' }, mysql: { user: db.user, database: db.database }, api: { tokenFile: 'token' }, sites: [{ siteId: SITE, siteKeys: s.trust.siteKeys.map((k) => toHex(k)) }], maxEvidencePerChain: 2, verifyThreads: 0 }, '/');
  let clock = Date.now();
  const archiver = new Archiver(pool, cfg, silentLogger(), { now: () => clock });
  const told: [string, string, number | undefined][] = [];
  archiver.onGap((o, site, size) => told.push([o, site, size]));
  const sendTo = (o: string, m: Buffer): Promise<void> => archiver.range(o, SITE, () => decodeRange(m, 1 << 20), m);
  const send = (m: Buffer): Promise<void> => sendTo(origin, m);
  const evidence = async (o = origin): Promise<string[]> => {
    const [rows] = await pool.query('SELECT code FROM evidence WHERE origin = ? ORDER BY id', [o]);
    return (rows as { code: string }[]).map((r) => r.code);
  };
  const sizeAfter = (m: Buffer): number => {
    const r = decodeRange(m, 1 << 20);
    return r.first + r.entries.length;
  };

  for (const m of msgs.slice(0, 2)) await send(m);
  assert.equal(await archiver.archivedSize(origin), sizeAfter(msgs[1]!));

  // A real block renumbered far ahead (its checkpoint still names the real block and size, so no signature covers the
  // header), and one with a checkpoint that describes it signed by another key: refused as evidence, not a gap.
  await send(forgedAhead(msgs[3]!, 500, 517));
  await send(forgedAhead(msgs[3]!, 500, 517, new Signer(generateKeyPair().seed)));
  assert.deepEqual(await evidence(), ['ERR_CHECKPOINT_MISMATCH', 'ERR_CHECKPOINT_SIGNATURE'], 'a forged block ahead is evidence');
  assert.deepEqual(archiver.behind(), [], 'a forged block ahead does not make the chain behind');
  assert.deepEqual([archiver.counts.setAside, archiver.counts.behindChains, told.length], [0, 0, 0]);

  // Blocks 2 and 3 never come (the broker dropped them); 4 comes and is set aside (the wait of §Sessions ran out on the forgeries); 5 likewise.
  await send(msgs[4]!);
  await send(msgs[5]!);
  assert.equal(await archiver.archivedSize(origin), sizeAfter(msgs[1]!), 'nothing after the gap is archived');
  assert.deepEqual(await evidence(), ['ERR_CHECKPOINT_MISMATCH', 'ERR_CHECKPOINT_SIGNATURE'], 'a gap is not evidence');
  const c = archiver.counts;
  assert.deepEqual([c.refused, c.setAside, c.behindChains, c.evidenceDropped], [2, 2, 1, 0]);
  const [behind] = archiver.behind();
  assert.deepEqual([behind?.origin, behind?.site, behind?.next, behind?.seen, behind?.seenSize, behind?.setAside, behind?.verified, behind?.until], [origin, SITE, 2, 5, sizeAfter(msgs[5]!), 2, true, undefined]);
  // A forgery after the gap does not move what the chain is behind to.
  await send(forgedAhead(msgs[5]!, 900, 5000));
  assert.deepEqual([archiver.behind()[0]?.seen, archiver.behind()[0]?.setAside], [5, 2]);
  assert.match(behind!.remedy, /configure pull for site site-gaps/);
  assert.match(behind!.remedy, /max_queued_messages/);
  assert.deepEqual(told, [[origin, SITE, sizeAfter(msgs[4]!)], [origin, SITE, sizeAfter(msgs[5]!)]], 'a puller is told at once, each time');

  // A pull brings blocks 2..6 in one run: archived, and the chain is no longer behind.
  const run = msgs.slice(2, 7).map((m) => decodeRange(m, 1 << 20));
  const whole: RangeMessage = { id: 1, chain: origin, first: run[0]!.first, entries: run.flatMap((r) => r.entries), blocks: run.flatMap((r) => r.blocks), end: true };
  const wholeBytes = Buffer.from(encodeRange(whole));
  await archiver.range(origin, SITE, () => whole, wholeBytes);
  assert.equal(await archiver.archivedSize(origin), sizeAfter(msgs[6]!));
  assert.deepEqual(archiver.behind(), []);
  assert.equal(archiver.counts.behindChains, 0);

  // Forged checkpoints beyond the cap of 2 per code are counted, not stored; the equivocation that follows is stored all the same.
  for (let i = 0; i < 3; i++) await send(forgedNext(msgs[6]!));
  assert.deepEqual(await evidence(), ['ERR_CHECKPOINT_MISMATCH', 'ERR_CHECKPOINT_SIGNATURE', 'ERR_CHECKPOINT_MISMATCH', 'ERR_CHECKPOINT_SIGNATURE']);
  assert.equal(archiver.counts.evidenceDropped, 2);
  await send(equivocating(msgs[6]!, g.key));
  assert.deepEqual((await evidence()).slice(-1), ['ERR_EQUIVOCATION']);
  // The chain goes on: its next block is archived.
  await send(msgs[7]!);
  assert.equal(await archiver.archivedSize(origin), sizeAfter(msgs[7]!));
  assert.equal(archiver.counts.refused, 7);

  // A chain the archive holds nothing of: no key of its gateway to check a block ahead with.
  const g2 = await makeGateway(t, s, 'gw-2', { broker: false });
  const window = enrollLock(s, 'window');
  while (g2.chain.head.n < 4) await appendEvents(g2, window, 2);
  const o2 = g2.chain.origin;
  const msgs2: Buffer[] = [];
  for (let n = 0; n <= 4; n++) msgs2.push(await blockMessage(g2.chain, n));
  await sendTo(o2, forgedAhead(msgs2[3]!, 500, 517));
  assert.deepEqual(await evidence(o2), ['ERR_CHECKPOINT_MISMATCH'], 'headers that disagree with their checkpoint are refused without a key too');
  assert.deepEqual(archiver.behind(), []);
  await sendTo(o2, msgs2[3]!);
  const b2 = archiver.behind()[0];
  assert.deepEqual([b2?.origin, b2?.next, b2?.seen, b2?.verified, b2?.until], [o2, 0, 3, false, clock + UNVERIFIED_GAP_MS]);
  assert.deepEqual(told.at(-1), [o2, SITE, undefined], 'a puller is not told a size no signature was checked for');
  // Not renewed in time, the mark lapses.
  clock += UNVERIFIED_GAP_MS;
  assert.deepEqual([archiver.behind(), archiver.counts.behindChains], [[], 0]);
  // Marked again; a pull brings blocks 0..2: the gateway's key is archived, the unverified mark goes.
  await sendTo(o2, msgs2[4]!);
  assert.deepEqual(archiver.behind().map((b) => [b.origin, b.seen, b.verified]), [[o2, 4, false]]);
  const run2 = msgs2.slice(0, 3).map((m) => decodeRange(m, 1 << 20));
  const whole2: RangeMessage = { id: 2, chain: o2, first: 0, entries: run2.flatMap((r) => r.entries), blocks: run2.flatMap((r) => r.blocks), end: true };
  await archiver.range(o2, SITE, () => whole2, Buffer.from(encodeRange(whole2)));
  assert.equal(await archiver.archivedSize(o2), sizeAfter(msgs2[2]!));
  assert.deepEqual(archiver.behind(), []);
  assert.deepEqual(await evidence(o2), ['ERR_CHECKPOINT_MISMATCH']);
});
