/**
 * Receipts as QR codes in the terminal. The receipt's bytes are written in Base45 (RFC 9285),
 * the encoding made for QR alphanumeric mode (it is how EU digital COVID certificates travel),
 * because phone scanners pass text on faithfully and often mangle binary; the QR code itself is
 * made by qrcode-generator. Two modules rows per text line, with Unicode half blocks.
 */
import qrcode from 'qrcode-generator';
import { OtiError } from '../ledger/base/errors.js';

const B45 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';

/** RFC 9285 §4: each 2 bytes as 3 characters (little end first), a last single byte as 2. */
export function base45(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    let n = (bytes[i] as number) * 256 + (bytes[i + 1] as number);
    for (let k = 0; k < 3; k++) {
      out += B45[n % 45];
      n = Math.floor(n / 45);
    }
  }
  if (bytes.length % 2 === 1) {
    const n = bytes[bytes.length - 1] as number;
    out += (B45[n % 45] as string) + (B45[Math.floor(n / 45)] as string);
  }
  return out;
}

/** The inverse of base45; rejects characters outside the alphabet and impossible groups. */
export function fromBase45(text: string): Uint8Array {
  const out: number[] = [];
  const value = (c: string): number => {
    const v = B45.indexOf(c);
    if (v < 0 || c === '') throw new OtiError('ERR_ARGUMENT', `not a Base45 character: ${JSON.stringify(c)}`);
    return v;
  };
  if (text.length % 3 === 1) throw new OtiError('ERR_ARGUMENT', 'a Base45 text has a length of 3n or 3n+2');
  for (let i = 0; i < text.length; i += 3) {
    if (i + 2 < text.length) {
      const n = value(text[i] as string) + value(text[i + 1] as string) * 45 + value(text[i + 2] as string) * 2025;
      if (n > 0xffff) throw new OtiError('ERR_ARGUMENT', 'a Base45 group is out of range');
      out.push(n >> 8, n & 0xff);
    } else {
      const n = value(text[i] as string) + value(text[i + 1] as string) * 45;
      if (n > 0xff) throw new OtiError('ERR_ARGUMENT', 'a Base45 group is out of range');
      out.push(n);
    }
  }
  return new Uint8Array(out);
}

/**
 * The QR code of `bytes` as terminal text, or undefined when it is wider than `columns` (or the
 * data does not fit the largest QR version).
 */
export function terminalQr(bytes: Uint8Array, columns: number): string | undefined {
  const qr = qrcode(0, 'L');
  try {
    qr.addData(base45(bytes), 'Alphanumeric');
    qr.make();
  } catch {
    return undefined; // more than a version 40 code holds
  }
  const size = qr.getModuleCount();
  const quiet = 2;
  if (size + 2 * quiet > columns) return undefined;
  const dark = (r: number, c: number): boolean => r >= 0 && c >= 0 && r < size && c < size && qr.isDark(r, c);
  const lines: string[] = [];
  // Light modules are printed as blocks, dark ones as spaces: most terminals have a dark
  // background, and scanners need dark modules on a light field.
  for (let r = -quiet; r < size + quiet; r += 2) {
    let line = '';
    for (let c = -quiet; c < size + quiet; c++) {
      const top = !dark(r, c);
      const bottom = !dark(r + 1, c);
      line += top && bottom ? '█' : top ? '▀' : bottom ? '▄' : ' ';
    }
    lines.push(line);
  }
  return lines.join('\n');
}
