/**
 * Consistency proofs, receipts against older checkpoints and receipts as C2SP tlog-proofs from
 * the real gateway process, over the local API (GET /proof/consistency, GET /receipts/{id}?size=,
 * ?format=tlog-proof, Accept: text/plain) and with the real `oti` binary (oti proof consistency,
 * oti receipt --size / --format tlog-proof, oti receipt verify --newer). docs/API.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, freePort, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { oti, errorCode, type Run } from '../support/oti-cli.js';
import { generateKeyPair, toHex } from '../../ledger/crypto.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { verifyConsistency } from '../../ledger/merkle.js';

const PASS = 'site passphrase for consistency tests';
const TOKEN = 'reader-token-0123456789abcdef';

interface Consistency {
  chain: string;
  from: number;
  to: number;
  proof: string[];
  fromCheckpoint?: string;
  checkpoint?: string;
}

void test('consistency proofs and receipts against older checkpoints, over the API and with oti', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-consistency-');
  const run = (args: readonly string[], env: Record<string, string> = {}): Promise<Run> => oti(args, { cwd: dir, env: { OTI_PASSPHRASE: PASS, OTI_API_TOKEN: TOKEN, ...env } });
  for (const args of [['site', 'init', '--site', 'acme', '--out', 'site'], ['gateway', 'enroll', '--site-dir', 'site', '--id', 'gw-1', '--out', 'b.json'], ['gateway', 'apply-bundle', 'b.json', '--data', 'data']]) {
    const r = await run(args);
    assert.equal(r.code, 0, `oti ${args.join(' ')}: ${r.stderr}`);
  }
  const apiPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}`;
  const A = ['--api', base];
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), { dataDir: join(dir, 'data'), broker: { host: '127.0.0.1', port: 0 }, api: { port: apiPort, token: TOKEN }, serialPorts: [] });
  const gw: GatewayProcess = startGateway(['--config', config]);
  t.after(() => gw.proc.kill('SIGKILL'));
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));

  // Each enrolment is one block: the chain has checkpoints at sizes 1 (genesis), 2, 3 and 4.
  for (const id of ['door-a', 'door-b', 'door-c']) {
    const r = await run(['lock', 'enroll', '--site-dir', 'site', '--id', id, '--key', toHex(generateKeyPair().publicKey), '--yes', ...A]);
    assert.equal(r.code, 0, r.stderr);
  }
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.status, body: (await res.json()) as T };
  };
  const events = await get<{ items: { index: number; id: string }[] }>('/events?kind=roster&order=asc');
  const doorA = events.body.items.find((e) => e.index === 1)!.id;

  // GET /proof/consistency: the proof verifies between the roots of the two stored checkpoints.
  const c = await get<Consistency>('/proof/consistency?from=2&to=4');
  assert.equal(c.status, 200, JSON.stringify(c.body));
  assert.equal(c.body.chain, 'oti/acme/gw-1');
  const older = parseCheckpoint(c.body.fromCheckpoint!);
  const newer = parseCheckpoint(c.body.checkpoint!);
  assert.deepEqual([older.size, newer.size], [2, 4]);
  assert.ok(verifyConsistency(2, 4, older.root, newer.root, c.body.proof.map((h) => Buffer.from(h, 'base64'))));
  const latest = await get<Consistency>('/proof/consistency?from=1');
  assert.equal(latest.body.to, 4, 'to defaults to the latest size');
  assert.equal((await get<Consistency>('/proof/consistency?from=0&to=3')).body.proof.length, 0);
  for (const [q, status, param] of [['from=3&to=2', 400, 'from'], ['from=2&to=5', 400, 'to'], ['to=2', 400, 'from'], ['from=x', 400, 'from'], ['from=1&from=2', 400, 'from'], ['from=1&chain=oti/acme/nope', 404, 'chain']] as const) {
    const r = await get<{ error: { code: string; details?: { param?: string } } }>(`/proof/consistency?${q}`);
    assert.equal(r.status, status, q);
    assert.equal(r.body.error.code, status === 404 ? 'ERR_NOT_FOUND' : 'ERR_ARGUMENT', q);
    assert.equal(r.body.error.details?.param, param, q);
  }

  // GET /receipts/{id}?size=: against a stored checkpoint only, and covering the entry.
  const atTwo = await get<{ size: number }>(`/receipts/${doorA}?size=2`);
  assert.equal(atTwo.body.size, 2);
  assert.equal((await get<{ error: { code: string } }>(`/receipts/${doorA}?size=1`)).status, 404, 'size 1 does not cover entry 1');
  assert.equal((await get<{ error: { code: string } }>(`/receipts/${doorA}?size=9`)).status, 400);

  // oti receipt --size, then oti receipt verify: the receipt carries the latest checkpoint.
  const rec = await run(['receipt', doorA, '--size', '2', '--out', 'r.cbor', ...A]);
  assert.equal(rec.code, 0, rec.stderr);
  const v = await run(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--json']);
  assert.equal(v.code, 0, v.stderr);
  assert.deepEqual([v.json<{ checkpointSize: number }>().checkpointSize, v.json<{ newerSize: number }>().newerSize], [2, 4]);

  // oti proof consistency to size 3, and oti receipt verify --newer with it.
  const p = await run(['proof', 'consistency', '--from', '2', '--to', '3', '--out', 'p.json', '--json', ...A]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.json<{ checked: boolean }>().checked, true);
  const held = await run(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--newer', 'p.json', '--json']);
  assert.equal(held.code, 0, held.stderr);
  assert.equal(held.json<{ heldSize: number }>().heldSize, 3);
  const text = await run(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--newer', 'p.json']);
  assert.match(text.stdout, /checkpoint you hold, size 3/);
  // A plain checkpoint note of the latest size: the receipt's own proof serves.
  await writeFile(join(dir, 'latest.txt'), latest.body.checkpoint!);
  assert.equal((await run(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--newer', 'latest.txt', '--json'])).json<{ heldSize: number }>().heldSize, 4);
  // A proof from another size does not tie the receipt to the held checkpoint.
  assert.equal((await run(['proof', 'consistency', '--from', '1', '--to', '3', '--out', 'p1.json', ...A])).code, 0);
  const wrong = await run(['receipt', 'verify', 'r.cbor', '--site-keys', 'site', '--newer', 'p1.json']);
  assert.equal(wrong.code, 1);
  assert.equal(errorCode(wrong), 'ERR_RECEIPT_INVALID');
  // A size beyond the chain is refused by the gateway, its code and the parameter named.
  const none = await run(['receipt', doorA, '--size', '9', ...A]);
  assert.notEqual(none.code, 0);
  assert.equal(errorCode(none), 'ERR_API');
  assert.match(none.stderr, /ERR_ARGUMENT.*size|size.*ERR_ARGUMENT/);
  assert.equal(errorCode(await run(['proof', 'consistency', '--from', 'two', ...A])), 'ERR_USAGE');

  // The same receipt as a C2SP tlog-proof: by format=, by Accept: text/plain, from oti, verified by oti.
  const getText = async (path: string, accept = '*/*'): Promise<{ status: number; type: string; body: string }> => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}`, accept } });
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
  };
  const byFormat = await getText(`/receipts/${doorA}?format=tlog-proof`);
  assert.equal(byFormat.status, 200);
  assert.match(byFormat.type, /^text\/plain/);
  assert.match(byFormat.body, /^c2sp\.org\/tlog-proof@v1\nextra [A-Za-z0-9+/=]+\nindex 1\n/);
  assert.ok(byFormat.body.endsWith(latest.body.checkpoint!), 'the latest checkpoint, verbatim');
  assert.equal((await getText(`/receipts/${doorA}`, 'text/plain')).body, byFormat.body);
  assert.ok((await getText(`/receipts/${doorA}?size=2&format=tlog-proof`)).body.endsWith(c.body.fromCheckpoint!));
  assert.equal((await getText(`/receipts/${doorA}?format=pdf`)).status, 400);
  const tp = await run(['receipt', doorA, '--format', 'tlog-proof', '--size', '2', '--json', ...A]);
  assert.equal(tp.code, 0, tp.stderr);
  const tpFile = tp.json<{ file: string }>().file;
  assert.match(tpFile, /\.tlog-proof$/);
  const tv = await run(['receipt', 'verify', tpFile, '--site-keys', 'site', '--newer', 'p.json', '--json']);
  assert.equal(tv.code, 0, tv.stderr);
  assert.deepEqual([tv.json<{ index: number }>().index, tv.json<{ newerSize: number }>().newerSize, tv.json<{ heldSize: number }>().heldSize], [1, 4, 3]);
  // One changed character of the proof: refused, coded.
  const file = await readFile(join(dir, tpFile), 'utf8');
  await writeFile(join(dir, 'bad.tlog-proof'), file.replace(/^index 1$/m, 'index 2'));
  const bad = await run(['receipt', 'verify', 'bad.tlog-proof', '--site-keys', 'site']);
  assert.equal(bad.code, 1);
  assert.equal(errorCode(bad), 'ERR_RECEIPT_INVALID');
  assert.equal(errorCode(await run(['receipt', doorA, '--format', 'pdf', ...A])), 'ERR_USAGE');
});
