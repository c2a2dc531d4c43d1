/**
 * A slowloris attack on the real gateway's local API (issue 13, item 6): many connections from
 * one address, each trickling header bytes and never finishing its request. The connection caps
 * (api.maxConnectionsPerAddress) must leave room for everyone else, /health must keep answering,
 * and the server must close every slow connection once the documented 10 s header limit has passed,
 * and every connection that sends nothing at all after the same time.
 * The attacker uses 127.0.0.2, the health probe 127.0.0.1 (all of 127/8 is loopback on Linux).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/site.js';
import { startGateway } from '../support/gateway-process.js';
import { waitUntil } from '../support/wait.js';

const execFileP = promisify(execFile);
const ATTACK_SOCKETS = 70;
const PER_ADDRESS = 16;
/** docs/API.md §Limits: request headers must arrive within 10 s. */
const HEADER_LIMIT_MS = 10_000;
/** Generous room for a loaded machine on top of the limit (Node.js checks every second). */
const SLACK_MS = 10_000;

interface Slow {
  readonly socket: Socket;
  received: string;
  closed: boolean;
}

/** A connection from `from` that sends nothing at all. */
function silentClient(port: number, from: string): Slow {
  const socket = connect({ host: '127.0.0.1', port, localAddress: from });
  const silent: Slow = { socket, received: '', closed: false };
  socket.on('error', () => undefined);
  socket.on('close', () => (silent.closed = true));
  return silent;
}

/** A connection that sends a request line, then one header byte every 500 ms, forever. */
function slowClient(port: number): Slow {
  const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
  const slow: Slow = { socket, received: '', closed: false };
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (slow.received += d));
  socket.on('error', () => undefined);
  socket.on('close', () => (slow.closed = true));
  socket.on('connect', () => {
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    const trickle = setInterval(() => {
      if (slow.closed) clearInterval(trickle);
      else socket.write('a');
    }, 500);
    socket.once('close', () => clearInterval(trickle));
  });
  return slow;
}

async function curlStatus(url: string): Promise<string> {
  const r = await execFileP('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', url]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? 'failed' }));
  return r.stdout;
}

void test('slowloris on the API: one address gets at most its cap (503 ERR_TOO_MANY_CONNECTIONS beyond), /health answers, slow sockets are closed after the header limit', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'oti-slowloris-');
  const gw = startGateway(['--dataDir', join(dir, 'data'), '--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', '0', '--ble.enabled', 'false']);
  t.after(() => gw.proc.kill('SIGKILL'));
  const url = String((await gw.waitForLog('the API', (l) => typeof l['url'] === 'string' && l.msg.startsWith('local API'))).url);
  const port = Number(new URL(url).port);
  assert.equal(await curlStatus(`${url}/health`), '200', 'healthy before the attack');

  const attack: Slow[] = [];
  t.after(() => attack.forEach((s) => s.socket.destroy()));
  const startedAt = Date.now();
  for (let i = 0; i < ATTACK_SOCKETS; i++) attack.push(slowClient(port));
  // Connections that never send a byte are not requests yet; they must not stay either.
  const silent = [silentClient(port, '127.0.0.3'), silentClient(port, '127.0.0.3')];
  t.after(() => silent.forEach((s) => s.socket.destroy()));
  const refused = (): Slow[] => attack.filter((s) => s.received.startsWith('HTTP/1.1 503'));
  await waitUntil('the connections over the per-address cap are refused', () => refused().length === ATTACK_SOCKETS - PER_ADDRESS, 30_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${refused().length} refused, ${attack.filter((s) => s.closed).length} closed`);
  });
  for (const s of refused()) {
    assert.match(s.received, /"code":"ERR_TOO_MANY_CONNECTIONS"/);
    assert.match(s.received, /api\.maxConnectionsPerAddress/);
  }

  // While the accepted slow connections are held, /health (from another address) answers.
  for (let i = 0; i < 3; i++) assert.equal(await curlStatus(`${url}/health`), '200', `health during the attack (${i})`);
  const held = attack.filter((s) => !s.closed && s.received === '');
  assert.ok(held.length > 0, 'slow connections were still open while /health answered');

  // The server, not the client, closes every slow connection once the header limit has passed.
  await waitUntil('the server closes every slow connection', () => attack.every((s) => s.closed), HEADER_LIMIT_MS + SLACK_MS - (Date.now() - startedAt)).catch((e: Error) => {
    throw new Error(`${e.message}: ${attack.filter((s) => !s.closed).length} of ${ATTACK_SOCKETS} still open ${Date.now() - startedAt} ms after they connected`);
  });
  for (const s of attack.filter((a) => !a.received.startsWith('HTTP/1.1 503'))) assert.match(s.received, /^HTTP\/1\.1 408/, 'a slow connection ends with 408 Request Timeout');
  await waitUntil('the server closes the silent connections', () => silent.every((s) => s.closed), Math.max(1, HEADER_LIMIT_MS + SLACK_MS - (Date.now() - startedAt)));

  const metrics = await execFileP('curl', ['-s', `${url}/metrics`]);
  assert.match(metrics.stdout, new RegExp(`oti_api_connections_refused_total\\{reason="address"\\} ${ATTACK_SOCKETS - PER_ADDRESS}`));
  assert.equal(await curlStatus(`${url}/health`), '200', 'healthy after the attack');
});
