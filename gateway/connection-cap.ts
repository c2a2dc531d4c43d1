/**
 * Caps on the open connections of one or more listeners that share them: at most `perAddress`
 * from one remote address and `total` in all, so that one client, slow or many-socketed, cannot
 * take every slot and hold the gateway's memory, and others still get in. The local API answers a
 * connection over a cap with `503` (gateway/api/api-connection-cap.ts); the MQTT broker closes it
 * unread after a delay (MQTT has no way to refuse before a CONNECT is read; gateway/broker/broker.ts).
 * IPv4-mapped IPv6 addresses count as IPv4; other IPv6 addresses count one by one.
 */
import type { Server, Socket } from 'node:net';

export type CapReason = 'address' | 'total';

export interface ConnectionCaps {
  /** Open connections in all. */
  readonly total: number;
  /** Open connections from one remote address. */
  readonly perAddress: number;
  /** Told of each refused connection, with the cap it hit. */
  readonly onRefused?: (reason: CapReason, address: string) => void;
  /** Addresses whose connections are neither counted nor refused. */
  readonly exempt?: (address: string) => boolean;
}

/** The remote address a socket counts under: IPv4-mapped IPv6 addresses count as IPv4. */
function addressOf(socket: Socket): string {
  const a = socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Applies the caps to every connection the `servers` accept from now on, counted together. A
 * connection over a cap goes to `refuse` (which answers it as its protocol can, and closes it at
 * once or later); the servers' own listeners, which run after this one, must leave it alone.
 */
export function capConnections(servers: readonly Server[], caps: ConnectionCaps, refuse: (socket: Socket, reason: CapReason, cap: number, server: Server) => void): void {
  const byAddress = new Map<string, number>();
  let open = 0;
  const onConnection = (server: Server, socket: Socket): void => {
    const address = addressOf(socket);
    if (caps.exempt?.(address) === true) return;
    const mine = byAddress.get(address) ?? 0;
    const reason = mine >= caps.perAddress ? 'address' : open >= caps.total ? 'total' : undefined;
    if (reason !== undefined) {
      caps.onRefused?.(reason, address);
      socket.on('error', () => undefined);
      refuse(socket, reason, reason === 'address' ? caps.perAddress : caps.total, server);
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
  };
  // Before the servers' own connection listeners (the HTTP parser, TLS, the MQTT broker).
  for (const s of servers) s.prependListener('connection', (socket: Socket) => onConnection(s, socket));
}
