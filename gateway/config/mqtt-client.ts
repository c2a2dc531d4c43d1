/**
 * A connection to an MQTT broker that is not this gateway's own, from its configuration section
 * (`notifications.externalBroker`, `uplink`, the archive's `broker`): the URL checked (mqtt:// or
 * mqtts://, no credentials in it), the password and TLS files read with the bounds and permission
 * checks of key files, and the mqtt.js options every such client shares (MQTT 3.1.1, clean
 * session, verified TLS, a reconnection every 2 s, also after a refused login). A wrong value is
 * ERR_CONFIG naming `<section>.<key>`.
 */
import type { IClientOptions } from 'mqtt';
import { OtiError } from '../../ledger/base/errors.js';
import { readBoundedFile } from '../../ledger/base/files.js';

/** The broker keys every such section has (docs/CONFIGURATION.md). */
export interface MqttClientConfig {
  readonly url?: string | undefined;
  readonly username?: string | undefined;
  readonly passwordFile?: string | undefined;
  readonly clientId?: string | undefined;
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

const SECRET_FILE_MAX = 64 * 1024;
const RECONNECT_MS = 2000;

function configError(key: string, allowed: string, got: unknown, why?: string): OtiError {
  return new OtiError('ERR_CONFIG', `${key}: ${why ?? `must be ${allowed}`}`, { key, allowed, got, origin: key });
}

/** Reads a password, CA, certificate or key file named by configuration key `key` (ERR_CONFIG naming it). */
export async function readConfigFile(key: string, path: string, isPrivate: boolean): Promise<Buffer> {
  try {
    const { bytes } = await readBoundedFile(path, { maxBytes: SECRET_FILE_MAX, private: isPrivate, problem: (p) => configError(key, 'a readable file', path, `${path}: ${p === 'permissions' ? 'group or others can read it; run chmod 600' : p}`) });
    return Buffer.from(bytes);
  } catch (e) {
    if (e instanceof OtiError) throw e;
    throw configError(key, 'a readable file', path, `cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Checks section `section`'s broker keys and turns them into the URL and mqtt.js options to connect with. */
export async function mqttClientOptions(c: MqttClientConfig, defaultClientId: string, section: string): Promise<{ url: URL; options: IClientOptions }> {
  const key = (k: string): string => `${section}.${k}`;
  let url: URL;
  try {
    url = new URL(c.url ?? '');
  } catch {
    throw configError(key('url'), 'an mqtt:// or mqtts:// URL', c.url);
  }
  if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') throw configError(key('url'), 'an mqtt:// or mqtts:// URL', c.url);
  if (url.username !== '' || url.password !== '') throw configError(key('url'), 'a URL without credentials (use username and passwordFile)', '(a URL with credentials)');
  if ((c.cert === undefined) !== (c.key === undefined)) throw configError(key(c.cert === undefined ? 'cert' : 'key'), 'set together with the other of cert and key', undefined);
  if (c.passwordFile !== undefined && c.username === undefined) throw configError(key('username'), 'set when passwordFile is', undefined);
  const password = c.passwordFile === undefined ? undefined : (await readConfigFile(key('passwordFile'), c.passwordFile, true)).toString('utf8').split(/\r?\n/)[0];
  return {
    url,
    options: {
      clientId: c.clientId ?? defaultClientId,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: RECONNECT_MS,
      // Also after a refused login (CONNACK error): mqtt.js would otherwise stop trying for good.
      reconnectOnConnackError: true,
      rejectUnauthorized: true,
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(c.ca !== undefined ? { ca: await readConfigFile(key('ca'), c.ca, false) } : {}),
      ...(c.cert !== undefined ? { cert: await readConfigFile(key('cert'), c.cert, false) } : {}),
      ...(c.key !== undefined ? { key: await readConfigFile(key('key'), c.key, true) } : {}),
    },
  };
}
