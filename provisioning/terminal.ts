/**
 * What `oti` does at the terminal: colour only when stdout is a terminal and NO_COLOR is not
 * set (https://no-color.org), progress bars on stderr only when stderr is a terminal,
 * confirmations that need `--yes` when nobody is there to answer, and passphrases from a file,
 * the environment, or a prompt without echo.
 */
import { readFile } from 'node:fs/promises';
import { OtiError } from '../ledger/base/errors.js';

/** Longest passphrase file read. */
const PASSPHRASE_FILE_MAX = 4096;

export interface PassphraseSource {
  /** The value of the file option, if given. */
  readonly file?: string | undefined;
  /** That option's name, for messages (default --passphrase-file). */
  readonly fileOption?: string;
  /** Environment variable consulted next, e.g. OTI_PASSPHRASE. */
  readonly env: string;
  /** What it unlocks, for the prompt: "site authority key". */
  readonly purpose: string;
  /** Ask twice on a terminal (new secrets). */
  readonly confirm?: boolean;
  /** Fewest characters accepted, from any source (for a new secret that guards much). */
  readonly minLength?: number;
}

export class Terminal {
  readonly colour: boolean;
  readonly #env: NodeJS.ProcessEnv;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.#env = env;
    const noColor = env['NO_COLOR'];
    this.colour = process.stdout.isTTY === true && (noColor === undefined || noColor === '');
  }

  #paint(code: number, s: string): string {
    return this.colour ? `\u001b[${code}m${s}\u001b[0m` : s;
  }

  green(s: string): string {
    return this.#paint(32, s);
  }

  red(s: string): string {
    return this.#paint(31, s);
  }

  yellow(s: string): string {
    return this.#paint(33, s);
  }

  bold(s: string): string {
    return this.#paint(1, s);
  }

  env(name: string): string | undefined {
    const v = this.#env[name];
    return v === undefined || v === '' ? undefined : v;
  }

  /** A progress bar on stderr; does nothing when stderr is not a terminal. */
  progress(label: string): Progress {
    return new Progress(label, process.stderr.isTTY === true);
  }

  /**
   * Asks before something destructive. `yes` (from --yes) answers for the person; without it and
   * without a terminal on stdin this is ERR_USAGE (a script must say --yes); "no" is ERR_CANCELLED.
   */
  async confirm(question: string, yes: boolean): Promise<void> {
    if (yes) return;
    if (process.stdin.isTTY !== true) throw new OtiError('ERR_USAGE', `${question} — needs confirmation: run on a terminal or pass --yes`);
    const answer = await this.#readLine(`${question} [y/N] `, false);
    if (!/^y(es)?$/i.test(answer.trim())) throw new OtiError('ERR_CANCELLED', 'cancelled; nothing was changed');
  }

  /**
   * A passphrase from, in this order: the file, the environment variable, a prompt without echo
   * (twice when `confirm`) when stdin is a terminal. ERR_USAGE when none is available.
   */
  async passphrase(src: PassphraseSource): Promise<string> {
    const min = src.minLength ?? 1;
    const long = (v: string, from: string): string => {
      if ([...v].length < min) throw new OtiError('ERR_USAGE', `the passphrase for the ${src.purpose} (${from}) must be at least ${min} characters; nothing was written`);
      return v;
    };
    if (src.file !== undefined) return long(await readPassphraseFile(src.file), src.file);
    const fromEnv = this.env(src.env);
    if (fromEnv !== undefined) return long(fromEnv, src.env);
    if (process.stdin.isTTY !== true) {
      throw new OtiError('ERR_USAGE', `a passphrase for the ${src.purpose} is needed: set ${src.env}, pass ${src.fileOption ?? '--passphrase-file'} FILE, or run on a terminal`);
    }
    const first = await this.#readLine(`Passphrase for the ${src.purpose}: `, true);
    if (first === '') throw new OtiError('ERR_USAGE', 'the passphrase must not be empty');
    long(first, 'typed');
    if (src.confirm === true) {
      const again = await this.#readLine('Again, to confirm: ', true);
      if (again !== first) throw new OtiError('ERR_USAGE', 'the two passphrases differ; nothing was written');
    }
    return first;
  }

  /** Reads one line from the terminal; with `hidden`, in raw mode without echo. Ctrl+C cancels. */
  #readLine(prompt: string, hidden: boolean): Promise<string> {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    return new Promise<string>((resolve, reject) => {
      let line = '';
      if (hidden) stdin.setRawMode(true);
      stdin.setEncoding('utf8');
      const finish = (err?: Error): void => {
        stdin.removeListener('data', onData);
        if (hidden) stdin.setRawMode(false);
        stdin.pause();
        process.stderr.write('\n');
        if (err !== undefined) reject(err);
        else resolve(line);
      };
      const onData = (chunk: string): void => {
        for (const ch of chunk) {
          if (ch === '\u0003' || ch === '\u0004') return finish(new OtiError('ERR_CANCELLED', 'cancelled; nothing was changed'));
          if (ch === '\r' || ch === '\n') return finish();
          if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
          else if (line.length < PASSPHRASE_FILE_MAX) line += ch;
        }
      };
      stdin.on('data', onData);
      stdin.resume();
    });
  }
}

/** The first line of a passphrase file (at most 4 KiB), without its line ending. */
export async function readPassphraseFile(path: string): Promise<string> {
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (e) {
    throw new OtiError('ERR_USAGE', `cannot read the passphrase file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (raw.length > PASSPHRASE_FILE_MAX) throw new OtiError('ERR_USAGE', `the passphrase file ${path} is larger than ${PASSPHRASE_FILE_MAX} bytes`);
  const line = raw.toString('utf8').split(/\r?\n/)[0] ?? '';
  raw.fill(0);
  if (line === '') throw new OtiError('ERR_USAGE', `the passphrase file ${path} is empty`);
  return line;
}

/** A one-line progress bar redrawn at most ten times a second. */
export class Progress {
  readonly #label: string;
  readonly #on: boolean;
  #last = 0;
  #drawn = false;

  constructor(label: string, on: boolean) {
    this.#label = label;
    this.#on = on;
  }

  update(done: number, total: number, note = ''): void {
    if (!this.#on) return;
    const now = Date.now();
    if (now - this.#last < 100 && done < total) return;
    this.#last = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const fill = Math.round(frac * width);
    const bar = `${'#'.repeat(fill)}${'.'.repeat(width - fill)}`;
    process.stderr.write(`\r${this.#label} [${bar}] ${String(Math.floor(frac * 100)).padStart(3)}% ${done}/${total} ${note}\u001b[K`);
    this.#drawn = true;
  }

  end(): void {
    if (this.#drawn) process.stderr.write('\n');
    this.#drawn = false;
  }
}
