/**
 * The packed batch layout of SignaturePool (ledger/sigpool.ts) and its verification: per item a
 * u32 message length (LE), the 32-byte key, the 64-byte signature, then the message.
 *
 * A module of its own so that a signature worker (ledger/sigworker.ts) loads only this and the
 * verifier: each import is held in every worker's V8 heap, and the CBOR codec that the pool's
 * packer needs would add about 5 MB to each worker.
 */
import { verifyEd25519, type Ed25519Verify } from './ed25519.js';

/** How many items a packed batch holds. */
export function packedCount(buf: Uint8Array): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let count = 0;
  for (let o = 0; o < buf.length; o += 100 + dv.getUint32(o, true)) count++;
  return count;
}

export function verifyPacked(buf: Uint8Array, ed25519: Ed25519Verify = verifyEd25519): Uint8Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const count = packedCount(buf);
  const results = new Uint8Array(count);
  let o = 0;
  for (let i = 0; i < count; i++) {
    const len = dv.getUint32(o, true);
    const key = buf.subarray(o + 4, o + 36);
    const sig = buf.subarray(o + 36, o + 100);
    const msg = buf.subarray(o + 100, o + 100 + len);
    results[i] = ed25519(key, msg, sig) ? 1 : 0;
    o += 100 + len;
  }
  return results;
}
