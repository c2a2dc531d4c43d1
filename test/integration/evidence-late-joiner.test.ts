/**
 * Equivocation evidence reaching a gateway enrolled after it was found (docs/SYNC.md
 * §Equivocation), on real gateway processes on 127.0.0.1 (static peers, real LevelDB, real aedes):
 * gw-c's data folder is copied while it is stopped and both copies run under its identity, each
 * taking a roster statement of its own, so that gw-c's key signs two inconsistent checkpoints and
 * the site refuses gw-c. Then gw-d is enrolled and started: it holds no copy of gw-c's chain,
 * no roster it holds lists gw-c, and nobody serves gw-c's chain any more; the evidence it finds
 * retained on its peers' brokers carries the site-signed statement of gw-c's key, so it must list
 * gw-c as compromised at once (before the fix: `does not verify here [ERR_PROOF_INVALID]`, and
 * gw-c stayed `syncing, 0`), and `oti evidence list` on its data folder says the evidence verifies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSite, tempDir } from '../support/site.js';
import { freePort, startTestGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { enrolledGateway } from '../support/enrolled-gateway.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { generateKeyPair } from '../../ledger/crypto.js';
import { encodeSigned, signStatement } from '../../ledger/roster.js';

const s = makeSite('late-site');
const origin = (id: string): string => `oti/${s.siteId}/${id}`;

interface Gw {
  readonly id: string;
  readonly dataDir: string;
  readonly config: string;
  readonly api: number;
  proc: GatewayProcess | undefined;
}

interface Status {
  sync: { compromised: string[] };
  peers: { gateway: string; state: string; evidence: string | null }[];
}

void test('a gateway enrolled after a clone was found lists the cloned gateway as compromised', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-late-joiner-');
  const names = ['gw-a', 'gw-b', 'gw-c', 'gw-c-copy', 'gw-d'] as const;
  const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, { broker: await freePort(), api: await freePort() }] as const))) as Record<(typeof names)[number], { broker: number; api: number }>;
  const peers = (...of: (typeof names)[number][]): { host: string; port: number }[] => of.map((n) => ({ host: '127.0.0.1', port: ports[n].broker }));
  const configure = async (name: (typeof names)[number], id: string, dataDir: string, staticPeers: { host: string; port: number }[]): Promise<Gw> => {
    const config = await writeGatewayConfig(join(dir, `${name}.yaml`), {
      dataDir,
      broker: { host: '127.0.0.1', port: ports[name].broker },
      api: { port: ports[name].api },
      serialPorts: [],
      more: { discovery: { enabled: false, staticPeers } },
    });
    return { id, dataDir, config, api: ports[name].api, proc: undefined };
  };
  const start = (g: Gw): void => void (g.proc = startTestGateway(t, ['--config', g.config]));
  const running = async (g: Gw): Promise<void> => void (await g.proc!.waitForLog(`${g.id} running`, (l) => l.msg.includes('running; press Ctrl+C'), 90_000));
  const json = async <T>(g: Gw, path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${g.api}${path}`)).json()) as T;
  const held = async (g: Gw, of: string): Promise<number> => (await json<{ chains: { origin: string; size: number }[] }>(g, '/chains')).chains.find((x) => x.origin === origin(of))?.size ?? -1;
  const status = (g: Gw): Promise<Status> => json<Status>(g, '/status');
  const lines = (g: Gw): string => g.proc!.logs.map((l) => `  ${g.id} [${l.level}] ${l.msg}`).join('\n');
  const enrolLock = async (g: Gw, id: string): Promise<void> => {
    const body = encodeSigned(signStatement(s.site, { site: s.siteId, op: 'enroll', role: 'lock', id, key: generateKeyPair().publicKey, time: Date.now() }));
    const r = await fetch(`http://127.0.0.1:${g.api}/roster`, { method: 'POST', headers: { 'content-type': 'application/cbor' }, body });
    assert.equal(r.status, 201, await r.text());
  };

  const a = await configure('gw-a', 'gw-a', (await enrolledGateway(dir, s, 'gw-a')).dataDir, peers('gw-b', 'gw-c', 'gw-c-copy'));
  const b = await configure('gw-b', 'gw-b', (await enrolledGateway(dir, s, 'gw-b')).dataDir, peers('gw-a', 'gw-c', 'gw-c-copy'));
  const c = await configure('gw-c', 'gw-c', (await enrolledGateway(dir, s, 'gw-c')).dataDir, peers('gw-a', 'gw-b'));
  for (const g of [a, b, c]) start(g);
  for (const g of [a, b, c]) await running(g);
  for (const g of [a, b, c]) for (const o of [a, b, c]) if (o !== g) await waitUntil(`${g.id} holds ${o.id}'s chain`, async () => (await held(g, o.id)) > 0, 90_000);

  // gw-c's data folder copied while it is stopped; both copies run, each takes a statement of its own.
  assert.equal(await c.proc!.stop(), 0);
  const copyDir = join(dir, 'gw-c-copy-data');
  await cp(c.dataDir, copyDir, { recursive: true });
  const copy = await configure('gw-c-copy', 'gw-c', copyDir, peers('gw-a', 'gw-b'));
  start(c);
  start(copy);
  await running(c);
  await running(copy);
  await enrolLock(c, 'lock-x');
  await enrolLock(copy, 'lock-y');
  for (const g of [a, b]) await waitUntil(`${g.id} lists gw-c as compromised`, async () => (await status(g)).sync.compromised.includes('gw-c'), 90_000, () => lines(g));

  // gw-d, enrolled now, joins: it has never held gw-c's chain.
  const d = await configure('gw-d', 'gw-d', (await enrolledGateway(dir, s, 'gw-d')).dataDir, peers('gw-a', 'gw-b'));
  start(d);
  await running(d);
  await waitUntil('gw-d lists gw-c as compromised', async () => (await status(d)).sync.compromised.includes('gw-c'), 60_000, () => lines(d));
  const st = await status(d);
  const peerC = st.peers.find((p) => p.gateway === 'gw-c');
  assert.equal(peerC?.state, 'equivocated');
  assert.notEqual(peerC?.evidence, null);
  assert.ok((await held(d, 'gw-c')) <= 0, 'it did not need gw-c\'s chain to check the evidence');
  assert.equal(d.proc!.logs.find((l) => l.msg.includes('does not verify here')), undefined, lines(d));
  // And it still syncs the healthy gateways.
  for (const o of [a, b]) await waitUntil(`gw-d holds ${o.id}'s chain`, async () => (await held(d, o.id)) > 0, 90_000);
  for (const g of [a, b, c, copy, d]) assert.equal(await g.proc!.stop(), 0, `${g.id} stops cleanly`);
  // What the technician reads on gw-d's data folder says the same.
  const list = await oti(['evidence', 'list', '--data', d.dataDir]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /compromised \(refused\): gw-c/);
  assert.match(list.stdout, /gw-c's key signed .* verifies with its enrolled key; its chain is refused/);
});
