/**
 * A gateway as a C2SP tlog-witness (https://c2sp.org/tlog-witness): two real gateway processes
 * on 127.0.0.1 replicate each other over MQTT; gw-b serves POST /add-checkpoint (witness.http)
 * and a client written here from the spec submits gw-a's checkpoints to it: every answer the spec
 * names (200 with a cosignature line checked here from tlog-cosignature, 400, 403, 404, 409 with
 * the recorded size as text/x.tlog.size, 422), and the record survives a restart. Pushed to
 * external witnesses, the cosignatures come back in the gateway's receipts (GET /receipts/{id}).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ed from '@noble/ed25519';
import { makeSite, tempDir } from '../support/site.js';
import { freePort, startTestGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { enrolledGateway, type EnrolledGateway } from '../support/enrolled-gateway.js';
import { waitUntil } from '../support/wait.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { LedgerStore } from '../../ledger/store.js';
import { consistencyProof } from '../../ledger/merkle.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { parseCheckpoint, signCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { verifyConsistency } from '../../ledger/merkle.js';
import { encodeSigned, signStatement } from '../../ledger/roster.js';
import { chainOrigin } from '../../ledger/chain.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import { receiptBytes } from '../../ledger/tlog-proof.js';

ed.hashes.sha512 = (m: Uint8Array) => new Uint8Array(createHash('sha512').update(m).digest());
const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

const s = makeSite('wit-site');

/** gw-a's first two checkpoints (sizes 1 and 2) and the consistency proof between them, read from its store. */
async function checkpointsOf(dataDir: string, origin: string): Promise<{ one: string; two: string; proof: Uint8Array[] }> {
  const store = await LedgerStore.open(join(dataDir, 'ledger'));
  try {
    const cs = await store.chain(origin, 'self');
    const b0 = await cs.block(0);
    const b1 = await cs.block(1);
    return { one: b0.checkpoint.note, two: b1.checkpoint.note, proof: await consistencyProof(cs, b0.checkpoint.size, b1.checkpoint.size) };
  } finally {
    await store.close();
  }
}

const body = (old: number, proof: readonly Uint8Array[], note: string): string => `old ${old}\n${proof.map((p) => `${Buffer.from(p).toString('base64')}\n`).join('')}\n${note}`;

/** tlog-cosignature/v1, from the spec: key ID = SHA-256(name || 0x0a || 0x04 || key)[:4]; signed "cosignature/v1\ntime <t>\n" || checkpoint text. */
function cosignatureVerifies(line: string, note: string, name: string, publicKey: Uint8Array): boolean {
  const m = /^\u2014 ([\x21-\x7e]+) ([A-Za-z0-9+/=]+)\n$/.exec(line);
  if (m === null || m[1] !== name) return false;
  const blob = Buffer.from(m[2]!, 'base64');
  if (blob.length !== 4 + 8 + 64) return false;
  const keyId = sha256(Buffer.from(`${name}\n`), Uint8Array.of(0x04), publicKey).subarray(0, 4);
  if (!blob.subarray(0, 4).equals(Buffer.from(keyId))) return false;
  const time = blob.readBigUInt64BE(4);
  const text = note.slice(0, note.indexOf('\n\n') + 1);
  return ed.verify(blob.subarray(12), Buffer.from(`cosignature/v1\ntime ${time}\n${text}`), publicKey);
}

/** gw-a (a lock enrolled) and gw-b of one site on 127.0.0.1, each the other's static peer; `start` runs one with more configuration. */
async function twoGateways(t: TestContext, prefix: string): Promise<{
  a: EnrolledGateway;
  b: EnrolledGateway;
  dir: string;
  originA: string;
  originB: string;
  ports: { a: { broker: number; api: number }; b: { broker: number; api: number; witness: number } };
  start: (id: 'a' | 'b', more?: Record<string, unknown>) => Promise<GatewayProcess>;
  bHoldsA: () => Promise<void>;
}> {
  const dir = await tempDir(t, prefix);
  const a = await enrolledGateway(dir, s, 'gw-a', { lock: 'door-1' });
  const b = await enrolledGateway(dir, s, 'gw-b');
  const ports = { a: { broker: await freePort(), api: await freePort() }, b: { broker: await freePort(), api: await freePort(), witness: await freePort() } };
  const start = async (id: 'a' | 'b', more: Record<string, unknown> = {}): Promise<GatewayProcess> => {
    const g = id === 'a' ? a : b;
    const other = id === 'a' ? ports.b : ports.a;
    const config = await writeGatewayConfig(join(dir, `${g.id}.yaml`), {
      dataDir: g.dataDir,
      broker: { host: '127.0.0.1', port: ports[id].broker },
      api: { port: ports[id].api },
      serialPorts: [],
      more: { discovery: { enabled: false, staticPeers: [{ host: '127.0.0.1', port: other.broker }] }, ...more },
    });
    const p = startTestGateway(t, ['--config', config]);
    await p.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 60_000);
    return p;
  };
  const originA = chainOrigin(s.siteId, 'gw-a');
  const bHoldsA = (): Promise<void> =>
    waitUntil('gw-b holds gw-a\'s chain', async () => {
      const j = (await (await fetch(`http://127.0.0.1:${ports.b.api}/chains`)).json()) as { chains: { origin: string; size: number }[] };
      return j.chains.some((c) => c.origin === originA && c.size >= 2);
    }, 120_000);
  return { a, b, dir, originA, originB: chainOrigin(s.siteId, 'gw-b'), ports, start, bHoldsA };
}

void test('a gateway witnesses a peer chain over C2SP tlog-witness add-checkpoint, with every answer of the spec', { timeout: 240_000 }, async (t) => {
  const { a, b, originA, originB, ports, start, bHoldsA } = await twoGateways(t, 'oti-tlog-witness-');
  const cps = await checkpointsOf(a.dataDir, originA);
  const bKey = (await loadOrCreateIdentity(b.dataDir)).key.publicKey;
  const bWitness = { witness: { http: { enabled: true, host: '127.0.0.1', port: ports.b.witness } } };
  await start('a');
  let gwB = await start('b', bWitness);
  await bHoldsA();

  const url = `http://127.0.0.1:${ports.b.witness}/add-checkpoint`;
  const post = async (text: string): Promise<{ status: number; type: string; text: string }> => {
    const r = await fetch(url, { method: 'POST', body: text });
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };

  // 404: a log it does not know (another site's chain); 403: gw-a's origin signed by another key.
  const other = parseCheckpoint(cps.one);
  const stranger = signCheckpoint({ ...other, origin: 'oti/other-site/gw-x' }, new Signer(generateKeyPair().seed), 'oti/other-site/gw-x');
  assert.equal((await post(body(0, [], stranger.note))).status, 404);
  const forged = signCheckpoint(other, new Signer(generateKeyPair().seed), originA);
  assert.equal((await post(body(0, [], forged.note))).status, 403);
  // 400: an old size above the checkpoint's, and a body that is not a request.
  assert.equal((await post(body(5, [], cps.one))).status, 400);
  assert.equal((await post('hello\n')).status, 400);
  // Its own chain is not a log it witnesses.
  const ownEntry = ((await (await fetch(`http://127.0.0.1:${ports.b.api}/events`)).json()) as { items: { id: string }[] }).items[0]!.id;
  const ownB = ((await (await fetch(`http://127.0.0.1:${ports.b.api}/receipts/${ownEntry}`)).json()) as { checkpoint: string }).checkpoint;
  assert.equal((await post(body(0, [], ownB))).status, 404);

  // 200: the first checkpoint from old size 0, with a cosignature line by gw-b.
  const first = await post(body(0, [], cps.one));
  assert.equal(first.status, 200, first.text);
  assert.ok(cosignatureVerifies(first.text, cps.one, originB, bKey), `cosignature line: ${first.text}`);
  // 409: old size 0 again; the body is the recorded size.
  const conflict = await post(body(0, [], cps.two));
  assert.equal(conflict.status, 409);
  assert.equal(conflict.type, 'text/x.tlog.size');
  assert.equal(conflict.text, '1\n');
  // 422: a proof that does not verify; 200 with the real one.
  assert.equal((await post(body(1, [new Uint8Array(32).fill(9)], cps.two))).status, 422);
  const second = await post(body(1, cps.proof, cps.two));
  assert.equal(second.status, 200, second.text);
  assert.ok(cosignatureVerifies(second.text, cps.two, originB, bKey));

  // The record is persisted: after a restart gw-b still answers 409 with size 2.
  await gwB.stop();
  gwB = await start('b', bWitness);
  const after = await post(body(0, [], cps.two));
  assert.equal(after.status, 409);
  assert.equal(after.text, '2\n');
});

/**
 * A tiny witness written from the spec (tlog-witness add-checkpoint, tlog-cosignature v1 with
 * node:crypto Ed25519), trusting one log key. Returns its URL, key name and public key hex.
 */
async function tinyWitness(t: TestContext, logKey: Uint8Array): Promise<{ url: string; name: string; key: string; cosigned: () => number }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
  const name = 'witness.test/tiny';
  const keyId = sha256(Buffer.from(`${name}\n`), Uint8Array.of(0x04), pub).subarray(0, 4);
  const state = new Map<string, { size: number; root: Uint8Array }>();
  let last = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = (status: number, body: string, type = 'text/plain'): void => {
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      };
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\n\n');
      const head = text.slice(0, split).split('\n');
      const old = Number(head[0]!.slice(4));
      const proof = head.slice(1).map((l) => new Uint8Array(Buffer.from(l, 'base64')));
      const cp = parseCheckpoint(text.slice(split + 2));
      try {
        verifyCheckpoint(cp, cp.origin, logKey);
      } catch {
        return answer(403, 'bad signature\n');
      }
      if (old > cp.size) return answer(400, 'old above size\n');
      const known = state.get(cp.origin);
      if (old !== (known?.size ?? 0)) return answer(409, `${known?.size ?? 0}\n`, 'text/x.tlog.size');
      if (old > 0 && !verifyConsistency(old, cp.size, known!.root, cp.root, proof)) return answer(422, 'bad proof\n');
      state.set(cp.origin, { size: cp.size, root: cp.root });
      last = cp.size;
      const time = Math.floor(Date.now() / 1000);
      const ts = Buffer.alloc(8);
      ts.writeBigUInt64BE(BigInt(time));
      const sig = cryptoSign(null, Buffer.from(`cosignature/v1\ntime ${time}\n${cp.text}`), privateKey);
      answer(200, `\u2014 ${name} ${Buffer.concat([keyId, ts, sig]).toString('base64')}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const addr = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${addr.port}`, name, key: Buffer.from(pub).toString('hex'), cosigned: () => last };
}

void test('a gateway pushes its checkpoints to external witnesses (a spec-written one and a peer gateway) and confirms only with k of them', { timeout: 240_000 }, async (t) => {
  const { a, b, originA, originB, ports, start, bHoldsA } = await twoGateways(t, 'oti-tlog-push-');
  const aKey = (await loadOrCreateIdentity(a.dataDir)).key.publicKey;
  const bKey = (await loadOrCreateIdentity(b.dataDir)).key.publicKey;
  const tiny = await tinyWitness(t, aKey);
  await start('b', { sync: { quorum: 2 }, witness: { http: { enabled: true, host: '127.0.0.1', port: ports.b.witness } } });
  await start('a', {
    sync: { quorum: 2 },
    witness: {
      external: [
        { url: tiny.url, name: tiny.name, key: tiny.key },
        { url: `http://127.0.0.1:${ports.b.witness}`, name: originB, key: Buffer.from(bKey).toString('hex') },
      ],
      externalQuorum: 2,
    },
  });
  await bHoldsA();
  // A new block of gw-a (a lock enrolled through its API) goes to both witnesses.
  const lock = signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id: 'door-2', key: generateKeyPair().publicKey, time: Date.now() });
  const posted = await fetch(`http://127.0.0.1:${ports.a.api}/roster`, { method: 'POST', headers: { 'content-type': 'application/cbor' }, body: encodeSigned(lock) });
  assert.ok(posted.ok, `POST /roster: ${posted.status}`);
  const sizeA = async (): Promise<number> => ((await (await fetch(`http://127.0.0.1:${ports.a.api}/chains`)).json()) as { chains: { origin: string; size: number }[] }).chains.find((c) => c.origin === originA)!.size;
  const size = await sizeA();
  assert.equal(size, 3);
  await waitUntil('gw-a confirms its chain with the site quorum and both external witnesses', async () => {
    const st = (await (await fetch(`http://127.0.0.1:${ports.a.api}/status`)).json()) as { sync: { confirmed: number } };
    return st.sync.confirmed === size;
  }, 120_000);
  assert.equal(tiny.cosigned(), size, 'the spec-written witness cosigned the latest checkpoint');
  const state = JSON.parse(await readFile(join(b.dataDir, 'witness-state.json'), 'utf8')) as { logs: Record<string, { size: number }> };
  assert.equal(state.logs[originA]?.size, size, 'gw-b cosigned it over HTTP');

  // Receipts carry the cosignatures the checkpoint has (issue 19.3): gw-a's receipt of the
  // enrolment against that checkpoint, as a C2SP tlog-proof, has both witnesses' lines.
  const items = ((await (await fetch(`http://127.0.0.1:${ports.a.api}/events?order=asc`)).json()) as { items: { id: string; index: number }[] }).items;
  const enrolment = items.find((i) => i.index === size - 1)!.id;
  const proof = await (await fetch(`http://127.0.0.1:${ports.a.api}/receipts/${enrolment}?format=tlog-proof`)).text();
  const note = proof.slice(proof.indexOf('\n\n') + 2);
  const cp = parseCheckpoint(note);
  assert.equal(cp.size, size);
  assert.deepEqual(cp.signatures.map((x) => x.name).sort(), [originA, originB, tiny.name].sort());
  const line = (name: string): string => `${note.split('\n').find((l) => l.startsWith(`\u2014 ${name} `))!}\n`;
  assert.ok(cosignatureVerifies(line(tiny.name), note, tiny.name, Buffer.from(tiny.key, 'hex')), 'the external witness\'s line, checked from tlog-cosignature');
  assert.ok(cosignatureVerifies(line(originB), note, originB, bKey), 'gw-b\'s line');
  // The receipt with them still verifies with the site keys alone, and in its CBOR form too.
  assert.equal(verifyReceipt(receiptBytes(Buffer.from(proof)), s.trust).index, size - 1);
  const cbor = new Uint8Array(await (await fetch(`http://127.0.0.1:${ports.a.api}/receipts/${enrolment}`, { headers: { accept: 'application/cbor' } })).arrayBuffer());
  assert.equal(verifyReceipt(cbor, s.trust).checkpoint.signatures.length, 3);
});
