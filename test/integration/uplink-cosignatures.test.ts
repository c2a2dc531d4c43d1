/**
 * The uplink forwards the site's cosignatures of its chain to the central broker
 * (docs/ARCHIVE.md §Cosignatures and confirmation): the newest per witness, on
 * `<prefix>/<site>/<gw>/cosig/<witness>`, and again after a reconnection; also those sync
 * verified before the uplink started (the gateway's CosignatureBook keeps them). A real Mosquitto
 * (TLS) plays the central broker; in the second test two gateways cosign over a real embedded
 * broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import { connectAsync } from 'mqtt';
import { join } from 'node:path';
import { Uplink } from '../../gateway/sync/uplink.js';
import { CosignatureBook } from '../../gateway/sync/cosignatures.js';
import { cosign } from '../../gateway/sync/witness.js';
import { chainOrigin } from '../../ledger/chain.js';
import { Signer } from '../../ledger/crypto.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { makeSite, enrollLock, tempDir } from '../support/site.js';
import { makeGateway, appendEvents, startSync } from '../support/sync.js';
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

void test('a cosignature sync verified before the uplink started reaches the central broker on its first connection, without a new block; newer ones follow', { timeout: 120_000 }, async (t) => {
  const site = makeSite('site-upearly');
  const central = await startMosquitto(t, USERS, { tls: true });
  const dir = await tempDir(t, 'oti-uplink-early-');
  const pw = join(dir, 'uplink.password');
  await writeFile(pw, `${USERS.uplink}\n`, { mode: 0o600 });
  const g = await makeGateway(t, site, 'gw-1');
  const w = await makeGateway(t, site, 'gw-2', { broker: false });
  const door = enrollLock(site, 'door');
  await appendEvents(g, door, 5);

  // The gateway's book, fed by sync as gateway/runtime.ts does; gw-2 cosigns gw-1's chain over gw-1's broker.
  const book = new CosignatureBook();
  const node = await startSync(g, site, [g.url!]);
  node.on('cosigned', (c) => book.cosigned(c));
  await startSync(w, site, [g.url!]);
  const cosignedAt = (size: number): boolean => book.newest().some(([id, c]) => id === 'gw-2' && c.size === size);
  const first = g.chain.checkpoint!.size;
  await waitUntil('gw-2 has cosigned all of gw-1, before any uplink', () => cosignedAt(first), 60_000);

  const got: { topic: string; payload: string }[] = [];
  const archive = await connectAsync(central.url, { username: 'archive', password: USERS.archive, ca: await readFile(central.caFile), reconnectPeriod: 0 });
  t.after(() => archive.endAsync(true));
  archive.on('message', (topic, payload) => got.push({ topic, payload: payload.toString('utf8') }));
  await archive.subscribeAsync('fleet/+/+/cosig/+', { qos: 1 });
  const topic = `fleet/${site.siteId}/gw-1/cosig/gw-2`;
  const sizes = (): number[] => got.filter((m) => m.topic === topic).map((m) => parseCheckpoint(m.payload).size);

  const up = await Uplink.start({ url: central.url, username: 'uplink', passwordFile: pw, ca: central.caFile, topicPrefix: 'fleet', window: 4 }, { chain: g.chain, dataDir: g.dir, cosignatures: book });
  t.after(() => up.stop());
  await waitUntil('the cosignature made before the uplink reaches the central broker', () => sizes().includes(first));
  assert.equal(g.chain.checkpoint!.size, first, 'no new block was needed');
  assert.equal(got.find((m) => m.topic === topic)!.payload, book.newest()[0]![1].note, "the cosigned note, the witness's line included");

  // A new block: gw-2's next cosignature comes through the book's listener.
  await appendEvents(g, door, 3);
  const second = g.chain.checkpoint!.size;
  assert.ok(second > first);
  await waitUntil('the newer cosignature follows', () => sizes().includes(second), 60_000);
  assert.equal(sizes()[0], first);
  assert.ok(sizes().every((size, i, all) => i === 0 || size > all[i - 1]!), `each one newer than the one before: ${sizes().join(', ')}`);
});
