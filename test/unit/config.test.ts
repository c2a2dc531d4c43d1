/**
 * The gateway configuration (gateway/config/config.ts, docs/CONFIGURATION.md): defaults, each source and
 * their precedence, YAML and JSON files, string conversion from the environment and flags, every
 * kind of wrong value (asserting ERR_CONFIG and details.key, never message text), and that the
 * key table of the documentation is the schema's.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { isOtiError } from '../../ledger/base/errors.js';
import { CONFIG_FILE_MAX_BYTES, CONFIG_KEYS, loadConfig, parseConfig, type GatewayConfig } from '../../gateway/config/config.js';
import { DOC_URL, generatedPart, renderKeyTable } from '../support/make-config-doc.js';
import { tempDir } from '../support/site.js';

const TOKEN = 'a-token-of-enough-length';

/** Runs `fn`, expects ERR_CONFIG naming `key`, and returns the error's details. */
async function configError(fn: () => unknown, key: string, origin?: string): Promise<Record<string, unknown>> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(isOtiError(caught, 'ERR_CONFIG'), `expected ERR_CONFIG for ${key}, got ${String(caught)}`);
  const d = caught.details ?? {};
  assert.equal(d['key'], key);
  if (origin !== undefined) assert.equal(d['origin'], origin);
  assert.ok(d['allowed'] !== undefined && d['allowed'] !== '', 'details say what is allowed');
  return d;
}

const parse = (input: unknown): GatewayConfig => parseConfig(input, 'test');
const load = (argv: readonly string[], env: Record<string, string | undefined>, cwd: string): ReturnType<typeof loadConfig> => loadConfig({ argv, env, cwd });

void test('defaults: every key filled, paths resolved against the working folder, deeply frozen', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  const { config: c, sources } = await load([], {}, cwd);
  assert.deepEqual(sources, ['defaults']);
  assert.equal(c.dataDir, join(cwd, 'data'));
  assert.equal(c.broker.usersFile, join(cwd, 'data', 'mqtt-users.json'));
  assert.equal(c.log.level, 'info');
  assert.deepEqual([c.broker.host, c.broker.port, c.broker.allowAnonymous, c.broker.maxMessageBytes], ['0.0.0.0', 1883, false, 262144]);
  assert.deepEqual(c.broker.rateLimit, { messagesPerSecond: 500, burst: 1000 });
  assert.deepEqual(c.broker.tls, { port: 8883, cert: undefined, key: undefined, ca: undefined });
  assert.deepEqual(c.api, { host: '127.0.0.1', port: 8433, token: undefined, privacyToken: undefined, maxConnections: 64, maxConnectionsPerAddress: 16 });
  assert.deepEqual(c.ingest, { queueLimit: 4096, window: 8, sealDelayMs: 5, maxBlockEntries: 1024 });
  assert.deepEqual(c.serial.ports, []);
  assert.deepEqual(c.ble, { enabled: true, maxConnections: 4, scanWatchdogMs: 30000, adapter: undefined });
  assert.deepEqual(c.notifications, { mqtt: { enabled: true }, statusRetentionS: 86400, statusRetainMax: 1000, homeAssistant: { enabled: false, prefix: 'homeassistant' }, externalBroker: { url: undefined, mode: 'beside', username: undefined, passwordFile: undefined, clientId: undefined, ca: undefined, cert: undefined, key: undefined, maxPending: 1000 } });
  assert.deepEqual(c.webhooks, []);
  assert.deepEqual(c.discovery, { enabled: true, backend: 'js', staticPeers: [] });
  assert.equal(c.sync.quorum, undefined);
  assert.deepEqual(c.demo, { locks: 0, rate: 2 });
  for (const o of [c, c.broker, c.broker.tls, c.serial.ports, c.discovery]) assert.ok(Object.isFrozen(o));
  assert.throws(() => {
    (c.broker as { port: number }).port = 1;
  }, TypeError);
});

void test('precedence: defaults < file < environment < flags, key by key; sources in order', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  await mkdir(join(cwd, 'etc'));
  const file = join(cwd, 'etc', 'gw.yaml');
  await writeFile(file, 'dataDir: state\nlog:\n  level: warn\nbroker:\n  port: 2000\n  host: 10.0.0.1\n');
  const fileOnly = await load(['--config', file], {}, cwd);
  assert.equal(fileOnly.config.broker.port, 2000);
  assert.equal(fileOnly.config.dataDir, join(cwd, 'etc', 'state'), 'a file path is relative to the file');
  assert.equal(fileOnly.config.broker.usersFile, join(cwd, 'etc', 'state', 'mqtt-users.json'), 'the users file follows dataDir');
  assert.deepEqual(fileOnly.sources, ['defaults', file]);

  const env = { OTI_BROKER_PORT: '3000', OTI_DATA_DIR: 'envdata' };
  const withEnv = await load(['--config', file], env, cwd);
  assert.equal(withEnv.config.broker.port, 3000);
  assert.equal(withEnv.config.dataDir, join(cwd, 'envdata'), 'an environment path is relative to the working folder');
  assert.equal(withEnv.config.log.level, 'warn', 'keys not in the environment keep the file value');
  assert.equal(withEnv.config.broker.host, '10.0.0.1');

  const withFlags = await load(['--config', file, '--broker.port=4000', '--log.level', 'error'], env, cwd);
  assert.equal(withFlags.config.broker.port, 4000);
  assert.equal(withFlags.config.log.level, 'error');
  assert.equal(withFlags.config.dataDir, join(cwd, 'envdata'));
  assert.deepEqual(withFlags.sources, ['defaults', file, 'OTI_BROKER_PORT', 'OTI_DATA_DIR', '--broker.port', '--log.level']);
});

void test('the file is named by OTI_CONFIG or --config (the flag wins); JSON and YAML read alike', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  await writeFile(join(cwd, 'a.json'), JSON.stringify({ broker: { port: 1111 }, serial: { ports: [{ path: '/dev/ttyUSB0', baudRate: 9600 }] } }));
  await writeFile(join(cwd, 'b.yml'), 'broker:\n  port: 2222\nserial:\n  ports:\n    - path: /dev/ttyUSB0\n      baudRate: 9600\n');
  const a = await load([], { OTI_CONFIG: 'a.json' }, cwd);
  const b = await load(['--config=b.yml'], { OTI_CONFIG: 'a.json' }, cwd);
  assert.equal(a.config.broker.port, 1111);
  assert.equal(b.config.broker.port, 2222);
  assert.deepEqual(a.config.serial.ports, b.config.serial.ports);
  assert.deepEqual(a.config.serial.ports[0], { path: '/dev/ttyUSB0', baudRate: 9600, maxFrameBytes: 4352, reconnectMinMs: 250, reconnectMaxMs: 10000 });
  await writeFile(join(cwd, 'empty.yaml'), '');
  assert.equal((await load(['--config', 'empty.yaml'], {}, cwd)).config.broker.port, 1883, 'an empty YAML file is all defaults');
});

void test('file errors: unknown extension, missing, too large, not YAML/JSON, duplicate keys, not a mapping', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  await writeFile(join(cwd, 'gw.toml'), 'x = 1');
  await configError(() => load(['--config', 'gw.toml'], {}, cwd), 'config', '--config');
  await configError(() => load([], { OTI_CONFIG: 'missing.yaml' }, cwd), 'config', 'OTI_CONFIG');
  await writeFile(join(cwd, 'big.yaml'), `# ${'x'.repeat(CONFIG_FILE_MAX_BYTES)}\n`);
  await configError(() => load(['--config', 'big.yaml'], {}, cwd), 'config');
  await writeFile(join(cwd, 'bad.json'), '{"broker": ');
  await configError(() => load(['--config', 'bad.json'], {}, cwd), '', join(cwd, 'bad.json'));
  await writeFile(join(cwd, 'bad.yaml'), 'broker: [1\n');
  await configError(() => load(['--config', 'bad.yaml'], {}, cwd), '');
  await writeFile(join(cwd, 'dup.yaml'), 'broker:\n  port: 1\n  port: 2\n');
  await configError(() => load(['--config', 'dup.yaml'], {}, cwd), '');
  await writeFile(join(cwd, 'list.yaml'), '- 1\n- 2\n');
  await configError(() => load(['--config', 'list.yaml'], {}, cwd), '', join(cwd, 'list.yaml'));
  await writeFile(join(cwd, 'typo.yaml'), 'broker:\n  prot: 1884\n');
  const d = await configError(() => load(['--config', 'typo.yaml'], {}, cwd), 'broker.prot', join(cwd, 'typo.yaml'));
  assert.equal(d['suggestion'], 'port');
});

void test('environment: strings converted per type; unrelated OTI_ variables ignored, empty ones unset', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  const { config: c } = await load(
    [],
    {
      OTI_BLE_ENABLED: '0',
      OTI_BROKER_ALLOW_ANONYMOUS: 'true',
      OTI_DEMO_RATE: '0.5',
      OTI_API_TOKEN: TOKEN,
      OTI_API_HOST: '0.0.0.0',
      OTI_BLE_ADAPTER: '1',
      OTI_SYNC_QUORUM: '2',
      OTI_DISCOVERY_BACKEND: 'avahi',
      OTI_SERIAL_PORTS: '/dev/ttyUSB0:57600,/dev/ttyS1',
      OTI_CRASH_ROUNDS: '3',
      OTI_KEY_PASSPHRASE: 'whatever',
      OTI_LOG_LEVEL: '',
      PATH: '/bin',
    },
    cwd,
  );
  assert.equal(c.ble.enabled, false);
  assert.equal(c.broker.allowAnonymous, true);
  assert.equal(c.demo.rate, 0.5);
  assert.equal(c.api.token, TOKEN);
  assert.equal(c.ble.adapter, 1);
  assert.equal(c.sync.quorum, 2);
  assert.equal(c.discovery.backend, 'avahi');
  assert.equal(c.log.level, 'info');
  assert.deepEqual(
    c.serial.ports.map((p) => [p.path, p.baudRate]),
    [
      ['/dev/ttyUSB0', 57600],
      ['/dev/ttyS1', 115200],
    ],
  );
});

void test('environment errors name the variable as origin', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  await configError(() => load([], { OTI_BROKER_PORT: 'abc' }, cwd), 'broker.port', 'OTI_BROKER_PORT');
  await configError(() => load([], { OTI_BROKER_PORT: '1.5' }, cwd), 'broker.port', 'OTI_BROKER_PORT');
  await configError(() => load([], { OTI_BLE_ENABLED: 'yes' }, cwd), 'ble.enabled', 'OTI_BLE_ENABLED');
  await configError(() => load([], { OTI_DEMO_RATE: '0.001' }, cwd), 'demo.rate', 'OTI_DEMO_RATE');
  await configError(() => load([], { OTI_SERIAL_PORTS: '/dev/ttyUSB0:1234' }, cwd), 'serial.ports[0].baudRate', 'OTI_SERIAL_PORTS');
  await configError(() => load([], { OTI_WEBHOOKS: 'http://x' }, cwd), 'webhooks', 'OTI_WEBHOOKS');
  const typo = await configError(() => load([], { OTI_BROKER_PROT: '1884' }, cwd), 'OTI_BROKER_PROT', 'OTI_BROKER_PROT');
  assert.equal(typo['suggestion'], 'OTI_BROKER_PORT');
  assert.ok((typo['allowed'] as string[]).includes('OTI_BROKER_HOST'));
  await configError(() => load([], { OTI_BROKER_XYZZY: '1' }, cwd), 'OTI_BROKER_XYZZY');
  const near = await configError(() => load([], { OTI_DATA_DIRR: '/x' }, cwd), 'OTI_DATA_DIRR');
  assert.equal(near['suggestion'], 'OTI_DATA_DIR');
});

void test('flags: --key value, --key=value, bare booleans, --demo [N]', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  const { config: c, sources } = await load(['--ble.enabled', '--broker.allowAnonymous', 'false', '--demo', '--dataDir', 'x'], { OTI_BLE_ENABLED: 'false', OTI_BROKER_ALLOW_ANONYMOUS: '1' }, cwd);
  assert.equal(c.ble.enabled, true);
  assert.equal(c.broker.allowAnonymous, false);
  assert.equal(c.demo.locks, 3);
  assert.equal(c.dataDir, join(cwd, 'x'));
  assert.ok(sources.includes('--demo'));
  assert.equal((await load(['--demo', '7'], {}, cwd)).config.demo.locks, 7);
  assert.equal((await load(['--demo=12', '--demo.rate', '100'], {}, cwd)).config.demo.locks, 12);
  assert.equal((await load(['--serial.ports', '/dev/ttyAMA0'], {}, cwd)).config.serial.ports[0]?.path, '/dev/ttyAMA0');
});

void test('flag errors: unknown, positional, missing value, repeated, a section, out of range', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  const help = await configError(() => load(['--help'], {}, cwd), 'help', '--help');
  assert.ok((help['allowed'] as string[]).includes('config'));
  await configError(() => load(['start'], {}, cwd), 'start');
  await configError(() => load(['--broker.port'], {}, cwd), 'broker.port', '--broker.port');
  await configError(() => load(['--broker.port', '--demo'], {}, cwd), 'broker.port');
  await configError(() => load(['--broker.port', '1', '--broker.port=2'], {}, cwd), 'broker.port');
  await configError(() => load(['--broker', '1'], {}, cwd), 'broker');
  await configError(() => load(['--broker.port.x', '1'], {}, cwd), 'broker.port.x');
  await configError(() => load(['--broker.port', '65536'], {}, cwd), 'broker.port', '--broker.port');
  await configError(() => load(['--demo', '1001'], {}, cwd), 'demo.locks', '--demo');
  await configError(() => load(['--config'], {}, cwd), 'config');
  const d = await configError(() => load(['--broker.prot=1'], {}, cwd), 'broker.prot', '--broker.prot');
  assert.equal(d['suggestion'], 'port');
});

void test('wrong values: type, range, non-integer, enum, format; each names its key', async () => {
  const cases: [unknown, string][] = [
    [{ broker: { port: '1883' } }, 'broker.port'],
    [{ broker: { port: 70000 } }, 'broker.port'],
    [{ broker: { port: 1883.5 } }, 'broker.port'],
    [{ broker: { port: -1 } }, 'broker.port'],
    [{ broker: { maxMessageBytes: 1023 } }, 'broker.maxMessageBytes'],
    [{ broker: { host: 'not a host' } }, 'broker.host'],
    [{ broker: { allowAnonymous: 'true' } }, 'broker.allowAnonymous'],
    [{ broker: { rateLimit: { burst: 0 } } }, 'broker.rateLimit.burst'],
    [{ broker: 5 }, 'broker'],
    [{ broker: null }, 'broker'],
    [{ log: { level: 'verbose' } }, 'log.level'],
    [{ ingest: { window: 65 } }, 'ingest.window'],
    [{ ingest: { sealDelayMs: 1001 } }, 'ingest.sealDelayMs'],
    [{ ingest: { maxBlockEntries: 0 } }, 'ingest.maxBlockEntries'],
    [{ ble: { maxConnections: 17 } }, 'ble.maxConnections'],
    [{ ble: { scanWatchdogMs: 999 } }, 'ble.scanWatchdogMs'],
    [{ ble: { adapter: 16 } }, 'ble.adapter'],
    [{ discovery: { backend: 'bonjour' } }, 'discovery.backend'],
    [{ discovery: { staticPeers: [{ host: 'gw-2', port: 0 }] } }, 'discovery.staticPeers[0].port'],
    [{ discovery: { staticPeers: [{ port: 1883 }] } }, 'discovery.staticPeers[0].host'],
    [{ sync: { quorum: 0 } }, 'sync.quorum'],
    [{ demo: { rate: 10001 } }, 'demo.rate'],
    [{ demo: { rate: Number.NaN } }, 'demo.rate'],
    [{ dataDir: '' }, 'dataDir'],
    [{ dataDir: 'a\0b' }, 'dataDir'],
    [{ notifications: { homeAssistant: { prefix: 'a\nb' } } }, 'notifications.homeAssistant.prefix'],
    [{ serial: { ports: {} } }, 'serial.ports'],
    [{ serial: { ports: Array.from({ length: 65 }, (_, i) => ({ path: `/dev/tty${i}` })) } }, 'serial.ports'],
    [{ serial: { ports: [{ baudRate: 9600 }] } }, 'serial.ports[0].path'],
    [{ serial: { ports: [{ path: '/dev/a' }, { path: '/dev/b', baudRate: 10000 }] } }, 'serial.ports[1].baudRate'],
    [{ serial: { ports: [{ path: '/dev/a', maxFrameBytes: 63 }] } }, 'serial.ports[0].maxFrameBytes'],
    [{ serial: { ports: [{ path: '/dev/a', reconnectMinMs: 5000, reconnectMaxMs: 1000 }] } }, 'serial.ports[0].reconnectMaxMs'],
    [{ serial: { ports: ['/dev/a'] } }, 'serial.ports[0]'],
    [{ webhooks: [{ url: 'ftp://x.example', secret: TOKEN }] }, 'webhooks[0].url'],
    [{ webhooks: [{ url: 'not a url', secret: TOKEN }] }, 'webhooks[0].url'],
    [{ webhooks: [{ secret: TOKEN }] }, 'webhooks[0].url'],
    [{ webhooks: [{ url: 'https://x.example', secret: 'short' }] }, 'webhooks[0].secret'],
    [{ webhooks: [{ url: 'https://x.example' }] }, 'webhooks[0].secret'],
    [{ webhooks: [{ url: 'https://x.example', secret: TOKEN, secretFile: 's' }] }, 'webhooks[0].secret'],
    [{ webhooks: [{ url: 'https://x.example', secret: TOKEN, backoffMinMs: 5000, backoffMaxMs: 1000 }] }, 'webhooks[0].backoffMaxMs'],
    [{ webhooks: [{ url: 'https://x.example', secret: TOKEN, maxAttempts: -1 }] }, 'webhooks[0].maxAttempts'],
  ];
  for (const [input, key] of cases) await configError(() => parse(input), key, 'test');
});

void test('environment: the oti CLI\'s own variables (docs/CLI.md) are not taken for keys, even under a section\'s prefix', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  const cli = { OTI_API_URL: 'http://127.0.0.1:22433', OTI_PASSPHRASE: 'p', OTI_BACKUP_PASSPHRASE: 'p', OTI_PRIVACY_PASSPHRASE: 'p', OTI_PRIVACY_TOKEN: 't', OTI_MQTT_PASSWORD: 'p', OTI_ARCHIVE_URL: 'http://a', OTI_ARCHIVE_TOKEN: 't' };
  const { config: c } = await load([], { ...cli, OTI_API_PORT: '22433' }, cwd);
  assert.equal(c.api.port, 22433);
  // A mistyped key under the same prefix is still a mistake.
  await assert.rejects(load([], { OTI_API_URI: 'http://127.0.0.1:22433' }, cwd), (e) => isOtiError(e, 'ERR_CONFIG'));
});

void test('unknown keys at every level, with the allowed keys and a suggestion for near misses', async () => {
  const top = await configError(() => parse({ brokr: {} }), 'brokr');
  assert.equal(top['suggestion'], 'broker');
  assert.ok((top['allowed'] as string[]).includes('webhooks'));
  const nested = await configError(() => parse({ broker: { rateLimit: { brust: 1 } } }), 'broker.rateLimit.brust');
  assert.equal(nested['suggestion'], 'burst');
  assert.deepEqual(nested['allowed'], ['messagesPerSecond', 'burst']);
  const item = await configError(() => parse({ webhooks: [{ url: 'https://x.example', secert: TOKEN }] }), 'webhooks[0].secert');
  assert.equal(item['suggestion'], 'secret');
  const far = await configError(() => parse({ completelyDifferent: 1 }), 'completelyDifferent');
  assert.equal(far['suggestion'], undefined);
  await configError(() => parse({ broker: { port: 1883, AllowAnonymous: true } }), 'broker.AllowAnonymous');
  await configError(() => parse(JSON.parse('{"__proto__": {"port": 1}}')), '__proto__');
});

void test('secrets are never echoed in errors', async () => {
  const secret = 'not-long-enough';
  const d = await configError(() => parse({ api: { token: secret } }), 'api.token');
  assert.ok(!JSON.stringify(d).includes(secret));
  let message = '';
  try {
    parse({ webhooks: [{ url: 'https://x.example', secret: `${TOKEN}\n` }] });
  } catch (e) {
    message = (e as Error).message;
  }
  assert.ok(message !== '' && !message.includes(TOKEN));
});

void test('cross-key rules: api.token for a non-loopback api.host, TLS cert and key together', async () => {
  for (const host of ['0.0.0.0', '192.168.1.10', 'gateway.local', '::']) {
    await configError(() => parse({ api: { host } }), 'api.token');
    assert.equal(parse({ api: { host, token: TOKEN } }).api.token, TOKEN);
  }
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(parse({ api: { host } }).api.host, host);
  const cwd = process.cwd();
  await configError(() => parse({ broker: { tls: { cert: 'c.pem' } } }), 'broker.tls.key');
  await configError(() => parse({ broker: { tls: { key: 'k.pem' } } }), 'broker.tls.cert');
  await configError(() => parse({ broker: { tls: { ca: 'ca.pem' } } }), 'broker.tls.cert');
  const tls = parse({ broker: { tls: { cert: 'c.pem', key: '/etc/k.pem', ca: 'ca.pem' } } }).broker.tls;
  assert.deepEqual(tls, { port: 8883, cert: join(cwd, 'c.pem'), key: '/etc/k.pem', ca: join(cwd, 'ca.pem') });
  const e = await configError(() => loadConfig({ argv: ['--broker.tls.cert', 'c.pem'], env: {}, cwd }), 'broker.tls.key');
  assert.equal(e['origin'], '--broker.tls.cert', 'the origin is where the half-set pair came from');
});

void test('webhook secretFile resolves against the file folder; items get their defaults', async (t) => {
  const cwd = await tempDir(t, 'oti-config-');
  await mkdir(join(cwd, 'conf'));
  await writeFile(join(cwd, 'conf', 'gw.json'), JSON.stringify({ webhooks: [{ url: 'https://x.example/hook', secretFile: 'hook.secret' }], discovery: { staticPeers: [{ host: '10.0.0.2' }] } }));
  const { config: c } = await load(['--config', join(cwd, 'conf', 'gw.json')], {}, cwd);
  assert.deepEqual(c.webhooks[0], { url: 'https://x.example/hook', secret: undefined, secretFile: join(cwd, 'conf', 'hook.secret'), maxAttempts: 0, backoffMinMs: 1000, backoffMaxMs: 300000, timeoutMs: 10000 });
  assert.deepEqual(c.discovery.staticPeers, [{ host: '10.0.0.2', port: 1883 }]);
  assert.ok(Object.isFrozen(c.webhooks[0]));
});

void test('CONFIG_KEYS: environment names follow OTI_<UPPER_SNAKE>; lists are file-only except serial.ports', () => {
  const env = new Map(CONFIG_KEYS.map((k) => [k.key, k.env]));
  assert.equal(env.get('dataDir'), 'OTI_DATA_DIR');
  assert.equal(env.get('broker.port'), 'OTI_BROKER_PORT');
  assert.equal(env.get('api.token'), 'OTI_API_TOKEN');
  assert.equal(env.get('log.level'), 'OTI_LOG_LEVEL');
  assert.equal(env.get('ble.enabled'), 'OTI_BLE_ENABLED');
  assert.equal(env.get('broker.rateLimit.messagesPerSecond'), 'OTI_BROKER_RATE_LIMIT_MESSAGES_PER_SECOND');
  assert.equal(env.get('serial.ports'), 'OTI_SERIAL_PORTS');
  assert.equal(env.get('webhooks'), '');
  assert.equal(env.get('webhooks[].url'), '');
  assert.equal(new Set(CONFIG_KEYS.map((k) => k.key)).size, CONFIG_KEYS.length);
  for (const k of CONFIG_KEYS) assert.ok(k.doc.length > 0 && k.type.length > 0, `${k.key} is documented`);
});

void test('docs/CONFIGURATION.md lists exactly the schema keys (run make-config-doc --write when this fails)', async () => {
  const doc = await readFile(DOC_URL, 'utf8');
  assert.equal(generatedPart(doc), renderKeyTable());
  const keys = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(keys, CONFIG_KEYS.map((k) => k.key));
});

void test('the example file in docs/CONFIGURATION.md is a valid configuration', async () => {
  const doc = await readFile(DOC_URL, 'utf8');
  const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(yaml !== undefined);
  const c = parseConfig(parseYaml(yaml), 'docs example');
  assert.equal(c.api.host, '0.0.0.0');
  assert.equal(c.serial.ports[0]?.baudRate, 57600);
});
