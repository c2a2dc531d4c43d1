/**
 * Busy ports, found before anything is written: the gateway checks that the ports it will listen
 * on are free before it creates a development site or applies a bundle, and a port in use is
 * reported with the configuration key, the flag and the variable that change it.
 */
import { createServer } from 'node:net';
import { OtiError } from '../../ledger/base/errors.js';
import { envName } from './schema.js';

export interface PortUse {
  /** The configuration key, e.g. `broker.port`. */
  readonly key: string;
  readonly host: string;
  readonly port: number;
}

/** ERR_PORT_IN_USE for `use`, saying how to choose another port. */
export function portInUse(use: PortUse, cause?: unknown): OtiError {
  return new OtiError(
    'ERR_PORT_IN_USE',
    `${use.host}:${use.port} (${use.key}) is already in use, by another program or another gateway; choose another port with --${use.key} N (or ${envName(use.key)}, or ${use.key} in the configuration file), or stop what holds it`,
    { key: use.key, host: use.host, port: use.port },
    cause === undefined ? undefined : { cause },
  );
}

/** Rejects with portInUse for the first port of `uses` (port 0 means any: skipped) that cannot be bound now. */
export async function checkPortsFree(uses: readonly PortUse[]): Promise<void> {
  for (const use of uses) {
    if (use.port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? portInUse(use, e) : e));
      srv.listen(use.port, use.host, () => srv.close(() => resolve()));
    });
  }
}
