/**
 * Structured logs (pino, JSON lines on stdout: journald and log shippers read them as they are).
 * Key material, tokens and passwords never reach a log line: the fields that could hold them are
 * redacted wherever they appear, and the code logs key fingerprints, never keys.
 */
import { pino, type Logger, type Level } from 'pino';

/**
 * The one logger type of the gateway (and the archive): every part takes a `Logger`, usually a
 * `log.child({ part })` of the one made in main.ts, and none imports pino itself.
 */
export type { Logger };

const REDACT = ['token', 'secret', 'password', 'passphrase', 'seed', 'privateKey', 'authorization', '*.token', '*.secret', '*.password', '*.passphrase', '*.seed', '*.privateKey', '*.authorization', 'headers.authorization'];

/**
 * JSON lines, except on a terminal, where a person reads them: there each line is shown as
 * "time level message" (the structured fields stay in the JSON form for machines). Every line
 * carries `name`: the program's (`oti-gateway`, or `oti-archive` for the fleet archive).
 */
export function createLogger(level: Level | 'silent', destination?: NodeJS.WritableStream, name = 'oti-gateway'): Logger {
  const opts = { level, base: { name }, redact: { paths: REDACT, censor: '[redacted]' } };
  if (destination !== undefined) return pino(opts, destination);
  return process.stdout.isTTY ? pino(opts, { write: (line: string) => process.stdout.write(human(line)) }) : pino(opts);
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };

function human(line: string): string {
  try {
    const o = JSON.parse(line) as { time: number; level: number; msg?: string; err?: { message?: string } };
    const t = new Date(o.time).toISOString().slice(11, 23);
    return `${t} ${LEVELS[o.level] ?? o.level} ${o.msg ?? ''}${o.err?.message !== undefined ? `: ${o.err.message}` : ''}\n`;
  } catch {
    return line;
  }
}

/** A logger that writes nothing: the default of parts started without one (tests, tools). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
