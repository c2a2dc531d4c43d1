/**
 * Fuzzing of the lock protocol codec (issue 3): random and mutated serial frames through
 * FrameDecoder → decodeLockMessage / decodeGatewayMessage, and random and mutated BLE fragments
 * through Reassembler → the same decoders. Asserts that nothing but an OtiError escapes, that every
 * rejection's code is in ERROR_CODES, that the decoders' retained buffers stay within their bounds,
 * and that the heap does not grow with the number of inputs. Then random and mutated event payloads
 * through the lenient reading of refused payloads (drivers/lenient.ts): it never throws, names only
 * valid ids and counters, and agrees with the strict decoder wherever that one accepts.
 *
 * OTI_FUZZ_FRAMES sets the number of frames (and of fragments) fed; the default is 100,000. The
 * PRNG seed is OTI_FUZZ_SEED or a fixed default, printed so that a failure can be replayed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ERROR_CODES, OtiError } from '../../ledger/base/errors.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { coseSign1 } from '../../ledger/cose.js';
import { keyPairFromSeed, Signer } from '../../ledger/crypto.js';
import { decodeGatewayMessage, decodeLockMessage, encodeMessage, MESSAGE_MAX_BYTES, type MessageInput } from '../../drivers/protocol.js';
import { nameLeniently } from '../../drivers/lenient.js';
import { decodeLockPayload } from '../../ledger/entry.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { nonProfileEvents } from '../support/nonprofile.js';
import { cobsMaxEncoded, CRC_BYTES, encodeFrame, fragment, FrameDecoder, Reassembler, type FrameResult, type ReassemblyResult } from '../../drivers/framing.js';

const FRAMES = Number(process.env['OTI_FUZZ_FRAMES'] ?? 100_000);
const SEED = Number(process.env['OTI_FUZZ_SEED'] ?? 0x5eed1234);
const MTUS = [23, 27, 185, 247, 517];

/** mulberry32: a small seeded PRNG, so that a run can be replayed from its seed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n) >>> 0;
  };
}

function corpus(): Uint8Array[] {
  const signer = new Signer(keyPairFromSeed(new Uint8Array(32).fill(7)).seed);
  const event = (ctr: number): Uint8Array => encodeLockEvent({ lock: 'front-door', ctr, time: 1_700_000_000_000 + ctr, type: 'unlocked', cred: Uint8Array.of(1, 2, 3, 4), ext: { fw: '1.0' } });
  const messages: MessageInput[] = [
    { t: 'info', info: { lock: 'front-door', fw: '1.4.2', key: new Uint8Array(32).fill(9) } },
    { t: 'info', info: { lock: 'back-door', fw: 'x' } },
    { t: 'event', oldest: 1, cose: coseSign1(signer, event(3)) },
    { t: 'event', oldest: 2, event: event(2) },
    { t: 'hello', gw: 'gw-1', window: 8 },
    { t: 'ack', lock: 'front-door', ctr: 3, entry: new Uint8Array(32).fill(0xab) },
    { t: 'nack', lock: 'front-door', ctr: 3, code: 'ERR_OUT_OF_ORDER', retry: true },
  ];
  return messages.map(encodeMessage);
}

/** One of: bit flips, truncation, insertion, duplication of a slice, splicing with another input. */
function mutate(r: (n: number) => number, b: Uint8Array, other: Uint8Array): Uint8Array {
  const out = Array.from(b);
  const rounds = 1 + r(4);
  for (let k = 0; k < rounds; k++) {
    const at = r(out.length + 1);
    switch (r(6)) {
      case 0:
      case 1:
        if (out.length > 0) {
          const i = r(out.length);
          out[i] = (out[i] as number) ^ (1 << r(8));
        }
        break;
      case 2:
        out.length = at;
        break;
      case 3:
        out.splice(at, 0, ...Array.from({ length: 1 + r(8) }, () => (r(4) === 0 ? 0 : r(256))));
        break;
      case 4:
        out.splice(at, 0, ...out.slice(r(out.length + 1), r(out.length + 1)));
        break;
      default:
        out.splice(at, out.length - at, ...Array.from(other.subarray(r(other.length + 1))));
    }
  }
  return Uint8Array.from(out);
}

const codes = new Set(Object.keys(ERROR_CODES));
const seen = new Map<string, number>();

function rejected(code: string): void {
  assert.ok(codes.has(code), `rejection code ${code} is not in ERROR_CODES`);
  seen.set(code, (seen.get(code) ?? 0) + 1);
}

/** Decodes a body both ways; only OtiErrors with known codes may come out. */
function decodeBoth(body: Uint8Array): void {
  for (const decode of [decodeLockMessage, decodeGatewayMessage]) {
    try {
      decode(body);
      seen.set('decoded', (seen.get('decoded') ?? 0) + 1);
    } catch (e) {
      assert.ok(e instanceof OtiError, `a non-OtiError escaped: ${String(e)}`);
      rejected(e.code);
    }
  }
}

function onFrame(res: FrameResult): void {
  if (res.ok) decodeBoth(res.body);
  else rejected(res.code);
}

function onFragment(res: ReassemblyResult): void {
  if (res === undefined) return;
  if (res.ok) decodeBoth(res.message);
  else rejected(res.code);
}

function heapAfterGc(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

void test(`fuzz: ${FRAMES} random and mutated frames and fragments`, (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const r = prng(SEED);
  const messages = corpus();
  const pick = <T>(xs: readonly T[]): T => xs[r(xs.length)] as T;
  const frames = messages.map((m) => encodeFrame(m));
  const decoder = new FrameDecoder(MESSAGE_MAX_BYTES);
  const frameLimit = cobsMaxEncoded(MESSAGE_MAX_BYTES + CRC_BYTES);
  const reassembler = new Reassembler(MESSAGE_MAX_BYTES);

  const run = (count: number): void => {
    for (let i = 0; i < count; i++) {
      // Serial: a random frame, a frame of a mutated message (valid CRC, reaches the message
      // decoder) or a mutated frame (reaches COBS and CRC checks), cut into random chunks.
      let input: Uint8Array;
      switch (r(4)) {
        case 0:
          // Now and then a long run without delimiters, longer than any frame may be.
          input = r(16) === 0 ? Uint8Array.from({ length: 4000 + r(3000) }, () => 1 + r(255)) : Uint8Array.from({ length: r(300) }, () => r(256));
          break;
        case 1: {
          const body = mutate(r, pick(messages), pick(messages));
          input = body.length > 0 ? encodeFrame(body, r(2) === 0) : body;
          break;
        }
        default:
          input = mutate(r, pick(frames), pick(frames));
      }
      for (let p = 0; p < input.length; ) {
        const q = p + 1 + r(input.length - p);
        for (const res of decoder.push(input.subarray(p, q))) onFrame(res);
        assert.ok(decoder.buffered <= frameLimit);
        p = q;
      }
      // BLE: fragments of a message or a mutated message at some MTU, then mutated as a sequence.
      const base = r(3) === 0 ? mutate(r, pick(messages), pick(messages)) : pick(messages);
      const frags = base.length === 0 ? [new Uint8Array(0)] : fragment(base, (r(4) === 0 ? 4 + r(30) : pick(MTUS) - 3));
      const seq = r(2) === 0 ? frags : frags.map((f) => (r(3) === 0 ? mutate(r, f, pick(frags)) : f));
      if (r(8) === 0 && seq.length > 1) seq.splice(r(seq.length), 1);
      if (r(8) === 0) seq.push(pick(seq));
      for (const f of seq) {
        onFragment(reassembler.push(f));
        assert.ok(reassembler.buffered <= MESSAGE_MAX_BYTES);
      }
    }
  };

  // A warm-up pass, so that code, inline caches and the corpus are resident before measuring.
  run(Math.min(2000, FRAMES));
  const before = heapAfterGc(gc);
  run(FRAMES);
  const after = heapAfterGc(gc);
  t.diagnostic(`fuzzed ${FRAMES} frames and ${FRAMES} fragment sequences (seed ${SEED}); heap ${((after - before) / 1e6).toFixed(1)} MB after vs before; outcomes ${JSON.stringify(Object.fromEntries(seen))}`);
  console.log(`fuzz-drivers: ran ${FRAMES} frames, seed ${SEED}`);
  assert.ok(after - before < 16e6, `heap grew by ${after - before} bytes`);
  // The inputs reached every layer: whole messages decoded, and each layer rejected some.
  for (const k of ['decoded', 'ERR_FRAME_CRC', 'ERR_FRAME_MALFORMED', 'ERR_FRAME_TOO_LARGE', 'ERR_FRAGMENT', 'ERR_MESSAGE']) assert.ok((seen.get(k) ?? 0) > 0, `no ${k} outcome`);
});

void test(`fuzz: the lenient reading of refused payloads (${FRAMES} mutated and random payloads)`, () => {
  const r = prng(SEED ^ 0x1e41e47);
  const signer = new Signer(keyPairFromSeed(new Uint8Array(32).fill(7)).seed);
  const bare = nonProfileEvents(signer, 'front-door', 62).map((e) => e.event);
  const seeds = [...bare, ...nonProfileEvents(signer, 'front-door', 62).map((e) => e.cose), encodeLockEvent({ lock: 'front-door', ctr: 9, time: 1, type: 'locked', ext: { a: [1, { b: null }] } })];
  const outcomes = { named: 0, unnamed: 0, strictAgrees: 0 };
  const started = performance.now();
  for (let i = 0; i < FRAMES; i++) {
    const input = r(8) === 0 ? Uint8Array.from({ length: r(200) }, () => r(256)) : mutate(r, seeds[r(seeds.length)]!, seeds[r(seeds.length)]!);
    const signed = r(2) === 0;
    // Never throws, and names only a valid id and counter.
    const named = nameLeniently(input, signed, MESSAGE_MAX_BYTES);
    if (named === undefined) {
      outcomes.unnamed++;
    } else {
      outcomes.named++;
      assert.ok(ID_PATTERN.test(named.lock) && Number.isSafeInteger(named.ctr) && named.ctr >= 1);
    }
    // Whatever the strict decoder accepts, the lenient reading names the same way.
    let strict;
    try {
      strict = decodeLockPayload(input, signed).event;
    } catch {
      continue;
    }
    if (strict.ctr >= 1) {
      assert.deepEqual(named, { lock: strict.lock, ctr: strict.ctr });
      outcomes.strictAgrees++;
    }
  }
  // Bounded: linear in the input, so the whole run is quick.
  const ms = performance.now() - started;
  console.log(`fuzz-drivers lenient: ${JSON.stringify(outcomes)} in ${ms.toFixed(0)} ms`);
  assert.ok(outcomes.named > 0 && outcomes.unnamed > 0 && outcomes.strictAgrees > 0, JSON.stringify(outcomes));
  // Nesting far beyond the bound, at the largest size a message allows, costs one pass and names nothing.
  const deep = Uint8Array.from([...new Array<number>(MESSAGE_MAX_BYTES - 1).fill(0x81), 0x00]);
  assert.equal(nameLeniently(deep, false, MESSAGE_MAX_BYTES), undefined);
  assert.equal(nameLeniently(deep, true, MESSAGE_MAX_BYTES), undefined);
});
