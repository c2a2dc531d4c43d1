/**
 * C2SP tlog-tiles math and encoding (ledger/tiles.ts): tile index paths, canonical parsing,
 * which tiles a tree has, and uint16 length-prefixed bundles.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockResources, decodeBundle, encodeBundle, parseTilePath, tileIndexPath, tilePath, treeResources } from '../../ledger/tiles.js';
import { isOtiError } from '../../ledger/base/errors.js';

void test('tile indexes are 3-digit groups, all but the last prefixed with x', () => {
  assert.equal(tileIndexPath(0), '000');
  assert.equal(tileIndexPath(999), '999');
  assert.equal(tileIndexPath(1000), 'x001/000');
  assert.equal(tileIndexPath(1234067), 'x001/x234/067');
  assert.equal(tilePath({ kind: 'hash', level: 2, n: 1234067, width: 256 }), 'tile/2/x001/x234/067');
  assert.equal(tilePath({ kind: 'entries', n: 5, width: 17 }), 'tile/entries/005.p/17');
  assert.equal(tilePath({ kind: 'blocks', n: 0, width: 3 }), 'oti/blocks/000.p/3');
});

void test('only canonical tile paths parse, and they parse back to what wrote them', () => {
  for (const r of [
    { kind: 'hash', level: 0, n: 0, width: 256 },
    { kind: 'hash', level: 63, n: 1234067, width: 1 },
    { kind: 'entries', n: 1000, width: 255 },
    { kind: 'blocks', n: 7, width: 256 },
  ] as const) {
    assert.deepEqual(parseTilePath(tilePath(r)), r);
  }
  for (const bad of ['tile/0/0', 'tile/0/x000/001', 'tile/0/000.p/256', 'tile/0/000.p/0', 'tile/0/000.p/007', 'tile/64/000', 'tile/01/000', 'tile/entries/000/', 'tile/-1/000', 'oti/blocks/x1/000', 'checkpoint', 'tile/data/000']) {
    assert.equal(parseTilePath(bad), undefined, bad);
  }
});

void test('a tree has every full tile and one partial tile per level; blocks are grouped the same way', () => {
  const paths = [...treeResources(70_000)].map((r) => tilePath(r));
  // 70,000 = 273 * 256 + 112 leaves; 273 = 256 + 17 level-1 nodes; 1 level-2 node.
  assert.equal(paths.filter((p) => /^tile\/0\//.test(p)).length, 274);
  assert.equal(paths.filter((p) => p.startsWith('tile/entries/')).length, 274);
  assert.ok(paths.includes('tile/0/272') && paths.includes('tile/0/273.p/112') && paths.includes('tile/entries/273.p/112'));
  assert.deepEqual(paths.filter((p) => /^tile\/[12]\//.test(p)), ['tile/1/000', 'tile/1/001.p/17', 'tile/2/000.p/1']);
  assert.deepEqual([...treeResources(0)], []);
  assert.deepEqual([...treeResources(256)].map((r) => tilePath(r)), ['tile/0/000', 'tile/entries/000', 'tile/1/000.p/1']);
  assert.deepEqual([...blockResources(257)].map((r) => tilePath(r)), ['oti/blocks/000', 'oti/blocks/001.p/1']);
});

void test('bundles are big-endian uint16 length-prefixed records, and truncation is refused', () => {
  const records = [new Uint8Array(0), Uint8Array.of(1, 2, 3), new Uint8Array(300).fill(7)];
  const b = encodeBundle(records);
  assert.deepEqual([...b.subarray(0, 7)], [0, 0, 0, 3, 1, 2, 3]);
  assert.deepEqual([...b.subarray(7, 9)], [0x01, 0x2c]);
  assert.deepEqual(decodeBundle(b).map((r) => [...r]), records.map((r) => [...r]));
  assert.throws(() => decodeBundle(b.subarray(0, b.length - 1)), (e) => isOtiError(e) && e.code === 'ERR_ENCODING_MALFORMED');
  assert.throws(() => decodeBundle(b.subarray(0, 1)), (e) => isOtiError(e) && e.code === 'ERR_ENCODING_MALFORMED');
  assert.throws(() => encodeBundle([new Uint8Array(0x10000)]), (e) => isOtiError(e) && e.code === 'ERR_ENCODING_TOO_LARGE');
});
