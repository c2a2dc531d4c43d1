/**
 * The witness side of C2SP tlog-witness (https://c2sp.org/tlog-witness) `add-checkpoint`:
 * parsing the request body and deciding the answer against the witness's record of each log.
 * docs/SYNC.md §Witnessing over HTTP. The HTTP listener and the persisted record are in
 * gateway/sync/witness-listener.ts.
 *
 *   body = "old " <size> "\n" *(<base64 hash> "\n") "\n" <checkpoint note>
 *
 * Answers: 200 with cosignature lines; 400 malformed or old size above the checkpoint's; 403 no
 * trusted signature; 404 unknown origin; 409 old size is not the recorded one (body: the recorded
 * size, text/x.tlog.size) or same size with another root; 422 the consistency proof fails.
 */
import { OtiError, isOtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint, verifyCheckpoint, CHECKPOINT_MAX_BYTES, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { verifyConsistency } from '../../ledger/merkle.js';
import { bytesEqual } from '../../ledger/base/bytes.js';

/** The spec allows at most 63 proof lines of 44 base64 characters, the old line and a note. */
export const ADD_CHECKPOINT_MAX_BYTES = 32 + 63 * 45 + 1 + CHECKPOINT_MAX_BYTES;
const MAX_PROOF_LINES = 63;

export interface AddCheckpointRequest {
  readonly oldSize: number;
  readonly proof: readonly Uint8Array[];
  readonly checkpoint: SignedCheckpoint;
}

/** What the witness last cosigned for one log. */
export interface WitnessedTree {
  readonly size: number;
  readonly root: Uint8Array;
}

export interface WitnessAnswer {
  readonly status: 200 | 400 | 403 | 404 | 409 | 422;
  readonly type: string;
  readonly body: string;
  /** For 200: the tree the witness now records for the origin. */
  readonly record?: WitnessedTree;
}

export function parseAddCheckpoint(body: Buffer): AddCheckpointRequest {
  if (body.length > ADD_CHECKPOINT_MAX_BYTES) throw bad(`the body is larger than ${ADD_CHECKPOINT_MAX_BYTES} bytes`);
  const text = body.toString('utf8');
  const split = text.indexOf('\n\n');
  if (split < 0) throw bad('no empty line before the checkpoint');
  const lines = text.slice(0, split).split('\n');
  const old = /^old (0|[1-9][0-9]{0,15})$/.exec(lines[0]!);
  if (old === null || !Number.isSafeInteger(Number(old[1]))) throw bad('the first line must be "old <size>"');
  const proofLines = lines.slice(1);
  if (proofLines.length > MAX_PROOF_LINES) throw bad(`more than ${MAX_PROOF_LINES} consistency proof lines`);
  const proof = proofLines.map((l) => {
    const b = Buffer.from(l, 'base64');
    if (b.length !== 32 || b.toString('base64') !== l) throw bad('a consistency proof line is not one base64 hash');
    return new Uint8Array(b);
  });
  return { oldSize: Number(old[1]), proof, checkpoint: parseCheckpoint(text.slice(split + 2)) };
}

/**
 * Decides the answer to a request. `trustedKey` is the log's public key (undefined: unknown
 * origin); `last` what was cosigned before (undefined: never). `cosign` makes the lines.
 */
export function answerAddCheckpoint(req: AddCheckpointRequest, trustedKey: Uint8Array | undefined, last: WitnessedTree | undefined, cosign: (cp: SignedCheckpoint) => string): WitnessAnswer {
  const cp = req.checkpoint;
  if (trustedKey === undefined) return text(404, `unknown log ${cp.origin}\n`);
  try {
    verifyCheckpoint(cp, cp.origin, trustedKey);
  } catch (e) {
    if (isOtiError(e, 'ERR_CHECKPOINT_SIGNATURE')) return text(403, `no trusted signature on the checkpoint of ${cp.origin}\n`);
    throw e;
  }
  if (req.oldSize > cp.size) return text(400, `old size ${req.oldSize} is above the checkpoint size ${cp.size}\n`);
  const known = last?.size ?? 0;
  if (req.oldSize !== known) return { status: 409, type: 'text/x.tlog.size', body: `${known}\n` };
  if (last !== undefined && last.size === cp.size) {
    if (!bytesEqual(last.root, cp.root)) return { status: 409, type: 'text/x.tlog.size', body: `${known}\n` };
  } else if (req.oldSize === 0) {
    if (req.proof.length !== 0) return text(422, 'the proof must be empty for old size 0\n');
  } else if (!verifyConsistency(req.oldSize, cp.size, last!.root, cp.root, req.proof)) {
    return text(422, `the consistency proof from ${req.oldSize} to ${cp.size} does not verify\n`);
  }
  return { status: 200, type: 'text/plain; charset=utf-8', body: cosign(cp), record: { size: cp.size, root: cp.root } };
}

function text(status: WitnessAnswer['status'], body: string): WitnessAnswer {
  return { status, type: 'text/plain; charset=utf-8', body };
}

function bad(msg: string): OtiError {
  return new OtiError('ERR_ARGUMENT', `add-checkpoint: ${msg}`, { param: 'body' });
}
