/**
 * Configuration refusals of the real gateway process (`node dist/gateway/main.js --config FILE`):
 * each stops start-up with ERR_CONFIG, exit code 2, and a message that names the key, like every
 * other configuration error (docs/CONFIGURATION.md).
 *
 * - A webhook URL with a user name or password (docs/WEBHOOKS.md §Configuration); the password
 *   is not echoed.
 * - api.privacyToken on a non-loopback api.host: the API has no TLS, so the privacy token and
 *   the plaintext it unlocks would cross the network in clear (docs/PRIVACY.md §Roles).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../support/site.js';
import { startGateway, writeGatewayConfig, type TestGatewayConfig } from '../support/gateway-process.js';

const TOKEN = 'reader-token-0123456789abcdef';
const PRIVACY_TOKEN = 'privacy-token-0123456789abcdef';
const PASSWORD = 'hunter2-url-password';

/** Starts a gateway on `c` and returns its exit code and stderr (killed if it is still running after 30 s). */
async function refusal(t: TestContext, c: Partial<TestGatewayConfig>): Promise<{ code: number | string; stderr: string }> {
  const dir = await tempDir(t);
  const config = await writeGatewayConfig(join(dir, 'gateway.yaml'), { dataDir: join(dir, 'data'), broker: { host: '127.0.0.1', port: 0 }, api: { port: 0 }, serialPorts: [], ...c });
  const gw = startGateway(['--config', config]);
  const watchdog = setTimeout(() => gw.proc.kill('SIGKILL'), 30_000);
  t.after(() => {
    clearTimeout(watchdog);
    gw.proc.kill('SIGKILL');
  });
  const code = await gw.exited;
  return { code, stderr: gw.stderr() };
}

void test('a webhook URL with user info is a configuration error (ERR_CONFIG, exit 2), without the password', { timeout: 60_000 }, async (t) => {
  const r = await refusal(t, { more: { webhooks: [{ url: `http://user:${PASSWORD}@127.0.0.1:9/hook`, secret: 'whsec-0123456789abcdef' }] } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /webhooks\[0\]\.url must be an http or https URL without a user name or password.*\[ERR_CONFIG\]/);
  assert.ok(!r.stderr.includes(PASSWORD), 'the password is not echoed');
});

void test('api.privacyToken on a non-loopback api.host is refused (ERR_CONFIG, exit 2): the API has no TLS', { timeout: 60_000 }, async (t) => {
  const r = await refusal(t, { api: { host: '0.0.0.0', port: 0, token: TOKEN, privacyToken: PRIVACY_TOKEN } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /api\.privacyToken must be unset, because api\.host \(0\.0\.0\.0\) is not a loopback address.*\[ERR_CONFIG\]/);
  assert.ok(!r.stderr.includes(PRIVACY_TOKEN), 'the token is not echoed');
});
