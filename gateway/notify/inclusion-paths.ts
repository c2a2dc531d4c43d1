/**
 * Inclusion proofs (RFC 9162 §2.1.3.1) for many entries of one tree size in a row, as the MQTT
 * statuses of a block's events need them: what ledger/merkle.ts's `inclusionProof` returns, made
 * synchronously from hashes already at hand.
 *
 * A proof is the hashes of the subtrees beside the entry's path. The perfect ones are nodes the
 * chain stores and which never change once stored: they are read once and remembered (at most
 * NODES_MAX). The others lie at the tree's right edge and are the same for every entry of a
 * block: they are hashed once per tree size. `inclusionProof` reads every node again and hashes
 * through an async recursion per entry; that was most of a status receipt's allocation.
 * test/unit/notify-receipts.test.ts checks the receipts (and so these proofs) against receiptFor.
 */
import { bitLength, inclusionRanges, nodeHash, splitPoint } from '../../ledger/merkle.js';

/** Perfect-subtree hashes remembered at most; beyond it they are forgotten and read again when needed. */
const NODES_MAX = 8192;


export class InclusionPaths {
  readonly #read: (level: number, index: number) => Promise<Uint8Array>;
  /** Perfect subtrees by `level/index`. */
  readonly #nodes = new Map<string, Uint8Array>();
  /** Hashes of the other subtrees, by `start/end`, for a tree of #sizeOfSpans entries. */
  readonly #spans = new Map<string, Uint8Array>();
  #sizeOfSpans = -1;

  /** `read`: a stored perfect-subtree hash (Chain.node). */
  constructor(read: (level: number, index: number) => Promise<Uint8Array>) {
    this.#read = read;
  }

  /** PATH(index, D[0:size]), leaf end first; index < size. */
  async proof(index: number, size: number): Promise<Uint8Array[]> {
    if (this.#nodes.size > NODES_MAX) this.#nodes.clear();
    this.#spansFor(size);
    const spans = inclusionRanges(index, size);
    const missing: [level: number, index: number][] = [];
    for (const [s, e] of spans) this.#need(s, e, missing);
    if (missing.length > 0) {
      const got = await Promise.all(missing.map(([l, i]) => this.#read(l, i)));
      missing.forEach(([l, i], k) => this.#nodes.set(`${l}/${i}`, got[k] as Uint8Array));
      // Another proof of another size may have run meanwhile.
      this.#spansFor(size);
    }
    return spans.map(([s, e]) => this.#hash(s, e));
  }

  #spansFor(size: number): void {
    if (size === this.#sizeOfSpans) return;
    this.#spans.clear();
    this.#sizeOfSpans = size;
  }

  /** Adds to `out` the perfect nodes under [s, e) that are not at hand. */
  #need(s: number, e: number, out: [number, number][]): void {
    const perfect = perfectNode(s, e);
    if (perfect !== undefined) {
      if (!this.#nodes.has(`${perfect[0]}/${perfect[1]}`)) out.push(perfect);
      return;
    }
    if (this.#spans.has(`${s}/${e}`)) return;
    const mid = s + splitPoint(e - s);
    this.#need(s, mid, out);
    this.#need(mid, e, out);
  }

  /** MTH(D[s:e]) from the nodes at hand (RFC 9162 §2.1.1). */
  #hash(s: number, e: number): Uint8Array {
    const perfect = perfectNode(s, e);
    if (perfect !== undefined) return this.#nodes.get(`${perfect[0]}/${perfect[1]}`) as Uint8Array;
    const k = `${s}/${e}`;
    let h = this.#spans.get(k);
    if (h === undefined) {
      const mid = s + splitPoint(e - s);
      h = nodeHash(this.#hash(s, mid), this.#hash(mid, e));
      this.#spans.set(k, h);
    }
    return h;
  }
}

/** [level, index] of the stored node for [s, e) when it is a perfect, aligned subtree. */
function perfectNode(s: number, e: number): [number, number] | undefined {
  const n = e - s;
  const level = bitLength(n) - 1;
  return 2 ** level === n && s % n === 0 ? [level, s / n] : undefined;
}
