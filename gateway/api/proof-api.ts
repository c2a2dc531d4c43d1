/**
 * GET /proof/consistency: a consistency proof between two sizes of any chain held here (own or
 * replica), with the stored signed checkpoints of those sizes when blocks end there. docs/API.md.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { consistencyBetween, checkpointOfSize } from '../../ledger/history.js';
import type { ChainReader } from '../../ledger/reader.js';

export interface ConsistencyJson {
  readonly chain: string;
  readonly from: number;
  readonly to: number;
  /** RFC 9162 consistency proof, base64 hashes. */
  readonly proof: string[];
  /** The signed checkpoint note of size `from`, when a block ends there. */
  readonly fromCheckpoint?: string;
  /** The signed checkpoint note of size `to`, when a block ends there (always for the default `to`). */
  readonly checkpoint?: string;
}

export async function consistencyJson(cs: ChainReader, q: URLSearchParams): Promise<ConsistencyJson> {
  const size = cs.head.size;
  const from = sizeParam(q, 'from', size);
  const to = sizeParam(q, 'to', size) ?? size;
  if (from === undefined) throw new OtiError('ERR_ARGUMENT', 'query parameter from is required: a tree size', { param: 'from' });
  if (from > to) throw new OtiError('ERR_ARGUMENT', `query parameter from (${from}) must not be larger than to (${to})`, { param: 'from' });
  const proof = await consistencyBetween(cs, from, to);
  const [older, newer] = await Promise.all([checkpointOfSize(cs, from), checkpointOfSize(cs, to)]);
  return {
    chain: cs.origin,
    from,
    to,
    proof: proof.map((h) => Buffer.from(h).toString('base64')),
    ...(older !== undefined ? { fromCheckpoint: older.note } : {}),
    ...(newer !== undefined ? { checkpoint: newer.note } : {}),
  };
}

/** An optional tree size query parameter, 0..size (the chain's durable size). */
export function sizeParam(q: URLSearchParams, name: string, size: number): number | undefined {
  const all = q.getAll(name);
  if (all.length === 0) return undefined;
  const v = all[0]!;
  if (all.length > 1 || !/^(0|[1-9][0-9]{0,15})$/.test(v) || Number(v) > size) {
    throw new OtiError('ERR_ARGUMENT', `query parameter ${name} must be given once, a tree size from 0 to ${size}`, { param: name });
  }
  return Number(v);
}

export type ReceiptFormat = 'cbor' | 'tlog-proof' | 'json';

/**
 * How GET /receipts/{id} answers: `format=` when given, else by Accept: application/cbor for the
 * CBOR receipt, text/plain for the C2SP tlog-proof, JSON otherwise.
 */
export function receiptFormat(q: URLSearchParams, accept: string | undefined): ReceiptFormat {
  const all = q.getAll('format');
  if (all.length > 1 || (all.length === 1 && !['cbor', 'tlog-proof', 'json'].includes(all[0]!))) {
    throw new OtiError('ERR_ARGUMENT', 'query parameter format must be given once, one of cbor, tlog-proof, json', { param: 'format' });
  }
  if (all.length === 1) return all[0] as ReceiptFormat;
  if (accepts(accept, 'application/cbor')) return 'cbor';
  if (accepts(accept, 'text/plain')) return 'tlog-proof';
  return 'json';
}

/** True when the Accept header lists `type` with a non-zero quality. */
function accepts(accept: string | undefined, type: string): boolean {
  if (accept === undefined) return false;
  return accept.split(',').some((part) => {
    const [t, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    return t === type && !params.some((p) => /^q=0(\.0{0,3})?$/.test(p));
  });
}
