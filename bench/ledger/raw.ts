/**
 * bench:ledger's raw phase: the one-core raw verification loops the verify ratios are taken
 * against, and the same signatures on every core at once (bench/ledger.ts runs it, in a process
 * of its own, before, between and after the whole-chain runs).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { keyPairFromSeed, Signer, fromHex } from '../../ledger/crypto.js';
import { ED25519_VERIFIER, verifyEd25519, type Ed25519Verify } from '../../ledger/ed25519.js';
import { sigStructure } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { encodeEntry } from '../../ledger/entry.js';
import { median, round } from '../support.js';
import { cpuUs, makeEvents, siteFrom, type Setup } from './site.js';

/** Verifications per raw loop (about a second each). */
export const RAW_N = 20_000;
/** Verifications per slice of a raw loop (about 0.1 s). */
const SLICE = 2_000;

export interface Signed {
  readonly key: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

/** A raw loop's figures: its rate, this process's CPU per verification, each slice's rate. */
interface LoopFigures {
  rate: number;
  cpuUs: number;
  slices: number[];
}

/**
 * Passes of `f` over each list in `lists` on this thread, in slices of SLICE verifications taken
 * in turn (a slice of the first list, one of the second, …), so that every list meets the same
 * seconds of the machine: a second of other work slows a slice of each, and no list goes first
 * each time. Per list: the rate, this process's CPU per verification, and each slice's rate.
 */
export function verifyLoops(f: Ed25519Verify, lists: readonly (readonly Signed[])[]): LoopFigures[] {
  const acc = lists.map(() => ({ ms: 0, cpu: 0, n: 0, slices: [] as number[] }));
  const rounds = Math.max(...lists.map((l) => Math.ceil(l.length / SLICE)));
  for (let r = 0; r < rounds; r++) {
    lists.forEach((items, k) => {
      const end = Math.min(items.length, (r + 1) * SLICE);
      if (r * SLICE >= end) return;
      const c0 = cpuUs();
      const t0 = performance.now();
      for (let i = r * SLICE; i < end; i++) {
        const x = items[i]!;
        if (!f(x.key, x.msg, x.sig)) throw new Error('the raw loop met a signature that does not verify');
      }
      const ms = performance.now() - t0;
      const a = acc[k]!;
      a.ms += ms;
      a.cpu += cpuUs() - c0;
      a.n += end - r * SLICE;
      a.slices.push((end - r * SLICE) / (ms / 1000));
    });
  }
  return acc.map((a) => ({ rate: a.n / (a.ms / 1000), cpuUs: a.cpu / a.n, slices: a.slices }));
}

/**
 * The distinct signatures checked on every core at once: one worker thread per core, each over the
 * whole list with the pool's own loop (verifyPacked, ledger/sigbatch.ts, the verifier
 * verifyEd25519 picks), against one such worker alone, in turn (alone, all, alone, all), after the
 * one-thread loops. Their ratio is what this machine's cores give together (cores that share
 * caches, memory bandwidth or a power budget give less than their number), the ceiling of any
 * verifier that uses them all.
 */
const ALL_CORES_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.sigbatch).then(({ verifyPacked }) => {
  const buf = new Uint8Array(workerData.buf);
  verifyPacked(buf.subarray(0, workerData.warm));
  parentPort.on('message', () => {
    const t = performance.now();
    const ok = verifyPacked(buf).every((r) => r === 1);
    parentPort.postMessage({ ms: performance.now() - t, ok });
  });
  parentPort.postMessage('ready');
});`;

async function allCoresRaw(list: readonly Signed[]): Promise<{ one: number; all: number }> {
  let size = 0;
  for (const x of list) size += 100 + x.msg.length;
  const buf = new SharedArrayBuffer(size);
  const bytes = new Uint8Array(buf);
  const dv = new DataView(buf);
  let o = 0;
  let warm = 0;
  for (const [i, x] of list.entries()) {
    if (i === Math.min(1000, list.length - 1)) warm = o;
    dv.setUint32(o, x.msg.length, true);
    bytes.set(x.key, o + 4);
    bytes.set(x.sig, o + 36);
    bytes.set(x.msg, o + 100);
    o += 100 + x.msg.length;
  }
  const sigbatch = new URL('../../ledger/sigbatch.js', import.meta.url).href;
  /** The worker's next message; a worker that fails or exits meanwhile fails the phase. */
  const reply = <T>(w: Worker): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const fail = (e: unknown): void => {
        w.off('message', ok);
        w.off('exit', fail);
        reject(e instanceof Error ? e : new Error(`a raw-loop worker exited (code ${String(e)})`));
      };
      const ok = (m: T): void => {
        w.off('error', fail);
        w.off('exit', fail);
        resolve(m);
      };
      w.once('message', ok);
      w.once('error', fail);
      w.once('exit', fail);
    });
  const start = async (): Promise<Worker> => {
    const w = new Worker(ALL_CORES_WORKER, { eval: true, workerData: { sigbatch, buf, warm } });
    await reply(w);
    return w;
  };
  // Every worker's items over the time the slowest took: a worker that started late or was
  // descheduled does not count as if the others had left it a core of its own.
  const run = async (ws: readonly Worker[]): Promise<number> => {
    const done = ws.map((w) => reply<{ ms: number; ok: boolean }>(w));
    for (const w of ws) w.postMessage('go');
    const rs = await Promise.all(done);
    if (!rs.every((r) => r.ok)) throw new Error('a raw loop on every core met a signature that does not verify');
    return (ws.length * list.length) / (Math.max(...rs.map((r) => r.ms)) / 1000);
  };
  const workers = await Promise.all(Array.from({ length: availableParallelism() }, start));
  const one: number[] = [];
  const all: number[] = [];
  try {
    // One untimed pass on every worker: a worker's first whole pass runs its loop before V8 has
    // optimised it (the first timed pass on two cores had one worker 15-20 % behind the other).
    await run(workers);
    for (let r = 0; r < 2; r++) {
      one.push(await run(workers.slice(0, 1)));
      all.push(await run(workers));
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return { one: median(one), all: median(all) };
}

/**
 * The one-core raw verification loop the verify ratios are taken against: RAW_N checks of
 * signatures as the chain holds them (a lock's key, a lock event's Sig_structure, its
 * signature), each of the chain's first ten repeated SLICE times: the floor a verifier competes
 * with, one input over and over. Until issue 22's last session the loop checked one signature,
 * the gateway's over a whole entry's bytes (201 bytes against an 82-byte Sig_structure: one more
 * SHA-512 block per verification), a new one drawn each run; it is still measured,
 * `raw_ed25519_verify_entry_msg_*` (docs/DECISIONS.md §Issue 22, whole-chain verify: the raw
 * loop's input and its slices). Beside them:
 * - `distinct`: RAW_N different signatures by the 1,000 lock keys over the lock events'
 *   Sig_structures, as a chain holds them and as bench:ingest's floor checks them. libsodium
 *   costs several per cent more per signature there; the ratios `…_if_distinct` are taken
 *   against it;
 * - `in_turn`: the same ten signatures as the main loop, one after the other instead of each for
 *   a slice: the same inputs and the same bytes in cache, only their order differs. What it
 *   costs above the main loop is the processor having learnt one input's path through
 *   libsodium's variable-time code, which no chain repeats (docs/DECISIONS.md §Issue 22,
 *   whole-chain verify: a repeated signature is cheaper than the chain's).
 * The loops run in turn, slice by slice (verifyLoops), and report their slices' rates too.
 */
export async function phaseRaw(setup: Setup): Promise<Record<string, number | string>> {
  const { locks } = siteFrom(setup);
  const signer = new Signer(keyPairFromSeed(fromHex('gw', setup.gatewaySeed)).seed);
  const msg = encodeEntry({ kind: 'lock-event', cose: makeEvents(locks, 0, 1)[0]!, time: 1_700_000_000_000 }, 0).bytes;
  const entryMsg: Signed[] = Array.from({ length: RAW_N }, () => ({ key: signer.publicKey, msg, sig: signer.sign(msg) }));
  const distinct: Signed[] = [];
  for (let k = 0; k < RAW_N; k++) {
    const lock = locks[k % locks.length]!;
    const m = sigStructure(encodeLockEvent({ lock: lock.id, ctr: Math.floor(k / locks.length) + 1, time: 1_700_000_000_000 + k, type: k % 2 === 0 ? 'unlocked' : 'locked', cred: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }));
    // Off V8's heap as the other loops' buffers are (a copy made by Buffer.from is).
    distinct.push({ key: Buffer.from(lock.signer.publicKey), msg: Buffer.from(m), sig: Buffer.from(lock.signer.sign(m)) });
  }
  // The chain's first RAW_N / SLICE lock signatures (makeEvents(locks, 0, …)), each repeated for a
  // slice: a signature's cost depends on its bytes (libsodium's double scalar multiplication runs
  // in variable time; 49.2-51.8 µs between 12 signatures here), so one signature chosen at random
  // per run made the loop's figure move with the draw. Laid out as the entry-message loop is: one
  // key and one message per signature, a signature buffer per item, all off V8's heap
  // (ledger/sodium.ts: a small on-heap array is moved off it on its first N-API call).
  const GROUPS = RAW_N / SLICE;
  const same: Signed[] = [];
  const inTurn: Signed[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const x = distinct[g]!;
    const key = Buffer.from(x.key);
    const m = Buffer.from(x.msg);
    for (let i = 0; i < SLICE; i++) same.push({ key, msg: m, sig: Buffer.from(x.sig) });
  }
  for (let k = 0; k < RAW_N; k++) inTurn.push(same[(k % GROUPS) * SLICE + Math.floor(k / GROUPS)]!);
  // Warm-up: code, tables, the buffers' first N-API use.
  verifyLoops(verifyEd25519, [distinct.slice(0, 1000), same.slice(0, 1000), entryMsg.slice(0, 1000), inTurn.slice(0, 1000)]);
  const [raw, old, other, turn] = verifyLoops(verifyEd25519, [same, entryMsg, distinct, inTurn]) as [LoopFigures, LoopFigures, LoopFigures, LoopFigures];
  const cores = await allCoresRaw(distinct);
  return {
    raw_ed25519_verifier: ED25519_VERIFIER.name,
    raw_ed25519_verify_per_s: round(raw.rate, 0),
    raw_ed25519_verify_cpu_us: round(raw.cpuUs, 2),
    raw_ed25519_verify_slices: raw.slices.map((r) => round(r, 0)).join(' '),
    raw_ed25519_verify_entry_msg_per_s: round(old.rate, 0),
    raw_ed25519_verify_entry_msg_cpu_us: round(old.cpuUs, 2),
    raw_ed25519_verify_entry_msg_slices: old.slices.map((r) => round(r, 0)).join(' '),
    raw_ed25519_verify_distinct_per_s: round(other.rate, 0),
    raw_ed25519_verify_distinct_cpu_us: round(other.cpuUs, 2),
    raw_ed25519_verify_in_turn_per_s: round(turn.rate, 0),
    raw_ed25519_verify_in_turn_cpu_us: round(turn.cpuUs, 2),
    raw_ed25519_verify_distinct_1_worker_per_s: round(cores.one, 0),
    raw_ed25519_verify_distinct_all_cores_per_s: round(cores.all, 0),
  };
}
