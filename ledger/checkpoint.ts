/**
 * Signed checkpoints in the C2SP tlog-checkpoint form, signed as C2SP signed notes
 * (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note). docs/PROTOCOL.md §Checkpoints.
 *
 *   <origin>\n
 *   <tree size, decimal>\n
 *   <root hash, base64 std with padding>\n
 *   oti-block <block number, decimal> <block hash, base64>\n     (extension line)
 *   oti-roster <members, decimal> <roster root, base64>\n       (extension line, from protocol 1.1 on)
 *   \n
 *   — <key name> <base64(key hash[4] || ed25519 signature[64])>\n   (one line per signature)
 *
 * The signature covers the note text: every byte up to and including the newline before the
 * blank line. Key hash = SHA-256(key name || "\n" || 0x01 || public key)[0:4] (signed-note
 * Ed25519, type 0x01). Unknown signature lines are kept and ignored, as the spec says.
 */
import { OtiError } from './base/errors.js';
import type { Signer } from './crypto.js';
import { type Ed25519Verify, sha256, verify, checkBytes, HASH_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from './crypto.js';
import { bytesEqual } from './base/bytes.js';
import type { RosterDigest } from './roster-commitment.js';

export const CHECKPOINT_MAX_BYTES = 4096;
const MAX_SIGNATURES = 16;
const EM_DASH = '\u2014';

export interface CheckpointBody {
  readonly origin: string;
  readonly size: number;
  readonly root: Uint8Array;
  readonly block: number;
  readonly blockHash: Uint8Array;
  /** The roster commitment (ledger/roster-commitment.ts); absent in checkpoints signed before it existed. */
  readonly roster?: RosterDigest | undefined;
}

export interface NoteSignature {
  readonly name: string;
  readonly keyHash: Uint8Array;
  readonly signature: Uint8Array;
}

export interface SignedCheckpoint extends CheckpointBody {
  /** The exact signed text (body), UTF-8. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
  /** The whole note as received or produced. */
  readonly note: string;
}

const ORIGIN_PATTERN = /^[\x21-\x7e]{1,255}$/;
/** Key names: 1..255 bytes of printable ASCII 0x21..0x7e except '+' (C2SP signed-note excludes spaces and '+'). */
const KEY_NAME_PATTERN = /^[\x21-\x2a\x2c-\x7e]{1,255}$/;
/** A signature line: U+2014, a space, a key name, a space, printable ASCII (then checked as canonical base64); nothing else. */
const SIGNATURE_LINE = /^\u2014 ([\x21-\x2a\x2c-\x7e]{1,255}) ([\x21-\x7e]+)$/;
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function keyHash(name: string, publicKey: Uint8Array): Uint8Array {
  checkBytes('publicKey', publicKey, PUBLIC_KEY_BYTES);
  return sha256(Buffer.from(`${name}\n`, 'utf8'), Uint8Array.of(0x01), publicKey).subarray(0, 4);
}

export function checkpointText(b: CheckpointBody): string {
  if (!ORIGIN_PATTERN.test(b.origin)) throw new OtiError('ERR_ARGUMENT', 'origin must be 1..255 printable ASCII characters without spaces');
  checkBytes('root', b.root, HASH_BYTES);
  checkBytes('blockHash', b.blockHash, HASH_BYTES);
  if (!Number.isSafeInteger(b.size) || b.size < 0 || !Number.isSafeInteger(b.block) || b.block < 0) throw new OtiError('ERR_ARGUMENT', 'size and block must be non-negative integers');
  return `${b.origin}\n${b.size}\n${b64(b.root)}\noti-block ${b.block} ${b64(b.blockHash)}\n${rosterLine(b.roster)}`;
}

function rosterLine(r: RosterDigest | undefined): string {
  if (r === undefined) return '';
  checkBytes('roster root', r.root, HASH_BYTES);
  if (!Number.isSafeInteger(r.size) || r.size < 1) throw new OtiError('ERR_ARGUMENT', 'the roster commitment must name at least one member');
  return `oti-roster ${r.size} ${b64(r.root)}\n`;
}

export function signCheckpoint(b: CheckpointBody, signer: Signer, keyName: string): SignedCheckpoint {
  if (!KEY_NAME_PATTERN.test(keyName)) throw new OtiError('ERR_ARGUMENT', "key name must be printable ASCII without spaces or '+'");
  const text = checkpointText(b);
  const signature = signer.sign(Buffer.from(text, 'utf8'));
  const sig: NoteSignature = { name: keyName, keyHash: keyHash(keyName, signer.publicKey), signature };
  return { ...b, text, signatures: [sig], note: `${text}\n${signatureLine(sig)}` };
}

/** Adds a signature line (e.g. a witness cosignature) to a parsed note. */
export function withSignature(cp: SignedCheckpoint, sig: NoteSignature): SignedCheckpoint {
  return { ...cp, signatures: [...cp.signatures, sig], note: `${cp.note}${signatureLine(sig)}` };
}

function signatureLine(s: NoteSignature): string {
  return `${EM_DASH} ${s.name} ${b64(Buffer.concat([s.keyHash, s.signature]))}\n`;
}

/** Strictly parses a checkpoint note. Throws ERR_CHECKPOINT_FORMAT naming what is wrong. */
export function parseCheckpoint(note: string | Uint8Array): SignedCheckpoint {
  const raw = typeof note === 'string' ? Buffer.from(note, 'utf8') : Buffer.from(note.buffer, note.byteOffset, note.length);
  if (raw.length > CHECKPOINT_MAX_BYTES) throw fmt(`note is ${raw.length} bytes, limit is ${CHECKPOINT_MAX_BYTES}`);
  const s = raw.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(raw)) throw fmt('note is not valid UTF-8');
  if (/[\x00-\x09\x0b-\x1f\x7f-\x9f]/.test(s)) throw fmt('note contains control characters (C0 other than \\n, DEL or C1)');
  const split = s.indexOf('\n\n');
  if (split < 0) throw fmt('note has no blank line before its signatures');
  const text = s.slice(0, split + 1);
  const sigPart = s.slice(split + 2);
  const lines = text.slice(0, -1).split('\n');
  if (lines.length !== 4 && lines.length !== 5) throw fmt(`checkpoint body must have 4 or 5 lines, has ${lines.length}`);
  const [origin, sizeLine, rootLine, ext, rosterExt] = lines as [string, string, string, string, string | undefined];
  if (!ORIGIN_PATTERN.test(origin)) throw fmt('origin line is not printable ASCII without spaces');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) throw fmt('tree size is not a canonical decimal integer');
  const root = unb64(rootLine, HASH_BYTES, 'root hash');
  const m = /^oti-block (0|[1-9][0-9]{0,15}) ([\x21-\x7e]+)$/.exec(ext);
  if (m === null || !Number.isSafeInteger(Number(m[1]))) throw fmt('extension line must be "oti-block <n> <hash>"');
  const blockHash = unb64(m[2]!, HASH_BYTES, 'block hash');
  const roster = rosterExt === undefined ? undefined : parseRosterLine(rosterExt);
  if (!sigPart.endsWith('\n')) throw fmt('signature block must end with a newline');
  const sigLines = sigPart.slice(0, -1).split('\n');
  if (sigLines.length === 0 || sigLines.length > MAX_SIGNATURES) throw fmt(`note must carry 1 to ${MAX_SIGNATURES} signatures`);
  const signatures: NoteSignature[] = sigLines.map((line) => {
    const sm = SIGNATURE_LINE.exec(line);
    if (sm === null) throw fmt("signature line must be \"— <name> <base64>\" with a name of printable ASCII without spaces or '+'");
    const blob = unb64(sm[2]!, undefined, 'signature');
    if (blob.length < 5) throw fmt('signature is too short');
    return { name: sm[1]!, keyHash: blob.subarray(0, 4), signature: blob.subarray(4) };
  });
  return { origin, size: Number(sizeLine), root, block: Number(m[1]), blockHash, ...(roster !== undefined ? { roster } : {}), text, signatures, note: s };
}

function parseRosterLine(line: string): RosterDigest {
  const m = /^oti-roster ([1-9][0-9]{0,15}) ([\x21-\x7e]+)$/.exec(line);
  if (m === null || !Number.isSafeInteger(Number(m[1]))) throw fmt('second extension line must be "oti-roster <members> <root>"');
  return { size: Number(m[1]), root: unb64(m[2]!, HASH_BYTES, 'roster root') };
}

/**
 * Verifies that the note carries a valid signature by `publicKey` under `keyName`.
 * Throws ERR_CHECKPOINT_SIGNATURE when none does.
 */
export function verifyCheckpoint(cp: SignedCheckpoint, keyName: string, publicKey: Uint8Array, ed25519: Ed25519Verify = verify): void {
  const kh = keyHash(keyName, publicKey);
  const msg = Buffer.from(cp.text, 'utf8');
  for (const s of cp.signatures) {
    if (s.name === keyName && bytesEqual(s.keyHash, kh) && s.signature.length === SIGNATURE_BYTES && ed25519(publicKey, msg, s.signature)) return;
  }
  throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `no valid signature by ${keyName} on checkpoint ${cp.origin} @ ${cp.size}`, { origin: cp.origin, size: cp.size });
}

export function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64');
}

function unb64(s: string, length: number | undefined, what: string): Uint8Array {
  if (!B64.test(s) || s.length % 4 !== 0) throw fmt(`${what} is not standard padded base64`);
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64') !== s) throw fmt(`${what} is not canonical base64`);
  if (length !== undefined && b.length !== length) throw fmt(`${what} must be ${length} bytes`);
  return new Uint8Array(b);
}

function fmt(msg: string): OtiError {
  return new OtiError('ERR_CHECKPOINT_FORMAT', msg);
}
