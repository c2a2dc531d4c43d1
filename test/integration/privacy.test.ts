/**
 * Privacy through the real pipeline (docs/PRIVACY.md): simulated locks that seal their
 * credentials, the in-process driver, gateway/ingest.ts, the chain in LevelDB, a real Broker and
 * MqttNotifier with an MQTT client capturing every message. Then every file of the data folder
 * and every MQTT payload (and the receipts inside them) is scanned for the known plaintext; a
 * control string stored on purpose proves the scan can see stored plaintext. Erasure destroys
 * the person key (also in an `oti backup` taken afterwards) and the whole chain still verifies.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'mqtt';
import { Broker } from '../../gateway/broker/broker.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { MqttNotifier } from '../../gateway/notify/notifier.js';
import { TopicMap } from '../../gateway/broker/topics.js';
import { Ingest } from '../../gateway/ingest.js';
import { PersonKeyStore, PrivacyReader, erasePerson, followChain, recordPerson } from '../../gateway/api/persons.js';
import { entryJson } from '../../gateway/api/entry-json.js';
import { attachInProcessDriver } from '../support/ingest-link.js';
import { SimLock } from '../../drivers/simlock.js';
import { LedgerStore } from '../../ledger/store.js';
import { verifyChain } from '../../ledger/verify.js';
import { receiptFor, verifyReceipt } from '../../ledger/receipt.js';
import { decodeEntry } from '../../ledger/entry.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { PrivacyKeyring, encryptPersonFields, newPersonId, newPersonKey, wrapPersonKey } from '../../ledger/privacy.js';
import { enrollLock, makeSite, openChain, tempDir } from '../support/site.js';
import { oti, type Run } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';

const WAIT_MS = 30_000;
const ALICE_CARD = 'ALICE-CARD-0001';
const BOB_CARD = 'BOB-CARD-000002';
const NAME = 'Alice Wonderland-Privacy';
const BADGE = 'BADGE-778899';
const CONTROL = 'CONTROL-PLAINTEXT-STORED-ON-PURPOSE';
const SECRETS = [ALICE_CARD, BOB_CARD, NAME, BADGE];

/** Every form a plaintext string could take in bytes: UTF-8, hex of its UTF-8, UTF-16LE. */
function forms(s: string): Buffer[] {
  return [Buffer.from(s, 'utf8'), Buffer.from(Buffer.from(s, 'utf8').toString('hex'), 'utf8'), Buffer.from(s, 'utf16le')];
}

function contains(hay: Buffer, s: string): boolean {
  return forms(s).some((f) => hay.includes(f));
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true, recursive: true })) if (d.isFile()) out.push(join(d.parentPath, d.name));
  return out;
}

function runOti(args: readonly string[], env: Record<string, string>): Promise<Run> {
  return oti(args, { env });
}

void test('no plaintext personal data in LevelDB files, the person store or MQTT; erasure is final and the chain still verifies', async (t) => {
  const site = makeSite('site-1');
  const keyring = PrivacyKeyring.generate('site-1');
  const data = await tempDir(t, 'oti-privacy-');
  const front = enrollLock(site, 'front-door');
  const legacy = enrollLock(site, 'legacy-door');
  const opened = await openChain(t, site, { sealDelayMs: 2 }, join(data, 'ledger'));
  const chain = opened.chain;
  await chain.append({ kind: 'roster', signed: front.statement });
  await chain.append({ kind: 'roster', signed: legacy.statement });
  await chain.append({ kind: 'health', source: 'test', status: 'control', detail: CONTROL });
  const store = await PersonKeyStore.open(data);
  const unfollow = followChain(chain, store, (e) => assert.fail(e));
  t.after(unfollow);

  // Broker, notifier and a client that captures everything under the site's topics.
  const usersFile = join(data, 'mqtt-users.json');
  await addMqttUser(usersFile, 'app1', 'app', 'app-secret-1');
  const broker = await Broker.start({ site: 'site-1', host: '127.0.0.1', port: 0, allowAnonymous: false, maxMessageBytes: 65536, rateLimit: { messagesPerSecond: 10_000, burst: 10_000 }, usersFile });
  t.after(() => broker.close());
  const captured: { topic: string; payload: Buffer }[] = [];
  const client = connect(`mqtt://127.0.0.1:${broker.port}`, { username: 'app1', password: 'app-secret-1', reconnectPeriod: 0 });
  t.after(() => client.endAsync(true));
  await new Promise<void>((res, rej) => {
    client.once('connect', () => res());
    client.once('error', rej);
  });
  client.on('message', (topic, payload) => captured.push({ topic, payload: Buffer.from(payload) }));
  // Everything an app may read (the notifier publishes nothing else here).
  await client.subscribeAsync(['events', 'status', 'gateways', 'lockstate', 'locks'].map((x) => `oti/site-1/${x}/#`), { qos: 1 });

  const ingest = new Ingest({ chain, privacyKeyIds: keyring.publicKeys.map((k) => k.id) });
  const notifier = new MqttNotifier({ broker, topics: new TopicMap('site-1', 'homeassistant'), chain, ingest, gatewayId: 'gw-1', retentionS: 3600 });
  await notifier.start();
  t.after(() => notifier.stop());
  const driver = await attachInProcessDriver(t, ingest, 8);

  // A privacy-aware lock seals; a legacy lock that sends its credential in the clear is refused.
  const lock = new SimLock({ id: 'front-door', seed: front.key.seed, privacyKey: keyring.current });
  const clear = new SimLock({ id: 'legacy-door', seed: legacy.key.seed });
  const nacks: string[] = [];
  clear.on('nack', (_ctr, c) => nacks.push(c));
  driver.connect(lock);
  driver.connect(clear);
  lock.record('unlocked', Buffer.from(ALICE_CARD));
  lock.record('unlocked', Buffer.from(BOB_CARD));
  lock.record('unlocked', Buffer.from(ALICE_CARD));
  lock.record('locked');
  clear.record('unlocked', Buffer.from(BOB_CARD));
  await waitUntil('four acks and one nack', () => lock.acked.size === 4 && nacks.length === 1, WAIT_MS);
  assert.deepEqual(nacks, ['ERR_PRIVACY_CLEAR_CREDENTIAL']);
  await waitUntil('event notifications', () => captured.filter((m) => m.topic.startsWith('oti/site-1/events/')).length === 4, WAIT_MS);

  // A person record: fields encrypted under a person key wrapped to the site privacy key.
  const person = newPersonId();
  const personKey = newPersonKey();
  const fields = encryptPersonFields(personKey, 'site-1', person, { name: NAME, badge: BADGE, cred: Buffer.from(ALICE_CARD).toString('hex') });
  const rec = await recordPerson(chain, store, person, fields, wrapPersonKey(keyring.current, 'site-1', person, personKey));
  personKey.fill(0);

  // Holders of the keyring link Alice's two events by pseudonym and read her fields.
  const reader = new PrivacyReader(keyring, store);
  const views = [];
  for (let i = 0; i < chain.size; i++) {
    const bytes = await chain.entry(i);
    views.push(await reader.annotate(entryJson(i, bytes), decodeEntry(bytes), true));
  }
  const events = views.filter((v) => v.kind === 'lock-event' && v['type'] === 'unlocked');
  assert.equal(events.length, 3);
  assert.equal(events[0]!['pseudonym'], events[2]!['pseudonym']);
  assert.notEqual(events[0]!['pseudonym'], events[1]!['pseudonym']);
  assert.equal(events[0]!['credential'], undefined, 'no raw id on events, even for the plaintext role');
  assert.deepEqual(views[rec.index]!['personFields'], { name: NAME, badge: BADGE, cred: Buffer.from(ALICE_CARD).toString('hex') });
  assert.deepEqual(views[rec.index]!['pseudonyms'], [events[0]!['pseudonym']], "the person entry carries the pseudonym of the person's credential");
  // Without the plaintext role: pseudonyms only.
  const plain = await reader.annotate(entryJson(events[0]!.index, await chain.entry(events[0]!.index)), decodeEntry(await chain.entry(events[0]!.index)), false);
  assert.equal(plain['credential'], undefined);
  assert.equal(typeof plain['pseudonym'], 'string');

  // Erasure: the key goes, a shred entry without personal data is recorded.
  const erased = await erasePerson(chain, store, person);
  assert.equal(erased.destroyed, true);
  await assert.rejects(reader.fields(person, fields), (e) => isOtiError(e, 'ERR_PRIVACY_ERASED'));
  const receipts = await Promise.all([rec.index, erased.index, events[0]!.index].map((i) => receiptFor(chain, i)));
  for (const r of receipts) verifyReceipt(r, site.trust);

  // MQTT: every payload, and every receipt inside a payload, free of plaintext.
  await waitUntil('committed statuses', () => captured.filter((m) => m.topic.startsWith('oti/site-1/status/') && m.payload.includes('committed')).length >= 4, WAIT_MS);
  assert.ok(captured.length >= 8);
  for (const m of captured) {
    const blobs = [m.payload];
    const receipt = /"receipt":"([A-Za-z0-9+/=]+)"/.exec(m.payload.toString('utf8'));
    if (receipt !== null) blobs.push(Buffer.from(receipt[1]!, 'base64'));
    for (const b of blobs) for (const s of SECRETS) assert.ok(!contains(b, s), `MQTT ${m.topic} carries ${s}`);
  }

  // Files: stop everything, then scan every file of the data folder byte by byte.
  await driver.stop();
  await ingest.close();
  await notifier.stop();
  await chain.close();
  await opened.store.close();
  const scan = async (dir: string): Promise<{ files: number; control: boolean }> => {
    let control = false;
    const files = await filesUnder(dir);
    for (const f of files) {
      const b = await readFile(f);
      for (const s of SECRETS) assert.ok(!contains(b, s), `${f} holds ${s}`);
      control ||= contains(b, CONTROL);
    }
    return { files: files.length, control };
  };
  const first = await scan(data);
  assert.ok(first.control, 'the scan sees plaintext that is stored (control string)');

  // Reopen (LevelDB replays its log into tables), verify the whole chain, scan again.
  const reopened = await LedgerStore.open(join(data, 'ledger'));
  try {
    const cs = await reopened.chain('oti/site-1/gw-1', 'self');
    const report = await verifyChain(cs, { trust: site.trust });
    assert.equal(report.size, cs.head.size);
  } finally {
    await reopened.close();
  }
  assert.ok((await scan(data)).control);

  // A backup taken after the erasure holds no key for that person.
  const backup = join(await tempDir(t), 'gw.otibak');
  const env = { OTI_BACKUP_PASSPHRASE: 'backup passphrase 1' };
  const b = await runOti(['backup', '--data', data, '--out', backup, '--json'], env);
  assert.equal(b.code, 0, b.stderr);
  const restored = join(await tempDir(t), 'restored');
  const r = await runOti(['restore', backup, '--data', restored, '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const restoredStore = await PersonKeyStore.open(restored);
  assert.equal(await restoredStore.get(person), undefined);
  await assert.rejects(new PrivacyReader(keyring, restoredStore).fields(person, fields), (e) => isOtiError(e, 'ERR_PRIVACY_ERASED'));
});
