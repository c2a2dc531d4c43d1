/**
 * `npm start`: the gateway process. Reads the configuration (docs/CONFIGURATION.md: defaults,
 * file, OTI_* environment, flags), starts the runtime (gateway/runtime.ts) and stops it on
 * SIGINT/SIGTERM within 5 seconds: stop taking events, answer what is in flight, flush the ledger,
 * close the broker and the store. A configuration error, a busy port or an unwritable data folder
 * stops start-up with a message that names what is wrong and exit code 1 (2 for a usage error).
 */
import { loadConfig } from './config/config.js';
import { createLogger } from './log.js';
import { Gateway } from './runtime.js';
import { isOtiError } from '../ledger/base/errors.js';
import { infoRequest } from './usage.js';

const STOP_LIMIT_MS = 5000;

function fail(e: unknown): never {
  if (isOtiError(e)) console.error(`oti-gateway: ${e.message} [${e.code}]`);
  else console.error('oti-gateway:', e);
  process.exit(isOtiError(e, 'ERR_CONFIG') ? 2 : 1);
}

async function main(): Promise<void> {
  const info = infoRequest(process.argv.slice(2));
  if (info !== undefined) {
    process.stdout.write(`${info}\n`);
    return;
  }
  const { config, sources } = await loadConfig({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() });
  const log = createLogger(config.log.level);
  log.info({ sources }, `configuration from ${sources.join(', ')}`);
  const passphrase = process.env['OTI_KEY_PASSPHRASE'];
  const bundlePassphrase = process.env['OTI_BUNDLE_PASSPHRASE'];
  const privacyPassphrase = process.env['OTI_PRIVACY_PASSPHRASE'];
  let gateway: Gateway | undefined;
  let stopping = false;
  const stop = async (why: string, code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info(`${why}: stopping (taking no more events, flushing the ledger)`);
    const timer = setTimeout(() => {
      log.error(`stop took longer than ${STOP_LIMIT_MS / 1000} s; exiting`);
      process.exit(1);
    }, STOP_LIMIT_MS);
    timer.unref();
    try {
      await gateway?.stop();
      log.info('stopped');
    } catch (e) {
      log.error({ err: e }, 'stop failed');
      code = 1;
    }
    log.flush();
    process.exit(code);
  };
  process.once('SIGINT', (s) => void stop(s, 0));
  process.once('SIGTERM', (s) => void stop(s, 0));
  gateway = await Gateway.start(config, log, {
    ...(passphrase !== undefined ? { passphrase } : {}),
    ...(bundlePassphrase !== undefined ? { bundlePassphrase } : {}),
    ...(privacyPassphrase !== undefined ? { privacyPassphrase } : {}),
    onFatal: (e) => {
      log.fatal({ err: e, code: isOtiError(e) ? e.code : undefined }, `the chain does not verify: ${e.message}`);
      void stop('verification failure', 1);
    },
  });
  if (stopping) return;
  const s = gateway.status();
  log.info({ site: s.site, gateway: s.gateway, chain: s.chain.origin, entries: s.chain.size }, `gateway ${s.gateway} of site ${s.site} running; press Ctrl+C to stop`);
  if (gateway.nextSteps !== undefined) log.info({ nextSteps: gateway.nextSteps }, `next steps (shown on the first start only):\n  ${gateway.nextSteps.join('\n  ')}`);
}

main().catch(fail);
