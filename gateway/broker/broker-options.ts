/**
 * The broker's options, and their checks before it starts: each bad one is ERR_ARGUMENT naming
 * its key, and the TLS files read (a missing one names its path).
 */
import { readFile } from 'node:fs/promises';
import { OtiError } from '../../ledger/base/errors.js';
import type { Logger } from '../log.js';
import { MQTT_MAX_REMAINING_LENGTH, type LoginLimits, type RetainedCapsConfig, type SessionCaps } from './limits.js';

/** Checks a gateway's broker credential; resolves to its gateway id, or undefined to refuse. */
export type GatewayCredentialVerifier = (username: string, password: Buffer) => Promise<{ gatewayId: string } | undefined>;

export interface BrokerOptions {
  site: string;
  host: string;
  /** TCP port; 0 picks a free one (see `Broker.port`). */
  port: number;
  allowAnonymous: boolean;
  /** Largest MQTT control packet accepted, counted as its Remaining Length (variable header + payload). */
  maxMessageBytes: number;
  /** Open connections in all, over both listeners; DEFAULT_MQTT_CONNECTION_CAPS.total when not given. */
  maxConnections?: number;
  /** Open connections from one remote address; DEFAULT_MQTT_CONNECTION_CAPS.perAddress when not given. */
  maxConnectionsPerAddress?: number;
  /** Time a client has to send its CONNECT, and on the TLS listener to finish its handshake first, ms (default 10 s). */
  connectTimeoutMs?: number;
  rateLimit: { messagesPerSecond: number; burst: number };
  /** Caps on persistent sessions and their queues; DEFAULT_SESSION_CAPS when not given. */
  sessions?: SessionCaps;
  /** Caps on retained messages per principal; DEFAULT_RETAINED_CAPS when not given. */
  retained?: RetainedCapsConfig;
  /** Bounds on credential checks and failed logins; DEFAULT_LOGIN_LIMITS when not given. */
  login?: LoginLimits;
  /**
   * Whether a gateway id is on the site's roster (and not revoked). A peer gateway may retain
   * messages under another gateway's chain only when that gateway is; without this function,
   * only under its own.
   */
  isRosterGateway?: (gatewayId: string) => boolean;
  /** A second listener speaking MQTT over TLS; `cert`, `key` and `ca` are paths to PEM files. */
  tls?: { port: number; cert: string; key: string; ca?: string };
  /** The users file of apps and read-only clients (gateway/broker/users.ts), read at each login. */
  usersFile?: string;
  verifyGatewayCredential?: GatewayCredentialVerifier;
  /** Home Assistant discovery prefix; default `homeassistant`. */
  haPrefix?: string;
  logger?: Logger;
}

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
