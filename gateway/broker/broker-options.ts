/**
 * The broker's options checked before it starts: each bad one is ERR_ARGUMENT naming its key, and
 * the TLS files read (a missing one names its path).
 */
import { readFile } from 'node:fs/promises';
import { OtiError } from '../../ledger/base/errors.js';
import { MQTT_MAX_REMAINING_LENGTH } from './limits.js';
import type { BrokerOptions } from './broker.js';

export function checkOptions(o: BrokerOptions): void {
  const bad = (key: string, allowed: string): never => {
    throw new OtiError('ERR_ARGUMENT', `broker option ${key} must be ${allowed}`, { argument: key });
  };
  const port = (key: string, v: unknown): void => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) bad(key, 'an integer from 0 to 65535');
  };
  if (typeof o !== 'object' || o === null) bad('options', 'an object');
  if (typeof o.host !== 'string' || o.host.length === 0) bad('host', 'a host name or address');
  port('port', o.port);
  if (typeof o.allowAnonymous !== 'boolean') bad('allowAnonymous', 'true or false');
  if (!Number.isInteger(o.maxMessageBytes) || o.maxMessageBytes < 64 || o.maxMessageBytes > MQTT_MAX_REMAINING_LENGTH) {
    bad('maxMessageBytes', `an integer from 64 to ${MQTT_MAX_REMAINING_LENGTH}`);
  }
  const r = o.rateLimit as BrokerOptions['rateLimit'] | undefined;
  if (r === undefined || !(r.messagesPerSecond > 0) || !Number.isFinite(r.messagesPerSecond)) bad('rateLimit.messagesPerSecond', 'a positive number');
  if (!Number.isInteger(r?.burst) || (r?.burst ?? 0) < 1) bad('rateLimit.burst', 'an integer of at least 1');
  if (o.tls !== undefined) {
    port('tls.port', o.tls.port);
    if (typeof o.tls.cert !== 'string' || typeof o.tls.key !== 'string') bad('tls', 'an object with cert and key file paths');
  }
}

export async function readTlsFiles(t: NonNullable<BrokerOptions['tls']>): Promise<{ cert: Buffer; key: Buffer; ca?: Buffer }> {
  const read = async (key: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (e) {
      throw new OtiError('ERR_ARGUMENT', `broker option tls.${key}: cannot read ${path}: ${(e as Error).message}`, { argument: `tls.${key}`, path }, { cause: e });
    }
  };
  const files = { cert: await read('cert', t.cert), key: await read('key', t.key) };
  return t.ca === undefined ? files : { ...files, ca: await read('ca', t.ca) };
}
