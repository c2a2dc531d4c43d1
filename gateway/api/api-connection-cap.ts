/**
 * The local API's connection caps (docs/API.md §Limits, gateway/connection-cap.ts): a connection
 * over a cap is answered at once with `503` and `ERR_TOO_MANY_CONNECTIONS` and closed without
 * being served. How long an accepted connection may take is bounded by the server's timeouts.
 */
import type { Server } from 'node:http';
import { capConnections, type CapReason, type ConnectionCaps } from '../connection-cap.js';

/** api.maxConnections and api.maxConnectionsPerAddress when not given. */
export const DEFAULT_MAX_CONNECTIONS = 64;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 16;

function refusal(reason: CapReason, cap: number): string {
  const message = reason === 'address' ? `this address already has ${cap} open connections to the API (api.maxConnectionsPerAddress)` : `the API already has ${cap} open connections (api.maxConnections)`;
  const body = JSON.stringify({ error: { code: 'ERR_TOO_MANY_CONNECTIONS', message, details: { limit: cap, key: reason === 'address' ? 'api.maxConnectionsPerAddress' : 'api.maxConnections' } } });
  return [
    'HTTP/1.1 503 Service Unavailable',
    'content-type: application/json; charset=utf-8',
    'cache-control: no-store',
    'retry-after: 1',
    'connection: close',
    `content-length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

/** Applies the caps to every connection `server` accepts from now on. */
export function capApiConnections(server: Server, caps: ConnectionCaps): void {
  capConnections([server], caps, (socket, reason, cap) => {
    socket.end(refusal(reason, cap), () => socket.destroy());
    // Whatever the client does, the socket does not stay.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}
