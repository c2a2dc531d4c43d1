/**
 * The local HTTP API over real sockets on 127.0.0.1, against a real LevelDB chain holding events
 * of several locks (signed and unsigned), roster, gap and health entries: cursor pagination,
 * filters, entry lookup, receipts that verify offline, auth, error codes, /metrics, port in use.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, type Socket } from 'node:net';
import { waitUntil } from '../support/wait.js';
import { makeSite, enrollLock, openChain, signedEvent, type TestSite } from '../support/site.js';
import { LocalApi, SCAN_BUDGET, type GatewayStatusJson, type LocalApiOptions } from '../../gateway/api/server.js';
import { HealthBoard } from '../../gateway/api/health.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';
import { Ingest } from '../../gateway/ingest.js';
import type { Chain } from '../../ledger/chain.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import { isOtiError } from '../../ledger/base/errors.js';
import type { DriverStatus } from '../../drivers/driver.js';
import type { ReceivedEvent } from '../../drivers/driver.js';

const execFileP = promisify(execFile);

const T0 = 1_700_000_000_000;
const TOKEN = 'a-token-of-some-length-0123456789';

interface Fixture {
  readonly site: TestSite;
  readonly chain: Chain;
  readonly opened: Awaited<ReturnType<typeof openChain>>;
  /** Ids of the lock events appended, by lock. */
  readonly byLock: Map<string, string[]>;
}

/** A chain with three locks' events interleaved, an unsigned lock, a gap and health entries. */
async function fixture(t: TestContext): Promise<Fixture> {
  const site = makeSite();
  let clock = T0;
  const opened = await openChain(t, site, { sealDelayMs: 1, now: () => (clock += 1000) });
  const { chain } = opened;
  const front = enrollLock(site, 'front');
  const side = enrollLock(site, 'side');
  const legacy = enrollLock(site, 'legacy', { unsigned: true });
  for (const l of [front, side, legacy]) await chain.append({ kind: 'roster', signed: l.statement });
  const byLock = new Map<string, string[]>([['front', []], ['side', []], ['legacy', []]]);
  for (let i = 0; i < 12; i++) {
    const r1 = await chain.append({ kind: 'lock-event', cose: signedEvent(front, i % 3 === 0 ? 'locked' : 'unlocked') });
    byLock.get('front')!.push(r1.id);
    const r2 = await chain.append({ kind: 'lock-event', cose: signedEvent(side, 'door-ajar') });
    byLock.get('side')!.push(r2.id);
    if (i % 4 === 0) {
      legacy.ctr++;
      const r3 = await chain.append({ kind: 'lock-event', unsignedEvent: encodeLockEvent({ lock: 'legacy', ctr: legacy.ctr, time: T0 + legacy.ctr, type: 'unlocked' }) });
      byLock.get('legacy')!.push(r3.id);
    }
    if (i === 5) await chain.append({ kind: 'gap', lock: 'side', from: 100, to: 104 });
    if (i === 7) await chain.append({ kind: 'health', source: 'ble', status: 'adapter-reset', detail: 'hci0 reset' });
  }
  return { site, chain, opened, byLock };
}

function statusOf(drivers: DriverStatus[] = []): () => GatewayStatusJson {
  return () => ({ gateway: 'gw-1', site: 'site-1', version: '0.1.0', startedAt: Date.now() - 5000, drivers, peers: [] });
}

async function startApi(t: TestContext, chain: Chain, extra: Partial<LocalApiOptions> = {}): Promise<{ api: LocalApi; metrics: GatewayMetrics }> {
  const metrics = extra.metrics ?? new GatewayMetrics();
  const api = await LocalApi.start({ host: '127.0.0.1', port: 0, chain, status: statusOf(), metrics, ...extra });
  t.after(() => api.close());
  return { api, metrics };
}

interface Page {
  items: { index: number; id: string; kind: string; lock?: string; type?: string; source?: string; time: number; provenance?: string; leafHash: string }[];
  next: number | null;
}

async function getJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T; res: Response }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T, res };
}

/** Follows `next` until it is null; returns every item and the number of requests. */
async function walk(base: string, query: string): Promise<{ items: Page['items']; pages: number }> {
  const items: Page['items'] = [];
  let after: number | null = null;
  let pages = 0;
  do {
    const { status, body }: { status: number; body: Page } = await getJson<Page>(`${base}/events?${query}${after === null ? '' : `&after=${after}`}`);
    assert.equal(status, 200);
    items.push(...body.items);
    after = body.next;
    pages++;
    assert.ok(pages < 10_000, 'pagination does not end');
  } while (after !== null);
  return { items, pages };
}

void test('pagination walks the whole chain exactly once, in both orders', async (t) => {
  const { chain } = await fixture(t);
  const { api } = await startApi(t, chain);
  const size = chain.size;
  const asc = await walk(api.url, 'limit=7');
  assert.deepEqual(asc.items.map((e) => e.index), [...Array(size).keys()]);
  assert.equal(asc.pages, Math.ceil(size / 7));
  const desc = await walk(api.url, 'limit=5&order=desc');
  assert.deepEqual(desc.items.map((e) => e.index), [...Array(size).keys()].reverse());
  // Entries appended during a walk do not disturb it: the cursor is an index.
  const first = await getJson<Page>(`${api.url}/events?limit=3`);
  await chain.append({ kind: 'health', source: 'test', status: 'ok' });
  const rest = await walk(api.url, `limit=50&after=${first.body.next}`);
  assert.deepEqual([...first.body.items, ...rest.items].map((e) => e.index), [...Array(size + 1).keys()]);
  const all = await getJson<Page>(`${api.url}/events?limit=1000`);
  assert.equal(all.body.next, null);
  assert.equal(all.body.items.length, size + 1);
});

void test('filters by lock, type, kind and time', async (t) => {
  const { chain, byLock } = await fixture(t);
  const { api } = await startApi(t, chain);
  const front = await walk(api.url, 'lock=front&limit=4');
  assert.deepEqual(front.items.map((e) => e.id), byLock.get('front'));
  const legacy = await getJson<Page>(`${api.url}/events?lock=legacy`);
  assert.deepEqual(legacy.body.items.map((e) => e.id), byLock.get('legacy'));
  assert.ok(legacy.body.items.every((e) => e.provenance === 'unsigned'));
  const locked = await walk(api.url, 'type=locked&limit=2');
  assert.equal(locked.items.length, 4);
  assert.ok(locked.items.every((e) => e.type === 'locked' && e.lock === 'front'));
  const sideDesc = await walk(api.url, 'lock=side&type=door-ajar&order=desc&limit=5');
  assert.deepEqual(sideDesc.items.map((e) => e.id), [...byLock.get('side')!].reverse());
  const gaps = await getJson<Page>(`${api.url}/events?kind=gap`);
  assert.equal(gaps.body.items.length, 1);
  assert.equal(gaps.body.items[0]!.lock, 'side');
  const roster = await getJson<Page>(`${api.url}/events?kind=roster`);
  assert.equal(roster.body.items.length, 4); // the gateway and three locks
  const health = await getJson<Page>(`${api.url}/events?kind=health`);
  assert.deepEqual(health.body.items.map((e) => e.source), ['ble']);
  // Time: entry time (the gateway's clock), since inclusive, until exclusive.
  const all = (await getJson<Page>(`${api.url}/events?limit=1000`)).body.items;
  const since = all[10]!.time;
  const until = all[20]!.time;
  const window = await walk(api.url, `since=${since}&until=${until}&limit=3`);
  assert.deepEqual(window.items.map((e) => e.index), all.filter((e) => e.time >= since && e.time < until).map((e) => e.index));
  assert.ok(window.items.length > 0);
  const iso = await getJson<Page>(`${api.url}/events?since=${new Date(since).toISOString()}&limit=1000`);
  assert.deepEqual(iso.body.items.map((e) => e.index), all.filter((e) => e.time >= since).map((e) => e.index));
});

void test('one request scans a bounded number of entries and returns a cursor to go on', async (t) => {
  const site = makeSite();
  const { chain } = await openChain(t, site, { sealDelayMs: 1 });
  const lock = enrollLock(site, 'late');
  await chain.append({ kind: 'roster', signed: lock.statement });
  const filler = [];
  for (let i = 0; i < SCAN_BUDGET + 500; i++) filler.push(chain.append({ kind: 'health', source: 'filler', status: 'ok' }));
  await Promise.all(filler);
  const last = await chain.append({ kind: 'lock-event', cose: signedEvent(lock) });
  const { api } = await startApi(t, chain);
  const first = await getJson<Page>(`${api.url}/events?lock=late`);
  assert.deepEqual(first.body.items, []);
  assert.equal(first.body.next, SCAN_BUDGET - 1);
  const second = await getJson<Page>(`${api.url}/events?lock=late&after=${first.body.next}`);
  assert.deepEqual(second.body.items.map((e) => e.id), [last.id]);
  assert.equal(second.body.next, null);
  const back = await getJson<Page>(`${api.url}/events?kind=roster&order=desc`);
  assert.equal(back.body.items.length, 0);
  assert.equal(back.body.next, chain.size - SCAN_BUDGET);
  const back2 = await getJson<Page>(`${api.url}/events?kind=roster&order=desc&after=${back.body.next}`);
  assert.deepEqual(back2.body.items.map((e) => e.index), [1, 0]);
  assert.equal(back2.body.next, null);
});

void test('an entry by id, and receipts that verify offline in both forms', async (t) => {
  const { chain, site, byLock } = await fixture(t);
  const { api } = await startApi(t, chain);
  const id = byLock.get('front')![3]!;
  const one = await getJson<{ id: string; index: number; entry: string; lock: string; ctr: number; provenance: string; leafHash: string }>(`${api.url}/events/${id}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.id, id);
  assert.equal(one.body.ctr, 4);
  assert.equal(one.body.provenance, 'lock-signed');
  assert.deepEqual(new Uint8Array(Buffer.from(one.body.entry, 'base64')), await chain.entry(one.body.index));
  const byHash = await getJson<{ index: number }>(`${api.url}/events/${one.body.leafHash}`);
  assert.equal(byHash.status, 404); // lock events are found by lock:ctr, other entries by leaf hash
  const gap = (await getJson<Page>(`${api.url}/events?kind=gap`)).body.items[0]!;
  assert.equal((await getJson<{ index: number }>(`${api.url}/events/${gap.id}`)).body.index, gap.index);

  const cborRes = await fetch(`${api.url}/receipts/${id}`, { headers: { accept: 'application/cbor' } });
  assert.equal(cborRes.status, 200);
  assert.equal(cborRes.headers.get('content-type'), 'application/cbor');
  const v = verifyReceipt(new Uint8Array(await cborRes.arrayBuffer()), site.trust);
  assert.equal(v.index, one.body.index);
  assert.equal(v.provenance, 'lock-signed');
  const j = await getJson<{ id: string; index: number; size: number; checkpoint: string; receipt: string }>(`${api.url}/receipts/${id}`);
  assert.equal(j.status, 200);
  const vj = verifyReceipt(new Uint8Array(Buffer.from(j.body.receipt, 'base64')), site.trust);
  assert.equal(vj.index, j.body.index);
  assert.equal(vj.checkpoint.size, j.body.size);
  assert.equal(vj.checkpoint.note, j.body.checkpoint);
  const legacyId = byLock.get('legacy')![0]!;
  const vl = verifyReceipt(new Uint8Array(await (await fetch(`${api.url}/receipts/${legacyId}`, { headers: { accept: 'application/json, application/cbor' } })).arrayBuffer()), site.trust);
  assert.equal(vl.provenance, 'unsigned');
  const vg = verifyReceipt(new Uint8Array(Buffer.from((await getJson<{ receipt: string }>(`${api.url}/receipts/${gap.id}`)).body.receipt, 'base64')), site.trust);
  assert.equal(vg.provenance, 'gateway');
});

void test('errors: 404, 400 with the parameter, 405, 414, each with its code', async (t) => {
  const { chain } = await fixture(t);
  const { api } = await startApi(t, chain);
  type Err = { error: { code: string; message: string; details?: { param?: string } } };
  const expect = async (path: string, status: number, code: string, param?: string, init?: RequestInit): Promise<Response> => {
    const { status: s, body, res } = await getJson<Err>(`${api.url}${path}`, init);
    assert.equal(s, status, path);
    assert.equal(body.error.code, code, path);
    if (param !== undefined) assert.equal(body.error.details?.param, param, path);
    return res;
  };
  await expect('/nowhere', 404, 'ERR_NOT_FOUND');
  await expect('/events/front:999', 404, 'ERR_NOT_FOUND');
  await expect(`/events/${'ab'.repeat(32)}`, 404, 'ERR_NOT_FOUND');
  await expect('/receipts/front:999', 404, 'ERR_NOT_FOUND');
  await expect('/events/Not%20an%20id', 400, 'ERR_ARGUMENT', 'id');
  await expect('/events/%E0%A4%A', 400, 'ERR_ARGUMENT', 'id');
  await expect('/events?limit=0', 400, 'ERR_ARGUMENT', 'limit');
  await expect('/events?limit=1001', 400, 'ERR_ARGUMENT', 'limit');
  await expect('/events?limit=ten', 400, 'ERR_ARGUMENT', 'limit');
  await expect('/events?after=-1', 400, 'ERR_ARGUMENT', 'after');
  await expect('/events?order=sideways', 400, 'ERR_ARGUMENT', 'order');
  await expect('/events?type=opened', 400, 'ERR_ARGUMENT', 'type');
  await expect('/events?kind=note', 400, 'ERR_ARGUMENT', 'kind');
  await expect('/events?lock=Front!', 400, 'ERR_ARGUMENT', 'lock');
  await expect('/events?since=yesterday', 400, 'ERR_ARGUMENT', 'since');
  await expect('/events?since=2000&until=1000', 400, 'ERR_ARGUMENT', 'until');
  await expect('/events?limit=1&limit=2', 400, 'ERR_ARGUMENT', 'limit');
  await expect('/events?colour=red', 400, 'ERR_ARGUMENT', 'colour');
  await expect('/events?chain=oti/site-1/gw-9', 404, 'ERR_NOT_FOUND', 'chain');
  await expect(`/events?lock=${'a'.repeat(3000)}`, 414, 'ERR_ARGUMENT', 'url');
  const res = await expect('/status', 405, 'ERR_METHOD_NOT_ALLOWED', undefined, { method: 'POST', body: '{}' });
  assert.equal(res.headers.get('allow'), 'GET');
  await expect('/events', 405, 'ERR_METHOD_NOT_ALLOWED', undefined, { method: 'DELETE' });
});

void test('a token guards every endpoint but /health', async (t) => {
  const { chain } = await fixture(t);
  const { api } = await startApi(t, chain, { token: TOKEN });
  const health = await fetch(`${api.url}/health`);
  assert.equal(health.status, 200);
  const wrong = [undefined, `Bearer ${TOKEN.slice(0, -1)}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, `Bearer  ${TOKEN}`, TOKEN];
  for (const path of ['/status', '/events', '/metrics', '/chains', '/events/front:1', '/receipts/front:1', '/nowhere']) {
    for (const auth of wrong) {
      const res = await fetch(`${api.url}${path}`, auth === undefined ? {} : { headers: { authorization: auth } });
      assert.equal(res.status, 401, `${path} with ${auth ?? 'no header'}`);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_UNAUTHORIZED');
    }
  }
  for (const path of ['/status', '/events', '/metrics', '/chains', '/events/front:1', '/receipts/front:1']) {
    const res = await fetch(`${api.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, path);
    await res.arrayBuffer();
  }
});

void test('the auth scheme is case-insensitive (RFC 9110 §11.1): curl with bearer, BEARER and BeArEr gets in', async (t) => {
  const { chain } = await fixture(t);
  const { api } = await startApi(t, chain, { token: TOKEN });
  const curl = async (auth: string): Promise<string> => (await execFileP('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: ${auth}`, `${api.url}/status`])).stdout;
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'BeArEr']) assert.equal(await curl(`${scheme} ${TOKEN}`), '200', scheme);
  assert.equal(await curl(`bearer ${TOKEN}x`), '401', 'a wrong token is still refused whatever the case of the scheme');
  assert.equal(await curl(`bearerx ${TOKEN}`), '401');
});

void test('start-up refusals: a non-loopback host without a token, a port in use', async (t) => {
  const { chain } = await fixture(t);
  const metrics = new GatewayMetrics();
  await assert.rejects(LocalApi.start({ host: '0.0.0.0', port: 0, chain, status: statusOf(), metrics }), (e) => isOtiError(e, 'ERR_CONFIG'));
  const { api } = await startApi(t, chain, { metrics });
  const port = Number(new URL(api.url).port);
  await assert.rejects(LocalApi.start({ host: '127.0.0.1', port, chain, status: statusOf(), metrics }), (e) => isOtiError(e, 'ERR_PORT_IN_USE'));
  // The first one still answers.
  assert.equal((await fetch(`${api.url}/health`)).status, 200);
});

void test('status, chains, health with a required driver', async (t) => {
  const { chain, opened } = await fixture(t);
  const peer = await opened.store.chain('oti/site-1/gw-2', 'peer');
  const serial: { state: DriverStatus['state'] } = { state: 'stopped' };
  const driver = (): DriverStatus => ({ driver: 'serial:/dev/ttyA', state: serial.state, since: T0, links: [], counters: { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 } });
  const { api } = await startApi(t, chain, {
    status: () => ({ ...statusOf([driver()])(), broker: { url: 'mqtt://127.0.0.1:1883' } }),
    requiredDrivers: ['serial:/dev/ttyA'],
    peers: () => [peer],
  });
  const down = await getJson<{ status: string; problems: string[] }>(`${api.url}/health`);
  assert.equal(down.status, 503);
  assert.deepEqual(down.body.problems, ['driver:serial:/dev/ttyA']);
  serial.state = 'degraded';
  assert.equal((await getJson<{ status: string }>(`${api.url}/health`)).body.status, 'ok');
  const s = await getJson<{ gateway: string; uptimeSeconds: number; chain: { origin: string; size: number; blocks: number; checkpoint: string }; drivers: DriverStatus[]; broker: { url: string } }>(`${api.url}/status`);
  assert.equal(s.body.gateway, 'gw-1');
  assert.ok(s.body.uptimeSeconds >= 5);
  assert.equal(s.body.chain.origin, chain.origin);
  assert.equal(s.body.chain.size, chain.size);
  assert.equal(s.body.chain.blocks, chain.head.n + 1);
  assert.equal(s.body.chain.checkpoint, chain.checkpoint!.note);
  assert.equal(s.body.drivers[0]!.state, 'degraded');
  assert.equal(s.body.broker.url, 'mqtt://127.0.0.1:1883');
  const chains = await getJson<{ chains: { origin: string; role: string; size: number }[] }>(`${api.url}/chains`);
  assert.deepEqual(chains.body.chains, [{ origin: chain.origin, role: 'self', size: chain.size }, { origin: 'oti/site-1/gw-2', role: 'peer', size: 0 }]);
  const empty = await getJson<Page>(`${api.url}/events?chain=${encodeURIComponent('oti/site-1/gw-2')}`);
  assert.deepEqual(empty.body, { items: [], next: null });
});

void test('health conditions: raised and cleared on the board, shown by /health, /status and the metrics', async (t) => {
  const { chain } = await fixture(t);
  const health = new HealthBoard();
  const metrics = new GatewayMetrics();
  metrics.healthFrom(() => health.list());
  const { api } = await startApi(t, chain, { health, metrics });
  assert.equal((await getJson<{ status: string }>(`${api.url}/health`)).body.status, 'ok');
  assert.equal(health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', 'the disk is full'), true);
  assert.equal(health.raise('disk-full', 'degraded', 'ERR_DISK_FULL', 'the disk is full'), false);
  const degraded = await getJson<{ status: string; problems: string[]; conditions: { id: string; level: string; code: string; reason: string }[] }>(`${api.url}/health`);
  assert.equal(degraded.status, 503);
  assert.equal(degraded.body.status, 'degraded');
  assert.deepEqual(degraded.body.problems, ['disk-full']);
  assert.deepEqual(degraded.body.conditions.map((c) => [c.id, c.level, c.code, c.reason]), [['disk-full', 'degraded', 'ERR_DISK_FULL', 'the disk is full']]);
  health.raise('ledger-read-only', 'unavailable', 'ERR_CHAIN_READ_ONLY', 'read-only');
  assert.equal((await getJson<{ status: string }>(`${api.url}/health`)).body.status, 'unavailable');
  const s = await getJson<{ health: { status: string; conditions: { id: string }[] } }>(`${api.url}/status`);
  assert.equal(s.body.health.status, 'unavailable');
  assert.deepEqual(s.body.health.conditions.map((c) => c.id), ['disk-full', 'ledger-read-only']);
  const text = await (await fetch(`${api.url}/metrics`)).text();
  assert.match(text, /oti_health_condition\{condition="disk-full",level="degraded",code="ERR_DISK_FULL"\} 1/);
  assert.equal(health.clear('disk-full'), true);
  assert.equal(health.clear('ledger-read-only'), true);
  assert.equal(health.clear('ledger-read-only'), false);
  assert.equal((await getJson<{ status: string }>(`${api.url}/health`)).body.status, 'ok');
  assert.doesNotMatch(await (await fetch(`${api.url}/metrics`)).text(), /oti_health_condition\{/);
});

/** Prometheus text exposition: `name{labels} value` per sample (comments skipped). */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

void test('/metrics: Prometheus text with the documented metrics, counters move with the pipeline', async (t) => {
  const { chain } = await fixture(t);
  const metrics = new GatewayMetrics();
  const ingest = new Ingest({ chain });
  metrics.observeIngest(ingest);
  metrics.chainHeightsFrom(() => [{ origin: chain.origin, size: chain.size }]);
  metrics.driversFrom(() => [{ driver: 'ble', state: 'unavailable', reason: 'no adapter', since: T0, links: [], counters: { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 } }]);
  const { api } = await startApi(t, chain, { metrics, token: TOKEN });
  const scrape = async (): Promise<{ text: string; samples: Map<string, number> }> => {
    const res = await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    return { text, samples: parseExposition(text) };
  };
  const before = await scrape();
  for (const name of ['oti_events_received_total', 'oti_events_committed_total', 'oti_events_duplicate_total', 'oti_ack_latency_seconds_count', 'oti_ingest_queue_depth', 'oti_process_cpu_user_seconds_total', 'oti_nodejs_heap_size_used_bytes']) {
    assert.ok(before.samples.has(name), name);
  }
  assert.equal(before.samples.get(`oti_chain_entries{chain="${chain.origin}"}`), chain.size);
  assert.equal(before.samples.get('oti_driver_up{driver="ble",state="unavailable"}'), 0);
  // Every metric has the oti_ prefix, default process metrics included.
  for (const line of before.text.split('\n').filter((l) => l.startsWith('# TYPE '))) assert.match(line, /^# TYPE oti_/);
  const ev: ReceivedEvent = { from: { driver: 'ble', link: 'aa:bb' }, lock: 'ghost', ctr: 1, oldest: 1, payload: { event: new Uint8Array(0) }, info: undefined, receivedAt: Date.now() };
  ingest.emit('received', ev);
  ingest.emit('received', ev);
  ingest.emit('rejected', ev, 'ERR_LOCK_UNKNOWN', true);
  const after = await scrape();
  assert.equal(after.samples.get('oti_events_received_total'), 2);
  assert.equal(after.samples.get('oti_events_rejected_total{code="ERR_LOCK_UNKNOWN"}'), 1);
});

void test('the overall connection cap: beyond api.maxConnections a connection gets 503 ERR_TOO_MANY_CONNECTIONS, and a slot frees when one closes', async (t) => {
  const { chain } = await fixture(t);
  const { api } = await startApi(t, chain, { maxConnections: 3, maxConnectionsPerAddress: 10 });
  const { port } = new URL(api.url);
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: Number(port) }, () => resolve(s));
      s.once('error', reject);
    });
  const idle = [await open(), await open(), await open()];
  t.after(() => idle.forEach((s) => s.destroy()));
  const over = await fetch(`${api.url}/health`).catch((e: Error) => e);
  assert.ok(!(over instanceof Error), 'the refusal is an HTTP answer');
  assert.equal(over.status, 503);
  const body = (await over.json()) as { error: { code: string; details: { key: string; limit: number } } };
  assert.equal(body.error.code, 'ERR_TOO_MANY_CONNECTIONS');
  assert.deepEqual(body.error.details, { limit: 3, key: 'api.maxConnections' });
  const closed = new Promise((resolve) => idle[0]!.once('close', resolve));
  idle[0]!.destroy();
  await closed;
  await waitUntil('a slot is free again', async () => (await fetch(`${api.url}/health`, { headers: { connection: 'close' } })).status === 200);
});

void test('a client that hangs up in the middle of its body is not an internal error: logged at debug only, the API goes on', async (t) => {
  const { chain } = await fixture(t);
  const lines: { level: string; obj: unknown; msg: string }[] = [];
  const record = (level: string) => (obj: unknown, msg: string) => {
    lines.push({ level, obj, msg });
  };
  const logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') } as unknown as LocalApiOptions['logger'];
  const { api } = await startApi(t, chain, { logger });
  const { port } = new URL(api.url);
  // As the reviewer did: announce 1000 bytes, send 3, close. `Expect: 100-continue` makes the
  // server say when the request has reached the handler, so the hang-up comes in the body.
  for (let i = 1; i <= 3; i++) {
    const s = connect({ host: '127.0.0.1', port: Number(port) });
    s.on('error', () => undefined);
    s.write('POST /roster HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n');
    await new Promise((resolve) => s.once('data', resolve));
    s.end('abc', () => s.destroy());
    await waitUntil('the request to be dealt with', () => lines.filter((l) => l.msg !== 'local API listening').length >= i, 10_000);
  }
  assert.deepEqual(lines.filter((l) => l.level !== 'debug'), []);
  assert.equal(lines.filter((l) => l.msg === 'API request aborted by the client').length, 3);
  assert.equal((await fetch(`${api.url}/health`)).status, 200);
});
