/**
 * Webhooks (gateway/notify/webhooks.ts) against a real HTTP receiver on 127.0.0.1 and a real LevelDB
 * chain: signatures checked the way docs/WEBHOOKS.md tells receivers to; retries after failures
 * and timeouts; 410 disabling a hook; resuming from the cursor after stop/start and after
 * SIGKILL of a child process that appends and delivers; secrets kept out of logs and status.
 * Nothing here asserts on timing: the tests wait for conditions, with generous time limits.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { EventEmitter } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { childSite, makeSite, enrollLock, signedEvent, openChain, tempDir, type TestSite, type TestLock } from '../support/site.js';
import { WebhookDispatcher, hookId, type WebhookDelivery, type WebhookHook, type WebhookStatus } from '../../gateway/notify/webhooks.js';
import { Chain } from '../../ledger/chain.js';
import { LedgerStore } from '../../ledger/store.js';
import { toHex } from '../../ledger/crypto.js';
import { verifyReceipt } from '../../ledger/receipt.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { leafHash } from '../../ledger/merkle.js';
import { waitForEvent } from '../support/wait.js';

const SECRET = 'whsec-test-0123456789abcdef';
/** How old a signature timestamp a receiver accepts (docs/WEBHOOKS.md §Verifying). */
const REPLAY_WINDOW_MS = 5 * 60_000;
const WAIT_MS = 60_000;
const CHILD = fileURLToPath(new URL('../support/webhook-child.js', import.meta.url));

interface Received {
  readonly delivery: WebhookDelivery;
  readonly deliveryHeader: string;
  readonly attempt: number;
  readonly status: number | 'hang';
}

type Behaviour = (n: number, d: WebhookDelivery) => number | 'hang';

/**
 * A webhook receiver as an integrator would write one: it checks the signature (HMAC over
 * "<t>.<raw body>", constant-time compare, timestamp within the replay window) before it
 * parses anything, and answers what `behaviour` says (a status, or never).
 */
class Receiver {
  readonly received: Received[] = [];
  /** Requests whose signature did not verify (must stay empty). */
  readonly rejected: string[] = [];
  behaviour: Behaviour = () => 200;
  url = '';
  readonly #server = createServer((req, res) => this.#handle(req, res));
  readonly #hanging: ServerResponse[] = [];
  /** Emits `request` after each request is recorded. */
  readonly #requests = new EventEmitter();

  constructor(readonly secret: string) {}

  async listen(t: TestContext, path = '/hook'): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const addr = this.#server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    this.url = `http://127.0.0.1:${addr.port}${path}`;
    t.after(() => this.close());
  }

  async close(): Promise<void> {
    for (const r of this.#hanging) r.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Indices of entries in deliveries answered 2xx, in arrival order (with repeats). */
  acceptedIndices(): number[] {
    return this.received.filter((r) => typeof r.status === 'number' && r.status >= 200 && r.status < 300).flatMap((r) => r.delivery.entries.map((e) => e.index));
  }

  /** Resolves once `cond` holds (checked after every request), or fails after WAIT_MS. */
  async waitForRequests(what: string, cond: () => boolean): Promise<void> {
    await waitForEvent(this.#requests, 'request', `receiver: ${what}`, cond, WAIT_MS);
  }

  /** Every index in [0, size) accepted at least once. */
  async waitForAll(size: () => number): Promise<void> {
    await this.waitForRequests('every entry', () => new Set(this.acceptedIndices()).size >= size() && coversPrefix(this.acceptedIndices(), size()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const sig = req.headers['x-oti-signature'];
      if (typeof sig !== 'string' || !verifySignature(this.secret, sig, raw, Date.now())) {
        this.rejected.push(String(sig));
        res.writeHead(401).end();
        return;
      }
      assert.equal(req.method, 'POST');
      assert.equal(req.headers['content-type'], 'application/json');
      const delivery = JSON.parse(raw) as WebhookDelivery;
      const n = this.received.length;
      const status = this.behaviour(n, delivery);
      this.received.push({ delivery, deliveryHeader: String(req.headers['x-oti-delivery']), attempt: Number(req.headers['x-oti-attempt']), status });
      if (status === 'hang') this.#hanging.push(res);
      else res.writeHead(status).end();
      this.#requests.emit('request');
    });
  }
}

/** The check docs/WEBHOOKS.md describes: t and v1 from the header, HMAC, constant time, window. */
function verifySignature(secret: string, header: string, rawBody: string, now: number): boolean {
  const parts = new Map(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1') ?? '';
  if (!Number.isSafeInteger(t) || Math.abs(now - t) > REPLAY_WINDOW_MS || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const want = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  return timingSafeEqual(want, Buffer.from(v1, 'hex'));
}

function coversPrefix(indices: readonly number[], size: number): boolean {
  const seen = new Set(indices);
  for (let i = 0; i < size; i++) if (!seen.has(i)) return false;
  return true;
}

function hook(url: string, extra: Partial<WebhookHook> = {}): WebhookHook {
  return { url, secret: SECRET, secretFile: undefined, maxAttempts: 0, backoffMinMs: 10, backoffMaxMs: 40, timeoutMs: 10_000, fromStart: true, ...extra };
}

async function dispatcher(t: TestContext, chain: Chain, cursorDir: string, hooks: WebhookHook[], extra: { logger?: pino.Logger } = {}): Promise<WebhookDispatcher> {
  const d = new WebhookDispatcher({ chain, hooks, cursorDir, ...extra });
  await d.start();
  t.after(() => d.stop());
  return d;
}

/** Enrols `locks` and appends `n` events round-robin, plus a gap and a health entry. */
async function appendEvents(chain: Chain, s: TestSite, locks: TestLock[], n: number): Promise<void> {
  for (const l of locks) if (chain.roster.get('lock', l.id) === undefined) await chain.append({ kind: 'roster', signed: l.statement });
  const work: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) work.push(chain.append({ kind: 'lock-event', cose: signedEvent(locks[i % locks.length]!) }));
  work.push(chain.append({ kind: 'health', source: 'test', status: 'ok', detail: s.siteId }));
  work.push(chain.append({ kind: 'gap', lock: locks[0]!.id, from: locks[0]!.ctr + 1, to: locks[0]!.ctr + 2 }));
  locks[0]!.ctr += 2;
  await Promise.all(work);
}

function only(d: WebhookDispatcher): WebhookStatus {
  const [s] = d.status();
  assert.ok(s !== undefined);
  return s;
}

void test('every entry reaches the receiver, signed, in order, with its receipt', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  const d = await dispatcher(t, chain, await tempDir(t), [hook(rx.url)]);
  const locks = [enrollLock(s, 'lock-a'), enrollLock(s, 'lock-b')];
  await appendEvents(chain, s, locks, 150);
  await rx.waitForAll(() => chain.size);

  assert.deepEqual(rx.rejected, []);
  assert.ok(rx.received.every((r) => r.status === 200));
  // In order, exactly once (no failures happened): the concatenation is 0..size-1.
  assert.deepEqual(rx.acceptedIndices(), Array.from({ length: chain.size }, (_, i) => i));
  for (const r of rx.received) {
    const d0 = r.delivery;
    assert.equal(d0.chain, chain.origin);
    assert.equal(r.deliveryHeader, `${chain.origin}:${d0.from}-${d0.to}`);
    assert.equal(d0.to - d0.from + 1, d0.entries.length);
    assert.ok(d0.entries.length <= 100);
  }
  const entries = rx.received.flatMap((r) => r.delivery.entries);
  const kinds = new Set(entries.map((e) => e.kind));
  assert.deepEqual([...kinds].sort(), ['gap', 'health', 'lock-event', 'roster']);
  for (const e of entries) {
    const v = verifyReceipt(Buffer.from(e.receipt, 'base64'), s.trust);
    assert.equal(v.index, e.index);
    const stored = await chain.entry(e.index);
    assert.equal(toHex(leafHash(stored)), e.leafHash);
    assert.equal(await chain.indexOf(e.id), e.index);
    if (e.kind === 'lock-event') {
      assert.equal(e.provenance, 'lock-signed');
      assert.equal(e.cred, '01020304');
      assert.equal(e.id, `${e.lock}:${e.ctr}`);
    }
  }
  // The cursor is saved right after the receiver's answer: stop() waits for that.
  await d.stop();
  const st = only(d);
  assert.equal(st.cursor, chain.size);
  assert.equal(st.behind, 0);
  assert.equal(st.delivered, chain.size);
  assert.equal(st.id, hookId(rx.url));
});

void test('a receiver failing 4 times then succeeding gets everything in order, after retries', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  rx.behaviour = (n) => (n < 4 ? [500, 503, 429, 404][n]! : 204);
  const d = await dispatcher(t, chain, await tempDir(t), [hook(rx.url)]);
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 30);
  await rx.waitForAll(() => chain.size);

  assert.deepEqual(rx.received.slice(0, 5).map((r) => r.attempt), [1, 2, 3, 4, 5]);
  // The retries resent the same batch.
  assert.equal(new Set(rx.received.slice(0, 5).map((r) => r.deliveryHeader)).size, 1);
  const accepted = rx.acceptedIndices();
  assert.deepEqual(accepted, Array.from({ length: chain.size }, (_, i) => i));
  await d.stop();
  const st = only(d);
  assert.equal(st.failed, 4);
  assert.equal(st.lastError, undefined);
  assert.equal(st.behind, 0);
});

void test('a POST that times out is retried', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  rx.behaviour = (n) => (n === 0 ? 'hang' : 200);
  const d = await dispatcher(t, chain, await tempDir(t), [hook(rx.url, { timeoutMs: 200 })]);
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 5);
  await rx.waitForAll(() => chain.size);
  assert.equal(rx.received[0]!.status, 'hang');
  assert.equal(rx.received[1]!.attempt, 2);
  assert.equal(rx.received[1]!.deliveryHeader, rx.received[0]!.deliveryHeader);
  assert.ok(only(d).failed >= 1);
});

/** The garbage collector, exposed in this process (as `node --expose-gc` would). */
function forcedGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

void test('a receiver that never answers is timed out on every attempt, even with frequent garbage collection', { timeout: 120_000 }, async (t) => {
  // Issue 15: AbortSignal.timeout() inside AbortSignal.any() can be collected on Node 20 and then
  // never fires, so a hanging attempt held its hook for ever. Collect every 20 ms to provoke it.
  const gc = forcedGc();
  const collector = setInterval(gc, 20);
  t.after(() => clearInterval(collector));
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  rx.behaviour = (n) => (n < 3 ? 'hang' : 200);
  const d = await dispatcher(t, chain, await tempDir(t), [hook(rx.url, { timeoutMs: 300 })]);
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 3);
  await rx.waitForAll(() => chain.size);
  assert.deepEqual(rx.received.slice(0, 4).map((r) => r.attempt), [1, 2, 3, 4]);
  assert.equal(only(d).failed, 3);
});

void test('410 Gone disables the hook; others go on', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const gone = new Receiver(SECRET);
  await gone.listen(t);
  gone.behaviour = () => 410;
  const ok = new Receiver(SECRET);
  await ok.listen(t);
  const d = await dispatcher(t, chain, await tempDir(t), [hook(gone.url), hook(ok.url)]);
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 5);
  await ok.waitForAll(() => chain.size);
  await gone.waitForRequests('one request', () => gone.received.length >= 1);
  await appendEvents(chain, s, [enrollLock(s, 'lock-b')], 5);
  await ok.waitForAll(() => chain.size);
  await d.stop();
  const [g, o] = d.status();
  assert.equal(g!.state, 'disabled');
  assert.equal(g!.cursor, 0);
  assert.equal(g!.lastError, 'HTTP 410');
  assert.equal(gone.received.length, 1);
  assert.equal(o!.behind, 0);
});

void test('stop and a new dispatcher on the same cursor folder resume without losing an entry', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  const cursorDir = await tempDir(t);
  const locks = [enrollLock(s, 'lock-a'), enrollLock(s, 'lock-b')];
  const a = await dispatcher(t, chain, cursorDir, [hook(rx.url)]);
  await appendEvents(chain, s, locks, 20);
  await rx.waitForAll(() => chain.size);
  // Stop while a batch is in flight: the receiver holds the next request until stop() aborts it.
  rx.behaviour = () => 'hang';
  await appendEvents(chain, s, locks, 40);
  await rx.waitForRequests('a held request', () => rx.received.some((r) => r.status === 'hang'));
  await a.stop();
  assert.equal(only(a).state, 'stopped');
  const cursorAtStop = only(a).cursor;
  await appendEvents(chain, s, locks, 40);

  rx.behaviour = () => 200;
  const b = await dispatcher(t, chain, cursorDir, [hook(rx.url, { fromStart: false })]);
  assert.equal(only(b).cursor, cursorAtStop);
  await rx.waitForAll(() => chain.size);
  const accepted = rx.acceptedIndices();
  assert.ok(coversPrefix(accepted, chain.size));
  // Every index accepted exactly once: the aborted batch was never answered, so nothing repeats.
  assert.equal(accepted.length, chain.size);
  await b.stop();
  assert.equal(only(b).behind, 0);
});

void test('a new hook starts at the chain end unless fromStart', { timeout: 60_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 5);
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  const sizeBefore = chain.size;
  const d = await dispatcher(t, chain, await tempDir(t), [hook(rx.url, { fromStart: false })]);
  assert.equal(only(d).cursor, sizeBefore);
  await appendEvents(chain, s, [enrollLock(s, 'lock-b')], 3);
  await rx.waitForRequests('the new entries', () => coversPrefix(rx.acceptedIndices().map((i) => i - sizeBefore), chain.size - sizeBefore));
  assert.ok(rx.acceptedIndices().every((i) => i >= sizeBefore));
});

void test('bad cursor files and secret files are refused with their codes', { timeout: 60_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const dir = await tempDir(t);
  const url = 'http://127.0.0.1:9/hook';
  await writeFile(join(dir, `${hookId(url)}.json`), '{"v":1,"chain":"oti/other/gw","url":"x","next":0}');
  await assert.rejects(new WebhookDispatcher({ chain, hooks: [hook(url)], cursorDir: dir }).start(), (e) => isOtiError(e, 'ERR_STORE_CORRUPT'));
  await writeFile(join(dir, `${hookId(url)}.json`), `{"v":1,"chain":"${chain.origin}","url":"x","next":${chain.size + 1}}`);
  await assert.rejects(new WebhookDispatcher({ chain, hooks: [hook(url)], cursorDir: dir }).start(), (e) => isOtiError(e, 'ERR_STORE_CORRUPT'));
  const short = join(dir, 'short');
  await writeFile(short, 'abc\n', { mode: 0o600 });
  await assert.rejects(new WebhookDispatcher({ chain, hooks: [hook('http://127.0.0.1:9/b', { secret: undefined, secretFile: short })], cursorDir: dir }).start(), (e) => isOtiError(e, 'ERR_CONFIG'));
  assert.throws(() => new WebhookDispatcher({ chain, hooks: [hook(url), hook(url)], cursorDir: dir }), (e) => isOtiError(e, 'ERR_CONFIG'));
  assert.throws(() => new WebhookDispatcher({ chain, hooks: [hook('ftp://127.0.0.1/x')], cursorDir: dir }), (e) => isOtiError(e, 'ERR_CONFIG'));
});

void test('secrets, URL credentials and query tokens never reach the logs or status', { timeout: 120_000 }, async (t) => {
  const s = makeSite();
  const { chain } = await openChain(t, s);
  const dir = await tempDir(t);
  const fileSecret = 'file-secret-ZYXWVUTSRQPONMLK';
  const secretFile = join(dir, 'secret');
  await writeFile(secretFile, `${fileSecret}\n`);
  await chmod(secretFile, 0o644);
  const rx = new Receiver(fileSecret);
  await rx.listen(t);
  const queryToken = 'qtoken-4242424242';
  const password = 'pw-ABCDEFGH';
  const u = new URL(rx.url);
  u.username = 'user';
  u.password = password;
  u.search = `?token=${queryToken}`;
  let log = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      log += chunk.toString('utf8');
      cb();
    },
  });
  const logger = pino({ level: 'trace' }, sink);
  rx.behaviour = (n) => (n < 2 ? 500 : 200);
  // fetch cannot send URL credentials, so such a URL is refused, without echoing the password.
  assert.throws(
    () => new WebhookDispatcher({ chain, hooks: [hook(u.toString())], cursorDir: dir }),
    (e) => isOtiError(e, 'ERR_CONFIG') && !`${e.message}${JSON.stringify(e.details)}`.includes(password),
  );
  const url = `${rx.url}?token=${queryToken}`;
  const d = await dispatcher(t, chain, join(dir, 'cursors'), [hook(url, { secret: undefined, secretFile })], { logger });
  await appendEvents(chain, s, [enrollLock(s, 'lock-a')], 10);
  await rx.waitForAll(() => chain.size);
  const records = log.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(records.some((r) => r['level'] === 40 && r['path'] === secretFile), 'the readable secret file is warned about');
  assert.ok(records.some((r) => r['level'] === 40 && r['error'] === 'HTTP 500'), 'failed attempts are logged');
  const everything = log + JSON.stringify(d.status()) + (await readFile(join(dir, 'cursors', `${hookId(url)}.json`), 'utf8'));
  for (const secret of [fileSecret, SECRET, queryToken, password]) assert.ok(!everything.includes(secret), 'a secret leaked');
});

void test('SIGKILL of a process that appends and delivers loses no committed entry', { timeout: 300_000 }, async (t) => {
  const ROUNDS = Number(process.env['OTI_WEBHOOK_CRASH_ROUNDS'] ?? 6);
  const dir = await tempDir(t, 'oti-webhook-crash-');
  const dbPath = join(dir, 'ledger');
  const keysPath = join(dir, 'keys.json');
  const cursorDir = join(dir, 'cursors');
  const { site, gw, keys } = childSite('crash-site', 3);
  await writeFile(keysPath, JSON.stringify(keys));
  const rx = new Receiver(SECRET);
  await rx.listen(t);
  // Some answers fail, so that kills also land during backoffs.
  rx.behaviour = (n) => (n % 7 === 3 ? 503 : 200);
  const live = new Set<ChildProcess>();
  t.after(() => {
    for (const c of live) c.kill('SIGKILL');
  });

  let acked = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const before = rx.received.length;
    const child = spawn(process.execPath, [CHILD, dbPath, keysPath, cursorDir, rx.url, SECRET], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdout.setEncoding('utf8').on('data', (c: string) => (acked += c.split('\n').filter((l) => l.startsWith('ACK ')).length));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
    // Kill once this child has delivered a few batches, a little later at a random moment.
    await Promise.race([rx.waitForRequests(`round ${round} deliveries`, () => rx.received.length >= before + 3), exited]);
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 150)));
    child.kill('SIGKILL');
    const signal = await exited;
    live.delete(child);
    assert.equal(signal, 'SIGKILL', `the child exited by itself:\n${stderr}`);
  }
  assert.ok(acked > 0);

  // Restart once more, here, and let the dispatcher catch up.
  const store = await LedgerStore.open(dbPath);
  t.after(() => store.close());
  const chain = await Chain.open({ store, trust: site.trust, gatewayId: 'gw-1', key: gw.key });
  t.after(() => chain.close());
  rx.behaviour = () => 200;
  await dispatcher(t, chain, cursorDir, [hook(rx.url, { fromStart: false })]);
  await rx.waitForAll(() => chain.size);
  const accepted = rx.acceptedIndices();
  assert.ok(coversPrefix(accepted, chain.size), 'every committed entry was delivered at least once');
  assert.ok(accepted.every((i) => i < chain.size), 'nothing beyond the committed chain was delivered');
  assert.deepEqual(rx.rejected, []);
  t.diagnostic(`${ROUNDS} kills, ${chain.size} entries, ${accepted.length} deliveries of entries (${accepted.length - chain.size} repeats)`);
});
