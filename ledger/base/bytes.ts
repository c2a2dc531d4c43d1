/** Byte helpers shared by the ledger, the drivers and the gateway. */

/**
 * Whether `a` and `b` hold the same bytes (views of any buffer, any offset). Up to 64 bytes (keys,
 * hashes: most calls) compared here, without the two Buffer views that Buffer.equals needs.
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  if (n <= 64) {
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  return Buffer.from(a.buffer, a.byteOffset, n).equals(Buffer.from(b.buffer, b.byteOffset, n));
}
