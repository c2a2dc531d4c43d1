/**
 * `oti completion bash`: a bash completion script for the commands and options of this `oti`,
 * made from the same Command declarations that parse them, so it cannot fall behind. Install it
 * with `oti completion bash | sudo tee /etc/bash_completion.d/oti` (or source it from ~/.bashrc).
 */
import { COMMON_OPTIONS, usage, type Command } from './command.js';

/** The script: completes command words, then the options of the command typed so far. */
export function bashCompletion(commands: readonly Command[]): string {
  const cases = commands.map((c) => {
    const opts = Object.keys({ ...c.options, ...COMMON_OPTIONS }).map((o) => `--${o}`).join(' ');
    return `    "${c.name}") opts="${opts}" ;;`;
  });
  const names = commands.map((c) => c.name);
  return [
    '# bash completion for oti (oti completion bash)',
    '_oti() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" typed="" w i opts="" names',
    `  names=(${names.map((n) => `"${n}"`).join(' ')})`,
    '  for ((i = 1; i < COMP_CWORD; i++)); do w="${COMP_WORDS[i]}"; [[ $w == -* ]] && break; typed="${typed:+$typed }$w"; done',
    '  local next=() found=""',
    '  for w in "${names[@]}"; do',
    '    [[ $w == "$typed" ]] && found="$w"',
    '    if [[ -z $typed ]]; then next+=("${w%% *}"); elif [[ $w == "$typed "* ]]; then w="${w#"$typed "}"; next+=("${w%% *}"); fi',
    '  done',
    '  if [[ -n $found ]]; then',
    '    case "$found" in',
    ...cases,
    '    esac',
    '  else',
    '    opts="--help --version"',
    '  fi',
    '  COMPREPLY=($(compgen -W "$(printf \'%s\\n\' "${next[@]}" | sort -u) $opts" -- "$cur"))',
    '  [[ -n $found && $cur != -* ]] && COMPREPLY+=($(compgen -f -- "$cur"))',
    '  return 0',
    '}',
    'complete -F _oti oti',
    '',
  ].join('\n');
}

/** The `oti completion` command over the list of commands it is given (cli.ts passes its own). */
export function completionCommand(commands: () => readonly Command[]): Command {
  return {
    name: 'completion',
    summary: 'Print a shell completion script for oti (bash).',
    positionals: [{ name: 'SHELL', help: 'bash' }],
    options: {},
    examples: ['oti completion bash | sudo tee /etc/bash_completion.d/oti', 'source <(oti completion bash)'],
    run(p) {
      if (p.positionals[0] !== 'bash') return Promise.reject(usage('only bash is supported: oti completion bash'));
      const script = bashCompletion(commands());
      return Promise.resolve({ json: { shell: 'bash', script }, text: [script.trimEnd()] });
    },
  };
}
