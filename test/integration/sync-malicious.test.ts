/**
 * A malicious peer against an honest gateway, over real MQTT on 127.0.0.1. gw-m is an enrolled
 * gateway (it can log in and holds its key) driven by a raw mqtt.js client after an honest start:
 * forged signatures, replayed old checkpoints, broken block links, a forged lock signature in a
 * block it signed (stored, then refused by the audit of lock signatures and never cosigned), a
 * consistency proof that lies, equivocation, oversized and flooding messages. A gateway of
 * another site cannot log in at all. Each attack is refused with its error code (and evidence
 * for the equivocation), and honest sync from gw-a to gw-b works throughout.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect, type MqttClient } from 'mqtt';
import { chainOrigin } from '../../ledger/chain.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signCheckpoint, parseCheckpoint } from '../../ledger/checkpoint.js';
import { decodeBlockHeader, encodeBlockHeader } from '../../ledger/block.js';
import { decodeEvidence, verifyEvidence } from '../../ledger/evidence.js';
import { coseSign1 } from '../../ledger/cose.js';
import { consistencyProof, rangeHash } from '../../ledger/merkle.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import type { ErrorCode } from '../../ledger/base/errors.js';
import { makeGatewayCredential } from '../../gateway/broker/credentials.js';
import { decodeRequest, encodeRange, type RangeMessage } from '../../gateway/sync/wire.js';
import type { SyncRefusal } from '../../gateway/sync/node.js';
import { listRefusedChains } from '../../gateway/sync/flags.js';
import { enrollGateway, enrollLock, makeSite } from '../support/site.js';
import { appendEvents, makeGateway, startSync, untilReplicated, type TestGateway } from '../support/sync.js';
import { waitForEvent } from '../support/wait.js';

const site = makeSite('site-1');
const M_ORIGIN = chainOrigin(site.siteId, 'gw-m');

function login(t: TestContext, url: string, username: string, password: Buffer): Promise<MqttClient> {
  const client = connect(url, { username, password, reconnectPeriod: 0, clientId: `evil-${Math.random().toString(16).slice(2)}` });
  t.after(() => client.endAsync(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

/** The range messages an honest responder would send for a request, built from gw-m's store. */
async function honestRange(m: TestGateway, payload: Buffer): Promise<RangeMessage> {
  const req = decodeRequest(payload);
  const cs = m.chain;
  const first = await cs.blockOf(req.from);
  const blocks = [];
  const entries: Uint8Array[] = [];
  for await (const b of cs.blocks(first.header.n)) {
    entries.push(...(await cs.entryRange(b.header.first, b.header.first + b.header.count)));
    blocks.push({ h: b.headerBytes, cp: b.checkpoint.note });
  }
  const size = m.chain.size;
  return { id: req.id, chain: req.chain, first: req.from, entries, blocks, end: true, head: m.chain.checkpoint!.note, root: await rangeHash(cs, 0, req.from), proof: await consistencyProof(cs, req.from, size) };
}

void test('a malicious peer is refused case by case while honest sync keeps working', async (t) => {
  // The fixture every case uses: gw-a and gw-b honest, gw-m enrolled and synced honestly to gw-b,
  // then its sync node stopped and a raw client logged in with its credential in its place.
  const a = await makeGateway(t, site, 'gw-a');
  const b = await makeGateway(t, site, 'gw-b', { rate: 300, maxMessageBytes: 512 * 1024 });
  const m = await makeGateway(t, site, 'gw-m', { broker: false });
  const lockA = enrollLock(site, 'lock-a');
  const lockM = enrollLock(site, 'lock-m');
  await appendEvents(a, lockA, 100);
  await appendEvents(m, lockM, 100);
  const urls = [a.url!, b.url!];
  await startSync(a, site, urls);
  const nb = await startSync(b, site, urls);
  const refusals: SyncRefusal[] = [];
  nb.on('refused', (r) => refusals.push(r));
  const refused = (code: ErrorCode, n = 1): Promise<void> => waitForEvent(nb, ['refused'], `a ${code} refusal`, () => refusals.filter((r) => r.peer === 'gw-m' && r.code === code).length >= n);

  // Honest phase: gw-m syncs its chain to gw-b, then its sync node stops and the raw client takes over.
  const nm = await startSync(m, site, [b.url!]);
  await untilReplicated(nb, M_ORIGIN, m.chain.size);
  await untilReplicated(nb, chainOrigin(site.siteId, 'gw-a'), a.chain.size);
  await nm.stop();
  const held = (await nb.replica(M_ORIGIN)).size;
  const mLogin = (): Buffer => makeGatewayCredential({ siteId: site.siteId, gatewayId: 'gw-m', key: m.key, enrolment: m.enrolment }).password;
  const evil = await login(t, b.url!, 'gw-m', mLogin());
  const cpTopic = 'oti/site-1/chain/gw-m/checkpoint';
  let answer: ((req: Buffer) => Promise<Buffer | undefined>) | undefined;
  evil.on('message', (topic, payload) => {
    if (topic.startsWith('oti/site-1/chain/gw-m/req/') && answer !== undefined) {
      void answer(payload).then((reply) => (reply === undefined ? undefined : evil.publishAsync('oti/site-1/chain/gw-m/range/gw-b', reply, { qos: 1 })));
    }
  });
  await evil.subscribeAsync(['oti/site-1/chain/gw-m/req/+', 'oti/site-1/evidence/gw-b'], { qos: 1 });
  /** An old checkpoint of gw-m's chain: validly signed, consistent, older than what gw-b verified. */
  const oldCheckpoint = async (): Promise<string> => (await m.chain.block(1)).checkpoint.note;
  /** gw-m has blocks that gw-b has not verified (what a range attack needs). */
  const unseenBlocks = async (): Promise<void> => {
    if (m.chain.size <= held) await appendEvents(m, lockM, 20);
  };

  await t.test('a gateway of another site cannot log in', async () => {
    // Its enrolment is signed by a foreign key.
    const foreign = makeSite('site-1');
    const stranger = enrollGateway(foreign, 'gw-z');
    const foreignLogin = makeGatewayCredential({ siteId: site.siteId, gatewayId: 'gw-z', key: stranger.key, enrolment: stranger.statement });
    await assert.rejects(login(t, b.url!, 'gw-z', foreignLogin.password), (e: Error & { code?: number }) => e.code === 4);
  });

  await t.test('a forged checkpoint signature is refused with ERR_CHECKPOINT_SIGNATURE', async () => {
    // A bigger checkpoint of gw-m's chain signed by some other key.
    const cur = m.chain.checkpoint!;
    const forged = signCheckpoint({ origin: M_ORIGIN, size: cur.size + 10, root: new Uint8Array(32).fill(7), block: cur.block + 1, blockHash: new Uint8Array(32).fill(8) }, new Signer(generateKeyPair().seed), M_ORIGIN);
    await evil.publishAsync(cpTopic, forged.note, { qos: 1, retain: true });
    await refused('ERR_CHECKPOINT_SIGNATURE');
  });

  await t.test('a replayed old checkpoint is refused with ERR_SYNC_STALE', async () => {
    await evil.publishAsync(cpTopic, await oldCheckpoint(), { qos: 1, retain: true });
    await refused('ERR_SYNC_STALE');
  });

  await t.test('new blocks served with a block that does not link are refused with ERR_BLOCK_LINK', async () => {
    await unseenBlocks();
    answer = async (req) => {
      const r = await honestRange(m, req);
      const h = decodeBlockHeader(r.blocks[0]!.h);
      const broken = encodeBlockHeader({ ...h, prev: new Uint8Array(32).fill(9) });
      return Buffer.from(encodeRange({ ...r, blocks: [{ h: broken, cp: r.blocks[0]!.cp }, ...r.blocks.slice(1)] }));
    };
    await evil.publishAsync(cpTopic, m.chain.checkpoint!.note, { qos: 1, retain: true });
    await refused('ERR_BLOCK_LINK');
  });

  await t.test('a consistency proof that lies is refused with ERR_PROOF_INVALID, no evidence, and nothing of the refused ranges is stored', async () => {
    // A rewritten history it cannot prove.
    await unseenBlocks();
    answer = async (req) => Buffer.from(encodeRange({ ...(await honestRange(m, req)), root: new Uint8Array(32).fill(1) }));
    await evil.publishAsync(cpTopic, m.chain.checkpoint!.note, { qos: 1, retain: true });
    await refused('ERR_PROOF_INVALID');
    assert.equal((await nb.replica(M_ORIGIN)).size, held, 'nothing of the refused ranges was stored');
  });

  await t.test('a block gw-m signed holding a forged lock signature is stored, refused by the audit with ERR_LOCK_SIGNATURE, and never cosigned', async () => {
    // Everything else in it verifies against gw-m's signed checkpoint, so it is stored; the audit
    // of the lock signatures then refuses the chain, and gw-b cosigns nothing from the forged entry on.
    const cosigned: number[] = [];
    evil.on('message', (topic, p) => topic === 'oti/site-1/chain/gw-m/cosig/gw-b' && p.length > 0 && cosigned.push(Number(p.toString('utf8').split('\n')[1])));
    await evil.subscribeAsync('oti/site-1/chain/gw-m/cosig/gw-b', { qos: 1 });
    lockM.ctr++;
    const badCose = coseSign1(new Signer(generateKeyPair().seed), encodeLockEvent({ lock: 'lock-m', ctr: lockM.ctr, time: 1_700_000_000_000, type: 'unlocked' }));
    await m.chain.append({ kind: 'lock-event', cose: badCose }, { preverified: true });
    const forgedAt = m.chain.size - 1;
    answer = async (req) => Buffer.from(encodeRange(await honestRange(m, req)));
    await evil.publishAsync(cpTopic, m.chain.checkpoint!.note, { qos: 1, retain: true });
    await refused('ERR_LOCK_SIGNATURE');
    const audited = (await nb.replica(M_ORIGIN)).audited;
    assert.equal((await nb.replica(M_ORIGIN)).size, m.chain.size, 'stored once all but the lock signatures verified');
    assert.equal((audited.failure as Error & { code?: string }).code, 'ERR_LOCK_SIGNATURE');
    assert.match(audited.failure!.message, new RegExp(`entry ${forgedAt} of ${M_ORIGIN}`));
    assert.ok(audited.size <= forgedAt, `the audit stopped before the forged entry (at ${audited.size})`);
    assert.ok(cosigned.length > 0 && cosigned.every((n) => n <= forgedAt), `gw-b cosigned only sizes up to ${forgedAt}: ${cosigned.join(', ')}`);
  });

  await t.test('equivocation is refused with ERR_EQUIVOCATION, its evidence published and stored, and the chain refused from then on', async () => {
    const storedSize = m.chain.size;
    // A second checkpoint of the held size with another root, signed by gw-m's key.
    const replica = await nb.replica(M_ORIGIN);
    const evidenceMsg = new Promise<Buffer>((resolve) => evil.on('message', (topic, p) => topic === 'oti/site-1/evidence/gw-b' && p.length > 0 && resolve(p)));
    const twin = signCheckpoint({ origin: M_ORIGIN, size: replica.size, root: new Uint8Array(32).fill(3), block: replica.head.n, blockHash: new Uint8Array(32).fill(4) }, new Signer(m.key.seed), M_ORIGIN);
    await evil.publishAsync(cpTopic, twin.note, { qos: 1, retain: true });
    await refused('ERR_EQUIVOCATION');
    const published = decodeEvidence(await evidenceMsg);
    assert.equal(published.origin, M_ORIGIN);
    assert.ok(verifyEvidence(published, m.key.publicKey));
    const stored = await b.store.listEvidence();
    assert.equal(stored.length, 1);
    assert.ok(verifyEvidence(decodeEvidence(stored[0]!.record), m.key.publicKey));
    assert.deepEqual((await listRefusedChains(b.store)).map((r) => r.origin), [M_ORIGIN]);
    // From now on even gw-m's genuine checkpoint is refused.
    const before = refusals.filter((r) => r.code === 'ERR_EQUIVOCATION').length;
    await evil.publishAsync(cpTopic, m.chain.checkpoint!.note, { qos: 1, retain: true });
    await refused('ERR_EQUIVOCATION', before + 1);
    assert.equal(parseCheckpoint((await nb.replica(M_ORIGIN)).checkpoint!.note).size, storedSize);
  });

  await t.test('a packet over the broker\'s limit closes the connection before it is read', async () => {
    const closed = new Promise<void>((resolve) => evil.once('close', () => resolve()));
    evil.publish(cpTopic, Buffer.alloc(600 * 1024, 0x41), { qos: 0 });
    await closed;
  });

  await t.test('flooding beyond the per-client rate: the broker cuts the client off', async () => {
    const flooder = await login(t, b.url!, 'gw-m', mLogin());
    const old = await oldCheckpoint();
    const cut = new Promise<void>((resolve) => flooder.once('close', () => resolve()));
    for (let i = 0; i < 2000 && flooder.connected; i++) flooder.publish(cpTopic, old, { qos: 0 });
    await cut;
    assert.ok(b.broker!.stats().refused >= 2);
  });

  await t.test('honest sync went on throughout: gw-a\'s new events reach gw-b, and gw-a was never refused', async () => {
    await appendEvents(a, lockA, 200);
    await untilReplicated(nb, chainOrigin(site.siteId, 'gw-a'), a.chain.size);
    assert.equal(refusals.filter((r) => r.peer === 'gw-a').length, 0);
  });
});
