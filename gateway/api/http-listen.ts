/**
 * Starting and stopping the gateway's small HTTP listeners (the stand-in API while the ledger is
 * lost, the tlog-witness listener): listen on host:port, a busy port becoming ERR_PORT_IN_USE
 * naming the configuration key that sets it, the URL it is reachable at (port 0 resolved), and a
 * close that does not wait for idle keep-alive connections.
 */
import type { Server } from 'node:http';
import { OtiError } from '../../ledger/base/errors.js';

export interface HttpListener {
  readonly url: string;
  close(): Promise<void>;
}

export async function listenHttp(server: Server, host: string, port: number, key: string): Promise<HttpListener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new OtiError('ERR_PORT_IN_USE', `port ${port} on ${host} is already in use (${key})`, { key }, { cause: e }) : e),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const url = addr !== null && typeof addr !== 'string' ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : '';
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
