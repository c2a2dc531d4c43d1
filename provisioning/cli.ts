#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --optimize-for-size
/**
 * `oti`: the command-line tool of installers and field technicians (docs/CLI.md).
 *
 * `oti <group> <command> [options]`; `oti --help` lists the commands, `oti <command> --help`
 * explains one with examples. Results go to stdout (one JSON document with --json), progress and
 * prompts to stderr, errors to stderr as "oti: <message> [CODE]" (and, with --json, as
 * {"error": {"code", "message"}} on stdout). Exit codes: see provisioning/command.ts.
 *
 * Node runs it with --optimize-for-size, and glibc with at most two malloc arenas (the first
 * line; deploy/install.sh's /usr/local/bin/oti passes the same): V8 keeps its heap close to what
 * is live and idle threads keep no arena of their own, which holds `oti verify` of a
 * 1,000,000-entry chain under 150 MB of RSS on two cores (docs/DECISIONS.md §Memory).
 */
import { isOtiError } from '../ledger/base/errors.js';
import { EXIT_OK, EXIT_USAGE, exitCodeFor, formatHelp, parseCommand, type Command } from './command.js';
import { Terminal } from './terminal.js';
import { siteCommands } from './site.js';
import { gatewayCommands } from './gateway.js';
import { lockCommands } from './lock.js';
import { rosterCommands } from './statements.js';
import { opsCommands } from './ops.js';
import { backupCommands } from './backup.js';
import { doctorCommands } from './doctor.js';
import { privacyCommands } from './privacy.js';
import { ledgerCommands } from './ledger.js';
import { simulateCommands } from './simulate.js';
import { evidenceCommands } from './evidence.js';
import { mqttCommands } from './mqtt.js';
import { exportCommand } from './export.js';
import { archiveCommands } from './archive.js';
import { proofCommands } from './proofs.js';
import { completionCommand } from './completion.js';
import { createRequire } from 'node:module';

export const COMMANDS: readonly Command[] = [...siteCommands, ...gatewayCommands, ...lockCommands, ...rosterCommands, ...opsCommands, ...backupCommands, ...doctorCommands, ...privacyCommands, ...ledgerCommands, ...simulateCommands, ...evidenceCommands, ...mqttCommands, exportCommand, ...archiveCommands, ...proofCommands, completionCommand(() => COMMANDS)];

/** The package's version (package.json), for `oti --version`. */
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

function commandTable(cmds: readonly Command[]): string[] {
  const width = Math.max(...cmds.map((c) => c.name.length)) + 2;
  return cmds.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
}

function overview(): string {
  return [
    `oti ${VERSION}: provision OTI gateways, sites and locks; diagnose and verify.`,
    '',
    'Usage: oti <command> [options]     (oti <command> --help for its options and examples)',
    '',
    'Commands:',
    ...commandTable(COMMANDS),
    '',
    'Common options: --help, --json, --version. Exit codes: 0 ok, 1 failure, 2 usage error, 3 gateway unreachable.',
    'No colour when stdout is not a terminal or NO_COLOR is set.',
  ].join('\n');
}

/**
 * The commands of a group when argv names a group and nothing more (`oti lock`, `oti mqtt user
 * --help`): those whose name starts with its words.
 */
function groupOf(argv: readonly string[]): { words: string[]; cmds: Command[] } | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  const cmds = COMMANDS.filter((c) => {
    const w = c.name.split(' ');
    return w.length > words.length && words.every((x, i) => w[i] === x);
  });
  return words.length > 0 && cmds.length > 0 ? { words, cmds } : undefined;
}

function groupHelp(g: { words: string[]; cmds: Command[] }): string {
  return [`Usage: oti ${g.words.join(' ')} <command> [options]     (oti ${g.words.join(' ')} <command> --help for its options and examples)`, '', 'Commands:', ...commandTable(g.cmds)].join('\n');
}

/** The command whose name is the longest prefix of argv's words, and the remaining words. */
function findCommand(argv: readonly string[]): { cmd: Command; rest: readonly string[] } | undefined {
  let best: { cmd: Command; rest: readonly string[] } | undefined;
  for (const cmd of COMMANDS) {
    const words = cmd.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (best === undefined || words.length > best.cmd.name.split(' ').length)) {
      best = { cmd, rest: argv.slice(words.length) };
    }
  }
  return best;
}

export async function main(argv: readonly string[]): Promise<number> {
  const term = new Terminal();
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(`${overview()}\n`);
    return argv.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    process.stdout.write(argv.includes('--json') ? `${JSON.stringify({ version: VERSION })}\n` : `oti ${VERSION}\n`);
    return EXIT_OK;
  }
  const found = findCommand(argv);
  const group = found === undefined ? groupOf(argv) : undefined;
  if (group !== undefined) {
    // `oti lock --help` lists the group; `oti lock` alone is a usage error that shows the same list.
    const asked = argv.includes('--help') || argv.includes('-h');
    (asked ? process.stdout : process.stderr).write(`${asked ? '' : `oti: "${group.words.join(' ')}" needs a command [ERR_USAGE]\n`}${groupHelp(group)}\n`);
    return asked ? EXIT_OK : EXIT_USAGE;
  }
  if (found === undefined) {
    process.stderr.write(`oti: unknown command "${argv.filter((a) => !a.startsWith('-')).slice(0, 2).join(' ')}"; oti --help lists the commands [ERR_USAGE]\n`);
    return EXIT_USAGE;
  }
  const json = found.rest.includes('--json');
  try {
    const p = parseCommand(found.cmd, found.rest);
    if (p.help) {
      process.stdout.write(`${formatHelp(found.cmd)}\n`);
      return EXIT_OK;
    }
    const outcome = await found.cmd.run(p, term);
    if (p.json) process.stdout.write(`${JSON.stringify(outcome.json, null, 2)}\n`);
    else if (outcome.text.length > 0) process.stdout.write(`${outcome.text.join('\n')}\n`);
    return outcome.exitCode ?? EXIT_OK;
  } catch (e) {
    const code = isOtiError(e) ? e.code : 'ERR_INTERNAL';
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`oti: ${message} [${code}]\n`);
    if (!isOtiError(e) && e instanceof Error && e.stack !== undefined && term.env('OTI_DEBUG') !== undefined) process.stderr.write(`${e.stack}\n`);
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } }, null, 2)}\n`);
    return exitCodeFor(e);
  }
}

// Exit explicitly: a loaded Bluetooth stack or an open socket would otherwise keep the process alive.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`oti: ${String(e)}\n`);
    process.exit(1);
  },
);
