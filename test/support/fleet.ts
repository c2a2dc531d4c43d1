/**
 * The parts of a fleet-tier test: a real gateway process (`--demo`: simulated locks on kernel
 * ptys, its own development site) uplinking to a central broker, its /status, and what the
 * archive's tables hold of a chain.
 */
import type { TestContext } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startGateway, freePort, type GatewayProcess } from './gateway-process.js';
import type { TestMariaDb } from './mariadb.js';
import { stopProc } from './archive-process.js';

export interface FleetGateway {
  readonly gw: GatewayProcess;
  readonly data: string;
  readonly api: number;
}

/** Gateway `name` in `dir/name`, with `demoLocks` locks at 20 events/s, uplinking as user `uplink` with `password`. */
export async function uplinkingGateway(t: TestContext, dir: string, name: string, broker: { url: string; caFile: string }, demoLocks: number, password: string): Promise<FleetGateway> {
  const data = join(dir, name);
  const passwordFile = join(dir, `${name}.uplink-password`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  const api = await freePort();
  const gw = startGateway(
    [
      ...['--broker.host', '127.0.0.1', '--broker.port', '0', '--api.port', String(api), '--ble.enabled', 'false', '--discovery.enabled', 'false'],
      ...['--demo.locks', String(demoLocks), '--demo.rate', '20'],
      ...['--uplink.url', broker.url, '--uplink.username', 'uplink', '--uplink.passwordFile', passwordFile, '--uplink.ca', broker.caFile, '--uplink.window', '4'],
    ],
    { OTI_DATA_DIR: data },
  );
  t.after(() => stopProc(gw, 'SIGKILL'));
  await gw.waitForLog('running', (l) => l.msg.includes('running; press Ctrl+C'));
  return { gw, data, api };
}

export interface UplinkView {
  readonly chain: { origin: string; size: number; blocks: number };
  readonly uplink?: { connected: boolean; next: number; behind: number };
}

export async function uplinkStatus(g: FleetGateway): Promise<UplinkView> {
  return (await (await fetch(`http://127.0.0.1:${g.api}/status`)).json()) as UplinkView;
}

/** Entries and blocks of `origin` in the archive's tables, and its highest entry index (-1 when none). */
export async function archivedCounts(db: TestMariaDb, origin: string): Promise<{ entries: number; blocks: number; maxIdx: number }> {
  const c = await db.root();
  try {
    const [e] = await c.query(`SELECT COUNT(*) AS n, COALESCE(MAX(idx), -1) AS m FROM ${db.database}.entries WHERE origin = ?`, [origin]);
    const [b] = await c.query(`SELECT COUNT(*) AS n FROM ${db.database}.blocks WHERE origin = ?`, [origin]);
    const er = (e as { n: number; m: number }[])[0]!;
    return { entries: Number(er.n), blocks: Number((b as { n: number }[])[0]!.n), maxIdx: Number(er.m) };
  } finally {
    await c.end();
  }
}
