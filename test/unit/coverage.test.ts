/**
 * The lifecycle of the origin's own entries (gateway/sync/witness.ts CoverageTracker, docs/MQTT.md
 * §Event lifecycle): replicated once one other gateway holds and cosigned them, confirmed once
 * the quorum has; each stage once per entry, naming every cosigner known so far.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoverageTracker, type CoverageEvent } from '../../gateway/sync/witness.js';

function tracker(quorum: number): { t: CoverageTracker; got: CoverageEvent[] } {
  const t = new CoverageTracker('gw-c', () => quorum);
  const got: CoverageEvent[] = [];
  t.on('coverage', (e) => got.push(e));
  return { t, got };
}

void test('quorum 2 of 3: the first cosignature replicates, then confirms; a later one repeats neither', () => {
  const { t, got } = tracker(2);
  t.record('gw-a', 10, 1);
  assert.deepEqual(got, [
    { state: 'replicated', from: 0, to: 10, peers: 1, quorum: 2, cosigners: ['gw-a'] },
    { state: 'confirmed', from: 0, to: 10, peers: 1, quorum: 2, cosigners: ['gw-c', 'gw-a'] },
  ]);
  t.record('gw-b', 10, 1);
  assert.equal(got.length, 2, 'each stage is published once per entry');
  t.record('gw-b', 15, 2);
  assert.deepEqual(got.slice(2), [
    { state: 'replicated', from: 10, to: 15, peers: 1, quorum: 2, cosigners: ['gw-b'] },
    { state: 'confirmed', from: 10, to: 15, peers: 1, quorum: 2, cosigners: ['gw-c', 'gw-b'] },
  ]);
  t.record('gw-a', 20, 3);
  // Every gateway that holds the range is named: gw-a alone holds [15, 20).
  assert.deepEqual(got.slice(4).map((e) => [e.state, e.from, e.to, e.cosigners]), [
    ['replicated', 15, 20, ['gw-a']],
    ['confirmed', 15, 20, ['gw-c', 'gw-a']],
  ]);
  assert.equal(t.replicatedSize, 20);
  assert.equal(t.confirmedSize, 20);
});

void test('quorum 3: replicated with one witness, confirmed only with two, naming both', () => {
  const { t, got } = tracker(3);
  t.record('gw-a', 8, 1);
  assert.deepEqual(got, [{ state: 'replicated', from: 0, to: 8, peers: 1, quorum: 3, cosigners: ['gw-a'] }]);
  t.record('gw-b', 8, 1);
  assert.deepEqual(got.slice(1), [{ state: 'confirmed', from: 0, to: 8, peers: 2, quorum: 3, cosigners: ['gw-c', 'gw-a', 'gw-b'] }]);
  t.record('gw-b', 12, 2);
  assert.deepEqual(got.slice(2), [{ state: 'replicated', from: 8, to: 12, peers: 1, quorum: 3, cosigners: ['gw-b'] }]);
  t.record('gw-d', 12, 2);
  assert.deepEqual(got.slice(3), [{ state: 'confirmed', from: 8, to: 12, peers: 2, quorum: 3, cosigners: ['gw-c', 'gw-b', 'gw-d'] }]);
});

void test('older or smaller cosignatures change nothing', () => {
  const { t, got } = tracker(2);
  t.record('gw-a', 10, 5);
  t.record('gw-a', 9, 6);
  t.record('gw-a', 11, 4);
  assert.equal(got.length, 2);
  assert.deepEqual(t.witnesses(), [{ witness: 'gw-a', size: 10, time: 5 }]);
});

void test('with witness.externalQuorum k, confirmation also waits for k external witnesses, up to the smallest size they all reached', () => {
  const t = new CoverageTracker('gw-c', () => 2, () => 2);
  const got: CoverageEvent[] = [];
  t.on('coverage', (e) => got.push(e));
  t.record('gw-a', 10, 1);
  assert.deepEqual(got.map((e) => e.state), ['replicated'], 'the site quorum alone does not confirm');
  t.recordExternal('witness.example/w1', 10, 1);
  assert.equal(t.confirmedSize, 0, 'one external witness of two');
  t.recordExternal('witness.example/w2', 6, 1);
  assert.equal(t.confirmedSize, 6);
  assert.deepEqual(got.at(-1), { state: 'confirmed', from: 0, to: 6, peers: 1, quorum: 2, cosigners: ['gw-c', 'gw-a', 'witness.example/w1', 'witness.example/w2'] });
  t.recordExternal('witness.example/w2', 12, 2);
  assert.equal(t.confirmedSize, 10, 'bounded by the site quorum');
});
