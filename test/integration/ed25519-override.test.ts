/**
 * OTI_ED25519_VERIFIER=node-crypto read at load time, in a child process as in real use; the
 * verifiers themselves are tested in test/unit/ed25519.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RuleVector } from '../support/make-ed25519-vectors.js';

const RULE_TEXT = readFileSync(new URL('../../../test/vectors/ed25519-rule.json', import.meta.url), 'utf8');
const RULE = (JSON.parse(RULE_TEXT) as { vectors: RuleVector[] }).vectors;

void test('OTI_ED25519_VERIFIER=node-crypto: a process and its signature workers verify on node:crypto under the same rule', (t) => {
  // A child process, so that the override is read at load time as in real use; a script file,
  // because workers inherit the parent's node options and --input-type would stop them.
  const dir = mkdtempSync(join(tmpdir(), 'oti-ed25519-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'fallback.mjs');
  writeFileSync(
    script,
    `import { ED25519_VERIFIER } from ${JSON.stringify(new URL('../../ledger/ed25519.js', import.meta.url).href)};
     import { SignaturePool } from ${JSON.stringify(new URL('../../ledger/sigpool.js', import.meta.url).href)};
     const vectors = ${RULE_TEXT.trim()}.vectors;
     const hex = (h) => new Uint8Array(Buffer.from(h, 'hex'));
     import { Worker } from 'node:worker_threads';
     const pool = new SignaturePool(1);
     const results = await pool.verifyBatch(vectors.map((v) => ({ key: hex(v.publicKey), msg: hex(v.message), sig: hex(v.signature) })));
     await pool.close();
     // What a worker started like the pool's sees.
     const probe = new Worker(${JSON.stringify(`import { parentPort } from 'node:worker_threads'; import { ED25519_VERIFIER } from ${JSON.stringify(new URL('../../ledger/ed25519.js', import.meta.url).href)}; parentPort.postMessage(ED25519_VERIFIER);`)}, { eval: true });
     const inWorker = await new Promise((resolve) => probe.once('message', resolve));
     await probe.terminate();
     console.log(JSON.stringify({ verifier: ED25519_VERIFIER, inWorker, results: [...results] }));`,
  );
  const out = execFileSync(process.execPath, [script], { env: { PATH: process.env['PATH'], OTI_ED25519_VERIFIER: 'node-crypto' }, encoding: 'utf8' });
  const r = JSON.parse(out) as { verifier: { name: string; sodiumUnavailable?: string }; inWorker: { name: string }; results: number[] };
  assert.deepEqual(r.verifier, { name: 'node:crypto', sodiumUnavailable: 'OTI_ED25519_VERIFIER=node-crypto' });
  assert.equal(r.inWorker.name, 'node:crypto', 'a worker thread sees the override too');
  assert.deepEqual(r.results, RULE.map((v) => (v.valid ? 1 : 0)), 'the pool checked the vectors under the rule');
});
