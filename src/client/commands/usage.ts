/** The usage texts: the whole CLI's, a command group's ("key"), and one command's. */
import { HASH_ALGORITHM_NAMES, SUITE_NAMES } from '../sdk/index.js';
import type { CommandSpec } from './command.js';

const HEAD = 'usage: ringfence [--socket PATH] [--json] COMMAND [ARGS]';

const GLOBALS = `global options (before or after the command):
  --socket PATH  the daemon's socket; default $RINGFENCE_SOCKET, else for root
                 /run/ringfence/ringfence.sock, else $XDG_RUNTIME_DIR/ringfence.sock if it exists,
                 else /run/ringfence/ringfence.sock (the systemd-installed daemon's) if it exists,
                 else $XDG_RUNTIME_DIR/ringfence.sock (without XDG_RUNTIME_DIR, the system path)
  --json         one JSON document on stdout: enums by name ("aes-256-gcm", "enabled"), times in
                 ISO 8601, bytes in base64, ciphertexts in text form, MACs and digests in hex
  -h, --help     this help; "ringfence COMMAND --help" for one command`;

const VALUES = `values:
  S (suite)      ${SUITE_NAMES.join(' ')}
  A (hash)       ${HASH_ALGORITHM_NAMES.join(' ')} (default sha256)
  DUR            an integer and a unit: 500ms 30s 15m 1h 7d
  FILE           "-" is stdin (or stdout for -o)
  --aad TEXT     associated data, UTF-8; decrypt needs the same text

input and output:
  encrypt, decrypt and reencrypt read stdin (or -i FILE) and write stdout (or -o FILE, also with
  --json); mac and verify read stdin or -i FILE. Bytes pass unchanged (binary safe). -o FILE is
  written under a temporary name and renamed into place when complete: a failed or interrupted
  run leaves no output file (an existing FILE stays as it was). Binary ciphertext and random
  bytes are not written to a terminal (exit 2): use -o (encrypt, reencrypt), a pipe, a
  redirection or --json. encrypt sends up to 1 MiB in one call and streams anything larger in
  authenticated chunks (constant memory); decrypt
  recognises binary and text ("ringfence:v1:...") ciphertexts of either kind. If a streamed
  decrypt fails, the plaintext already written to stdout must be discarded (ringfence says so on
  stderr). Large files show a progress line on stderr when it is a terminal.

exit status:
  0  success ("verify": the MAC is valid)
  1  the operation failed: "ringfence: <what failed>: <why>" on stderr; "verify": invalid MAC
  2  usage error: the message and the usage on stderr`;

const line = (spec: CommandSpec) => {
  const syn = `  ${spec.synopsis}`;
  return syn.length < 34 ? `${syn.padEnd(34)}${spec.summary}` : `${syn}\n${' '.repeat(34)}${spec.summary}`;
};

export function fullUsage(specs: readonly CommandSpec[]): string {
  return `${HEAD}\n\ncommands:\n${specs.map(line).join('\n')}\n\n${GLOBALS}\n\n${VALUES}\n`;
}

export function groupUsage(group: string, specs: readonly CommandSpec[]): string {
  const members = specs.filter((s) => s.name.startsWith(`${group} `));
  return `usage: ringfence [--socket PATH] [--json] ${group} SUBCOMMAND [ARGS]\n\n${members.map(line).join('\n')}\n\n${GLOBALS}\n`;
}

export function commandUsage(spec: CommandSpec): string {
  return `usage: ringfence [--socket PATH] [--json] ${spec.synopsis}\n  ${spec.summary}\n(ringfence --help lists every command, value and exit status)\n`;
}
