/**
 * Webhook state where an operator looks (docs/WEBHOOKS.md §Status): the real gateway process with
 * demo locks (simulated on ptys) delivering to a real HTTP receiver on 127.0.0.1. While the
 * receiver answers 503, GET /status, `oti status` (the real binary) and GET /metrics show, per
 * hook, its cursor, how far behind it is, its last attempt and its last error; once the receiver
 * answers 200 the error clears and the hook catches up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, writeGatewayConfig } from '../support/gateway-process.js';
import { oti } from '../support/oti-cli.js';
import { waitUntil } from '../support/wait.js';
import { hookId, type WebhookStatus } from '../../gateway/notify/webhooks.js';

const SECRET = 'whsec-status-0123456789abcdef';

async function hooksOf(api: string): Promise<WebhookStatus[]> {
  const r = await fetch(`${api}/status`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { webhooks: WebhookStatus[] }).webhooks;
}

void test('a failing webhook shows its cursor, lag, last attempt and last error in /status, oti status and /metrics', { timeout: 180_000 }, async (t) => {
  let answer = 503;
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(answer).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    receiver.closeAllConnections();
    receiver.close();
  });
  const addr = receiver.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const url = `http://127.0.0.1:${addr.port}/hook`;

  const dir = await tempDir(t);
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), {
    dataDir: join(dir, 'data'),
    broker: { host: '127.0.0.1', port: 0 },
    api: { port: 0 },
    serialPorts: [],
    more: { demo: { locks: 1, rate: 20 }, webhooks: [{ url, secret: SECRET, backoffMinMs: 100, backoffMaxMs: 200 }] },
  });
  const gw = startGateway(['--config', config]);
  t.after(() => gw.proc.kill('SIGKILL'));
  const api = String((await gw.waitForLog('the API', (l) => l.msg.startsWith('local API on')))['url']);

  await waitUntil('the hook failing and behind', async () => {
    const [h] = await hooksOf(api);
    return h !== undefined && h.lastError === 'HTTP 503' && h.behind > 0 && h.failed > 0;
  });
  const [h] = await hooksOf(api);
  assert.equal(h!.id, hookId(url));
  assert.equal(h!.url, url);
  assert.ok(Number.isSafeInteger(h!.cursor));
  assert.ok(typeof h!.lastAttemptAt === 'number' && h!.lastAttemptAt > 0, 'the last attempt is shown');
  assert.equal(h!.lastDeliveredAt, undefined, 'nothing delivered yet');

  const cli = await oti(['status', '--api', api, '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  const cliHook = cli.json<{ webhooks: WebhookStatus[] }>().webhooks[0];
  assert.equal(cliHook?.lastError, 'HTTP 503');
  assert.ok(cliHook.behind > 0);
  const text = await oti(['status', '--api', api]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /webhooks\.0\.lastError: HTTP 503/);
  assert.match(text.stdout, /webhooks\.0\.behind: [1-9]/);
  assert.match(text.stdout, /webhooks\.0\.lastAttemptAt: \d+/);

  const metrics = await (await fetch(`${api}/metrics`)).text();
  assert.match(metrics, new RegExp(`^oti_webhook_failing\\{hook="${hookId(url)}"\\} 1$`, 'm'));
  assert.match(metrics, new RegExp(`^oti_webhook_behind_entries\\{hook="${hookId(url)}"\\} [1-9]\\d*$`, 'm'));
  assert.match(metrics, new RegExp(`^oti_webhook_cursor\\{hook="${hookId(url)}"\\} \\d+$`, 'm'));
  assert.match(metrics, new RegExp(`^oti_webhook_last_attempt_timestamp_seconds\\{hook="${hookId(url)}"\\} \\d`, 'm'));

  // The receiver recovers: the error clears and deliveries are recorded.
  answer = 200;
  await waitUntil('the hook delivering again', async () => {
    const [g] = await hooksOf(api);
    return g !== undefined && g.lastError === undefined && g.lastDeliveredAt !== undefined && g.delivered > 0;
  });
  const after = await (await fetch(`${api}/metrics`)).text();
  assert.match(after, new RegExp(`^oti_webhook_failing\\{hook="${hookId(url)}"\\} 0$`, 'm'));
});
