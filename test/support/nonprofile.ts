/**
 * Lock events that a lock's firmware may well produce but that are outside the CBOR profile of
 * docs/PROTOCOL.md (fixed-width integers, keys sorted as text, a float in `ext`, a COSE_Sign1
 * tagged 18, `ext` nested too deep), each correctly signed: the gateway must refuse them for good
 * with ERR_EVENT_INVALID rather than leave the lock without an answer. Written byte by byte here,
 * since the project's encoder cannot make them.
 */
import { coseSign1 } from '../../ledger/cose.js';
import type { Signer } from '../../ledger/crypto.js';
import { cborHead } from '../../ledger/base/cbor.js';

/** A head with an argument of exactly `width` bytes after the initial byte (0: in the initial byte). */
export function wideHead(major: number, n: number, width: 0 | 1 | 2 | 4 | 8): Uint8Array {
  if (width === 0) return Uint8Array.of((major << 5) | n);
  const out = new Uint8Array(1 + width);
  out[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[width];
  let v = BigInt(n);
  for (let i = width; i >= 1; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));
const text = (s: string): Uint8Array => cat(cborHead(3, Buffer.byteLength(s)), Buffer.from(s, 'utf8'));
const uint = (n: number): Uint8Array => cborHead(0, n);
/** A map of already encoded keys and values, in the order given. */
const map = (pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Uint8Array => cat(cborHead(5, pairs.length), ...pairs.flat());

export interface NonProfileEvent {
  readonly name: string;
  /** The signed event (a COSE_Sign1 over `event`, tagged 18 for one case). */
  readonly cose: Uint8Array;
  /** The lock event bytes inside. */
  readonly event: Uint8Array;
}

/** The five shapes an outside reviewer's lock sent, for lock `lock` and counter `ctr`. */
export function nonProfileEvents(signer: Signer, lock: string, ctr: number, time = 1_700_000_000_000 + ctr): NonProfileEvent[] {
  const v = [text('v'), uint(1)] as const;
  const c = [text('ctr'), uint(ctr)] as const;
  const l = [text('lock'), text(lock)] as const;
  const tm = [text('time'), uint(time)] as const;
  const ty = [text('type'), text('unlocked')] as const;
  const float = Uint8Array.of(0xfb, 0x40, 0x0a, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66); // 3.3, a battery voltage
  // ext {"z": [[[…[0]…]]]}: 15 arrays in ext's value, so the 0 is 17 levels below the event map.
  const deep = cat(...Array.from({ length: 15 }, () => Uint8Array.of(0x81)), Uint8Array.of(0x00));
  const events: [string, Uint8Array][] = [
    ['ctr as a fixed-width uint32', map([v, [text('ctr'), wideHead(0, ctr, 4)], l, tm, ty])],
    ['keys sorted as text (ctr, lock, time, type, v)', map([c, l, tm, ty, v])],
    ['a float64 in ext', map([v, c, [text('ext'), map([[text('z'), float]])], l, tm, ty])],
    ['ext nested deeper than the profile allows', map([v, c, [text('ext'), map([[text('z'), deep]])], l, tm, ty])],
  ];
  const out = events.map(([name, event]) => ({ name, event, cose: cat(coseSign1(signer, event)) }));
  const plain = map([v, c, l, tm, ty]);
  out.push({ name: 'a COSE_Sign1 tagged 18', event: plain, cose: cat(Uint8Array.of(0xd2), coseSign1(signer, plain)) });
  return out;
}
