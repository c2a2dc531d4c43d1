/**
 * The uplink forwards the site's cosignatures of its chain to the central broker
 * (docs/ARCHIVE.md §Cosignatures and confirmation): the newest per witness, on
 * `<prefix>/<site>/<gw>/cosig/<witness>`, and again after a reconnection. A real Mosquitto (TLS)
 * plays the central broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import { connectAsync } from 'mqtt';
import { join } from 'node:path';
import { Uplink } from '../../gateway/sync/uplink.js';
import { cosign } from '../../gateway/sync/witness.js';
import { chainOrigin } from '../../ledger/chain.js';
import { Signer } from '../../ledger/crypto.js';
import { makeSite, enrollLock, tempDir } from '../support/site.js';
import { makeGateway, appendEvents } from '../support/sync.js';
import { startMosquitto } from '../support/mosquitto.js';
import { waitUntil } from '../support/wait.js';

const USERS = { uplink: 'uplink-password-2', archive: 'archive-password-2' };

void test('the uplink sends each witness\'s newest cosignature of its chain to the central broker, one given before the connection too (the kept one is sent on each connection)', { timeout: 120_000 }, async (t) => {
  const site = makeSite('site-upcosig');
  const central = await startMosquitto(t, USERS, { tls: true });
  const dir = await tempDir(t, 'oti-uplink-cosig-');
  const pw = join(dir, 'uplink.password');
  await writeFile(pw, `${USERS.uplink}\n`, { mode: 0o600 });
  const g = await makeGateway(t, site, 'gw-1', { broker: false });
  const w = await makeGateway(t, site, 'gw-2', { broker: false });
  await appendEvents(g, enrollLock(site, 'door'), 5);

  // The archive's side: a subscription on the central broker (mqtt.js; SUBACK before anything is sent).
  const got: { topic: string; payload: string }[] = [];
  const archive = await connectAsync(central.url, { username: 'archive', password: USERS.archive, ca: await readFile(central.caFile), reconnectPeriod: 0 });
  t.after(() => archive.endAsync(true));
  archive.on('message', (topic, payload) => got.push({ topic, payload: payload.toString('utf8') }));
  await archive.subscribeAsync('fleet/+/+/cosig/+', { qos: 1 });
  const topics = (): string[] => got.map((m) => m.topic);

  const witness = new Signer(w.key.seed);
  const origin = chainOrigin(site.siteId, 'gw-2');
  const cp = g.chain.checkpoint!;
  const note = cosign(cp, witness, origin, Math.floor(Date.now() / 1000)).note;
  const up = await Uplink.start({ url: central.url, username: 'uplink', passwordFile: pw, ca: central.caFile, topicPrefix: 'fleet', window: 4 }, { chain: g.chain, dataDir: g.dir });
  t.after(() => up.stop());
  // Given at once: before the TLS connection is up it is kept and sent when the connection comes.
  up.cosignature('gw-2', cp.size, note);
  await waitUntil('the cosignature reaches the central broker', () => topics().includes(`fleet/${site.siteId}/gw-1/cosig/gw-2`));
  assert.equal(got[0]!.payload, note, "the payload is the cosigned note, the witness's line included");

  // An older or equal size is not sent again; a witness id that is no id is ignored.
  const before = topics().length;
  up.cosignature('gw-2', cp.size, note);
  up.cosignature('not an id', cp.size + 1, note);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(topics().length, before);
  assert.ok(up.status().connected);
});
