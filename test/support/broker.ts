/**
 * The embedded broker (gateway/broker/broker.ts) in one process with mqtt.js clients, for the
 * broker's tests: startTestBroker starts it on 127.0.0.1 (a free port) with a users file holding an
 * app user and a read-only user and the limits of a small site, and closes it on teardown;
 * openMqtt connects a client and ends it on teardown.
 */
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { Broker, type BrokerOptions } from '../../gateway/broker/broker.js';
import { addMqttUser } from '../../gateway/broker/users.js';
import { tempDir } from './site.js';

export interface Login {
  readonly username: string;
  readonly password: string;
}

/** A broker of site `site` with `users.app` (role app) and `users.reader` (role readonly); `over` replaces any option. */
export async function startTestBroker(t: TestContext, site: string, users: { readonly app: Login; readonly reader: Login }, over: Partial<BrokerOptions> = {}): Promise<{ broker: Broker; dir: string }> {
  const dir = await tempDir(t);
  const usersFile = join(dir, 'mqtt-users.json');
  await addMqttUser(usersFile, users.app.username, 'app', users.app.password);
  await addMqttUser(usersFile, users.reader.username, 'readonly', users.reader.password);
  const broker = await Broker.start({
    site,
    host: '127.0.0.1',
    port: 0,
    allowAnonymous: false,
    maxMessageBytes: 4096,
    rateLimit: { messagesPerSecond: 1000, burst: 1000 },
    usersFile,
    ...over,
  });
  t.after(() => broker.close());
  return { broker, dir };
}

/**
 * Connects to `url`; resolves with the client and CONNACK's session-present flag once accepted,
 * rejects with the client's error (its `code` is the CONNACK code), or when the connection closes
 * first. `waitMs` bounds the connect.
 */
export function openMqtt(t: TestContext, url: string, opts: IClientOptions, waitMs = 20_000): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  const client = connect(url, { reconnectPeriod: 0, connectTimeout: waitMs, ...opts });
  t.after(() => client.endAsync(true));
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }));
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}
