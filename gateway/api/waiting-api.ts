/**
 * The local API's stand-in while the gateway waits for its ledger (gateway/sync/recovery.ts): on the
 * API's address it answers GET /health from the health board (503 with the conditions, as the
 * full API does) and every other request with 503 ERR_LEDGER_LOST, so monitoring sees why the
 * gateway takes no events. It closes when the ledger is back and the full API takes the port.
 */
import { createServer } from 'node:http';
import type { HealthBoard } from './health.js';
import { listenHttp } from './http-listen.js';

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
  return listenHttp(server, o.host, o.port, 'api.port');
}
