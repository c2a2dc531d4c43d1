/**
 * The local API's stand-in while the gateway waits for its ledger (gateway/recovery.ts): on the
 * API's address it answers GET /health from the health board (503 with the conditions, as the
 * full API does) and every other request with 503 ERR_LEDGER_LOST, so monitoring sees why the
 * gateway takes no events. It closes when the ledger is back and the full API takes the port.
 */
import { createServer } from 'node:http';
import type { HealthBoard } from './health.js';
import { OtiError } from '../ledger/errors.js';

export interface WaitingApi {
  readonly url: string;
  close(): Promise<void>;
}

export async function startWaitingApi(o: { host: string; port: number; health: HealthBoard; reason: () => string }): Promise<WaitingApi> {
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const body =
      path === '/health'
        ? { status: o.health.status, problems: o.health.list().map((c) => c.id), conditions: o.health.list() }
        : { error: { code: 'ERR_LEDGER_LOST', message: o.reason() } };
    res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'retry-after': '5' });
    res.end(JSON.stringify(body));
  });
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new OtiError('ERR_PORT_IN_USE', `port ${o.port} on ${o.host} is already in use (api.port)`, { key: 'api.port' }, { cause: e }) : e),
    );
    server.listen(o.port, o.host, () => resolve());
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
