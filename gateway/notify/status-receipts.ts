/**
 * The receipts of committed events' MQTT statuses (docs/MQTT.md), made for a stream of events
 * against the newest checkpoint: the same bytes as `receiptFor(chain, index)` (ledger/receipt.ts),
 * without doing again for every event what is the same for every event of a checkpoint.
 *
 * Made per event, a receipt cost about 40 % of the gateway's allocation at 1,000 events/s
 * (bench:ingest, DECISIONS.md §Performance of the real gateway process): a dozen node reads and an
 * async recursion for the inclusion proof, two roster proofs, and the CBOR encoding of the whole
 * map with its sorting. Here the checkpoint note is encoded once per checkpoint; the gateway's and
 * each lock's statements and roster proofs once per roster tree (until the roster changes); the
 * inclusion proofs come from gateway/notify/inclusion-paths.ts, which reads each stored node once
 * and hashes the tree's right edge once per tree size.
 * Per event what is left: the entry's bytes, its index and its inclusion proof, encoded and put
 * beside the encoded parts in the order of deterministic CBOR (RFC 8949 §4.2.1: keys sorted
 * bytewise by their encoding), which is what `encodeReceipt` produces (test/unit/notify-receipts.test.ts
 * checks the bytes against receiptFor's).
 */
import { cborHead, encode, fastEncode, type CborValue } from '../../ledger/base/cbor.js';
import { OtiError } from '../../ledger/base/errors.js';
import type { Chain } from '../../ledger/chain.js';
import type { SignedCheckpoint } from '../../ledger/checkpoint.js';
import { decodeEntry, type Entry } from '../../ledger/entry.js';
import type { RosterTree } from '../../ledger/roster-commitment.js';
import { parseOrigin } from '../../ledger/verify.js';
import { InclusionPaths } from './inclusion-paths.js';

/**
 * Encoded parts that depend only on the roster tree (the same object from block to block until
 * the roster changes): the members' statements and their roster proofs, the lock's made when
 * first asked.
 */
interface RosterParts {
  readonly tree: RosterTree;
  readonly gateway: Uint8Array;
  readonly gatewayAt: Uint8Array;
  /** Encoded `lock` and `lockAt` values by lock id. */
  readonly locks: Map<string, { readonly lock: Uint8Array; readonly lockAt: Uint8Array }>;
}

/** Encoded parts that depend only on the checkpoint. */
interface CheckpointParts {
  readonly cp: SignedCheckpoint;
  readonly v: Uint8Array;
  readonly checkpoint: Uint8Array;
}

const TYPE = encode('oti-receipt');

export class StatusReceipts {
  readonly #chain: Chain;
  readonly #gatewayId: string;
  #roster: RosterParts | undefined;
  #cp: CheckpointParts | undefined;
  readonly #paths: InclusionPaths;

  constructor(chain: Chain) {
    this.#chain = chain;
    this.#gatewayId = parseOrigin(chain.origin).gatewayId;
    this.#paths = new InclusionPaths((level, index) => chain.node(level, index));
  }

  /**
   * The receipt of entry `index` against the newest sealed checkpoint; ERR_NOT_FOUND when no
   * checkpoint covers it yet. `entry`: the entry at `index` when the caller has it decoded.
   */
  async receipt(index: number, entry?: Entry): Promise<Uint8Array> {
    // The checkpoint and its roster tree are taken together (Chain.sealed), before any await.
    const sealed = this.#chain.sealed;
    const cp = sealed.checkpoint;
    if (cp === undefined || index >= cp.size) throw new OtiError('ERR_NOT_FOUND', `entry ${index} is not covered by a checkpoint yet`);
    const cpParts = this.#checkpointParts(cp);
    const roster = await this.#rosterParts(sealed.rosterTree);
    const entryBytes = await this.#chain.entry(index);
    const body = (entry ?? decodeEntry(entryBytes)).body;
    const committed = cp.roster !== undefined;
    const values = new Map<string, Uint8Array>([
      ['v', cpParts.v],
      ['type', TYPE],
      ['checkpoint', cpParts.checkpoint],
      ['gateway', roster.gateway],
      // Byte string, unsigned integer, array of byte strings: the shapes fastEncode writes as encode() would.
      ['entry', Buffer.concat([cborHead(2, entryBytes.length), entryBytes])],
      ['index', fastEncode.uint(index)],
      ['proof', fastEncode.bytesArray(await this.#paths.proof(index, cp.size))],
    ]);
    if (committed) values.set('gatewayAt', roster.gatewayAt);
    if (body.kind === 'lock-event') {
      const l = await this.#lockParts(roster, body.event.lock);
      values.set('lock', l.lock);
      if (committed) values.set('lockAt', l.lockAt);
    }
    return encodeMapOf(values);
  }

  #checkpointParts(cp: SignedCheckpoint): CheckpointParts {
    if (this.#cp?.cp === cp) return this.#cp;
    this.#cp = { cp, v: encode(cp.roster !== undefined ? 2 : 1), checkpoint: encode(cp.note) };
    return this.#cp;
  }

  async #rosterParts(tree: RosterTree): Promise<RosterParts> {
    if (this.#roster?.tree === tree) return this.#roster;
    const gw = tree.member('gateway', this.#gatewayId);
    if (gw === undefined) throw new OtiError('ERR_STORE_CORRUPT', 'the gateway is not in its own roster');
    const at = await tree.proof('gateway', this.#gatewayId);
    const parts: RosterParts = { tree, gateway: encode([...gw.history]), gatewayAt: encode([at.index, [...at.proof]] as CborValue), locks: new Map() };
    this.#roster = parts;
    return parts;
  }

  async #lockParts(roster: RosterParts, lock: string): Promise<{ readonly lock: Uint8Array; readonly lockAt: Uint8Array }> {
    const known = roster.locks.get(lock);
    if (known !== undefined) return known;
    const m = roster.tree.member('lock', lock);
    if (m === undefined) throw new OtiError('ERR_STORE_CORRUPT', `lock ${lock} is not in the roster`);
    const at = await roster.tree.proof('lock', lock);
    const parts = { lock: encode([...m.history]), lockAt: encode([at.index, [...at.proof]] as CborValue) };
    roster.locks.set(lock, parts);
    return parts;
  }
}

/** Encoded keys in the order of deterministic CBOR (bytewise by their encoding), computed once. */
const KEY_ORDER = ['v', 'type', 'entry', 'index', 'proof', 'checkpoint', 'gateway', 'lock', 'gatewayAt', 'lockAt', 'newer']
  .map((k) => ({ k, bytes: encode(k) }))
  .sort((a, b) => Buffer.compare(a.bytes, b.bytes));

/** A CBOR map of the encoded `values` (keys present in KEY_ORDER). */
function encodeMapOf(values: Map<string, Uint8Array>): Uint8Array {
  const chunks: Uint8Array[] = [mapHeader(values.size)];
  for (const { k, bytes } of KEY_ORDER) {
    const v = values.get(k);
    if (v === undefined) continue;
    chunks.push(bytes, v);
  }
  return Buffer.concat(chunks);
}

/** RFC 8949 §3.1 major type 5 with its count, in the shortest form (a receipt has at most 11 keys). */
function mapHeader(n: number): Uint8Array {
  if (n >= 24) throw new OtiError('ERR_ARGUMENT', `a receipt map has at most 11 keys, not ${n}`);
  return Uint8Array.of(0xa0 + n);
}
