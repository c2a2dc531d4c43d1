/**
 * End to end: the refusals of the lock protocol (docs/PROTOCOL.md §Flow) as the real gateway
 * process gives them, to simulated locks on real kernel ptys, with a real MQTT client (Debian's
 * mosquitto_sub) and the real `oti verify` on the chain afterwards: an event that can never be
 * accepted, a lock that regenerated its key, a revoked lock, and an info of an unknown version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig } from '../support/gateway-process.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { mosquittoSub } from '../support/mosquitto.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { SimLock } from '../../drivers/simlock.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { generateKeyPair, Signer, toHex } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { decodeEntry, type EntryBody } from '../../ledger/entry.js';

const running = (l: { msg: string }): boolean => l.msg.includes('running; press Ctrl+C');

void test('the real gateway refuses what it can never accept, explains every refusal, and records refusals apart from losses', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-e2e-');
  const dataDir = join(dir, 'data');
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const enrolled = { bad: generateKeyPair(), rekeyed: generateKeyPair(), gone: generateKeyPair() };
  const regenerated = generateKeyPair();
  {
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment });
    const statement = (op: 'enroll' | 'revoke', lock: string, key: Uint8Array): Parameters<typeof chain.append>[0] => ({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op, role: 'lock', id: lock, key, time: Date.now() }) });
    for (const [lock, k] of Object.entries(enrolled)) await chain.append(statement('enroll', lock, k.publicKey));
    await chain.append(statement('revoke', 'gone', enrolled.gone.publicKey));
    await chain.close();
    await store.close();
  }
  await addMqttUser(join(dataDir, 'mqtt-users.json'), 'watcher', 'app', 'watcher-password-123');
  const names = ['bad', 'rekeyed', 'gone', 'future'] as const;
  const ptys: PtyPair[] = [];
  for (const n of names) ptys.push(await ptyPair(dir, n));
  t.after(() => Promise.all(ptys.map((p) => p.kill())));
  const brokerPort = await freePort();
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir,
    broker: { host: '127.0.0.1', port: brokerPort },
    api: { port: await freePort() },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { reconnectMinMs: 50, reconnectMaxMs: 500 },
  });
  const gw = startGateway(['--config', config]);
  t.after(() => {
    gw.proc.kill('SIGKILL');
  });
  await gw.waitForLog('running', running);
  const { lines: seen } = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(brokerPort), '-u', 'watcher', '-P', 'watcher-password-123', '-t', `oti/${id.trust.siteId}/locks/#`, '-v']);

  const seeds = { bad: enrolled.bad.seed, rekeyed: regenerated.seed, gone: enrolled.gone.seed, future: generateKeyPair().seed };
  const locks = names.map((n) => new SimLock({ id: n, seed: seeds[n], resendMs: 500 }));
  const links = locks.map((l, i) => new SerialSimLink(l, { path: ptys[i]!.lock, reopenMs: 50 }));
  t.after(async () => {
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
  });
  const heard = locks.map((l) => {
    const out: string[] = [];
    l.on('nack', (ctr, code, retry) => out.push(`nack ${ctr} ${code} ${retry}`));
    l.on('refused', (code, retry) => out.push(`refuse ${code} ${retry}`));
    return out;
  });
  for (const l of links) l.start();
  const [bad, rekeyed, gone, future] = locks as [SimLock, SimLock, SimLock, SimLock];

  // An event whose ext is over 1,024 bytes: refused for good; the lock goes on with the next.
  bad.record();
  bad.recordInvalid(1100);
  bad.record();
  await waitUntil('bad: 1 and 3 acked', () => bad.acked.has(1) && bad.acked.has(3));
  assert.ok(heard[0]!.includes('nack 2 ERR_EVENT_INVALID false'), heard[0]!.join(', '));
  // A lock with a regenerated key: refused at info, reported with its new key, its event kept.
  rekeyed.record();
  await waitUntil('rekeyed: refused at info and its event nacked', () => heard[1]!.includes('refuse ERR_LOCK_KEY true') && heard[1]!.includes('nack 1 ERR_LOCK_KEY true'));
  assert.equal(rekeyed.pending, 1);
  await waitUntil('rekeyed: reported on MQTT with its new key', () => seen.some((l) => l.startsWith(`oti/${id.trust.siteId}/locks/unenrolled/rekeyed `) && l.includes(toHex(regenerated.publicKey))));
  // A revoked lock: refused for good at info; it sends nothing more.
  gone.record();
  await waitUntil('gone: refused at info', () => heard[2]!.includes('refuse ERR_LOCK_REVOKED false'));
  // A lock announcing a version the gateway does not speak.
  await waitUntil('future greeted', () => future.greeted);
  future.announce(7);
  await waitUntil('future: refused', () => heard[3]!.includes('refuse ERR_PROTOCOL_VERSION false'));

  gw.proc.kill('SIGTERM');
  assert.equal(await gw.exited, 0, `a clean stop; stderr: ${gw.stderr()}`);

  // The chain: the refusal is a gap with its code, the key mismatch a health entry; it verifies.
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  const cs = await store.chain(`oti/${id.trust.siteId}/${id.gatewayId}`, 'self');
  const bodies: EntryBody[] = [];
  for (let i = 0; i < cs.head.size; i++) bodies.push(decodeEntry(await cs.entry(i)).body);
  await store.close();
  assert.deepEqual(bodies.filter((b) => b.kind === 'gap' && 'lock' in b), [{ kind: 'gap', lock: 'bad', from: 2, to: 2, code: 'ERR_EVENT_INVALID' }]);
  assert.ok(bodies.some((b) => b.kind === 'health' && b.source === 'lock:bad' && b.status === 'invalid-event'));
  assert.ok(bodies.some((b) => b.kind === 'health' && b.source === 'lock:rekeyed' && b.status === 'key-mismatch'));
  assert.equal(bodies.filter((b) => b.kind === 'lock-event').length, 2, 'only bad:1 and bad:3 stored');
  const verified = await oti(['verify', '--data', dataDir]);
  assert.equal(verified.code, 0, `${verified.stdout}\n${verified.stderr}`);
});
