/** Byte helpers shared by the ledger, the drivers and the gateway. */

/** Whether `a` and `b` hold the same bytes (views of any buffer, any offset). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
