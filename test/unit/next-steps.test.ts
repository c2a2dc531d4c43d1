/**
 * The first start's next steps (gateway/next-steps.ts) as a shell runs them, one after the other:
 * a variable a later command reads is exported by an earlier one, not set for one command only.
 * (test/e2e/first-run.test.ts runs them for real.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextSteps } from '../../gateway/next-steps.js';

void test('the MQTT password the watch line reads is exported by an earlier line, and no line sets it for one command only', () => {
  const steps = nextSteps({ site: 'dev-site-1', apiUrl: 'http://127.0.0.1:8433', brokerHost: '127.0.0.1', brokerPort: 1883, usersFile: '/srv/data/mqtt-users.json', development: true, cwd: '/srv' });
  const commands = steps.filter((l) => !l.startsWith(' '));
  const reads = commands.findIndex((l) => l.includes('"$OTI_MQTT_PASSWORD"'));
  const exports = commands.findIndex((l) => /^export OTI_MQTT_PASSWORD=/.test(l));
  assert.ok(reads > 0, commands.join('\n'));
  assert.ok(exports >= 0 && exports < reads, `exported before it is read:\n${commands.join('\n')}`);
  assert.ok(exports < commands.findIndex((l) => l.includes('oti mqtt user add')), 'before the user is added with it');
  assert.ok(!commands.some((l) => /^OTI_MQTT_PASSWORD=\S* /.test(l)), 'not set for one command only');
});
