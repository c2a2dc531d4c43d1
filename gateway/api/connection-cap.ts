/**
 * Caps on a server's open connections (docs/API.md §Limits): at most `perAddress` from one remote
 * address and `total` in all, so that one client, slow or many-socketed, cannot take every slot
 * and others (a health probe, an integrator) still get in. A connection over a cap is answered at
 * once with `503` and `ERR_TOO_MANY_CONNECTIONS` and closed without being served. How long an accepted connection may take is bounded by the server's timeouts.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** api.maxConnections and api.maxConnectionsPerAddress when not given. */
export const DEFAULT_MAX_CONNECTIONS = 64;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 16;

export interface ConnectionCaps {
  /** Open connections in all (api.maxConnections). */
  readonly total: number;
  /** Open connections from one remote address (api.maxConnectionsPerAddress). */
  readonly perAddress: number;
  /** Told of each refused connection, with the cap it hit. */
  readonly onRefused?: (reason: 'address' | 'total', address: string) => void;
}

/** The remote address a socket counts under: IPv4-mapped IPv6 addresses count as IPv4. */
function addressOf(socket: Socket): string {
  const a = socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function refusal(reason: 'address' | 'total', cap: number): string {
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
export function capConnections(server: Server, caps: ConnectionCaps): void {
  const byAddress = new Map<string, number>();
  let open = 0;
  // Runs before the HTTP server's own connection listener: a refused socket is answered and
  // closed before anything it sent is read.
  server.prependListener('connection', (socket: Socket) => {
    const address = addressOf(socket);
    const mine = byAddress.get(address) ?? 0;
    const reason = mine >= caps.perAddress ? 'address' : open >= caps.total ? 'total' : undefined;
    if (reason !== undefined) {
      caps.onRefused?.(reason, address);
      socket.on('error', () => undefined);
      socket.end(refusal(reason, reason === 'address' ? caps.perAddress : caps.total), () => socket.destroy());
      // Whatever the client does, the socket does not stay.
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    open++;
    byAddress.set(address, mine + 1);
    socket.once('close', () => {
      open--;
      const left = (byAddress.get(address) ?? 1) - 1;
      if (left === 0) byAddress.delete(address);
      else byAddress.set(address, left);
    });
  });
}
