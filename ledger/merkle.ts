/**
 * Merkle tree hashing for chains: the tree of RFC 6962 §2.1 as restated by RFC 9162 §2.1,
 * over SHA-256, with inclusion and consistency proofs.
 *
 * Positions are JS safe integers (a chain can pass 2^31 entries), so every size and index is
 * handled with arithmetic (`% 2`, `/ 2`, `Math.floor`) and never with the 32-bit bitwise
 * operators. A tree node is named by (level, index): the perfect subtree over leaves
 * [index * 2^level, (index + 1) * 2^level); level 0 is a leaf hash.
 *
 * Proof generation only asks its `NodeReader` for perfect subtrees that lie wholly inside the
 * tree, O(log n) of them per proof. Verification follows the iterative algorithms of
 * RFC 9162 §2.1.3.2 and §2.1.4.2, returns false for any proof that does not verify, and throws
 * (ERR_ARGUMENT) only when an argument has the wrong JS type.
 *
 * Hashes returned by this module are fresh or internal-but-never-mutated buffers; callers must
 * treat every hash they are given as immutable.
 */
import { createHash, hash as hashOnce } from 'node:crypto';
import { checkBytes, HASH_BYTES, sha256Slab } from './crypto.js';
import { OtiError } from './base/errors.js';
import { bytesEqual } from './base/bytes.js';
import { sodium } from './sodium.js';

/** A proof with more hashes than this is invalid: a tree of 2^53 leaves needs at most 54. */
export const MAX_PROOF_HASHES = 64;

const LEAF_PREFIX = new Uint8Array([0x00]);
const NODE_PREFIX = new Uint8Array([0x01]);
const TWO_POW_32 = 0x1_0000_0000;

/**
 * The prefixed input of a hash is laid out in a scratch buffer and hashed in one call, into a
 * slice of a slab (sha256Slab, ledger/crypto.ts: libsodium where it loads, where node:crypto
 * allocates a buffer with memory of its own per hash: the same time per hash, but less for the
 * garbage collector, which counts where many appends are in flight; bench:ledger, 100,000
 * pre-verified appends with 8,192 in flight, in turn on one build: 12.4-14.5 against 15.1-16.3 µs
 * of CPU per entry; whole-chain verification saw no difference beyond the noise). Without
 * libsodium, crypto.hash (Node 20.12 and later), else a Hash object per hash: for inputs of 65 to
 * a few hundred bytes, creating one cost two to three times the hashing itself (3.4 against 1.1 µs
 * per interior node).
 */
const ONE_SHOT = typeof hashOnce === 'function';
const SHA256 = sodium?.crypto_hash_sha256;
const scratch = Buffer.allocUnsafeSlow(1024);
/** Views of scratch by length ([0, n)), made once: libsodium hashes a whole buffer. */
const scratchViews: Uint8Array[] = [];
const nodeInput = Buffer.allocUnsafeSlow(1 + 2 * HASH_BYTES);
nodeInput[0] = 0x01;
const sha256 = sha256Slab;

/** RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0)), the hash of one entry. */
export function leafHash(entry: Uint8Array): Uint8Array {
  checkBytes('entry', entry);
  if (!ONE_SHOT && SHA256 === undefined) return createHash('sha256').update(LEAF_PREFIX).update(entry).digest();
  const n = entry.length + 1;
  // Entries are a few hundred bytes; a larger one (rare) gets an input buffer of its own.
  if (n > scratch.length) return sha256(Buffer.concat([LEAF_PREFIX, entry]));
  scratch[0] = 0x00;
  scratch.set(entry, 1);
  return sha256((scratchViews[n] ??= scratch.subarray(0, n)));
}

/** The scratch a leaf or interior node that nobody keeps is hashed into (CompactRange appendEntry and #merge). */
const nodeScratch = Buffer.allocUnsafeSlow(HASH_BYTES);

/** RFC 9162 §2.1.1: HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])), an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  checkBytes('left', left, HASH_BYTES);
  checkBytes('right', right, HASH_BYTES);
  return hashChildren(left, right);
}

/** nodeHash without the argument checks, for internal callers that already hold 32-byte hashes. */
function hashChildren(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (!ONE_SHOT && SHA256 === undefined) return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + HASH_BYTES);
  return sha256(nodeInput);
}

/** RFC 9162 §2.1.1: MTH({}) = HASH(), the root of the empty tree. Do not mutate. */
export const EMPTY_ROOT: Uint8Array = createHash('sha256').digest();

/** Hash of a perfect subtree covering leaves [index*2^level, (index+1)*2^level). level 0 = leaf hash. */
export interface NodeReader {
  node(level: number, index: number): Promise<Uint8Array>;
}

/**
 * The "compact range" of a tree [0,size): the perfect-subtree peaks, left to right, heights
 * decreasing (one per set bit of size). O(log n) state used by the appender and by streaming
 * verifiers; it is the stack of RFC 9162 §2.1.2 kept between entries.
 */
export class CompactRange {
  #size: number;
  readonly #peaks: Uint8Array[];

  private constructor(size: number, peaks: Uint8Array[]) {
    this.#size = size;
    this.#peaks = peaks;
  }

  static empty(): CompactRange {
    return new CompactRange(0, []);
  }

  /** Rebuilds a range from stored peaks; there must be exactly one 32-byte peak per set bit of size. */
  static fromPeaks(size: number, peaks: Uint8Array[]): CompactRange {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new OtiError('ERR_ARGUMENT', 'size must be a non-negative safe integer', { argument: 'size' });
    }
    if (!Array.isArray(peaks)) throw new OtiError('ERR_ARGUMENT', 'peaks must be an array', { argument: 'peaks' });
    const expected = popcount(size);
    if (peaks.length !== expected) {
      throw new OtiError('ERR_ARGUMENT', `a range of size ${size} has ${expected} peaks, got ${peaks.length}`, { argument: 'peaks' });
    }
    return new CompactRange(
      size,
      peaks.map((p, i) => {
        checkBytes(`peaks[${i}]`, p, HASH_BYTES);
        return new Uint8Array(p);
      }),
    );
  }

  get size(): number {
    return this.#size;
  }

  /** Copies of the peaks, left (highest) to right (lowest). */
  get peaks(): readonly Uint8Array[] {
    return this.#peaks.map((p) => new Uint8Array(p));
  }

  /**
   * Appends one leaf hash; calls onNode(level, index, hash) for every perfect subtree node that
   * becomes complete at level >= 1 (so a store can persist the interior nodes it wants), lowest
   * first. The range changes only after every onNode call has returned: if onNode throws, the
   * range is as it was, and a retry reports the same nodes again.
   */
  append(leaf: Uint8Array, onNode?: (level: number, index: number, hash: Uint8Array) => void): void {
    checkBytes('leaf', leaf, HASH_BYTES);
    this.#merge(leaf, false, onNode);
  }

  /**
   * append(leafHash(entry), onNode), with fewer hashes allocated: an odd size's leaf, which is
   * merged at once, is hashed into a scratch buffer, so an entry allocates one hash (its new peak)
   * instead of about three, which the garbage collector of a whole-chain verification felt
   * (docs/DECISIONS.md §Issue 22, verify and sync audit). Every node handed to onNode is
   * allocated, as append() hands them.
   */
  appendEntry(entry: Uint8Array, onNode?: (level: number, index: number, hash: Uint8Array) => void): void {
    checkBytes('entry', entry);
    this.appendEntryAt(entry, 0, entry.length, onNode);
  }

  /** appendEntry() of the entry that is b[start, end) (an entry inside a stored chunk). */
  appendEntryAt(b: Uint8Array, start: number, end: number, onNode?: (level: number, index: number, hash: Uint8Array) => void): void {
    checkBytes('entry', b);
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > b.length) throw new OtiError('ERR_ARGUMENT', `entry bytes [${start}, ${end}) are not within ${b.length} bytes`, { argument: 'entry' });
    const entry = start === 0 && end === b.length ? b : b.subarray(start, end);
    const n = end - start + 1;
    // An even size: the leaf becomes a peak as it is, a hash of its own. Without libsodium there
    // is no scratch to gain; a large entry (rare) is hashed as leafHash() hashes it.
    if (this.#size % 2 === 0 || SHA256 === undefined || n > scratch.length) {
      this.#merge(leafHash(entry), true, onNode);
      return;
    }
    scratch[0] = 0x00;
    scratch.set(entry, 1);
    SHA256(nodeScratch, (scratchViews[n] ??= scratch.subarray(0, n)));
    this.#merge(nodeScratch, true, onNode);
  }

  /**
   * Adds a leaf hash: each trailing 1 bit of the old size is a peak of the new leaf's height to
   * merge with. A node that only leads to the next merge, and that no onNode is given, is hashed
   * into a scratch buffer (with libsodium); the new peak is allocated, and a leaf that becomes a
   * peak as it is is copied unless `owned` (nobody else holds it). The range changes only after
   * every onNode call has returned.
   */
  #merge(leaf: Uint8Array, owned: boolean, onNode: ((level: number, index: number, hash: Uint8Array) => void) | undefined): void {
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new OtiError('ERR_PROOF_RANGE', 'the tree is full', { size: this.#size });
    const peaks = this.#peaks;
    let top = peaks.length;
    let hash = leaf;
    let level = 0;
    let index = this.#size;
    while (index % 2 === 1) {
      top -= 1;
      level += 1;
      index = (index - 1) / 2;
      if (onNode === undefined && index % 2 === 1 && SHA256 !== undefined) {
        nodeInput.set(peaks[top]!, 1);
        nodeInput.set(hash, 1 + HASH_BYTES);
        SHA256(nodeScratch, nodeInput);
        hash = nodeScratch;
      } else {
        hash = hashChildren(peaks[top]!, hash);
        onNode?.(level, index, hash);
      }
    }
    peaks.length = top;
    peaks.push(level === 0 && !owned ? new Uint8Array(leaf) : hash);
    this.#size += 1;
  }

  /** RFC 9162 §2.1.2 step 3: MTH of [0,size), folding the peaks right to left; EMPTY_ROOT for 0. */
  root(): Uint8Array {
    const peaks = this.#peaks;
    const n = peaks.length;
    if (n === 0) return new Uint8Array(EMPTY_ROOT);
    if (n === 1) return new Uint8Array(peaks[0]!);
    let acc = peaks[n - 1]!;
    for (let i = n - 2; i >= 0; i--) acc = hashChildren(peaks[i]!, acc);
    return acc;
  }

  clone(): CompactRange {
    return new CompactRange(this.#size, this.#peaks.slice());
  }
}

/**
 * MTH(D[start:end]) for any range (RFC 9162 §2.1.1 applied to the sub-list), computed from
 * perfect subtrees via reader (aligned decomposition). When start is a multiple of the smallest
 * power of two >= end - start (every range a proof needs), this costs at most log2(n) + 1 reads;
 * other ranges are correct but may need up to end - start reads.
 */
export async function rangeHash(reader: NodeReader, start: number, end: number): Promise<Uint8Array> {
  checkReader(reader);
  checkPosition('start', start);
  checkPosition('end', end);
  if (end < start) throw new OtiError('ERR_PROOF_RANGE', `range [${start}, ${end}) is reversed`, { start, end });
  if (start === end) return new Uint8Array(EMPTY_ROOT);
  return subtreeHash(reader, start, end);
}

/**
 * RFC 9162 §2.1.3.1: PATH(index, D[0:size]), the audit path of one leaf, leaf end first.
 * Reads at most 2 * log2(size) + 1 nodes.
 */
export async function inclusionProof(reader: NodeReader, index: number, size: number): Promise<Uint8Array[]> {
  checkReader(reader);
  checkPosition('index', index);
  checkPosition('size', size);
  if (index >= size) throw new OtiError('ERR_PROOF_RANGE', `leaf ${index} is not in a tree of size ${size}`, { index, size });
  return Promise.all(inclusionRanges(index, size).map(([s, e]) => subtreeHash(reader, s, e)));
}

/**
 * RFC 9162 §2.1.4.1: PROOF(oldSize, D[0:newSize]), for 0 < oldSize <= newSize; empty when the
 * sizes are equal. Reads at most 2 * log2(newSize) + 2 nodes.
 */
export async function consistencyProof(reader: NodeReader, oldSize: number, newSize: number): Promise<Uint8Array[]> {
  checkReader(reader);
  checkPosition('oldSize', oldSize);
  checkPosition('newSize', newSize);
  if (oldSize === 0 || oldSize > newSize) {
    throw new OtiError('ERR_PROOF_RANGE', `no consistency proof from size ${oldSize} to size ${newSize}`, { oldSize, newSize });
  }
  return Promise.all(consistencyRanges(oldSize, newSize).map(([s, e]) => subtreeHash(reader, s, e)));
}

/**
 * RFC 9162 §2.1.3.2: checks that `leaf` (a leaf hash, not the entry) is at `index` in the tree of
 * `size` entries whose root is `root`. False on any mismatch, including hashes of the wrong length
 * and proofs longer than MAX_PROOF_HASHES; throws ERR_ARGUMENT only for wrong argument types.
 */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  checkBytes('leaf', leaf);
  checkNumber('index', index);
  checkNumber('size', size);
  checkBytes('root', root);
  if (!checkProof(proof)) return false;
  if (!isPosition(index) || !isPosition(size) || index >= size) return false; // §2.1.3.2 step 1
  if (leaf.length !== HASH_BYTES || root.length !== HASH_BYTES || !allHashes(proof)) return false;
  const computed = rootFromInclusionPath(leaf, index, size, proof);
  return computed !== undefined && bytesEqual(computed, root);
}

/**
 * RFC 9162 §2.1.4.2: checks that the tree of oldSize entries with root oldRoot is a prefix of the
 * tree of newSize entries with root newRoot. Equal sizes need an empty proof and equal roots;
 * oldSize 0 needs an empty proof and oldRoot = EMPTY_ROOT. False on any mismatch; throws
 * ERR_ARGUMENT only for wrong argument types.
 */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  checkNumber('oldSize', oldSize);
  checkNumber('newSize', newSize);
  checkBytes('oldRoot', oldRoot);
  checkBytes('newRoot', newRoot);
  if (!checkProof(proof)) return false;
  if (!isPosition(oldSize) || !isPosition(newSize) || oldSize > newSize) return false;
  if (oldRoot.length !== HASH_BYTES || newRoot.length !== HASH_BYTES || !allHashes(proof)) return false;
  if (oldSize === 0) return proof.length === 0 && bytesEqual(oldRoot, EMPTY_ROOT) && (newSize > 0 || bytesEqual(newRoot, EMPTY_ROOT));
  if (oldSize === newSize) return proof.length === 0 && bytesEqual(oldRoot, newRoot);
  if (proof.length === 0) return false; // §2.1.4.2 step 1
  return consistencyPathVerifies(oldSize, newSize, oldRoot, newRoot, proof);
}

/** verifyInclusion that throws OtiError ERR_PROOF_INVALID instead of returning false. */
export function assertInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): void {
  if (!verifyInclusion(leaf, index, size, proof, root)) {
    throw new OtiError('ERR_PROOF_INVALID', `inclusion proof for leaf ${index} in a tree of size ${size} does not verify`, { index, size });
  }
}

/** verifyConsistency that throws OtiError ERR_PROOF_INVALID instead of returning false. */
export function assertConsistency(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): void {
  if (!verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof)) {
    throw new OtiError('ERR_PROOF_INVALID', `consistency proof from size ${oldSize} to size ${newSize} does not verify`, { oldSize, newSize });
  }
}

// ---------------------------------------------------------------------------------------------
// Proof generation: which subtrees a proof is made of.

/** Leaves [start, end) of a tree: the span of one subtree. */
export type Span = readonly [start: number, end: number];

/**
 * RFC 9162 §2.1.3.1: for n > 1 with k the largest power of two < n, PATH(m, D[n]) is
 * PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]).
 * Walks down from the root, so the spans come out root end first and are reversed.
 */
export function inclusionRanges(index: number, size: number): Span[] {
  const spans: Span[] = [];
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const mid = lo + splitPoint(hi - lo);
    if (index < mid) {
      spans.push([mid, hi]);
      hi = mid;
    } else {
      spans.push([lo, mid]);
      lo = mid;
    }
  }
  return spans.reverse();
}

/**
 * RFC 9162 §2.1.4.1: SUBPROOF(m, D[n], b) is {} if m = n and b, {MTH(D[n])} if m = n and not b;
 * for m < n, SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else
 * SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]). PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
 */
function consistencyRanges(oldSize: number, newSize: number): Span[] {
  const spans: Span[] = [];
  let lo = 0;
  let hi = newSize;
  let wholeOldTree = true; // the b flag: [lo, hi) still starts at leaf 0
  while (oldSize - lo < hi - lo) {
    const mid = lo + splitPoint(hi - lo);
    if (oldSize <= mid) {
      spans.push([mid, hi]);
      hi = mid;
    } else {
      spans.push([lo, mid]);
      lo = mid;
      wholeOldTree = false;
    }
  }
  if (!wholeOldTree) spans.push([lo, hi]);
  return spans.reverse();
}

/**
 * MTH(D[start:end]) by the RFC 9162 §2.1.1 split, reading a node whenever the span is a perfect
 * subtree of the whole tree. For aligned spans the left half is always one perfect node.
 */
async function subtreeHash(reader: NodeReader, start: number, end: number): Promise<Uint8Array> {
  const n = end - start;
  const height = bitLength(n) - 1;
  const width = 2 ** height;
  if (width === n && start % n === 0) return readNode(reader, height, start / n);
  const mid = start + splitPoint(n);
  const [left, right] = await Promise.all([subtreeHash(reader, start, mid), subtreeHash(reader, mid, end)]);
  return hashChildren(left, right);
}

async function readNode(reader: NodeReader, level: number, index: number): Promise<Uint8Array> {
  const hash = await reader.node(level, index);
  if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) {
    throw new OtiError('ERR_ARGUMENT', `reader.node(${level}, ${index}) did not return a ${HASH_BYTES}-byte hash`, { argument: 'reader', level, index });
  }
  return hash;
}

// ---------------------------------------------------------------------------------------------
// Proof verification.

/** RFC 9162 §2.1.3.2 steps 2-5; undefined when the path does not fit the tree shape. */
function rootFromInclusionPath(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): Uint8Array | undefined {
  let fn = index; // step 2
  let sn = size - 1;
  let r = leaf; // step 3
  for (const p of proof) {
    if (sn === 0) return undefined; // step 4a
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r); // step 4b
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2); // step 4c
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined; // step 5 (the root comparison is the caller's)
}

/** RFC 9162 §2.1.4.2 steps 2-7, for 0 < oldSize < newSize and a non-empty proof. */
function consistencyPathVerifies(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  let next = 0;
  const first = isPowerOfTwo(oldSize) ? oldRoot : proof[next++]!; // step 2: prepend first_hash
  let fn = oldSize - 1; // step 3
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2; // step 4
    sn = Math.floor(sn / 2);
  }
  let fr = first; // step 5
  let sr = first;
  for (; next < proof.length; next++) {
    const c = proof[next]!;
    if (sn === 0) return false; // step 6a
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr); // step 6b
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2); // step 6c
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(fr, oldRoot) && bytesEqual(sr, newRoot); // step 7
}

// ---------------------------------------------------------------------------------------------
// Small helpers. Sizes reach 2^53, so no 32-bit bitwise operators on them.

/** Number of bits needed for a non-negative safe integer; 0 for 0. */
export function bitLength(x: number): number {
  if (x < TWO_POW_32) return 32 - Math.clz32(x);
  return 64 - Math.clz32(Math.floor(x / TWO_POW_32));
}

/** RFC 9162 §2.1.1: k, the largest power of two smaller than n, for n > 1. */
export function splitPoint(n: number): number {
  return 2 ** (bitLength(n - 1) - 1);
}

function isPowerOfTwo(x: number): boolean {
  return x > 0 && 2 ** (bitLength(x) - 1) === x;
}

function popcount(x: number): number {
  let count = 0;
  for (let rest = x; rest > 0; rest = Math.floor(rest / 2)) count += rest % 2;
  return count;
}

function isPosition(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function allHashes(proof: readonly Uint8Array[]): boolean {
  for (const p of proof) if (p.length !== HASH_BYTES) return false;
  return true;
}

function checkNumber(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number') throw new OtiError('ERR_ARGUMENT', `${name} must be a number`, { argument: name });
}

/** Type-checks a proof; false (not a throw) when it is longer than MAX_PROOF_HASHES. */
function checkProof(proof: unknown): boolean {
  if (!Array.isArray(proof)) throw new OtiError('ERR_ARGUMENT', 'proof must be an array', { argument: 'proof' });
  if (proof.length > MAX_PROOF_HASHES) return false;
  proof.forEach((p, i) => checkBytes(`proof[${i}]`, p));
  return true;
}

/** A tree position for proof generation: wrong type -> ERR_ARGUMENT, outside any tree -> ERR_PROOF_RANGE. */
function checkPosition(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new OtiError('ERR_ARGUMENT', `${name} must be an integer`, { argument: name });
  }
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw new OtiError('ERR_PROOF_RANGE', `${name} ${value} is outside any tree`, { [name]: value });
  }
}

function checkReader(reader: unknown): asserts reader is NodeReader {
  if (typeof reader !== 'object' || reader === null || typeof (reader as { node?: unknown }).node !== 'function') {
    throw new OtiError('ERR_ARGUMENT', 'reader must have a node(level, index) method', { argument: 'reader' });
  }
}
