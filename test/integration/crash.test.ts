/**
 * Crash test: a child process (test/support/crash-child.ts) appends under load and is SIGKILLed
 * at a random moment, OTI_CRASH_ROUNDS times (default 25). After each kill the chain is reopened
 * here and checked: every append the child acknowledged (its promise had resolved) is stored at
 * the index it was given, with the same leaf hash, and is included in the current checkpoint;
 * the whole chain verifies (block links, contiguous ranges, roots, checkpoint signatures); and
 * appending continues (here, and in the next child, which goes on from the stored counters).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childSite, tempDir } from '../support/site.js';
import { LedgerStore, type StoredBlock } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { toHex, fromHex } from '../../ledger/crypto.js';
import { decodeSigned } from '../../ledger/roster.js';
import { CompactRange, leafHash, inclusionProof, verifyInclusion } from '../../ledger/merkle.js';
import { blockHash, ZERO_HASH } from '../../ledger/block.js';
import { verifyCheckpoint } from '../../ledger/checkpoint.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { verifyChain } from '../../ledger/verify.js';

const ROUNDS = Number(process.env['OTI_CRASH_ROUNDS'] ?? 25);
const LOCKS = 8;
const KILL_MIN_MS = 50;
const KILL_MAX_MS = 400;
/** A child that has not acknowledged anything by then is stuck (not a timing question). */
const FIRST_ACK_TIMEOUT_MS = 20_000;
/** Appends the child keeps in flight, picked per round: small windows make many small blocks. */
const IN_FLIGHT = [8, 32, 200] as const;
const CHILD = fileURLToPath(new URL('../support/crash-child.js', import.meta.url));

interface Ack {
  /** "<lock>:<ctr>" for lock events, the hex leaf hash otherwise (both are Chain.indexOf ids). */
  readonly id: string;
  readonly index: number;
  readonly leaf: string;
}

interface RoundResult {
  readonly acks: Ack[];
  readonly killAfterMs: number;
  readonly inFlight: number;
  readonly stderr: string;
}

function parseAck(line: string): Ack {
  const p = line.split(' ');
  if (p[0] === 'ACK' && p.length === 5) return { id: `${p[1]}:${p[2]}`, index: Number(p[3]), leaf: p[4]! };
  if (p[0] === 'ACKX' && p.length === 4) return { id: p[3]!, index: Number(p[2]), leaf: p[3]! };
  throw new Error(`crash child wrote an unexpected line: ${JSON.stringify(line)}`);
}

/** Runs one child until it has acknowledged something, then SIGKILLs it at a random moment. */
function runRound(t: TestContext, live: Set<ChildProcess>, dbPath: string, keysPath: string, inFlight: number): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, OTI_CRASH_INFLIGHT: String(inFlight) };
    const child = spawn(process.execPath, [CHILD, dbPath, keysPath], { stdio: ['ignore', 'pipe', 'pipe'], env });
    live.add(child);
    const acks: Ack[] = [];
    let stdout = '';
    let stderr = '';
    let killed = false;
    let parseError: Error | undefined;
    const killAfterMs = KILL_MIN_MS + Math.floor(Math.random() * (KILL_MAX_MS - KILL_MIN_MS + 1));
    let killTimer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      killed = true;
      child.kill('SIGKILL');
    };
    const stuck = setTimeout(kill, FIRST_ACK_TIMEOUT_MS);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      const nl = stdout.lastIndexOf('\n');
      if (nl < 0) return;
      // A line cut short by the kill has no newline and is ignored.
      for (const line of stdout.slice(0, nl).split('\n')) {
        try {
          acks.push(parseAck(line));
        } catch (e) {
          parseError ??= e as Error;
        }
      }
      stdout = stdout.slice(nl + 1);
      if (killTimer === undefined && acks.length > 0) {
        clearTimeout(stuck);
        killTimer = setTimeout(kill, killAfterMs);
      }
    });
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    // 'close': the process has exited and its stdout and stderr are drained.
    child.on('close', (code, signal) => {
      live.delete(child);
      clearTimeout(stuck);
      if (killTimer !== undefined) clearTimeout(killTimer);
      if (parseError !== undefined) return reject(parseError);
      if (!killed || signal !== 'SIGKILL') return reject(new Error(`crash child exited by itself (code ${code}, signal ${signal}):\n${stderr}`));
      if (acks.length === 0) return reject(new Error(`crash child acknowledged nothing within ${FIRST_ACK_TIMEOUT_MS} ms:\n${stderr}`));
      resolve({ acks, killAfterMs, inFlight, stderr });
    });
  });
}

/**
 * Verifies the stored chain from block 0: numbering, links, contiguous entry ranges, the root
 * after each block (recomputed from the entries), each block's checkpoint (what it names and its
 * signature; signatures only from `sigFrom` on, those before were checked in an earlier round),
 * and that the leaf hash at every acknowledged index is the acknowledged one.
 */
async function verifyStructure(chain: Chain, gatewayKey: Uint8Array, leafAt: Map<number, string>, sigFrom: number): Promise<{ blocks: number; sigs: number }> {
  const cs = chain;
  const head = cs.head;
  const blocks: StoredBlock[] = [];
  // An explicit upper bound: blocks()' default (Number.MAX_SAFE_INTEGER) does not fit u64()
  // (ERR_OUT_OF_RANGE from Buffer.writeUIntBE), reported to the lead. head.n + 1 would show a
  // block written beyond the head.
  for await (const b of cs.blocks(0, head.n + 1)) blocks.push(b);
  assert.equal(blocks.length, head.n + 1, `the store holds ${blocks.length} blocks, the head says ${head.n + 1}`);
  let prevHash: Uint8Array = ZERO_HASH;
  let next = 0;
  let sigs = 0;
  for (const [n, b] of blocks.entries()) {
    const h = b.header;
    assert.equal(h.n, n, `block ${n} is numbered ${h.n}`);
    assert.equal(h.chain, chain.origin);
    assert.ok(bytesEqual(h.prev, prevHash), `block ${n} does not link to block ${n - 1}`);
    assert.equal(h.first, next, `block ${n} starts at ${h.first}, expected ${next}`);
    assert.ok(h.count >= 1);
    next = h.first + h.count;
    const hash = blockHash(b.headerBytes);
    const cp = b.checkpoint;
    assert.equal(cp.origin, chain.origin);
    assert.equal(cp.size, next, `checkpoint of block ${n} has size ${cp.size}, expected ${next}`);
    assert.equal(cp.block, n);
    assert.ok(bytesEqual(cp.root, h.root), `checkpoint of block ${n} names another root`);
    assert.ok(bytesEqual(cp.blockHash, hash), `checkpoint of block ${n} names another block hash`);
    if (n >= sigFrom) {
      verifyCheckpoint(cp, chain.origin, gatewayKey);
      sigs++;
    }
    prevHash = hash;
  }
  assert.equal(next, head.size, `blocks cover ${next} entries, the head says ${head.size}`);

  const range = CompactRange.empty();
  let bi = 0;
  for await (const { index, bytes } of cs.entries(0, head.size)) {
    assert.equal(index, range.size);
    const leaf = leafHash(bytes);
    range.append(leaf);
    const want = leafAt.get(index);
    if (want !== undefined) assert.equal(toHex(leaf), want, `entry ${index} is not the acknowledged one`);
    const b = blocks[bi]!;
    if (range.size === b.header.first + b.header.count) {
      assert.ok(bytesEqual(range.root(), b.header.root), `entries [0, ${range.size}) do not hash to the root of block ${bi}`);
      bi++;
    }
  }
  assert.equal(range.size, head.size, 'entries are missing');
  assert.equal(bi, blocks.length);
  assert.ok(bytesEqual(CompactRange.fromPeaks(head.size, [...head.peaks]).root(), blocks.at(-1)!.header.root), 'the stored head disagrees with the last block');
  return { blocks: blocks.length, sigs };
}

void test('acknowledged appends survive SIGKILL at random moments; the chain verifies and appending continues', { timeout: 180_000 }, async (t) => {
  const started = Date.now();
  const dir = await tempDir(t, 'oti-crash-');
  const dbPath = join(dir, 'ledger');
  const keysPath = join(dir, 'keys.json');
  const { site, gw, keys } = childSite('crash-site', LOCKS);
  await writeFile(keysPath, JSON.stringify(keys));

  const live = new Set<ChildProcess>();
  t.after(() => {
    for (const c of live) c.kill('SIGKILL');
  });

  /** Index -> hex leaf hash of every acknowledged entry so far, all rounds. */
  const leafAt = new Map<number, string>();
  let lastSize = 0;
  let sigFrom = 0;
  let totalAcks = 0;
  let totalUnacked = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const { acks, killAfterMs, inFlight, stderr } = await runRound(t, live, dbPath, keysPath, IN_FLIGHT[round % IN_FLIGHT.length]!);
    const checkStart = Date.now();
    assert.equal(stderr, '', `round ${round}: the child wrote to stderr`);
    for (const a of acks) {
      const had = leafAt.get(a.index);
      assert.ok(had === undefined || had === a.leaf, `round ${round}: index ${a.index} acknowledged for two different entries`);
      leafAt.set(a.index, a.leaf);
    }
    totalAcks += acks.length;

    const store = await LedgerStore.open(dbPath);
    let chain: Chain | undefined;
    try {
      // Chain.open verifies the last block (entries, root, link, checkpoint) before serving.
      chain = await Chain.open({ store, trust: site.trust, gatewayId: 'gw-1', key: gw.key, genesis: decodeSigned(fromHex('genesis', keys.gatewayStatement)) });
      const size = chain.size;
      assert.ok(size > lastSize, `round ${round}: the chain did not grow (${lastSize} -> ${size})`);
      // Entries made durable in this round whose ACK never reached us (killed in between); the
      // genesis entry is never acknowledged.
      const unacked = size - lastSize - acks.length - (round === 1 ? 1 : 0);
      assert.ok(unacked >= 0, `round ${round}: ${acks.length} acks but the chain grew by ${size - lastSize}`);
      totalUnacked += unacked;
      const cp = chain.checkpoint;
      assert.ok(cp !== undefined, `round ${round}: no checkpoint after reopening`);
      assert.equal(cp.size, size);
      verifyCheckpoint(cp, chain.origin, gw.key.publicKey);

      for (const a of acks) {
        const at = await chain.indexOf(a.id);
        assert.equal(at, a.index, `round ${round}: acknowledged ${a.id} is ${at === undefined ? 'missing' : `at ${at}`}, was acknowledged at ${a.index}`);
        const leaf = leafHash(await chain.entry(a.index));
        assert.equal(toHex(leaf), a.leaf, `round ${round}: entry ${a.index} is not the acknowledged ${a.id}`);
        const proof = await inclusionProof(chain, a.index, cp.size);
        assert.ok(verifyInclusion(leaf, a.index, cp.size, proof, cp.root), `round ${round}: no inclusion proof of ${a.id} in the checkpoint at ${cp.size}`);
      }
      const { blocks, sigs } = await verifyStructure(chain, gw.key.publicKey, leafAt, sigFrom);
      // The ledger's own verifier as well (entries decode, roster, counters, lock signatures):
      // the blocks written since the last round, and the whole chain in the last round.
      const fromBlock = round === ROUNDS ? 0 : sigFrom;
      const report = await verifyChain(chain, { trust: site.trust, fromBlock });
      assert.equal(report.size, size);
      assert.equal(report.blocks, blocks - fromBlock);
      assert.ok(report.checkpoint !== undefined && bytesEqual(report.root, cp.root), `round ${round}: verifyChain ends at another root than the checkpoint`);
      sigFrom = blocks;

      // Appending continues after the crash, here as well as in the next child.
      const r = await chain.append({ kind: 'health', source: 'crash-test', status: 'reopened', detail: `round ${round}` });
      assert.equal(r.index, size);
      leafAt.set(r.index, toHex(r.leafHash));
      lastSize = chain.size;
      t.diagnostic(`round ${round}: in flight ${inFlight}, killed ${killAfterMs} ms after the first ACK; ${acks.length} acks, ${unacked} durable without ACK; chain ${size} entries in ${blocks} blocks (${sigs} new checkpoints verified, verifyChain from block ${fromBlock}: ${report.lockSignatures} lock signatures); checked in ${Date.now() - checkStart} ms`);
    } catch (e) {
      t.diagnostic(`round ${round} failed (in flight ${inFlight}, killed ${killAfterMs} ms after the first of ${acks.length} acks; database ${dbPath}, removed at teardown)`);
      throw e;
    } finally {
      await chain?.close();
      await store.close();
    }
  }
  t.diagnostic(`${ROUNDS} rounds, ${totalAcks} acks checked, ${totalUnacked} entries durable without ACK, final chain ${lastSize} entries, ${Date.now() - started} ms`);
});
