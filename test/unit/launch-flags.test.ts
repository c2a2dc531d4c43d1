/**
 * The node options the gateway and the CLI run with are written where each is launched:
 * package.json's scripts, the systemd unit's wrapper (deploy/bin/oti-gateway), the CLI's first
 * line and the installed `oti` wrapper (deploy/bin/oti). They must not drift apart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { GATEWAY_NODE_FLAGS } from '../support/gateway-process.js';

const root = new URL('../../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');
/** The line of a deploy/bin wrapper that runs `script`, with bin/oti-node (which execs node) as node. */
const wrapperLine = (path: string, script: string): string | undefined =>
  read(path)
    .split('\n')
    .find((l) => !l.startsWith('#') && l.includes(script))
    ?.replace('"$here/oti-node"', 'node');

/** The node options between `node` (or /usr/bin/node) and the script path in a command line. */
function flagsBefore(line: string, script: string): string[] {
  const m = new RegExp(`(?:^|[\\s/])node((?:\\s+--?[\\w-]+(?:=\\S+)?)*)\\s+\\S*${script.replace(/[.]/g, '\\.')}`).exec(line);
  assert.ok(m !== null, `no "node … ${script}" in: ${line}`);
  return m[1]!.trim().split(/\s+/).filter((f) => f !== '');
}

void test('the gateway runs with the same node options from npm start, npm run demo, the systemd unit and the tests', () => {
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
  const expected = [...GATEWAY_NODE_FLAGS];
  assert.deepEqual(flagsBefore(scripts['start']!, 'dist/gateway/main.js'), expected, 'npm start');
  assert.deepEqual(flagsBefore(scripts['demo']!, 'dist/gateway/main.js'), expected, 'npm run demo');
  assert.deepEqual(flagsBefore(scripts['bench:ingest']!, 'dist/bench/ingest.js'), expected, 'npm run bench:ingest');
  const exec = read('deploy/oti-gateway.service')
    .split('\n')
    .find((l) => l.startsWith('ExecStart='));
  assert.equal(exec, 'ExecStart=/usr/lib/oti-gateway/bin/oti-gateway', 'the unit starts the release wrapper');
  const wrapper = wrapperLine('deploy/bin/oti-gateway', 'dist/gateway/main.js');
  assert.ok(wrapper !== undefined);
  assert.deepEqual(flagsBefore(wrapper, 'dist/gateway/main.js'), expected, 'deploy/bin/oti-gateway');
});

void test('oti runs with the same environment and node options from its first line and from the installed wrapper', () => {
  const shebang = read('provisioning/cli.ts').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S((?: [A-Z_]+=\S+)*) node((?:\s+--?[\w-]+(?:=\S+)?)*)$/.exec(shebang);
  assert.ok(m !== null, `unexpected first line: ${shebang}`);
  const env = m[1]!.trim();
  const fromShebang = m[2]!.trim().split(/\s+/);
  assert.ok(fromShebang.includes('--optimize-for-size'));
  assert.equal(env, 'MALLOC_ARENA_MAX=2');
  const wrapper = wrapperLine('deploy/bin/oti', 'dist/provisioning/cli.js');
  assert.ok(wrapper !== undefined, 'deploy/bin/oti runs dist/provisioning/cli.js');
  assert.ok(wrapper.startsWith(`${env} exec node `), `the wrapper sets ${env}: ${wrapper}`);
  assert.deepEqual(flagsBefore(wrapper, 'dist/provisioning/cli.js'), fromShebang);
});
