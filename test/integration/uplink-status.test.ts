/**
 * The uplink's /status view (docs/ARCHIVE.md §Uplink): while the central broker cannot be reached
 * `lastError` says why and `lastErrorAt` when; once the uplink connects (a real Mosquitto started
 * on the port it was pointed at), both are gone, so a connected uplink shows no stale error.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Uplink } from '../../gateway/sync/uplink.js';
import { makeSite, enrollLock, tempDir } from '../support/site.js';
import { makeGateway, appendEvents } from '../support/sync.js';
import { startMosquitto } from '../support/mosquitto.js';
import { freePort } from '../support/gateway-process.js';
import { waitUntil } from '../support/wait.js';

void test('the uplink clears lastError (and lastErrorAt) once it connects: ECONNREFUSED is shown while the broker is down, not after', { timeout: 120_000 }, async (t) => {
  const site = makeSite('site-upstatus');
  const dir = await tempDir(t, 'oti-uplink-status-');
  const pw = join(dir, 'uplink.password');
  await writeFile(pw, 'uplink-password-3\n', { mode: 0o600 });
  const g = await makeGateway(t, site, 'gw-1', { broker: false });
  await appendEvents(g, enrollLock(site, 'door'), 5);
  const port = await freePort();
  const before = Date.now();
  const up = await Uplink.start({ url: `mqtt://127.0.0.1:${port}`, username: 'uplink', passwordFile: pw, topicPrefix: 'fleet', window: 4 }, { chain: g.chain, dataDir: g.dir });
  t.after(() => up.stop());
  await waitUntil('the uplink says the broker refused the connection', () => /ECONNREFUSED/.test(up.status().lastError ?? ''));
  const down = up.status();
  assert.equal(down.connected, false);
  assert.ok(down.lastErrorAt !== undefined && down.lastErrorAt >= before && down.lastErrorAt <= Date.now(), `lastErrorAt ${down.lastErrorAt}`);

  await startMosquitto(t, { uplink: 'uplink-password-3' }, { port });
  await waitUntil('the uplink connects and pushes its chain', () => up.status().connected && up.status().behind === 0);
  const st = up.status();
  assert.equal(st.lastError, undefined, 'no stale error once connected');
  assert.equal(st.lastErrorAt, undefined);
});
