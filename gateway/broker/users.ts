/**
 * The MQTT users file: the integration apps, read-only clients and fleet archives allowed on the
 * embedded broker. Gateways are not listed here; they log in with credentials signed by their own key.
 *
 * A UTF-8 JSON object, at most 1 MiB, mode 0600 (refused on read when group or others have any
 * bit, checked on the opened descriptor):
 *
 * ```
 * { "format": "oti-mqtt-users", "version": 1,
 *   "users": [ { "username": "<id>", "role": "app" | "readonly" | "homeassistant" | "archive",
 *                "salt": "<base64, 16 bytes>", "hash": "<base64, 32 bytes>" } ] }
 * ```
 *
 * `hash` = scrypt(password bytes, salt, N = 2^14, r = 8, p = 1, 32 bytes) (RFC 7914). Usernames
 * match ID_PATTERN and are unique. Passwords are compared in constant time, and an unknown
 * username costs the same scrypt as a known one, so timing does not tell which names exist.
 * Writes go to a temporary file in the same folder (0600), are fsynced and renamed into place.
 * Read-modify-write is not locked: run one `oti mqtt user` command at a time.
 * No error, detail or log line made here contains a password or a hash.
 */
import { readBoundedFile, writeFileAtomic } from '../../ledger/base/files.js';
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { OtiError } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';

export const USERS_FILE_FORMAT = 'oti-mqtt-users';
export const USERS_FILE_VERSION = 1;
export const USERS_FILE_MAX_BYTES = 1024 * 1024;
/** `homeassistant`: what Home Assistant's MQTT integration does; `archive`: a fleet archive pulling the chains (docs/MQTT.md §Roles). */
export const MQTT_USER_ROLES = ['app', 'readonly', 'homeassistant', 'archive'] as const;
export type MqttUserRole = (typeof MQTT_USER_ROLES)[number];
/** MQTT 3.1.1 §3.1.3.5 allows up to 65535 bytes; more than this is not a password anyone types. */
export const MAX_PASSWORD_BYTES = 1024;

const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const HASH_BYTES = 32;
const SALT_BYTES = 16;
const FILE_MODE = 0o600;

export interface MqttUser {
  readonly username: string;
  readonly role: MqttUserRole;
  readonly salt: string;
  readonly hash: string;
}

function fileError(path: string, problem: string, details: Record<string, unknown> = {}): OtiError {
  return new OtiError('ERR_MQTT_USERS_FILE', `MQTT users file ${path} ${problem}`, { path, ...details });
}

/** Reads and checks the users file. A missing file is ERR_NOT_FOUND; anything else wrong is ERR_MQTT_USERS_FILE. */
export async function readMqttUsers(path: string): Promise<MqttUser[]> {
  const { bytes } = await readBoundedFile(path, {
    maxBytes: USERS_FILE_MAX_BYTES,
    private: true,
    problem: (p, mode) => {
      switch (p) {
        case 'missing':
          return new OtiError('ERR_NOT_FOUND', `MQTT users file ${path} does not exist`, { path });
        case 'not-a-file':
          return fileError(path, 'is not a regular file');
        case 'permissions':
          return fileError(path, `has mode ${mode}, which lets group or others read it; run chmod 600 ${path}`, { mode });
        case 'too-large':
          return fileError(path, `is larger than ${USERS_FILE_MAX_BYTES} bytes`);
      }
    },
  });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw fileError(path, 'is not UTF-8');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw fileError(path, 'is not valid JSON');
  }
  return parseDocument(path, doc);
}

function parseDocument(path: string, doc: unknown): MqttUser[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(doc) || doc['format'] !== USERS_FILE_FORMAT) throw fileError(path, `is not an ${USERS_FILE_FORMAT} document`, { field: 'format' });
  if (doc['version'] !== USERS_FILE_VERSION) throw fileError(path, `has version ${String(doc['version'])}; this implementation reads ${USERS_FILE_VERSION}`, { field: 'version' });
  const list = doc['users'];
  if (!Array.isArray(list)) throw fileError(path, 'has no users array', { field: 'users' });
  const seen = new Set<string>();
  return list.map((u: unknown, i) => {
    const field = `users[${i}]`;
    if (!isObject(u) || Object.keys(u).some((k) => !['username', 'role', 'salt', 'hash'].includes(k))) throw fileError(path, `${field} is not a user entry`, { field });
    const { username, role, salt, hash } = u;
    if (typeof username !== 'string' || !ID_PATTERN.test(username)) throw fileError(path, `${field}.username must match ${ID_PATTERN.source}`, { field: `${field}.username` });
    if (seen.has(username)) throw fileError(path, `lists ${username} twice`, { field: `${field}.username` });
    seen.add(username);
    if (!(MQTT_USER_ROLES as readonly unknown[]).includes(role)) throw fileError(path, `${field}.role must be one of ${MQTT_USER_ROLES.join(', ')}`, { field: `${field}.role` });
    if (!isBase64Of(salt, SALT_BYTES)) throw fileError(path, `${field}.salt must be base64 of ${SALT_BYTES} bytes`, { field: `${field}.salt` });
    if (!isBase64Of(hash, HASH_BYTES)) throw fileError(path, `${field}.hash must be base64 of ${HASH_BYTES} bytes`, { field: `${field}.hash` });
    return { username, role: role as MqttUserRole, salt, hash };
  });
}

function isBase64Of(v: unknown, length: number): v is string {
  return typeof v === 'string' && Buffer.from(v, 'base64').length === length && Buffer.from(v, 'base64').toString('base64') === v;
}

function derive(password: Uint8Array, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, HASH_BYTES, SCRYPT, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Salt used for unknown usernames, so that they cost as much as known ones. */
const DUMMY_SALT = randomBytes(SALT_BYTES);

/**
 * The role of `username` when `password` is right, else undefined. Always runs one scrypt, and
 * compares with timingSafeEqual.
 */
export async function verifyMqttUser(users: readonly MqttUser[], username: string, password: Uint8Array): Promise<MqttUserRole | undefined> {
  const user = users.find((u) => u.username === username);
  const tooLong = password.length > MAX_PASSWORD_BYTES;
  const salt = user === undefined || tooLong ? DUMMY_SALT : Buffer.from(user.salt, 'base64');
  const got = await derive(tooLong ? password.subarray(0, MAX_PASSWORD_BYTES) : password, salt);
  const want = user === undefined ? Buffer.alloc(HASH_BYTES) : Buffer.from(user.hash, 'base64');
  const same = timingSafeEqual(got, want);
  got.fill(0);
  return same && user !== undefined && !tooLong ? user.role : undefined;
}

function checkNewUser(username: string, role: MqttUserRole, password: string): void {
  if (typeof username !== 'string' || !ID_PATTERN.test(username)) throw new OtiError('ERR_ARGUMENT', `username must match ${ID_PATTERN.source}`, { argument: 'username' });
  if (!(MQTT_USER_ROLES as readonly unknown[]).includes(role)) throw new OtiError('ERR_ARGUMENT', `role must be one of ${MQTT_USER_ROLES.join(', ')}`, { argument: 'role' });
  const bytes = typeof password === 'string' ? Buffer.byteLength(password, 'utf8') : 0;
  if (bytes === 0 || bytes > MAX_PASSWORD_BYTES) throw new OtiError('ERR_ARGUMENT', `password must be 1 to ${MAX_PASSWORD_BYTES} bytes of UTF-8`, { argument: 'password' });
}

async function readOrEmpty(path: string): Promise<MqttUser[]> {
  try {
    return await readMqttUsers(path);
  } catch (e) {
    if (e instanceof OtiError && e.code === 'ERR_NOT_FOUND') return [];
    throw e;
  }
}

/**
 * Adds `username` (or, with `replace`, changes its role and password) in the users file at
 * `path`, creating the file (0600) when there is none. The `oti mqtt user add` command calls this.
 * An existing user without `replace` is ERR_ARGUMENT.
 */
export async function addMqttUser(path: string, username: string, role: MqttUserRole, password: string, opts: { replace?: boolean } = {}): Promise<void> {
  checkNewUser(username, role, password);
  const users = await readOrEmpty(path);
  const existing = users.findIndex((u) => u.username === username);
  if (existing >= 0 && opts.replace !== true) throw new OtiError('ERR_ARGUMENT', `MQTT user ${username} already exists`, { argument: 'username', exists: true });
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(Buffer.from(password, 'utf8'), salt);
  const entry: MqttUser = { username, role, salt: salt.toString('base64'), hash: hash.toString('base64') };
  hash.fill(0);
  if (existing >= 0) users[existing] = entry;
  else users.push(entry);
  await writeUsers(path, users);
}

/** Removes `username`; true when it was there. A missing file is ERR_NOT_FOUND. */
export async function removeMqttUser(path: string, username: string): Promise<boolean> {
  const users = await readMqttUsers(path);
  const kept = users.filter((u) => u.username !== username);
  if (kept.length === users.length) return false;
  await writeUsers(path, kept);
  return true;
}

async function writeUsers(path: string, users: readonly MqttUser[]): Promise<void> {
  const data = JSON.stringify({ format: USERS_FILE_FORMAT, version: USERS_FILE_VERSION, users }, null, 2) + '\n';
  await writeFileAtomic(path, data, { mode: FILE_MODE, overwrite: true });
}

/**
 * Sets a new password for `username`, keeping its role (`oti mqtt user passwd`). A user that is
 * not in the file (or no file) is ERR_NOT_FOUND.
 */
export async function setMqttUserPassword(path: string, username: string, password: string): Promise<void> {
  const users = await readOrEmpty(path);
  const user = users.find((u) => u.username === username);
  if (user === undefined) throw new OtiError('ERR_NOT_FOUND', `there is no MQTT user ${username} in ${path}`, { username });
  await addMqttUser(path, username, user.role, password, { replace: true });
}
