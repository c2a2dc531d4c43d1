/** How the archive's intake splits the trusted sites over its MQTT sessions, and the keys that set it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionOf, sessionFilters } from '../../gateway/archive/uplink-intake.js';
import { parseArchiveConfig } from '../../gateway/archive/config.js';

const KEY = 'ab'.repeat(32);
const doc = (broker: Record<string, unknown>): unknown => ({ broker: { url: 'mqtt://127.0.0.1:1883', ...broker }, mysql: { user: 'u', database: 'd' }, sites: [{ siteId: 'site-a', siteKeys: [KEY] }], api: { tokenFile: 't' } });

void test('archive intake: a site stays on one session, and the sites spread over the sessions', () => {
  const sites = Array.from({ length: 1000 }, (_, i) => `site-${i}`);
  for (const n of [1, 2, 3, 8]) {
    const counts = new Array<number>(n).fill(0);
    for (const s of sites) {
      const k = sessionOf(s, n);
      assert.equal(sessionOf(s, n), k);
      assert.ok(k >= 0 && k < n);
      counts[k]!++;
    }
    for (const c of counts) assert.ok(c > (1000 / n) * 0.7 && c < (1000 / n) * 1.3, `${n} sessions: ${counts.join(' ')}`);
  }
});

void test('archive intake: each trusted site\'s topics are taken by exactly one session, the others unsubscribe them and the wildcard', () => {
  const sites = ['site-a', 'site-b', 'site-c', 'site-d'];
  const n = 3;
  const all = Array.from({ length: n }, (_, k) => sessionFilters('oti-fleet', sites, k, n, 'sites'));
  for (const s of sites) {
    const takers = all.filter((f) => f.take.includes(`oti-fleet/${s}/+/block`) && f.take.includes(`oti-fleet/${s}/+/cosig/+`));
    assert.equal(takers.length, 1, s);
    for (const f of all) if (f !== takers[0]) assert.ok(f.drop.includes(`oti-fleet/${s}/+/block`));
  }
  for (const f of all) assert.ok(f.drop.includes('oti-fleet/+/+/block') && f.drop.includes('oti-fleet/+/+/cosig/+'));
  const one = sessionFilters('oti-fleet', sites, 0, 1, 'all');
  assert.deepEqual(one.take, ['oti-fleet/+/+/block', 'oti-fleet/+/+/cosig/+']);
  assert.equal(one.drop.length, 2 * sites.length);
  const trustedOnly = sessionFilters('oti-fleet', sites, 0, 1, 'sites');
  assert.equal(trustedOnly.take.length, 2 * sites.length);
  assert.ok(trustedOnly.drop.includes('oti-fleet/+/+/block'));
});

void test('archive configuration: broker.sessions and broker.topics', () => {
  assert.deepEqual([parseArchiveConfig(doc({}), '/x').broker.sessions, parseArchiveConfig(doc({}), '/x').broker.topics], [1, 'all']);
  assert.equal(parseArchiveConfig(doc({ sessions: 4 }), '/x').broker.topics, 'sites');
  assert.equal(parseArchiveConfig(doc({ topics: 'sites' }), '/x').broker.topics, 'sites');
  for (const [bad, key] of [[{ sessions: 0 }, 'broker.sessions'], [{ sessions: 65 }, 'broker.sessions'], [{ sessions: 2, topics: 'all' }, 'broker.topics'], [{ topics: 'some' }, 'broker.topics']] as const) {
    assert.throws(() => parseArchiveConfig(doc(bad), '/x'), (e: { code?: string; details?: { key?: string } }) => e.code === 'ERR_CONFIG' && e.details?.key === key, JSON.stringify(bad));
  }
});
