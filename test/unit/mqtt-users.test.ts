import assert from 'node:assert/strict';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { addMqttUser, readMqttUsers, removeMqttUser, verifyMqttUser } from '../../gateway/broker/users.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { tempDir } from '../support/site.js';

const POSIX = process.platform !== 'win32';

void test('users are added, verified, replaced and removed', async (t) => {
  const path = join(await tempDir(t), 'users.json');
  await addMqttUser(path, 'app1', 'app', 'secret-one');
  await addMqttUser(path, 'reader', 'readonly', 'secret-two');
  if (POSIX) assert.equal((await stat(path)).mode & 0o777, 0o600);
  const text = await readFile(path, 'utf8');
  assert.ok(!text.includes('secret-one') && !text.includes('secret-two'));
  let users = await readMqttUsers(path);
  assert.equal(await verifyMqttUser(users, 'app1', Buffer.from('secret-one')), 'app');
  assert.equal(await verifyMqttUser(users, 'reader', Buffer.from('secret-two')), 'readonly');
  assert.equal(await verifyMqttUser(users, 'app1', Buffer.from('secret-two')), undefined);
  assert.equal(await verifyMqttUser(users, 'nobody', Buffer.from('secret-one')), undefined);
  assert.equal(await verifyMqttUser(users, 'app1', Buffer.alloc(0)), undefined);

  await assert.rejects(addMqttUser(path, 'app1', 'app', 'x'), (e) => isOtiError(e, 'ERR_ARGUMENT'));
  await addMqttUser(path, 'app1', 'readonly', 'new-secret', { replace: true });
  users = await readMqttUsers(path);
  assert.equal(await verifyMqttUser(users, 'app1', Buffer.from('secret-one')), undefined);
  assert.equal(await verifyMqttUser(users, 'app1', Buffer.from('new-secret')), 'readonly');

  assert.equal(await removeMqttUser(path, 'app1'), true);
  assert.equal(await removeMqttUser(path, 'app1'), false);
  assert.deepEqual((await readMqttUsers(path)).map((u) => u.username), ['reader']);
});

void test('bad arguments are ERR_ARGUMENT naming the argument', async (t) => {
  const path = join(await tempDir(t), 'users.json');
  for (const [args, argument] of [
    [['Bad/Name', 'app', 'pw'], 'username'],
    [['ok', 'gateway', 'pw'], 'role'],
    [['ok', 'app', ''], 'password'],
    [['ok', 'app', 'x'.repeat(1025)], 'password'],
  ] as const) {
    await assert.rejects(addMqttUser(path, args[0], args[1] as 'app', args[2]), (e) => isOtiError(e, 'ERR_ARGUMENT') && e.details?.['argument'] === argument);
  }
});

void test('a users file readable by others, or malformed, is refused', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'users.json');
  await assert.rejects(readMqttUsers(path), (e) => isOtiError(e, 'ERR_NOT_FOUND'));
  await addMqttUser(path, 'app1', 'app', 'secret-one');
  if (POSIX) {
    await chmod(path, 0o644);
    await assert.rejects(readMqttUsers(path), (e) => isOtiError(e, 'ERR_MQTT_USERS_FILE') && e.details?.['mode'] === '0644');
    await chmod(path, 0o600);
  }
  const good = JSON.parse(await readFile(path, 'utf8')) as { users: Record<string, unknown>[] };
  const user = good.users[0] ?? {};
  for (const [doc, field] of [
    [{ ...good, format: 'other' }, 'format'],
    [{ ...good, version: 2 }, 'version'],
    [{ ...good, users: {} }, 'users'],
    [{ ...good, users: [{ ...user, extra: 1 }] }, 'users[0]'],
    [{ ...good, users: [{ ...user, role: 'gateway' }] }, 'users[0].role'],
    [{ ...good, users: [{ ...user, salt: 'AAAA' }] }, 'users[0].salt'],
    [{ ...good, users: [{ ...user, hash: 'not base64!' }] }, 'users[0].hash'],
    [{ ...good, users: [user, user] }, 'users[1].username'],
  ] as const) {
    await writeFile(path, JSON.stringify(doc));
    await assert.rejects(readMqttUsers(path), (e) => isOtiError(e, 'ERR_MQTT_USERS_FILE') && e.details?.['field'] === field, field);
  }
  await writeFile(path, '{not json');
  await assert.rejects(readMqttUsers(path), (e) => isOtiError(e, 'ERR_MQTT_USERS_FILE'));
});
