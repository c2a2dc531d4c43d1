/**
 * An operator's decision about a lost ledger: `<data>/ledger-decision.json`, written by
 * `oti ledger accept-loss` (docs/CLI.md) and signed with the gateway's key, lets a gateway whose
 * ledger is shorter than its last-checkpoint record (gateway/sync/checkpoint-record.ts) append again,
 * continuing from what it holds (a new chain when it holds nothing). docs/SYNC.md §Recovery.
 *
 *   { "format": "oti-ledger-decision", "version": 1, "decision": "accept-loss",
 *     "origin": "oti/<site>/<gateway>", "recordSize": n, "recordRoot": "<base64>", "time": ms,
 *     "signature": "<hex>" }
 *
 * The signature is Ed25519 with the context "OTI-v1 ledger decision" over the UTF-8 JSON array
 * [format, version, decision, origin, recordSize, recordRoot, time]. A decision counts only for
 * the record it names: one made for an earlier loss never lets a later one pass unnoticed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Signer, fromHex, toHex, verifyWithContext } from '../../ledger/crypto.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { writeFileAtomic } from '../../ledger/base/files.js';

export const LEDGER_DECISION_FILE = 'ledger-decision.json';
const FORMAT = 'oti-ledger-decision';
const VERSION = 1;
const DECISION = 'accept-loss';
const MAX_BYTES = 4096;

interface Decision {
  readonly origin: string;
  readonly recordSize: number;
  readonly recordRoot: string;
  readonly time: number;
}

function signedBytes(d: Decision): Uint8Array {
  return Buffer.from(JSON.stringify([FORMAT, VERSION, DECISION, d.origin, d.recordSize, d.recordRoot, d.time]), 'utf8');
}

function rootOf(cp: SignedCheckpoint): string {
  return Buffer.from(cp.root).toString('base64');
}

/** Writes the decision to accept the loss of everything beyond what the ledger holds, for `record`. */
export async function writeLedgerDecision(dataDir: string, record: SignedCheckpoint, seed: Uint8Array, now: number): Promise<string> {
  const d: Decision = { origin: record.origin, recordSize: record.size, recordRoot: rootOf(record), time: now };
  const signature = toHex(new Signer(seed).signWithContext('OTI-v1 ledger decision', signedBytes(d)));
  const path = join(dataDir, LEDGER_DECISION_FILE);
  await writeFileAtomic(path, `${JSON.stringify({ format: FORMAT, version: VERSION, decision: DECISION, ...d, signature }, null, 2)}\n`, { mode: 0o600, overwrite: true });
  return path;
}

/**
 * True when `<data>/ledger-decision.json` holds a decision signed by `publicKey` that accepts the
 * loss for exactly `record`. Anything else (no file, another record, a bad signature) is false.
 */
export async function lossAccepted(dataDir: string, record: SignedCheckpoint, publicKey: Uint8Array): Promise<boolean> {
  let doc: Record<string, unknown>;
  try {
    const raw = await readFile(join(dataDir, LEDGER_DECISION_FILE), 'utf8');
    if (raw.length > MAX_BYTES) return false;
    doc = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return false;
  }
  if (doc['format'] !== FORMAT || doc['version'] !== VERSION || doc['decision'] !== DECISION || typeof doc['signature'] !== 'string' || !/^[0-9a-f]{128}$/.test(doc['signature'])) return false;
  const d: Decision = { origin: String(doc['origin']), recordSize: Number(doc['recordSize']), recordRoot: String(doc['recordRoot']), time: Number(doc['time']) };
  if (d.origin !== record.origin || d.recordSize !== record.size || d.recordRoot !== rootOf(record)) return false;
  return verifyWithContext(publicKey, 'OTI-v1 ledger decision', signedBytes(d), fromHex('signature', doc['signature'], 64));
}
