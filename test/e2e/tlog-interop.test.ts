/**
 * The chain in C2SP tlog-tiles, checked by an implementation nobody here wrote (issue 19.1, 19.6):
 * Google's golang.org/x/mod/sumdb/note and sumdb/tlog, from Debian's golang-golang-x-mod-dev,
 * built from test/support/go-tlog/ in GOPATH mode. Against the real gateway process (demo locks
 * on real ptys filling its chain) and against an `oti export` tree served by a plain static HTTP
 * server, the Go program verifies the checkpoint's signature with a signed-note verifier key
 * computed here from the gateway's key, proves and checks every entry's inclusion from the hash
 * tiles and entry bundles, and checks that an older checkpoint is consistent with the newer one.
 * It also checks receipts the gateway serves as C2SP tlog-proofs (GET /receipts/{id}?format=
 * tlog-proof, latest and older checkpoint) as detached proofs of the entry bytes, with
 * cosignature lines made by this project's witness code (gateway/sync/witness.ts cosign, what the
 * MQTT cosigning and the tlog-witness listener use): note.Open verifies them through a
 * note.Verifier for C2SP cosignature/v1 written in Go with crypto/ed25519 (note.NewVerifier
 * knows only Ed25519 signed-note keys and refuses the cosignature key type, which is asserted).
 * Skipped, saying why, when `go` or the Debian Go packages are missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join, normalize } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { startGateway } from '../support/gateway-process.js';
import { oti } from '../support/oti-cli.js';
import { buildGoTlog, missingGo } from '../support/go-tlog-build.js';
import { waitUntil } from '../support/wait.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { keyHash, parseCheckpoint, verifyCheckpoint } from '../../ledger/checkpoint.js';
import { decodeBlockHeader } from '../../ledger/block.js';
import { decodeBundle } from '../../ledger/tiles.js';
import { cosign, cosignatureKeyId } from '../../gateway/sync/witness.js';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';

const run = promisify(execFile);

interface GoResult {
  origin: string;
  size: number;
  included: number;
  oldSize?: number;
  consistent: boolean;
  oldIncluded?: number;
}

async function goTlog(bin: string, args: string[]): Promise<GoResult> {
  const { stdout } = await run(bin, args);
  return JSON.parse(stdout) as GoResult;
}

interface GoProofResult {
  origin: string;
  size: number;
  index: number;
  included: boolean;
  signatures: string[];
  cosigners: string[];
  unverified: string[];
  noteNewVerifierCosigner?: string;
}

async function goProof(bin: string, args: string[]): Promise<GoProofResult> {
  const { stdout } = await run(bin, args);
  return JSON.parse(stdout) as GoProofResult;
}

/** A witness: its key name, signer, and C2SP tlog-cosignature verifier key (type 0x04). */
function witness(name: string): { name: string; signer: Signer; vkey: string } {
  const signer = new Signer(generateKeyPair().seed);
  const vkey = `${name}+${Buffer.from(cosignatureKeyId(name, signer.publicKey)).toString('hex')}+${Buffer.concat([Buffer.of(4), signer.publicKey]).toString('base64')}`;
  return { name, signer, vkey };
}

/** The tlog-proof with its checkpoint note replaced by `note` (the same checkpoint with cosignature lines added). */
function withNote(proof: string, note: string): string {
  return `${proof.slice(0, proof.indexOf('\n\n'))}\n\n${note}`;
}

/** A static file server for a folder (what any web server does with an `oti export` tree). */
async function serveDir(root: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    readFile(path).then(
      (b) => res.writeHead(200).end(b),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, server };
}

async function size(api: string): Promise<number> {
  const chains = ((await (await fetch(`${api}/chains`)).json()) as { chains: { size: number }[] }).chains;
  return chains[0]?.size ?? 0;
}

const skip = missingGo();

void test('Go sumdb/note and sumdb/tlog verify the checkpoint, every entry and consistency, from the live API and from an oti export tree', { timeout: 240_000, skip }, async (t) => {
  const dir = await tempDir(t, 'oti-tlog-interop-');
  const bin = await buildGoTlog(dir);
  const data = join(dir, 'data');
  const gw = startGateway(['--demo.locks', '4', '--demo.rate', '50', '--dataDir', data, '--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false', '--discovery.enabled', 'false']);
  t.after(() => gw.proc.kill('SIGKILL'));
  const api = String((await gw.waitForLog('API', (l) => l.msg.startsWith('local API on ')))['url']);
  // Past one full tile of entries, so that full and partial tiles at levels 0 and 1 are all used.
  await waitUntil('the chain holds 300 entries', async () => (await size(api)) >= 300, 120_000);

  const id = await loadOrCreateIdentity(data);
  const origin = `oti/${id.trust.siteId}/${id.gatewayId}`;
  const prefix = `${api}/tlog/${origin}`;
  const vkey = `${origin}+${Buffer.from(keyHash(origin, id.key.publicKey)).toString('hex')}+${Buffer.concat([Buffer.of(1), id.key.publicKey]).toString('base64')}`;

  const oldRes = await fetch(`${prefix}/checkpoint`);
  assert.equal(oldRes.status, 200);
  assert.match(String(oldRes.headers.get('cache-control')), /max-age=5\b/);
  const oldNote = await oldRes.text();
  const old = parseCheckpoint(oldNote);
  verifyCheckpoint(old, origin, id.key.publicKey);
  const oldPath = join(dir, 'old-checkpoint');
  await writeFile(oldPath, oldNote);
  await waitUntil('the chain grows past the old checkpoint by a full tile', async () => (await size(api)) >= old.size + 300, 120_000);

  // Caching: full tiles are immutable, partial ones are not; nothing beyond the tree is served.
  const full = await fetch(`${prefix}/tile/0/000`);
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.equal((await full.arrayBuffer()).byteLength, 256 * 32);
  const partial = await fetch(`${prefix}/tile/1/000.p/1`);
  assert.equal(partial.status, 200);
  assert.match(String(partial.headers.get('cache-control')), /max-age=5\b/);
  assert.equal((await fetch(`${prefix}/tile/entries/x999/000`)).status, 404);
  assert.equal((await fetch(`${prefix}/tile/0/0`)).status, 404, 'only the canonical path of a tile is served');
  assert.equal((await fetch(`${api}/tlog/oti/no-such/chain/checkpoint`)).status, 404);

  const live = await goTlog(bin, ['-prefix', prefix, '-vkey', vkey, '-old', oldPath, '-old-inclusion']);
  assert.equal(live.origin, origin);
  assert.ok(live.size >= old.size + 300, `live tree of ${live.size}`);
  assert.equal(live.included, live.size, 'every entry proven included from the live API');
  assert.equal(live.oldSize, old.size);
  assert.equal(live.consistent, true);
  assert.equal(live.oldIncluded, old.size, 'every entry proven against the old checkpoint with its narrower partial tiles');

  // A key with another name is refused by Go's verifier: the signature check is real.
  await assert.rejects(goTlog(bin, ['-prefix', prefix, '-vkey', vkey.replace(`${origin}+`, `${origin}x+`)]), /checkpoint signature|verifier key/);

  // Receipts as C2SP tlog-proofs, checked by Go as detached proofs of the entry bytes, with
  // cosignature lines of two witnesses made by this project's cosigning code.
  const items = ((await (await fetch(`${api}/events?order=asc&limit=20`)).json()) as { items: { id: string; index: number }[] }).items;
  const item = items.find((i) => i.index === 7)!;
  const entryB64 = ((await (await fetch(`${api}/events/${encodeURIComponent(item.id)}`)).json()) as { entry: string }).entry;
  const recordPath = join(dir, 'record');
  await writeFile(recordPath, Buffer.from(entryB64, 'base64'));
  const w1 = witness('witness1.example');
  const w2 = witness('oti/other-site/gw-9');
  for (const q of ['format=tlog-proof', `format=tlog-proof&size=${old.size}`]) {
    const res = await fetch(`${api}/receipts/${encodeURIComponent(item.id)}?${q}`);
    assert.equal(res.status, 200, q);
    const proof = await res.text();
    const cp = parseCheckpoint(proof.slice(proof.indexOf('\n\n') + 2));
    const nowS = Math.floor(Date.now() / 1000);
    const cosigned = cosign(cosign(cp, w1.signer, w1.name, nowS), w2.signer, w2.name, nowS);
    const proofPath = join(dir, 'r.tlog-proof');
    await writeFile(proofPath, withNote(proof, cosigned.note));
    const checked = await goProof(bin, ['-proof', proofPath, '-record', recordPath, '-vkey', vkey, '-cosigner', w1.vkey, '-cosigner', w2.vkey]);
    assert.equal(checked.origin, origin, q);
    assert.equal(checked.index, 7);
    assert.equal(checked.included, true);
    assert.equal(checked.size, cp.size);
    assert.deepEqual(checked.signatures, [origin, w1.name, w2.name], 'note.Open verified the gateway signature and both cosignatures');
    assert.deepEqual(checked.cosigners, [w1.name, w2.name]);
    assert.match(String(checked.noteNewVerifierCosigner), /unknown verifier algorithm/, 'note.NewVerifier refuses a cosignature/v1 key');
    // Without the witness keys, Go leaves the cosignature lines unverified and still checks the rest.
    assert.deepEqual((await goProof(bin, ['-proof', proofPath, '-record', recordPath, '-vkey', vkey])).unverified, [w1.name, w2.name]);
    // oti receipt verify reads the same file and names the cosignature lines.
    const v = await oti(['receipt', 'verify', proofPath, '--site-keys', data, '--json']);
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual((JSON.parse(v.stdout) as { otherSignatures: string[] }).otherSignatures, [w1.name, w2.name]);
    // A changed cosignature, or another record, is refused by Go.
    const lines = cosigned.note.split('\n');
    const last = lines.length - 2;
    lines[last] = lines[last]!.replace(/.(.{8})$/, (m, rest: string) => `${m[0] === 'A' ? 'B' : 'A'}${rest}`);
    await writeFile(proofPath, withNote(proof, lines.join('\n')));
    await assert.rejects(goProof(bin, ['-proof', proofPath, '-record', recordPath, '-vkey', vkey, '-cosigner', w1.vkey, '-cosigner', w2.vkey]), /invalid signature|malformed/);
    await writeFile(proofPath, withNote(proof, cosigned.note));
    await writeFile(join(dir, 'other-record'), Buffer.concat([Buffer.from(entryB64, 'base64'), Buffer.of(0)]));
    await assert.rejects(goProof(bin, ['-proof', proofPath, '-record', join(dir, 'other-record'), '-vkey', vkey]), /record 7/);
  }

  const out = join(dir, 'export');
  const exp = await oti(['export', '--data', data, '--out', out, '--json']);
  assert.equal(exp.code, 0, exp.stderr);
  const report = (JSON.parse(exp.stdout) as { chains: { origin: string; size: number; blocks: number }[] }).chains[0]!;
  assert.equal(report.origin, origin);
  const { url, server } = await serveDir(out);
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const exported = await goTlog(bin, ['-prefix', `${url}/${origin}`, '-vkey', vkey, '-old', oldPath]);
  assert.equal(exported.size, report.size);
  assert.equal(exported.included, report.size, 'every entry proven included from the exported tree');
  assert.equal(exported.consistent, true);

  // Beyond the Merkle tree: block bundles hold each block's header and its signed checkpoint.
  const blocks = decodeBundle(await readFile(join(out, origin, 'oti', 'blocks', report.blocks >= 256 ? '000' : `000.p/${report.blocks}`)));
  assert.equal(blocks.length, 2 * Math.min(256, report.blocks));
  let next = 0;
  for (let i = 0; i < blocks.length; i += 2) {
    const header = decodeBlockHeader(blocks[i]!);
    const cp = parseCheckpoint(blocks[i + 1]!);
    verifyCheckpoint(cp, origin, id.key.publicKey);
    assert.equal(header.n, i / 2);
    assert.equal(header.first, next);
    assert.equal(cp.block, header.n);
    assert.equal(cp.size, header.first + header.count);
    next = header.first + header.count;
  }
  // Stopped here, so that the data folder is not written while the test's cleanup removes it.
  gw.proc.kill('SIGKILL');
  await gw.exited;
});
