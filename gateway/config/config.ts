/**
 * Loads and validates the gateway configuration (docs/CONFIGURATION.md) against the one schema
 * in gateway/config/schema.ts.
 *
 * Sources, in increasing precedence: defaults < file < environment < flags. The file is named by
 * `--config PATH` or `OTI_CONFIG` (YAML for .yaml/.yml, JSON for .json); without one, defaults
 * apply. Environment variables are `OTI_` + the dotted key in upper snake case; flags are
 * `--dotted.key value` or `--dotted.key=value`, plus `--demo [N]`. Every source is validated on
 * its own, so an error names the key, what is allowed, what was given and where it came from:
 * `OtiError('ERR_CONFIG', message, { key, allowed, got, origin, suggestion? })`. Secrets are
 * never echoed. Paths from the file are resolved against the file's folder; other relative
 * paths against the working folder. The result is deeply frozen.
 */
import { open } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { OtiError } from '../../ledger/base/errors.js';
import { DEMO_FLAG_LOCKS, SCHEMA, describe, envName, type Field, type ItemSchema, type LeafField, type ListField, type ValueOf } from './schema.js';

export { CONFIG_KEYS, type ConfigKey } from './schema.js';

/** The validated configuration: every default filled, deeply read-only. */
export interface GatewayConfig extends ValueOf<typeof SCHEMA> {}
export type SerialPortConfig = GatewayConfig['serial']['ports'][number];
export type WebhookConfig = GatewayConfig['webhooks'][number];
export type StaticPeerConfig = GatewayConfig['discovery']['staticPeers'][number];

/** Largest configuration file read. */
export const CONFIG_FILE_MAX_BYTES = 1 << 20;
/**
 * OTI_ variables that are not configuration keys: the gateway's own, and those of the `oti` CLI
 * (docs/CLI.md), which loads the gateway configuration for some commands (`oti mqtt user`,
 * `oti doctor`) and must not have its own variables taken for mistyped keys (OTI_API_URL sits
 * under the api section's prefix). OTI_API_TOKEN is both the CLI's and the key api.token.
 */
export const NON_CONFIG_ENV = [
  'OTI_CONFIG', 'OTI_KEY_PASSPHRASE', 'OTI_BUNDLE_PASSPHRASE',
  'OTI_API_URL', 'OTI_PASSPHRASE', 'OTI_BACKUP_PASSPHRASE', 'OTI_PRIVACY_PASSPHRASE', 'OTI_PRIVACY_TOKEN', 'OTI_MQTT_PASSWORD', 'OTI_ARCHIVE_URL', 'OTI_ARCHIVE_TOKEN',
] as const;

/** Where values come from: `origin` names the source in errors; relative paths resolve against `base`. */
interface Source {
  readonly origin: string;
  readonly base: string;
}
interface Setting {
  readonly value: unknown;
  readonly origin: string;
}
/** Dotted key → validated value, for one source. */
type Layer = Map<string, Setting>;

// ---- Errors ----

const SHOW_MAX = 80;

const URL_USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i;

function shown(value: unknown, secret: boolean): unknown {
  if (secret && typeof value === 'string') return `(hidden, ${value.length} characters)`;
  // A URL's user info may hold a password: never echo it.
  if (typeof value === 'string' && URL_USER_INFO.test(value)) value = value.replace(URL_USER_INFO, '$1(user info hidden)@');
  if (typeof value === 'string' && value.length > SHOW_MAX) return `${value.slice(0, SHOW_MAX)}…`;
  if (value !== null && typeof value === 'object') return Array.isArray(value) ? '(a list)' : '(a mapping)';
  return value;
}

function wrong(key: string, allowed: string, got: unknown, origin: string, secret = false): OtiError {
  const g = shown(got, secret);
  const label = key === '' ? 'the configuration' : key;
  return new OtiError('ERR_CONFIG', `${origin}: ${label} must be ${allowed}; got ${g === undefined ? 'nothing' : JSON.stringify(g)}`, { key, allowed, got: g, origin });
}

/** Levenshtein distance, bounded by the short strings it is used on (key names). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The nearest candidate within two edits (ignoring case), if any. */
function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = distance(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function unknownKey(key: string, name: string, allowed: readonly string[], origin: string): OtiError {
  const suggestion = nearest(name, allowed);
  const hint = suggestion !== undefined ? ` (did you mean ${suggestion}?)` : '';
  return new OtiError('ERR_CONFIG', `${origin}: unknown key ${key}${hint}; allowed here: ${allowed.join(', ')}`, {
    key,
    allowed: [...allowed],
    got: name,
    origin,
    ...(suggestion !== undefined ? { suggestion } : {}),
  });
}

// ---- Leaves ----

const CONTROL = /[\u0000-\u001f\u007f]/;
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;
const INT_TEXT = /^[+-]?\d{1,16}$/;
const NUMBER_TEXT = /^[+-]?(?:\d{1,16}(?:\.\d{0,16})?|\.\d{1,16})(?:e[+-]?\d{1,3})?$/i;

function isUrl(s: string): boolean {
  try {
    const u = new URL(s);
    // No user info: fetch refuses to send it; a token belongs in the query, or better the signature.
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

/** Checks a typed value (from the file, or converted from a string) and returns it, paths resolved. */
function checkLeaf(f: LeafField, v: unknown, key: string, src: Source): unknown {
  const bad = (): OtiError => wrong(key, describe(f), v, src.origin, f.secret === true);
  switch (f.kind) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < f.min || v > f.max || (f.values !== undefined && !f.values.includes(v))) throw bad();
      return v;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < f.min || v > f.max) throw bad();
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw bad();
      return v;
    case 'enum':
      if (typeof v !== 'string' || !f.values.includes(v)) throw bad();
      return v;
    case 'string':
      if (typeof v !== 'string' || v.length < f.minLength || v.length > f.maxLength || CONTROL.test(v)) throw bad();
      if (f.format === 'host' && isIP(v) === 0 && !HOST_NAME.test(v)) throw bad();
      if (f.format === 'url' && !isUrl(v)) throw bad();
      return v;
    case 'path':
      if (typeof v !== 'string' || v.length === 0 || v.length > 4096 || v.includes('\0')) throw bad();
      return resolve(src.base, v);
  }
}

/** Converts an environment or flag string to the leaf's type, then checks it. */
function leafFromString(f: LeafField, s: string, key: string, src: Source): unknown {
  let v: unknown = s;
  if (f.kind === 'int' && INT_TEXT.test(s)) v = Number(s);
  else if (f.kind === 'number' && NUMBER_TEXT.test(s)) v = Number(s);
  else if (f.kind === 'bool') v = s === 'true' || s === '1' ? true : s === 'false' || s === '0' ? false : s;
  return checkLeaf(f, v, key, src);
}

// ---- Lists and their items ----

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates one list item; `fromStrings` when its values are strings from the environment or a flag. */
function checkItem(item: ItemSchema, raw: unknown, key: string, src: Source, fromStrings: boolean): Readonly<Record<string, unknown>> {
  const names = Object.keys(item.fields);
  if (!isMapping(raw)) throw wrong(key, `a mapping with keys ${names.join(', ')}`, raw, src.origin);
  for (const k of Object.keys(raw)) if (!Object.hasOwn(item.fields, k)) throw unknownKey(`${key}.${k}`, k, names, src.origin);
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(item.fields)) {
    const v = raw[k];
    if (v !== undefined) out[k] = fromStrings && typeof v === 'string' ? leafFromString(f, v, `${key}.${k}`, src) : checkLeaf(f, v, `${key}.${k}`, src);
    else if (f.required === true) throw wrong(`${key}.${k}`, `${describe(f)} (required)`, undefined, src.origin);
    else out[k] = f.kind === 'path' && f.default !== undefined ? resolve(src.base, f.default) : f.default;
  }
  for (const [a, b] of item.exactlyOne ?? []) {
    if ((out[a] === undefined) === (out[b] === undefined)) throw wrong(`${key}.${a}`, `given, or else ${b} given, but not both`, shown(raw[a], true), src.origin);
  }
  for (const [lo, hi] of item.ordered ?? []) {
    if ((out[lo] as number) > (out[hi] as number)) throw wrong(`${key}.${hi}`, `at least ${key}.${lo} (${String(out[lo])})`, out[hi], src.origin);
  }
  return Object.freeze(out);
}

function checkList(f: ListField, v: unknown, key: string, src: Source): readonly unknown[] {
  if (!Array.isArray(v) || v.length > f.maxItems) throw wrong(key, `a list of at most ${f.maxItems} ${f.item.name} items`, v, src.origin);
  return Object.freeze(v.map((raw, i) => checkItem(f.item, raw, `${key}[${i}]`, src, false)));
}

// ---- Sources ----

/** Validates a parsed file (or any object) into a layer. */
function fileLayer(input: unknown, src: Source): Layer {
  const layer: Layer = new Map();
  const walk = (fields: Readonly<Record<string, Field>>, obj: unknown, prefix: string): void => {
    const names = Object.keys(fields);
    if (!isMapping(obj)) throw wrong(prefix.slice(0, -1), `a mapping with keys ${names.join(', ')}`, obj, src.origin);
    for (const [name, v] of Object.entries(obj)) {
      const key = prefix + name;
      const f = Object.hasOwn(fields, name) ? fields[name] : undefined;
      if (f === undefined) throw unknownKey(key, name, names, src.origin);
      if (f.kind === 'section') walk(f.fields, v, `${key}.`);
      else layer.set(key, { value: f.kind === 'list' ? checkList(f, v, key, src) : checkLeaf(f, v, key, src), origin: src.origin });
    }
  };
  walk(SCHEMA.fields, input, '');
  return layer;
}

/**
 * Finds the field of a dotted key given on the command line or in the environment; `extra`
 * names accepted at the top level besides the schema's (for flags: config).
 */
function lookup(key: string, origin: string, extra: readonly string[] = []): Exclude<Field, { kind: 'section' }> {
  let fields: Readonly<Record<string, Field>> = SCHEMA.fields;
  let f: Field | undefined;
  let at = '';
  for (const name of key.split('.')) {
    if (f !== undefined && f.kind !== 'section') throw unknownKey(`${at}.${name}`, name, [], origin);
    f = Object.hasOwn(fields, name) ? fields[name] : undefined;
    at = at === '' ? name : `${at}.${name}`;
    if (f === undefined) throw unknownKey(at, name, [...Object.keys(fields), ...(fields === SCHEMA.fields ? extra : [])], origin);
    if (f.kind === 'section') fields = f.fields;
  }
  if (f === undefined) throw unknownKey(key, key, Object.keys(SCHEMA.fields), origin);
  if (f.kind === 'section') throw wrong(key, `set key by key (${Object.keys(f.fields).map((k) => `${key}.${k}`).join(', ')})`, undefined, origin);
  return f;
}

/** Sets one key from a string (environment or flag). */
function setFromString(layer: Layer, key: string, s: string, src: Source): void {
  const f = lookup(key, src.origin);
  let value: unknown;
  if (f.kind === 'list') {
    if (f.stringForm === undefined) throw wrong(key, 'set in the configuration file (a list has no string form)', s, src.origin);
    const items = s.length <= 65536 ? f.stringForm.split(s) : undefined;
    if (items === undefined || items.length > f.maxItems) throw wrong(key, `"${f.stringForm.syntax}"`, s, src.origin);
    value = Object.freeze(items.map((raw, i) => checkItem(f.item, raw, `${key}[${i}]`, src, true)));
  } else {
    value = leafFromString(f, s, key, src);
  }
  layer.set(key, { value, origin: src.origin });
}

/** Every key that has an environment variable (leaves and lists), by variable name. */
const ENV_KEYS: ReadonlyMap<string, string> = (() => {
  const m = new Map<string, string>();
  const walk = (fields: Readonly<Record<string, Field>>, prefix: string): void => {
    for (const [name, f] of Object.entries(fields)) {
      if (f.kind === 'section') walk(f.fields, `${prefix}${name}.`);
      else m.set(envName(prefix + name), prefix + name);
    }
  };
  walk(SCHEMA.fields, '');
  return m;
})();
/** `OTI_BROKER_`, `OTI_API_`, ...: every variable under these belongs to the configuration. */
const ENV_SECTIONS = Object.entries(SCHEMA.fields).map(([name]) => `${envName(name)}_`);

/**
 * The environment layer. Empty variables count as unset. Other programs' OTI_ variables are
 * ignored, except that a name under a section's prefix (OTI_BROKER_...) or within two edits of a
 * key's variable is a mistake (ERR_CONFIG with a suggestion).
 */
function envLayer(env: Record<string, string | undefined>, cwd: string): Layer {
  const layer: Layer = new Map();
  const known = [...ENV_KEYS.keys()];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OTI_') || (NON_CONFIG_ENV as readonly string[]).includes(name) || value === undefined || value === '') continue;
    const key = ENV_KEYS.get(name);
    if (key !== undefined) {
      setFromString(layer, key, value, { origin: name, base: cwd });
    } else if (ENV_SECTIONS.some((p) => name.startsWith(p)) || nearest(name, known) !== undefined) {
      const section = ENV_SECTIONS.find((p) => name.startsWith(p));
      throw unknownKey(name, name, section !== undefined ? known.filter((k) => k.startsWith(section)) : known, name);
    }
  }
  return layer;
}

interface ParsedArgs {
  readonly configPath: string | undefined;
  readonly layer: Layer;
}

/** `--key value`, `--key=value`, a bare `--bool.key` (true), `--config PATH`, `--demo [N]`. */
function argLayer(argv: readonly string[], cwd: string): ParsedArgs {
  const layer: Layer = new Map();
  const seen = new Set<string>();
  let configPath: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--') || arg.length === 2) throw wrong(arg, 'a flag --key value or --key=value', arg, `argument ${i + 1}`);
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const origin = `--${name}`;
    const next = argv[i + 1];
    let value = eq < 0 ? undefined : arg.slice(eq + 1);
    const key = name === 'demo' ? 'demo.locks' : name;
    if (seen.has(key)) throw wrong(key, 'given once', arg, origin);
    seen.add(key);
    const f = name === 'config' || name === 'demo' ? undefined : lookup(name, origin, ['config']);
    if (value === undefined) {
      const takesNext =
        name === 'demo' ? next !== undefined && /^\d+$/.test(next) : f?.kind === 'bool' ? next === 'true' || next === 'false' || next === '1' || next === '0' : next !== undefined && !next.startsWith('--');
      if (takesNext) {
        value = next;
        i++;
      } else if (name === 'demo') value = String(DEMO_FLAG_LOCKS);
      else if (f?.kind === 'bool') value = 'true';
      else throw wrong(name, 'followed by a value', undefined, origin);
    }
    if (name === 'config') configPath = value;
    else setFromString(layer, key, value ?? '', { origin, base: cwd });
  }
  return { configPath, layer };
}

async function readConfigFile(path: string, origin: string): Promise<unknown> {
  const ext = extname(path).toLowerCase();
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') throw wrong('config', 'a file ending in .yaml, .yml or .json', path, origin);
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > CONFIG_FILE_MAX_BYTES) throw wrong('config', `a regular file of at most ${CONFIG_FILE_MAX_BYTES} bytes`, path, origin);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof OtiError) throw e;
    throw new OtiError('ERR_CONFIG', `${origin}: the configuration file ${path} cannot be read: ${(e as Error).message}`, { key: 'config', allowed: 'an existing, readable file', got: path, origin }, { cause: e });
  }
  // The file may have grown between stat and read.
  if (text.length > CONFIG_FILE_MAX_BYTES) throw wrong('config', `a regular file of at most ${CONFIG_FILE_MAX_BYTES} bytes`, path, origin);
  try {
    // An empty YAML file is an empty mapping: all defaults.
    return ext === '.json' ? (JSON.parse(text) as unknown) : ((parseYaml(text, { maxAliasCount: 100 }) as unknown) ?? {});
  } catch (e) {
    throw new OtiError('ERR_CONFIG', `${path}: not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(e as Error).message}`, { key: '', allowed: ext === '.json' ? 'JSON' : 'YAML', got: path, origin: path }, { cause: e });
  }
}

// ---- Assembly ----

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** A loopback address or "localhost" (IPv4-mapped IPv6 addresses count as their IPv4 address). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const v4 = host.toLowerCase().startsWith('::ffff:') ? host.slice(7) : host;
  if (isIP(v4) === 4) return LOOPBACK.check(v4, 'ipv4');
  return isIP(host) === 6 && LOOPBACK.check(host, 'ipv6');
}

/** Defaults overlaid with the layers (later wins), cross-field rules checked, deeply frozen. */
function assemble(layers: readonly Layer[], cwd: string): GatewayConfig {
  const merged: Layer = new Map();
  for (const l of layers) for (const [k, s] of l) merged.set(k, s);
  const originOf = (key: string): string => merged.get(key)?.origin ?? 'default';
  const dataDir = (merged.get('dataDir')?.value as string | undefined) ?? resolve(cwd, SCHEMA.fields.dataDir.default);
  const build = (fields: Readonly<Record<string, Field>>, prefix: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [name, f] of Object.entries(fields)) {
      const key = prefix + name;
      if (f.kind === 'section') out[name] = Object.freeze(build(f.fields, `${key}.`));
      else if (merged.has(key)) out[name] = merged.get(key)?.value;
      else if (f.kind === 'list') out[name] = Object.freeze([]);
      else if (f.kind === 'path' && f.default !== undefined) out[name] = resolve(cwd, f.default.replace('<dataDir>', dataDir));
      else out[name] = f.default;
    }
    return out;
  };
  const c = Object.freeze(build(SCHEMA.fields, '')) as unknown as GatewayConfig;
  const tls = c.broker.tls;
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    const [missing, given] = tls.cert === undefined ? ['broker.tls.cert', 'broker.tls.key'] : ['broker.tls.key', 'broker.tls.cert'];
    throw wrong(missing, `set as well, because ${given} is set (TLS needs both)`, undefined, originOf(given));
  }
  if (tls.ca !== undefined && tls.cert === undefined) throw wrong('broker.tls.cert', 'set (with broker.tls.key) when broker.tls.ca is set', undefined, originOf('broker.tls.ca'));
  if (c.api.token === undefined && !isLoopbackHost(c.api.host)) {
    throw wrong('api.token', `a token of at least 16 characters, required because api.host (${c.api.host}) is not a loopback address`, undefined, originOf('api.host'));
  }
  // The API speaks plain HTTP: the privacy token, and the plaintext it unlocks, must not cross a network.
  if (c.api.privacyToken !== undefined && !isLoopbackHost(c.api.host)) {
    throw wrong('api.privacyToken', `unset, because api.host (${c.api.host}) is not a loopback address and the API has no TLS: put a TLS proxy on this machine in front of api.host 127.0.0.1 (docs/PRIVACY.md §Roles)`, c.api.privacyToken, originOf('api.privacyToken'), true);
  }
  return c;
}

/**
 * Validation only: `input` as if it were the configuration file (`origin` names it in errors),
 * over the defaults. Relative paths resolve against the working folder.
 */
export function parseConfig(input: unknown, origin: string): GatewayConfig {
  const cwd = process.cwd();
  return assemble([fileLayer(input, { origin, base: cwd })], cwd);
}

/**
 * Reads the configuration from the file, environment and flags (defaults: process.argv after
 * the script, process.env, process.cwd()). `sources` lists what contributed, in precedence
 * order: 'defaults', the file's absolute path, each environment variable, each flag.
 */
export async function loadConfig(opts: { argv?: readonly string[]; env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<{ config: GatewayConfig; sources: string[] }> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  const env = opts.env ?? process.env;
  const args = argLayer(opts.argv ?? process.argv.slice(2), cwd);
  const envValues = envLayer(env, cwd);
  const named = args.configPath ?? (env['OTI_CONFIG'] === '' ? undefined : env['OTI_CONFIG']);
  const layers: Layer[] = [];
  const sources = ['defaults'];
  if (named !== undefined) {
    const file = resolve(cwd, named);
    const raw = await readConfigFile(file, args.configPath !== undefined ? '--config' : 'OTI_CONFIG');
    layers.push(fileLayer(raw, { origin: file, base: dirname(file) }));
    sources.push(file);
  }
  layers.push(envValues, args.layer);
  for (const l of [envValues, args.layer]) for (const s of new Set([...l.values()].map((v) => v.origin))) sources.push(s);
  return { config: assemble(layers, cwd), sources };
}
