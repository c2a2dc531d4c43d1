/**
 * `npm run test:unit` is the fast loop: everything in test/unit/ runs in its own process, with no
 * child processes and no external programs (socat, mosquitto, openssl, ip, the oti binary, a
 * gateway process). Tests that need them live in test/integration/ or test/e2e/. This reads the
 * sources of test/unit/ and refuses the imports that start such things.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';

const UNIT = new URL('../../../test/unit/', import.meta.url);

/** What a unit test may not import, and why. */
const REFUSED: [RegExp, string][] = [
  [/^import [^;]*from 'node:child_process'/m, 'starts child processes'],
  [/^import [^;]*from '\.\.\/\.\.\/drivers\/pty\.js'/m, 'runs socat for pty pairs'],
  [/^import [^;]*from '\.\.\/support\/(netns|mosquitto|mosquitto-tls|mariadb|serial-rig|hci-controller|tmpfs|oti-cli|netns-peer|webhook-child|crash-child|ble-lock-child)\.js'/m, 'a fixture that starts an external program or a process'],
  [/^import \{[^}]*\b(startGateway|followGateway)\b[^}]*\} from '\.\.\/support\/gateway-process\.js'/m, 'starts a gateway process'],
  [/^import \{[^}]*\bhciRig\b[^}]*\} from '\.\.\/support\/ble-hci-rig\.js'/m, 'runs socat and a bleno child process'],
];

void test('test/unit/ holds unit-level tests only: no child processes, no external programs', () => {
  const files = readdirSync(UNIT).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length > 10, `read ${files.length} files in ${UNIT.pathname}`);
  const found: string[] = [];
  for (const f of files) {
    const src = readFileSync(new URL(f, UNIT), 'utf8');
    for (const [re, why] of REFUSED) if (re.test(src)) found.push(`test/unit/${f}: ${why} (${re.source}); move it to test/integration/`);
  }
  assert.deepEqual(found, []);
});
