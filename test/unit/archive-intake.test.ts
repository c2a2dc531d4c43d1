/**
 * How the archive's intake splits the trusted sites over its MQTT sessions, and the keys that set
 * it; the site files that give it the sites it trusts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sessionOf, sessionFilters } from '../../gateway/archive/uplink-intake.js';
import { loadArchiveConfig, parseArchiveConfig } from '../../gateway/archive/config.js';
import { toHex } from '../../ledger/crypto.js';
import { tempDir } from '../support/site.js';

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

void test('archive configuration: siteFiles takes the site folder\'s site.json (oti site init) and a gateway\'s, and names the file it cannot take', async (t) => {
  const dir = await tempDir(t);
  const other = 'cd'.repeat(32);
  // The shapes provisioning/site.ts and gateway/config/identity.ts write.
  await writeFile(join(dir, 'site-folder.json'), JSON.stringify({ format: 'oti-site', version: 1, siteId: 'site-a', siteKeys: [KEY] }));
  await writeFile(join(dir, 'gateway.json'), JSON.stringify({ siteId: 'site-b', siteKeys: [other], gatewayId: 'gw-1', enrolment: 'aa' }));
  await writeFile(join(dir, 'other.json'), JSON.stringify({ format: 'oti-bundle', version: 1, siteId: 'site-c', siteKeys: [KEY] }));
  await writeFile(join(dir, 'not.json'), 'site-c');
  const config = async (siteFiles: string[]): Promise<string> => {
    const file = join(dir, 'archive.json');
    await writeFile(file, JSON.stringify({ broker: { url: 'mqtt://127.0.0.1:1883' }, mysql: { user: 'u', database: 'd' }, api: { tokenFile: 't' }, siteFiles }));
    return file;
  };
  const cfg = await loadArchiveConfig(await config(['site-folder.json', 'gateway.json']));
  assert.deepEqual(cfg.sites.map((s) => [s.siteId, s.siteKeys.map((k) => toHex(k)), s.quorum]), [['site-a', [KEY], undefined], ['site-b', [other], undefined]]);
  for (const [file, key, says] of [['other.json', 'siteFiles[0].format', /other\.json is not a site\.json of oti site init/], ['not.json', 'siteFiles[0]', /not\.json is not a readable JSON file/], ['missing.json', 'siteFiles[0]', /missing\.json/]] as const) {
    await assert.rejects(loadArchiveConfig(await config([file])), (e: { code?: string; message: string; details?: { key?: string } }) => e.code === 'ERR_CONFIG' && e.details?.key === key && says.test(e.message), file);
  }
});
