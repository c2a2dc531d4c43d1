/**
 * gateway/sync/recovery.ts without processes: a fake sync node (the own replica's size, the
 * peers' answers, the checkpoint retained on the brokers) and a real health board and logger.
 *
 *  - everything recovered: no warning about a retained checkpoint no further than the ledger;
 *  - read-only while peers keep answering "nothing newer": that line once, not every try;
 *  - the remedy in ERR_LEDGER_LOST: retire the id when peers saw a checkpoint beyond the ledger
 *    (the record is then marked seen), accept-loss otherwise.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { HealthBoard } from '../../gateway/api/health.js';
import { recoverBeforeAppending, LEDGER_LOST_CONDITION, type RecoveryOptions } from '../../gateway/sync/recovery.js';
import { waitUntil } from '../support/wait.js';
import { tempDir } from '../support/site.js';

const ORIGIN = 'oti/site-1/gw-c';
const key = generateKeyPair();
const checkpoint = (size: number): SignedCheckpoint => signCheckpoint({ origin: ORIGIN, size, root: randomBytes(32), block: size - 1, blockHash: randomBytes(32) }, new Signer(key.seed), ORIGIN);

interface Line {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** Recovery with `held` entries stored, peers that give back `recovered` (default: nothing more), and `retained` on the brokers. */
function setup(t: TestContext, o: { held: number; recovered?: number; retained?: SignedCheckpoint; record?: SignedCheckpoint; dataDir: string }) {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  const replica = { size: o.held };
  let asked = 0;
  const adopted: SignedCheckpoint[] = [];
  const health = new HealthBoard();
  const stop = new AbortController();
  t.after(() => stop.abort());
  const sync = {
    origin: ORIGIN,
    replica: () => Promise.resolve(replica),
    recoverOwnChain: () => {
      asked++;
      const before = replica.size;
      replica.size = Math.max(replica.size, o.recovered ?? 0);
      return Promise.resolve({ before, after: replica.size, peers: ['gw-a', 'gw-b'], answered: ['gw-a', 'gw-b'] });
    },
    retainedOwn: o.retained,
  } as unknown as RecoveryOptions['sync'];
  const opts: RecoveryOptions = {
    sync,
    discovery: undefined,
    staticPeers: 2,
    record: o.record,
    dataDir: o.dataDir,
    publicKey: key.publicKey,
    waitMs: 0,
    timeoutMs: 1000,
    health,
    log: pino({ level: 'info' }, sink),
    signal: stop.signal,
    adopt: (cp) => adopted.push(cp),
    pollMs: 1,
    retryPeersMs: 2,
  };
  return { lines, health, adopted, stop, asked: () => asked, run: () => recoverBeforeAppending(opts) };
}

void test('a re-flash that recovers its whole chain: no warning about the checkpoint retained on the brokers', async (t) => {
  const r = setup(t, { held: 0, recovered: 392, retained: checkpoint(392), dataDir: await tempDir(t) });
  assert.equal(await r.run(), 'recovered');
  assert.deepEqual(r.lines.filter((l) => l.msg.includes('retained on the brokers')), []);
  assert.deepEqual(r.adopted, [], 'nothing to hold the ledger to: the chain records its own checkpoint');
});

void test('a retained checkpoint beyond what was recovered is the record, warned about, marked as seen by peers', async (t) => {
  const seen = checkpoint(395);
  const r = setup(t, { held: 0, recovered: 392, retained: seen, dataDir: await tempDir(t) });
  const done = r.run();
  await waitUntil('ledger lost', () => r.lines.some((l) => l.msg.startsWith('ledger lost: ')));
  assert.equal(r.lines.filter((l) => l.msg.includes('retained on the brokers, is ahead of its last-checkpoint record and of the 392 entries')).length, 1);
  assert.deepEqual(r.adopted, [seen]);
  const reason = r.health.list().find((h) => h.id === LEDGER_LOST_CONDITION)?.reason ?? '';
  assert.match(reason, /its peers saw a checkpoint beyond 392 .*do not accept the loss.*oti gateway revoke --id gw-c --data .*oti gateway enroll --id <new id>.*apply-bundle .*--force/);
  assert.doesNotMatch(reason, /oti ledger accept-loss/);
  r.stop.abort();
  await assert.rejects(done, (e: unknown) => isOtiError(e, 'ERR_LEDGER_LOST'));
});

void test('read-only with peers that have nothing newer: "nothing newer" is logged once, not at every try', async (t) => {
  const r = setup(t, { held: 2, record: checkpoint(5), dataDir: await tempDir(t) });
  const done = r.run();
  await waitUntil('peers asked 30 times', () => r.asked() >= 30);
  r.stop.abort();
  await assert.rejects(done, (e: unknown) => isOtiError(e, 'ERR_LEDGER_LOST'));
  assert.equal(r.lines.filter((l) => l.msg.includes('nothing newer')).length, 1, r.lines.map((l) => l.msg).join('\n'));
  // No checkpoint retained beyond the ledger: the record is the gateway's own, accept-loss is the remedy named.
  const lost = r.lines.find((l) => l.msg.startsWith('ledger lost: '));
  assert.equal(lost?.['seenByPeers'], false);
  assert.match(lost?.msg ?? '', /oti ledger accept-loss --data /);
  assert.deepEqual(r.adopted, []);
});
