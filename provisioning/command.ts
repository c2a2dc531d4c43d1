/**
 * The small command framework of `oti`: a command declares its options (node:util parseArgs
 * configuration plus help text), its positional arguments and examples; this module parses a
 * command line against that declaration, formats `--help`, and maps errors to exit codes.
 *
 * Exit codes (docs/CLI.md §Exit codes):
 *   0  success
 *   1  failure: verification failed, a check failed, a key or file was refused
 *   2  usage error: unknown option, missing or wrong argument (ERR_USAGE)
 *   3  the gateway's local API cannot be reached (ERR_GATEWAY_UNREACHABLE)
 */
import { parseArgs } from 'node:util';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import type { Terminal } from './terminal.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  /** Placeholder shown in help, e.g. DIR. */
  readonly value?: string;
  readonly help: string;
}

export interface PositionalSpec {
  readonly name: string;
  readonly help: string;
  readonly optional?: boolean;
}

export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface Parsed {
  readonly values: Values;
  readonly positionals: readonly string[];
  readonly json: boolean;
}

/** What a command hands back: the JSON for `--json`, the lines for people, and its exit code. */
export interface Outcome {
  readonly json: unknown;
  readonly text: readonly string[];
  readonly exitCode?: number;
}

export interface Command {
  /** Words after `oti`, e.g. "gateway enroll". */
  readonly name: string;
  readonly summary: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  readonly positionals?: readonly PositionalSpec[];
  readonly examples: readonly string[];
  /** Extra paragraphs for --help (what is read, written, and needed). */
  readonly details?: readonly string[];
  run(p: Parsed, term: Terminal): Promise<Outcome>;
}

/** Options every command has. */
export const COMMON_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  help: { type: 'boolean', short: 'h', help: 'show this help and exit' },
  json: { type: 'boolean', help: 'print one JSON document on stdout (for scripts)' },
};

/** Options of commands that talk to a running gateway. */
export const API_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  api: { type: 'string', value: 'URL', help: 'the gateway’s local API (default http://127.0.0.1:8433, or $OTI_API_URL)' },
  token: { type: 'string', value: 'TOKEN', help: 'API bearer token (default $OTI_API_TOKEN)' },
};

export function usage(message: string): OtiError {
  return new OtiError('ERR_USAGE', message);
}

/**
 * parseArgs's "argument is ambiguous" (an option followed by a word that starts with "-", such as
 * `--expires -5d`), said for people: how to give such a value, and that a negative one is refused.
 */
function ambiguousValue(message: string, args: readonly string[]): string | undefined {
  const m = /^Option '(--[a-z0-9-]+)' argument is ambiguous/.exec(message);
  if (m === null) return undefined;
  const option = m[1] as string;
  const next = args[args.indexOf(option) + 1] ?? '';
  if (/^-\d/.test(next)) return `${option} ${next}: negative values are refused (a value that starts with "-" is written ${option}=${next})`;
  return `${option} is followed by "${next}", which starts with "-": give ${option} a value, or write ${option}=${next} if that is its value`;
}

/** Parses `args` (the words after the command name). Throws ERR_USAGE. */
export function parseCommand(cmd: Command, args: readonly string[]): Parsed & { help: boolean } {
  const all = { ...cmd.options, ...COMMON_OPTIONS };
  const config: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(all)) {
    config[name] = { type: o.type, ...(o.short !== undefined ? { short: o.short } : {}), ...(o.multiple === true ? { multiple: true } : {}) };
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...args], options: config, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] };
  } catch (e) {
    // parseArgs throws TypeErrors with codes such as ERR_PARSE_ARGS_UNKNOWN_OPTION.
    throw usage(`${ambiguousValue((e as Error).message, args) ?? (e as Error).message.split('\n')[0] ?? 'bad command line'} (see oti ${cmd.name} --help)`);
  }
  const help = parsed.values.help === true;
  const specs = cmd.positionals ?? [];
  if (!help) {
    const required = specs.filter((s) => s.optional !== true).length;
    if (parsed.positionals.length < required) throw usage(`missing ${specs[parsed.positionals.length]?.name ?? 'argument'} (see oti ${cmd.name} --help)`);
    if (parsed.positionals.length > specs.length) throw usage(`unexpected argument "${parsed.positionals[specs.length] ?? ''}" (see oti ${cmd.name} --help)`);
  }
  return { values: parsed.values, positionals: parsed.positionals, json: parsed.values.json === true, help };
}

/** A string option's value, or ERR_USAGE when it is required and missing. */
export function str(p: Parsed, name: string, required: true): string;
export function str(p: Parsed, name: string, required?: false): string | undefined;
export function str(p: Parsed, name: string, required = false): string | undefined {
  const v = p.values[name];
  if (typeof v === 'string' && v !== '') return v;
  if (required) throw usage(`--${name} is required`);
  return undefined;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** A positive integer option, within [min, max]. */
export function int(p: Parsed, name: string, dflt: number, min: number, max: number): number {
  const v = str(p, name);
  if (v === undefined) return dflt;
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw usage(`--${name} must be an integer from ${min} to ${max}`);
  return Number(v);
}

/** "30d", "12h", "90m", "45s" → milliseconds (at most 10 years). */
export function parseDuration(name: string, s: string): number {
  if (/^-\d/.test(s)) throw usage(`--${name} must be a duration from now on, such as 30d; a negative one (${s}) is refused`);
  const m = /^(\d{1,6})([smhdw])$/.exec(s);
  if (m === null) throw usage(`--${name} must be a number followed by s, m, h, d or w (e.g. 30d)`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const ms = Number(m[1]) * unit;
  if (ms <= 0 || ms > 10 * 365 * 86_400_000) throw usage(`--${name} must be more than 0 and at most 10 years`);
  return ms;
}

export function formatHelp(cmd: Command): string {
  const pos = (cmd.positionals ?? []).map((s) => (s.optional === true ? `[${s.name}]` : s.name)).join(' ');
  const lines = [`oti ${cmd.name}${pos !== '' ? ` ${pos}` : ''} [options]`, '', cmd.summary, ''];
  for (const d of cmd.details ?? []) lines.push(d, '');
  if ((cmd.positionals ?? []).length > 0) {
    lines.push('Arguments:');
    for (const s of cmd.positionals ?? []) lines.push(`  ${s.name.padEnd(26)}${s.help}`);
    lines.push('');
  }
  lines.push('Options:');
  const opts = Object.entries({ ...cmd.options, ...COMMON_OPTIONS }).map(([name, o]) => [`${o.short !== undefined ? `-${o.short}, ` : '    '}--${name}${o.value !== undefined ? ` ${o.value}` : ''}`, o.help] as const);
  const width = Math.max(...opts.map(([left]) => left.length)) + 2;
  for (const [left, help] of opts) lines.push(`  ${left.padEnd(width)}${help}`);
  lines.push('', 'Examples:');
  for (const e of cmd.examples) lines.push(`  ${e}`);
  lines.push('', 'Exit codes: 0 ok, 1 failure, 2 usage error, 3 gateway unreachable.');
  return lines.join('\n');
}

export function exitCodeFor(e: unknown): number {
  if (isOtiError(e, 'ERR_USAGE')) return EXIT_USAGE;
  if (isOtiError(e, 'ERR_GATEWAY_UNREACHABLE')) return EXIT_UNREACHABLE;
  return EXIT_FAILURE;
}
