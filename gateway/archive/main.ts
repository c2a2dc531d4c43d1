/**
 * The fleet archive's entry point (`npm run archive -- --config archive.yaml`; docs/ARCHIVE.md):
 * connects to MySQL/MariaDB and brings its schema up to date, records the trusted sites, takes
 * every gateway's uplinked chain from the central broker (verifying each block before writing
 * it), and answers queries on its HTTP API. Stops on SIGINT/SIGTERM: the API, then the intake
 * (a block being written finishes or rolls back), then the database pool.
 */
import { createLogger } from '../log.js';
import { isOtiError, OtiError } from '../../ledger/base/errors.js';
import { loadArchiveConfig } from './config.js';
import { startArchive } from './service.js';

async function main(): Promise<void> {
  const log = createLogger('info', undefined, 'oti-archive');
  const i = process.argv.indexOf('--config');
  const path = i >= 0 ? process.argv[i + 1] : process.env['OTI_ARCHIVE_CONFIG'];
  if (path === undefined) throw new OtiError('ERR_USAGE', 'usage: npm run archive -- --config <archive.yaml> (or OTI_ARCHIVE_CONFIG)');
  const cfg = await loadArchiveConfig(path);
  const a = await startArchive(cfg, log);
  log.info('archive running; press Ctrl+C to stop');
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`${why}: stopping the archive`);
    a.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: (e as Error).message }, 'archive: stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  process.stderr.write(`oti archive: ${isOtiError(e) ? `${e.code}: ` : ''}${(e as Error).message}\n`);
  process.exit(1);
});
