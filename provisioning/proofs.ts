/**
 * `oti proof consistency`: a consistency proof between two sizes of a chain held by a running
 * gateway (GET /proof/consistency), written to a file that `oti receipt verify --newer` takes.
 */
import { writeFile } from 'node:fs/promises';
import { OtiError } from '../ledger/base/errors.js';
import { parseCheckpoint } from '../ledger/checkpoint.js';
import { verifyConsistency } from '../ledger/merkle.js';
import { ApiClient } from './api-client.js';
import { API_OPTIONS, str, usage, type Command } from './command.js';

interface ConsistencyAnswer {
  chain: string;
  from: number;
  to: number;
  proof: string[];
  fromCheckpoint?: string;
  checkpoint?: string;
}

const SIZE = /^(0|[1-9][0-9]{0,15})$/;

const proofConsistency: Command = {
  name: 'proof consistency',
  summary: 'Fetch a consistency proof between two sizes of a chain from a running gateway.',
  details: [
    'Asks GET /proof/consistency for the RFC 9162 proof that the chain at --from entries is a prefix of the chain at --to entries (default: its latest checkpoint), for the gateway’s own chain or any replica it holds (--chain). Where blocks end at those sizes the answer carries their signed checkpoints, and the proof is checked against their roots before anything is written.',
    'The file written (--out) is the JSON answer; `oti receipt verify FILE --newer` takes it to tie a receipt against an older checkpoint to the newer one.',
  ],
  options: {
    from: { type: 'string', value: 'N', help: 'the older tree size (required)' },
    to: { type: 'string', value: 'N', help: 'the newer tree size (default: the latest)' },
    chain: { type: 'string', value: 'ORIGIN', help: 'the chain, e.g. oti/acme-hq/gw-2 (default: the gateway’s own)' },
    out: { type: 'string', value: 'FILE', help: 'write the answer (JSON) to FILE' },
    ...API_OPTIONS,
  },
  examples: ['oti proof consistency --from 120 --out proof.json', 'oti proof consistency --chain oti/acme-hq/gw-2 --from 10 --to 500 --json'],
  async run(p, term) {
    const from = size(str(p, 'from', true), 'from');
    const toArg = str(p, 'to');
    const q = new URLSearchParams({ from: String(from), ...(toArg !== undefined ? { to: String(size(toArg, 'to')) } : {}) });
    const chain = str(p, 'chain');
    if (chain !== undefined) q.set('chain', chain);
    const a = (await ApiClient.from(p, term).json(`/proof/consistency?${q.toString()}`)) as ConsistencyAnswer;
    const checked = checkAnswer(a);
    const out = str(p, 'out');
    if (out !== undefined) await writeFile(out, `${JSON.stringify(a, null, 2)}\n`, { mode: 0o644 });
    return {
      json: { ...a, checked, ...(out !== undefined ? { file: out } : {}) },
      text: [
        `consistency proof of ${a.chain} from size ${a.from} to size ${a.to}: ${a.proof.length} hashes`,
        checked ? '  it verifies between the roots of the signed checkpoints of both sizes' : '  (no signed checkpoint at one of the sizes: the proof was not checked here)',
        ...(out !== undefined ? [`  written to ${out}`] : []),
      ],
    };
  },
};

function size(v: string, name: string): number {
  if (!SIZE.test(v) || !Number.isSafeInteger(Number(v))) throw usage(`--${name} must be a tree size (a non-negative integer)`);
  return Number(v);
}

/** Checks the proof against the roots of the two checkpoints when the answer has both. */
function checkAnswer(a: ConsistencyAnswer): boolean {
  if (a.fromCheckpoint === undefined || a.checkpoint === undefined) return false;
  const older = parseCheckpoint(a.fromCheckpoint);
  const newer = parseCheckpoint(a.checkpoint);
  const proof = a.proof.map((h) => new Uint8Array(Buffer.from(h, 'base64')));
  if (older.size !== a.from || newer.size !== a.to || !verifyConsistency(a.from, a.to, older.root, newer.root, proof)) {
    throw new OtiError('ERR_PROOF_INVALID', `the gateway's consistency proof from ${a.from} to ${a.to} does not verify between its checkpoints`);
  }
  return true;
}

export const proofCommands: readonly Command[] = [proofConsistency];
