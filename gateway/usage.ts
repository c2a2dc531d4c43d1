/**
 * `oti-gateway --help` and `--version` (what `npm start -- --help` shows): answered before the
 * configuration is read, so that they never fail as unknown configuration keys.
 */
import { createRequire } from 'node:module';
import { CONFIG_KEYS } from './config/schema.js';

export const GATEWAY_VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** The help text: how to run it, how to configure it, and every key with its variable. */
export function gatewayHelp(): string {
  const keys = CONFIG_KEYS.filter((k) => !k.key.includes('[]'));
  const width = Math.max(...keys.map((k) => k.key.length)) + 2;
  return [
    `oti-gateway ${GATEWAY_VERSION}: the OTI gateway (npm start; node dist/gateway/main.js).`,
    '',
    'Usage: npm start -- [--config FILE] [--<key> VALUE]... [--demo [N]]',
    '',
    'Configuration, later sources winning: defaults, the file (--config FILE or OTI_CONFIG; YAML or JSON),',
    'OTI_* environment variables, then --<key> VALUE flags. docs/CONFIGURATION.md explains each key.',
    'Secrets from the environment: OTI_KEY_PASSPHRASE, OTI_BUNDLE_PASSPHRASE, OTI_PRIVACY_PASSPHRASE.',
    '',
    'Keys (flag --<key>, variable):',
    ...keys.map((k) => `  ${k.key.padEnd(width)}${k.env}`),
    '',
    'Also: --help, --version. Exit codes: 0 stopped cleanly, 1 failure, 2 configuration error.',
  ].join('\n');
}

/** The answer to argv when it asks for help or the version, else undefined. */
export function infoRequest(argv: readonly string[]): string | undefined {
  if (argv.includes('--help') || argv.includes('-h')) return gatewayHelp();
  if (argv.includes('--version') || argv.includes('-V')) return `oti-gateway ${GATEWAY_VERSION}`;
  return undefined;
}
