/**
 * The `ringfence` command line. Thin: parses arguments and dispatches to one module per command.
 * Exit codes: 0 ok, 1 the operation failed (message on stderr), 2 usage.
 */
import { parseArgs } from 'node:util';
import { doctor } from './commands/doctor.js';

const USAGE = `usage: ringfence [--json] COMMAND

commands:
  doctor     report what this kernel's AF_ALG and key retention allow this process (no daemon needed)

options:
  --json     machine-readable output
  -h, --help this help
`;

export function main(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    process.stderr.write(`ringfence: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const out = (s: string) => process.stdout.write(s);
  switch (command) {
    case 'doctor':
      if (rest.length) break;
      try {
        return doctor(parsed.values.json ?? false, out);
      } catch (err) {
        process.stderr.write(`ringfence doctor: ${(err as Error).message}\n`);
        return 1;
      }
  }
  process.stderr.write(command ? `ringfence: unknown command or arguments: ${parsed.positionals.join(' ')}\n${USAGE}` : USAGE);
  return 2;
}

process.exitCode = main(process.argv.slice(2));
