/**
 * Sync state seen as a user sees it, on three real gateway processes on 127.0.0.1 (static peers,
 * real LevelDB, real aedes): GET /status peers and sync, GET /chains and /events?chain= for every
 * replica, /metrics (oti_peer_state, oti_chain_entries), every gateway's state on one broker
 * with mosquitto_sub on oti/<site>/gateways/#, and the real `oti status`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, tempDir } from '../support/site.js';
import { startGateway, type GatewayProcess } from '../support/gateway-process.js';
import { APP_USER, loopbackSite } from '../support/enrolled-gateway.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { mosquittoSub } from '../support/mosquitto.js';

const s = makeSite('vis-site');
const IDS = ['gw-a', 'gw-b', 'gw-c'];
const origin = (id: string): string => `oti/${s.siteId}/${id}`;

interface PeerJson {
  gateway: string;
  state: string;
  size: number;
  lag: number;
  lastContact: number | null;
}

void test('every replica, its state, lag and last contact are visible in the API, metrics, gateways topic and oti status', { timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-sync-vis-');
  const gws = await loopbackSite(dir, s, IDS);
  const procs: GatewayProcess[] = [];
  t.after(async () => {
    for (const p of procs) p.proc.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });
  for (const g of gws) procs.push(startGateway(['--config', g.config]));
  for (const p of procs) await p.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'), 60_000);
  const api = (i: number, path: string): Promise<Response> => fetch(`http://127.0.0.1:${gws[i]!.api}${path}`);
  const json = async <T>(i: number, path: string): Promise<T> => {
    const r = await api(i, path);
    assert.equal(r.status, 200, `${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as T;
  };

  // /status: both peers, synced, no lag, a last contact.
  for (const [i, id] of IDS.entries()) {
    await waitUntil(`${id} shows both peers synced`, async () => {
      const st = await json<{ peers?: PeerJson[] }>(i, '/status');
      return st.peers?.length === 2 && st.peers.every((p) => p.state === 'synced' && p.lag === 0 && p.size > 0 && p.lastContact !== null);
    }, 120_000);
  }
  const st = await json<{ peers: PeerJson[]; sync: { quorum: number; compromised: string[]; evidence: unknown[] } }>(0, '/status');
  assert.deepEqual(st.peers.map((p) => p.gateway), ['gw-b', 'gw-c']);
  assert.deepEqual(st.sync.compromised, []);
  assert.equal(st.sync.quorum, 2);

  // /chains lists every stored replica; /events?chain= reads one.
  const chains = await json<{ chains: { origin: string; role: string; size: number }[] }>(0, '/chains');
  assert.deepEqual(chains.chains.map((c) => `${c.origin}:${c.role}`).sort(), [`${origin('gw-a')}:self`, `${origin('gw-b')}:peer`, `${origin('gw-c')}:peer`]);
  const evs = await json<{ items: { kind: string }[] }>(0, `/events?chain=${encodeURIComponent(origin('gw-b'))}`);
  assert.ok(evs.items.length >= 1 && evs.items[0]!.kind === 'roster', 'gw-b\'s chain is readable on gw-a, from its enrolment');

  // /metrics: the peers' states and every chain's entries.
  const metrics = await (await api(0, '/metrics')).text();
  for (const id of ['gw-b', 'gw-c']) {
    assert.match(metrics, new RegExp(`oti_peer_state\\{peer="${id}",state="synced"\\} 1`));
    assert.match(metrics, new RegExp(`oti_chain_entries\\{chain="${origin(id).replace(/\//g, '\\/')}"\\} [1-9]`));
    assert.match(metrics, new RegExp(`oti_peer_lag_entries\\{peer="${id}"\\} 0`));
  }

  // gw-a's broker holds every gateway's state (retained), each with its view of the others.
  const sub = mosquittoSub(t, ['-h', '127.0.0.1', '-p', String(gws[0]!.broker), '-u', APP_USER.username, '-P', APP_USER.password, '-t', `oti/${s.siteId}/gateways/#`, '-v', '-W', '60']);
  /** The newest state each gateway published, by gateway. */
  const stateMap = (): Map<string, { state: string; peers?: PeerJson[] }> => {
    const states = new Map<string, { state: string; peers?: PeerJson[] }>();
    for (const m of sub.messages()) {
      const gw = /gateways\/([^/]+)\/state$/.exec(m.topic)?.[1];
      if (gw !== undefined) states.set(gw, JSON.parse(m.payload) as { state: string; peers?: PeerJson[] });
    }
    return states;
  };
  await waitUntil('every gateway\'s state with its peers on gw-a\'s broker', () => IDS.every((id) => stateMap().get(id)?.state === 'online' && stateMap().get(id)?.peers?.length === 2), 90_000);
  assert.deepEqual(stateMap().get('gw-c')!.peers!.map((p) => p.gateway), ['gw-a', 'gw-b']);

  // The real oti status shows the peers.
  const r = await oti(['status', '--api', `http://127.0.0.1:${gws[0]!.api}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /peer gw-b: synced, \d+ entries stored, lag 0, last contact /);
  assert.match(r.stdout, /peer gw-c: synced/);
  t.diagnostic(r.stdout.split('\n').slice(0, 4).join(' | '));

  for (const p of procs) p.proc.kill('SIGTERM');
  for (const p of procs) assert.equal(await p.exited, 0);
});
