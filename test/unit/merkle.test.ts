/**
 * ledger/merkle.ts against the published RFC 6962 vectors (test/vectors/merkle.json) and against
 * a naive recursive reference written straight from RFC 6962 §2.1 (MTH, PATH, SUBPROOF), which
 * shares no code with the implementation, not even its hash helpers.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import {
  assertConsistency,
  assertInclusion,
  CompactRange,
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  leafHash,
  MAX_PROOF_HASHES,
  nodeHash,
  rangeHash,
  verifyConsistency,
  verifyInclusion,
  type NodeReader,
} from '../../ledger/merkle.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const hexes = (bs: readonly Uint8Array[]): string[] => bs.map(hex);

function sha(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = new Uint8Array(b);
  c[Math.floor(bit / 8) % c.length]! ^= 1 << bit % 8;
  return c;
}

function expectCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isOtiError(e, code), `expected ${code}, got ${String(e)}`);
    return true;
  };
}

/** Entry i of a test tree: variable length (0..40 bytes), different per seed. */
function entry(seed: number, i: number): Uint8Array {
  return sha(Buffer.from(`entry ${seed} ${i}`)).subarray(0, (i * 7 + seed) % 41);
}

function entries(seed: number, n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => entry(seed, i));
}

// ---------------------------------------------------------------------------------------------
// Naive reference, RFC 6962 §2.1, recursive on lists of entries.

const refLeaf = (d: Uint8Array): Uint8Array => sha(Uint8Array.of(0), d);
const refNode = (l: Uint8Array, r: Uint8Array): Uint8Array => sha(Uint8Array.of(1), l, r);

/** The largest power of two smaller than n (n > 1), by doubling. */
function refK(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function MTH(d: readonly Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha();
  if (d.length === 1) return refLeaf(d[0]!);
  const k = refK(d.length);
  return refNode(MTH(d.slice(0, k)), MTH(d.slice(k)));
}

function PATH(m: number, d: readonly Uint8Array[]): Uint8Array[] {
  if (d.length <= 1) return [];
  const k = refK(d.length);
  return m < k ? [...PATH(m, d.slice(0, k)), MTH(d.slice(k))] : [...PATH(m - k, d.slice(k)), MTH(d.slice(0, k))];
}

function SUBPROOF(m: number, d: readonly Uint8Array[], b: boolean): Uint8Array[] {
  const n = d.length;
  if (m === n) return b ? [] : [MTH(d)];
  const k = refK(n);
  return m <= k ? [...SUBPROOF(m, d.slice(0, k), b), MTH(d.slice(k))] : [...SUBPROOF(m - k, d.slice(k), false), MTH(d.slice(0, k))];
}

const PROOF = (m: number, d: readonly Uint8Array[]): Uint8Array[] => SUBPROOF(m, d, true);

/**
 * The shape of PATH(m, D[n]): for each element, leaf end first, whether it is a left (L) or
 * right (R) sibling. Two (index, size) pairs with the same shape consume a proof identically, so
 * a proof for one verifies for the other: RFC 6962 roots commit to contents, not to the size,
 * which is why a checkpoint signs (size, root) together.
 */
function pathShape(m: number, n: number): string | null {
  if (!(m >= 0 && m < n)) return null;
  if (n === 1) return '';
  const k = refK(n);
  return m < k ? pathShape(m, k) + 'R' : pathShape(m - k, n - k) + 'L';
}

/** The shape of PROOF(m, D[n]), in the same sense: S = old root seeds, E = element seeds, then L/R. */
function proofShape(m: number, n: number, b = true): string | null {
  if (!(m > 0 && m <= n)) return null;
  if (m === n) return b ? 'S' : 'E';
  const k = refK(n);
  return m <= k ? proofShape(m, k, b) + 'R' : proofShape(m - k, n - k, false) + 'L';
}

// ---------------------------------------------------------------------------------------------
// Readers

/** A reader over real leaves: precomputed levels, call counting, and refusal of incomplete nodes. */
class ArrayReader implements NodeReader {
  readonly levels: Uint8Array[][];
  calls = 0;

  constructor(data: readonly Uint8Array[]) {
    this.levels = [data.map(refLeaf)];
    for (let lv = this.levels[0]!; lv.length > 1; ) {
      const up: Uint8Array[] = [];
      for (let i = 0; i + 1 < lv.length; i += 2) up.push(refNode(lv[i]!, lv[i + 1]!));
      this.levels.push(up);
      lv = up;
    }
  }

  node(level: number, index: number): Promise<Uint8Array> {
    this.calls++;
    const h = this.levels[level]?.[index];
    if (h === undefined) return Promise.reject(new Error(`node(${level}, ${index}) is not a complete subtree`));
    return Promise.resolve(h);
  }
}

/**
 * A virtual tree of `size` identical leaves: every node at a level has the same hash, so trees of
 * up to 2^53 - 1 leaves are cheap. Checks every request lies wholly inside the tree.
 */
class UniformReader implements NodeReader {
  readonly perfect: Uint8Array[] = [refLeaf(Uint8Array.of(0x42))];
  calls = 0;

  constructor(readonly size: number) {
    for (let i = 1; i <= 53; i++) this.perfect.push(refNode(this.perfect[i - 1]!, this.perfect[i - 1]!));
  }

  node(level: number, index: number): Promise<Uint8Array> {
    this.calls++;
    const width = 2 ** level;
    if (!Number.isSafeInteger(index) || index < 0 || (index + 1) * width > this.size) {
      return Promise.reject(new Error(`node(${level}, ${index}) is outside a tree of ${this.size}`));
    }
    return Promise.resolve(this.perfect[level]!);
  }

  /** Root from the binary decomposition of size, via CompactRange.fromPeaks. */
  root(size = this.size): Uint8Array {
    const peaks: Uint8Array[] = [];
    for (let level = 53; level >= 0; level--) if (Math.floor(size / 2 ** level) % 2 === 1) peaks.push(this.perfect[level]!);
    return CompactRange.fromPeaks(size, peaks).root();
  }
}

const callBound = (n: number): number => 2 * Math.ceil(Math.log2(n)) + 2;

// ---------------------------------------------------------------------------------------------
// Published vectors

interface Vectors {
  emptyRoot: string;
  leafHashes: { entry: string; hash: string }[];
  leaves: string[];
  roots: Record<string, string>;
  nodes: string[][];
  inclusion: { index: number; size: number; proof: string[] }[];
  consistency: { oldSize: number; newSize: number; proof: string[] }[];
}

const V = JSON.parse(readFileSync(new URL('../../../test/vectors/merkle.json', import.meta.url), 'utf8')) as Vectors;
const vLeaves = V.leaves.map(unhex);
const vRoot = (size: number): Uint8Array => unhex(V.roots[String(size)]!);

void test('vectors: leaf hashes and the empty root', () => {
  assert.equal(hex(EMPTY_ROOT), V.emptyRoot);
  for (const v of V.leafHashes) assert.equal(hex(leafHash(unhex(v.entry))), v.hash);
  assert.equal(hex(CompactRange.empty().root()), V.emptyRoot);
});

void test('vectors: roots for sizes 1..8 by CompactRange, rangeHash and the reference', async () => {
  const reader = new ArrayReader(vLeaves);
  const cr = CompactRange.empty();
  for (let size = 1; size <= 8; size++) {
    cr.append(leafHash(vLeaves[size - 1]!));
    assert.equal(hex(cr.root()), V.roots[String(size)], `CompactRange root at ${size}`);
    assert.equal(hex(await rangeHash(reader, 0, size)), V.roots[String(size)], `rangeHash at ${size}`);
    assert.equal(hex(MTH(vLeaves.slice(0, size))), V.roots[String(size)], `reference at ${size}`);
  }
});

void test('vectors: interior nodes', async () => {
  const reader = new ArrayReader(vLeaves);
  for (const [level, row] of V.nodes.entries()) {
    for (const [index, want] of row.entries()) {
      assert.equal(hex(await rangeHash(reader, index * 2 ** level, (index + 1) * 2 ** level)), want, `node ${level}/${index}`);
    }
  }
  assert.equal(hex(nodeHash(unhex(V.nodes[0]![0]!), unhex(V.nodes[0]![1]!))), V.nodes[1]![0]);
});

void test('vectors: inclusion proofs are generated exactly and verify', async () => {
  const reader = new ArrayReader(vLeaves);
  for (const v of V.inclusion) {
    const proof = await inclusionProof(reader, v.index, v.size);
    assert.deepEqual(hexes(proof), v.proof, `PATH(${v.index}, D[${v.size}])`);
    const leaf = leafHash(vLeaves[v.index]!);
    assert.equal(verifyInclusion(leaf, v.index, v.size, v.proof.map(unhex), vRoot(v.size)), true);
    assertInclusion(leaf, v.index, v.size, proof, vRoot(v.size));
  }
});

void test('vectors: consistency proofs are generated exactly and verify', async () => {
  const reader = new ArrayReader(vLeaves);
  for (const v of V.consistency) {
    const proof = await consistencyProof(reader, v.oldSize, v.newSize);
    assert.deepEqual(hexes(proof), v.proof, `PROOF(${v.oldSize}, D[${v.newSize}])`);
    assert.equal(verifyConsistency(v.oldSize, v.newSize, vRoot(v.oldSize), vRoot(v.newSize), v.proof.map(unhex)), true);
    assertConsistency(v.oldSize, v.newSize, vRoot(v.oldSize), vRoot(v.newSize), proof);
  }
});

void test('vectors: corrupted vector proofs are rejected (the reference implementations\' probes)', () => {
  const someHash = unhex('abacaba000000000000000000000000000000000000000000060061e00123456');
  for (const v of V.inclusion.filter((x) => x.proof.length > 0)) {
    const proof = v.proof.map(unhex);
    const root = vRoot(v.size);
    const leaf = leafHash(vLeaves[v.index]!);
    const probes: [number, number, Uint8Array, Uint8Array, Uint8Array[], string][] = [
      [v.index - 1, v.size, leaf, root, proof, 'index - 1'],
      [v.index + 1, v.size, leaf, root, proof, 'index + 1'],
      [v.index ^ 2, v.size, leaf, root, proof, 'index ^ 2'],
      [v.index, v.size * 2, leaf, root, proof, 'size * 2'],
      [v.index, Math.floor(v.size / 2), leaf, root, proof, 'size / 2'],
      [v.index, v.size, new Uint8Array(Buffer.from('WrongLeaf')), root, proof, 'wrong leaf'],
      [v.index, v.size, leaf, EMPTY_ROOT, proof, 'empty root'],
      [v.index, v.size, leaf, someHash, proof, 'random root'],
      [v.index, v.size, leaf, root, [...proof, new Uint8Array(0)], 'trailing garbage'],
      [v.index, v.size, leaf, root, [...proof, root], 'trailing root'],
      [v.index, v.size, leaf, root, [new Uint8Array(0), ...proof], 'preceding garbage'],
      [v.index, v.size, leaf, root, [root, ...proof], 'preceding root'],
      [v.index, v.size, leaf, root, proof.slice(0, -1), 'removed component'],
      ...proof.map((_, i): [number, number, Uint8Array, Uint8Array, Uint8Array[], string] => [
        v.index, v.size, leaf, root, proof.map((p, j) => (j === i ? flipBit(p, 3) : p)), `proof[${i}] bit 3`,
      ]),
    ];
    if (proof.length > 1) probes.push([v.index, v.size, leaf, root, [proof[0]!, someHash, ...proof.slice(1)], 'inserted component']);
    for (const [index, size, l, r, p, desc] of probes) {
      assert.equal(verifyInclusion(l, index, size, p, r), false, `inclusion (${v.index}, ${v.size}): ${desc}`);
    }
  }
  for (const v of V.consistency.filter((x) => x.proof.length > 0)) {
    const proof = v.proof.map(unhex);
    const r1 = vRoot(v.oldSize);
    const r2 = vRoot(v.newSize);
    const probes: [number, number, Uint8Array, Uint8Array, Uint8Array[], string][] = [
      [v.oldSize - 1, v.newSize, r1, r2, proof, 'size1 - 1'],
      [v.oldSize + 1, v.newSize, r1, r2, proof, 'size1 + 1'],
      [v.oldSize ^ 2, v.newSize, r1, r2, proof, 'size1 ^ 2'],
      [v.oldSize, v.newSize * 2, r1, r2, proof, 'size2 * 2'],
      [v.oldSize, Math.floor(v.newSize / 2), r1, r2, proof, 'size2 / 2'],
      [v.oldSize, v.newSize, someHash, r2, proof, 'wrong root1'],
      [v.oldSize, v.newSize, r1, someHash, proof, 'wrong root2'],
      [v.oldSize, v.newSize, r2, r1, proof, 'swapped roots'],
      [v.oldSize, v.newSize, r1, r2, [], 'empty proof'],
      [v.oldSize, v.newSize, r1, r2, [...proof, new Uint8Array(0)], 'trailing garbage'],
      [v.oldSize, v.newSize, r1, r2, [...proof, r1], 'trailing root1'],
      [v.oldSize, v.newSize, r1, r2, [...proof, r2], 'trailing root2'],
      [v.oldSize, v.newSize, r1, r2, [new Uint8Array(0), ...proof], 'preceding garbage'],
      [v.oldSize, v.newSize, r1, r2, [r1, ...proof], 'preceding root1'],
      [v.oldSize, v.newSize, r1, r2, [r2, ...proof], 'preceding root2'],
      [v.oldSize, v.newSize, r1, r2, [proof[0]!, ...proof], 'preceding proof[0]'],
      [v.oldSize, v.newSize, r1, r2, proof.slice(0, -1), 'truncated proof'],
      ...proof.map((_, i): [number, number, Uint8Array, Uint8Array, Uint8Array[], string] => [
        v.oldSize, v.newSize, r1, r2, proof.map((p, j) => (j === i ? flipBit(p, 4) : p)), `proof[${i}] bit 4`,
      ]),
    ];
    for (const [m, n, a, b, p, desc] of probes) {
      assert.equal(verifyConsistency(m, n, a, b, p), false, `consistency (${v.oldSize}, ${v.newSize}): ${desc}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Properties against the reference

const MAX_N = 300;

void test('property: CompactRange root equals MTH for every size 0..300', () => {
  const data = entries(7, MAX_N);
  const cr = CompactRange.empty();
  assert.equal(hex(cr.root()), hex(MTH([])));
  for (let n = 1; n <= MAX_N; n++) {
    cr.append(leafHash(data[n - 1]!));
    assert.equal(cr.size, n);
    assert.equal(hex(cr.root()), hex(MTH(data.slice(0, n))), `size ${n}`);
  }
});

void test('property: CompactRange.appendEntry gives the peaks, root and nodes of append(leafHash(entry)), for every size 0..300', () => {
  const data = entries(11, MAX_N);
  const a = CompactRange.empty();
  const b = CompactRange.empty();
  const c = CompactRange.empty();
  const kept: Uint8Array[] = [];
  for (let n = 1; n <= MAX_N; n++) {
    const fromA: string[] = [];
    const fromC: string[] = [];
    a.append(leafHash(data[n - 1]!), (level, index, hash) => fromA.push(`${level}/${index}/${hex(hash)}`));
    b.appendEntry(data[n - 1]!);
    c.appendEntry(data[n - 1]!, (level, index, hash) => {
      fromC.push(`${level}/${index}/${hex(hash)}`);
      kept.push(hash);
    });
    assert.equal(b.size, n);
    assert.deepEqual(b.peaks.map(hex), a.peaks.map(hex), `peaks at size ${n}`);
    assert.deepEqual(c.peaks.map(hex), a.peaks.map(hex), `peaks with onNode at size ${n}`);
    assert.equal(hex(b.root()), hex(MTH(data.slice(0, n))), `size ${n}`);
    assert.deepEqual(fromC, fromA, `nodes at size ${n}`);
  }
  // The nodes handed out are the caller's to keep: later entries do not change them.
  const again = CompactRange.empty();
  const expected: string[] = [];
  for (let n = 0; n < MAX_N; n++) again.append(leafHash(data[n]!), (_l, _i, hash) => expected.push(hex(hash)));
  assert.deepEqual(kept.map(hex), expected);
});

void test('property: rangeHash equals MTH of any sub-range, aligned or not', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: MAX_N }), fc.nat(), fc.nat(), async (seed, n, a, b) => {
      const data = entries(seed, n);
      const reader = new ArrayReader(data);
      const start = a % (n + 1);
      const end = start + (b % (n - start + 1));
      assert.equal(hex(await rangeHash(reader, start, end)), hex(MTH(data.slice(start, end))));
    }),
    { numRuns: 150 },
  );
});

void test('property: inclusion proofs equal PATH, verify, and reject every corruption', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 1, max: MAX_N }),
      fc.nat(),
      fc.nat(),
      fc.nat({ max: 255 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      async (seed, n, i0, other, bit, junk) => {
        const data = entries(seed, n);
        const reader = new ArrayReader(data);
        const index = i0 % n;
        const root = MTH(data);
        const leaf = leafHash(data[index]!);
        const proof = await inclusionProof(reader, index, n);
        assert.deepEqual(hexes(proof), hexes(PATH(index, data)));
        assert.ok(reader.calls <= callBound(n), `${reader.calls} reads for size ${n}`);
        assert.equal(verifyInclusion(leaf, index, n, proof, root), true);
        assertInclusion(leaf, index, n, proof, root);

        const bad: [number, number, Uint8Array, Uint8Array[], string][] = [
          [index, n, leaf, [...proof, junk], 'extended'],
          [index, n, leaf, [...proof, proof[0] ?? junk], 'extended with a copy'],
          [index, n, leaf, [junk, ...proof], 'prepended'],
          [index, n, flipBit(leaf, bit), proof, 'flipped leaf'],
          [index, n, junk, proof, 'other leaf'],
          [n, n, leaf, proof, 'index = size'],
          [-1, n, leaf, proof, 'index -1'],
          [index + 0.5, n, leaf, proof, 'fractional index'],
        ];
        for (let j = 0; j < proof.length; j++) {
          bad.push([index, n, leaf, proof.map((p, k) => (k === j ? flipBit(p, bit) : p)), `bit ${bit} of proof[${j}]`]);
        }
        if (proof.length > 0) {
          bad.push([index, n, leaf, proof.slice(0, -1), 'truncated at the root end']);
          bad.push([index, n, leaf, proof.slice(1), 'truncated at the leaf end']);
        }
        if (n > 1) bad.push([(index + 1 + (other % (n - 1))) % n, n, leaf, proof, 'another index in the tree']);
        for (const [ix, size, l, p, desc] of bad) {
          assert.equal(verifyInclusion(l, ix, size, p, root), false, desc);
          assert.throws(() => assertInclusion(l, ix, size, p, root), expectCode('ERR_PROOF_INVALID'), desc);
        }

        // A wrong size: rejected unless PATH has exactly the same shape in both trees (then the
        // computation is identical and the RFC algorithm cannot tell; the signed size can).
        const wrongSize = 1 + ((n + other % (2 * n + 2)) % (2 * n + 2));
        if (wrongSize !== n) {
          const expected = pathShape(index, wrongSize) === pathShape(index, n);
          assert.equal(verifyInclusion(leaf, index, wrongSize, proof, root), expected, `size ${wrongSize} for ${n}`);
          if (!expected) assert.throws(() => assertInclusion(leaf, index, wrongSize, proof, root), expectCode('ERR_PROOF_INVALID'));
        }
      },
    ),
    { numRuns: 200 },
  );
});

void test('property: a wrong size is rejected whenever the proof shape differs (all sizes <= 48)', () => {
  const data = entries(3, 48);
  for (let n = 1; n <= 48; n++) {
    const root = MTH(data.slice(0, n));
    for (let index = 0; index < n; index++) {
      const proof = PATH(index, data.slice(0, n));
      const leaf = refLeaf(data[index]!);
      for (let other = 1; other <= 2 * n + 2; other++) {
        if (other === n) continue;
        const same = pathShape(index, other) === pathShape(index, n);
        assert.equal(verifyInclusion(leaf, index, other, proof, root), same, `(${index}, ${n}) as size ${other}`);
      }
      for (let j = 0; j < n; j++) {
        if (j !== index) assert.equal(verifyInclusion(leaf, j, n, proof, root), false, `(${index}, ${n}) as index ${j}`);
      }
    }
  }
});

void test('property: consistency proofs equal PROOF, verify, and reject every corruption', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 1, max: MAX_N }),
      fc.nat(),
      fc.nat(),
      fc.nat({ max: 255 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      async (seed, n, m0, other, bit, junk) => {
        const data = entries(seed, n);
        const reader = new ArrayReader(data);
        const m = 1 + (m0 % n);
        const oldRoot = MTH(data.slice(0, m));
        const newRoot = MTH(data);
        const proof = await consistencyProof(reader, m, n);
        assert.deepEqual(hexes(proof), hexes(PROOF(m, data)));
        assert.ok(reader.calls <= callBound(n), `${reader.calls} reads for ${m} -> ${n}`);
        assert.equal(verifyConsistency(m, n, oldRoot, newRoot, proof), true);
        assertConsistency(m, n, oldRoot, newRoot, proof);

        const bad: [number, number, Uint8Array, Uint8Array, Uint8Array[], string][] = [
          [m, n, oldRoot, newRoot, [...proof, junk], 'extended'],
          [m, n, oldRoot, newRoot, [junk, ...proof], 'prepended'],
          [m, n, flipBit(oldRoot, bit), newRoot, proof, 'flipped old root'],
          [m, n, oldRoot, flipBit(newRoot, bit), proof, 'flipped new root'],
          [m, n, oldRoot, newRoot, [...proof, oldRoot], 'trailing old root'],
          [m + 0.5, n, oldRoot, newRoot, proof, 'fractional size'],
        ];
        if (m !== n) {
          bad.push([m, n, newRoot, oldRoot, proof, 'swapped roots']);
          bad.push([m, n, oldRoot, newRoot, [], 'empty proof']);
        }
        for (let j = 0; j < proof.length; j++) {
          bad.push([m, n, oldRoot, newRoot, proof.map((p, k) => (k === j ? flipBit(p, bit) : p)), `bit ${bit} of proof[${j}]`]);
        }
        if (proof.length > 0) {
          bad.push([m, n, oldRoot, newRoot, proof.slice(0, -1), 'truncated at the root end']);
          bad.push([m, n, oldRoot, newRoot, proof.slice(1), 'truncated at the leaf end']);
        }
        for (const [a, b, r1, r2, p, desc] of bad) {
          assert.equal(verifyConsistency(a, b, r1, r2, p), false, desc);
          assert.throws(() => assertConsistency(a, b, r1, r2, p), expectCode('ERR_PROOF_INVALID'), desc);
        }

        // Wrong sizes: rejected unless PROOF has exactly the same shape for them.
        const shape = proofShape(m, n);
        const wrongOld = 1 + (other % (n + 1));
        const wrongNew = m + (other % (2 * n + 2));
        if (wrongOld !== m) {
          assert.equal(verifyConsistency(wrongOld, n, oldRoot, newRoot, proof), proofShape(wrongOld, n) === shape, `old size ${wrongOld}`);
        }
        if (wrongNew !== n) {
          assert.equal(verifyConsistency(m, wrongNew, oldRoot, newRoot, proof), proofShape(m, wrongNew) === shape, `new size ${wrongNew}`);
        }
      },
    ),
    { numRuns: 200 },
  );
});

void test('property: consistency with wrong sizes matches the shape rule exactly (all sizes <= 40)', () => {
  const data = entries(5, 40);
  for (let n = 1; n <= 40; n++) {
    const newRoot = MTH(data.slice(0, n));
    for (let m = 1; m <= n; m++) {
      const oldRoot = MTH(data.slice(0, m));
      const proof = PROOF(m, data.slice(0, n));
      const shape = proofShape(m, n);
      const probes: [number, number][] = [];
      for (let m2 = 0; m2 <= n + 2; m2++) if (m2 !== m) probes.push([m2, n]);
      for (let n2 = m; n2 <= 2 * n + 2; n2++) if (n2 !== n) probes.push([m, n2]);
      for (const [m2, n2] of probes) {
        const want = proofShape(m2, n2) === shape;
        assert.equal(verifyConsistency(m2, n2, oldRoot, newRoot, proof), want, `PROOF(${m}, ${n}) as (${m2}, ${n2})`);
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Reader economy and large trees

void test('reader: proof generation reads O(log n) complete nodes on trees up to 5000 leaves', async () => {
  const data = entries(11, 5000);
  const reader = new ArrayReader(data);
  for (const n of [1, 2, 3, 5, 16, 17, 255, 256, 257, 1000, 1023, 1024, 1025, 4095, 4097, 5000]) {
    const bound = callBound(n);
    for (const index of new Set([0, 1, Math.floor(n / 3), Math.floor(n / 2), n - 2, n - 1].filter((x) => x >= 0 && x < n))) {
      reader.calls = 0;
      await inclusionProof(reader, index, n);
      assert.ok(reader.calls <= bound, `inclusion ${index}/${n}: ${reader.calls} reads > ${bound}`);
    }
    for (const m of new Set([1, 2, Math.floor(n / 3), Math.floor(n / 2), n - 1, n].filter((x) => x >= 1 && x <= n))) {
      reader.calls = 0;
      await consistencyProof(reader, m, n);
      assert.ok(reader.calls <= bound, `consistency ${m}->${n}: ${reader.calls} reads > ${bound}`);
    }
  }
});

void test('reader: trees past 2^31, 2^32 and up to 2^53 - 1 leaves (no 32-bit arithmetic)', async () => {
  const sizes = [2 ** 31 + 5, 2 ** 32 + 1, 2 ** 32 + 3 * 2 ** 20 + 7, 2 ** 40 + 12345, 2 ** 52, Number.MAX_SAFE_INTEGER];
  for (const size of sizes) {
    const reader = new UniformReader(size);
    const root = reader.root();
    const leaf = reader.perfect[0]!;
    for (const index of [0, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 1, Math.floor(size / 2) + 1, size - 2, size - 1].filter((x) => x < size)) {
      reader.calls = 0;
      const proof = await inclusionProof(reader, index, size);
      assert.ok(reader.calls <= callBound(size), `inclusion ${index}/${size}: ${reader.calls} reads`);
      assert.ok(proof.length <= MAX_PROOF_HASHES);
      assert.equal(verifyInclusion(leaf, index, size, proof, root), true, `inclusion ${index}/${size}`);
    }
    for (const oldSize of [1, 2 ** 31 - 1, 2 ** 31 + 1, 2 ** 32, Math.floor(size / 3), size - 1].filter((x) => x >= 1 && x < size)) {
      reader.calls = 0;
      const proof = await consistencyProof(reader, oldSize, size);
      assert.ok(reader.calls <= callBound(size), `consistency ${oldSize}->${size}: ${reader.calls} reads`);
      assert.equal(verifyConsistency(oldSize, size, reader.root(oldSize), root, proof), true, `consistency ${oldSize}->${size}`);
      assert.equal(verifyConsistency(oldSize, size, reader.root(oldSize), flipBit(root, 9), proof), false);
    }
    assert.equal(hex(await rangeHash(reader, 0, size)), hex(root));
  }
});

// ---------------------------------------------------------------------------------------------
// CompactRange

void test('CompactRange: onNode reports every completed perfect subtree at level >= 1, once, with its hash', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_N }), (seed, n) => {
      const data = entries(seed, n);
      const reader = new ArrayReader(data);
      const cr = CompactRange.empty();
      const seen = new Map<string, string>();
      for (let i = 0; i < n; i++) {
        const now: [number, number][] = [];
        cr.append(leafHash(data[i]!), (level, index, hash) => {
          const key = `${level}/${index}`;
          assert.ok(!seen.has(key), `${key} reported twice`);
          assert.equal((index + 1) * 2 ** level, i + 1, `${key} completes at leaf ${i}`);
          seen.set(key, hex(hash));
          now.push([level, index]);
        });
        assert.deepEqual(now.map(([l]) => l), now.map((_, j) => j + 1), 'lowest level first, contiguous');
      }
      let expected = 0;
      for (let level = 1; level < reader.levels.length; level++) {
        for (const [index, h] of reader.levels[level]!.entries()) {
          assert.equal(seen.get(`${level}/${index}`), hex(h), `node ${level}/${index}`);
          expected++;
        }
      }
      assert.equal(seen.size, expected);
      assert.equal(hex(cr.root()), hex(MTH(data)));
    }),
    { numRuns: 60 },
  );
});

void test('CompactRange: fromPeaks round trip, clone independence, and continued appends', () => {
  const data = entries(9, 200);
  const cr = CompactRange.empty();
  for (let n = 0; n < 200; n++) {
    const copy = CompactRange.fromPeaks(cr.size, [...cr.peaks]);
    assert.equal(copy.size, n);
    assert.equal(cr.peaks.length, [...n.toString(2)].filter((c) => c === '1').length);
    assert.equal(hex(copy.root()), hex(cr.root()));
    const clone = cr.clone();
    cr.append(leafHash(data[n]!));
    assert.equal(clone.size, n, 'a clone does not follow the original');
    copy.append(leafHash(data[n]!));
    assert.equal(hex(copy.root()), hex(cr.root()), `after append at ${n}`);
    assert.deepEqual(hexes(copy.peaks), hexes(cr.peaks));
  }
  assert.equal(hex(cr.root()), hex(MTH(data)));
});

void test('CompactRange: peaks, roots and appended leaves are not aliased', () => {
  const leaf = leafHash(Buffer.from('a'));
  const cr = CompactRange.empty();
  cr.append(leaf);
  const before = hex(cr.root());
  leaf.fill(0);
  cr.peaks[0]!.fill(0);
  cr.root().fill(0);
  assert.equal(hex(cr.root()), before);
  const e = CompactRange.empty().root();
  e.fill(0);
  assert.equal(hex(EMPTY_ROOT), V.emptyRoot);
});

void test('CompactRange: an onNode that throws leaves the range unchanged', () => {
  const data = entries(1, 8);
  const cr = CompactRange.empty();
  for (let i = 0; i < 7; i++) cr.append(leafHash(data[i]!));
  const root = hex(cr.root());
  assert.throws(() =>
    cr.append(leafHash(data[7]!), (level) => {
      if (level === 2) throw new Error('store full');
    }),
  );
  assert.equal(cr.size, 7);
  assert.equal(hex(cr.root()), root);
  const levels: number[] = [];
  cr.append(leafHash(data[7]!), (level) => levels.push(level));
  assert.deepEqual(levels, [1, 2, 3]);
  assert.equal(hex(cr.root()), hex(MTH(data)));
});

void test('CompactRange: argument checks', () => {
  const h = leafHash(new Uint8Array(0));
  assert.throws(() => CompactRange.fromPeaks(3, [h]), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.fromPeaks(3, [h, h, h]), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.fromPeaks(2, [h.subarray(1)]), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.fromPeaks(-1, []), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.fromPeaks(1.5, [h]), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.empty().append(new Uint8Array(31)), expectCode('ERR_ARGUMENT'));
  assert.throws(() => CompactRange.empty().append('x' as unknown as Uint8Array), expectCode('ERR_ARGUMENT'));
  const full = CompactRange.fromPeaks(Number.MAX_SAFE_INTEGER, Array.from({ length: 53 }, () => h));
  assert.throws(() => full.append(h), expectCode('ERR_PROOF_RANGE'));
  assert.equal(CompactRange.fromPeaks(0, []).size, 0);
});

// ---------------------------------------------------------------------------------------------
// Edges and argument errors

void test('verifyConsistency: sizes 0 and equal sizes', () => {
  const a = MTH(entries(2, 3));
  const b = MTH(entries(2, 4));
  assert.equal(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, []), true);
  assert.equal(verifyConsistency(0, 4, EMPTY_ROOT, b, []), true);
  assert.equal(verifyConsistency(0, 4, a, b, []), false, 'the empty tree has one root');
  assert.equal(verifyConsistency(0, 0, EMPTY_ROOT, a, []), false);
  assert.equal(verifyConsistency(0, 4, EMPTY_ROOT, b, [b]), false, 'non-empty proof from size 0');
  assert.equal(verifyConsistency(3, 3, a, a, []), true);
  assert.equal(verifyConsistency(3, 3, a, b, []), false);
  assert.equal(verifyConsistency(3, 3, a, a, [a]), false, 'non-empty proof for equal sizes');
  assert.equal(verifyConsistency(4, 3, b, a, []), false, 'time travel');
  assert.equal(verifyConsistency(1, 2, a, b, []), false, 'empty proof');
  assert.equal(verifyConsistency(-1, 3, a, a, []), false);
});

void test('verify*: wrong argument types throw ERR_ARGUMENT, bad content returns false', () => {
  const data = entries(4, 5);
  const root = MTH(data);
  const leaf = refLeaf(data[1]!);
  const proof = PATH(1, data);
  const notBytes = 'x' as unknown as Uint8Array;
  assert.equal(verifyInclusion(leaf, 1, 5, proof, root), true);
  assert.throws(() => verifyInclusion(notBytes, 1, 5, proof, root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyInclusion(leaf, 1, 5, proof, notBytes), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyInclusion(leaf, '1' as unknown as number, 5, proof, root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyInclusion(leaf, 1, 5n as unknown as number, proof, root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyInclusion(leaf, 1, 5, 'p' as unknown as Uint8Array[], root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyInclusion(leaf, 1, 5, [notBytes], root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => assertInclusion(notBytes, 1, 5, proof, root), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyConsistency(1, 5, notBytes, root, []), expectCode('ERR_ARGUMENT'));
  assert.throws(() => verifyConsistency(1, null as unknown as number, root, root, []), expectCode('ERR_ARGUMENT'));
  assert.throws(() => assertConsistency(1, 5, root, root, null as unknown as Uint8Array[]), expectCode('ERR_ARGUMENT'));
  // Content, not type: false.
  assert.equal(verifyInclusion(leaf.subarray(1), 1, 5, proof, root), false, 'short leaf');
  assert.equal(verifyInclusion(leaf, 1, 5, proof, root.subarray(1)), false, 'short root');
  assert.equal(verifyInclusion(leaf, Number.NaN, 5, proof, root), false);
  assert.equal(verifyInclusion(leaf, 1, Infinity, proof, root), false);
  assert.equal(verifyInclusion(leaf, 1, 2 ** 53, proof, root), false, 'beyond safe integers');
  assert.equal(verifyInclusion(leaf, 0, 0, [], EMPTY_ROOT), false, 'nothing is in the empty tree');
  assert.equal(verifyInclusion(leaf, 0, 1, [], leaf), true);
  assert.equal(verifyInclusion(leaf, 0, 1, [leaf], leaf), false);
  // Length bound: over MAX_PROOF_HASHES is false without looking further.
  const long = Array.from({ length: MAX_PROOF_HASHES + 1 }, () => leaf);
  assert.equal(verifyInclusion(leaf, 1, 5, long, root), false);
  assert.equal(verifyConsistency(1, 5, leaf, root, long), false);
  assert.throws(() => assertConsistency(1, 5, leaf, root, long), expectCode('ERR_PROOF_INVALID'));
});

void test('proof generation: positions outside the tree are ERR_PROOF_RANGE, bad types ERR_ARGUMENT', async () => {
  const reader = new ArrayReader(entries(6, 10));
  await assert.rejects(inclusionProof(reader, 10, 10), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(inclusionProof(reader, 0, 0), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(inclusionProof(reader, -1, 10), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(inclusionProof(reader, 1.5, 10), expectCode('ERR_ARGUMENT'));
  await assert.rejects(inclusionProof(reader, '1' as unknown as number, 10), expectCode('ERR_ARGUMENT'));
  await assert.rejects(inclusionProof({} as NodeReader, 1, 10), expectCode('ERR_ARGUMENT'));
  await assert.rejects(consistencyProof(reader, 0, 10), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(consistencyProof(reader, 5, 4), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(consistencyProof(reader, 1, 2 ** 53), expectCode('ERR_PROOF_RANGE'));
  await assert.rejects(rangeHash(reader, 5, 4), expectCode('ERR_PROOF_RANGE'));
  assert.deepEqual(await consistencyProof(reader, 10, 10), []);
  assert.equal(hex(await rangeHash(reader, 4, 4)), V.emptyRoot);
  const liar: NodeReader = { node: () => Promise.resolve(new Uint8Array(31)) };
  await assert.rejects(inclusionProof(liar, 0, 4), expectCode('ERR_ARGUMENT'));
  assert.throws(() => nodeHash(new Uint8Array(31), new Uint8Array(32)), expectCode('ERR_ARGUMENT'));
  assert.throws(() => leafHash('x' as unknown as Uint8Array), expectCode('ERR_ARGUMENT'));
});
