/**
 * The `ringfence` command line. Thin: parses every option once (global options may come before or
 * after the command), checks the invocation against the command's spec, and dispatches to one
 * module per command group, all built on the client SDK.
 * Exit codes: 0 ok, 1 the operation failed (message on stderr), 2 usage.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isDaemonUnreachable } from './sdk/index.js';
import { hintOf, noteOf, UsageError } from './commands/args.js';
import { Context, GLOBAL_OPTIONS, OPTIONS, type CommandSpec, type Stdio, type Values } from './commands/command.js';
import { encryptionCommands } from './commands/encryption.js';
import { keyCommands } from './commands/keys.js';
import { macCommands } from './commands/mac.js';
import { policyCommands } from './commands/policy.js';
import { statusCommands } from './commands/status.js';
import { commandUsage, fullUsage, groupUsage } from './commands/usage.js';

const COMMANDS: readonly CommandSpec[] = [...statusCommands, ...keyCommands, ...encryptionCommands, ...macCommands, ...policyCommands];
const GROUPS = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!));
/** String options whose empty value means something ("--aad ''" is empty associated data). */
const EMPTY_OK = new Set(['aad']);

type Found = { spec: CommandSpec; args: string[] } | { group: string; error?: string } | { error?: string };

function find(positionals: string[]): Found {
  const [first, second] = positionals;
  if (first === undefined) return {};
  if (GROUPS.has(first)) {
    const spec = COMMANDS.find((c) => c.name === `${first} ${second}`);
    if (spec) return { spec, args: positionals.slice(2) };
    return { group: first, error: second === undefined ? `${first}: missing subcommand` : `${first}: unknown subcommand "${second}"` };
  }
  const spec = COMMANDS.find((c) => c.name === first);
  return spec ? { spec, args: positionals.slice(1) } : { error: `unknown command "${first}"` };
}

const usageOf = (found: Found) => ('spec' in found ? commandUsage(found.spec) : 'group' in found ? groupUsage(found.group, COMMANDS) : fullUsage(COMMANDS));

function usageError(io: Stdio, message: string, found: Found): number {
  io.stderr.write(`ringfence: ${message}\n${usageOf(found)}`);
  return 2;
}

/** parseArgs' messages, shortened to what the user typed wrong. */
function parseMessage(err: unknown): string {
  const e = err as Error & { code?: string };
  const opt = /'(-[^' ,]+)/.exec(e.message)?.[1]; // from "'-i, --in <value>'"
  // "-i=VALUE" would be the value "=VALUE" (review by helper-165): only the long form takes "=",
  // which parseArgs names ("use '--in=-XYZ' or '-i-XYZ'").
  const long = /use '(--[^=' ]+)=/.exec(e.message)?.[1] ?? opt;
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && opt) return `unknown option ${opt}`;
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && opt) {
    return /argument missing/.test(e.message) ? `option ${opt} needs a value` : /ambiguous/.test(e.message) ? `option ${opt} needs a value (write ${long}=VALUE for one starting with "-")` : `option ${opt} takes no value`;
  }
  return e.message;
}

/** Checks the options and arguments against the spec; returns the error message, if any. */
function check(spec: CommandSpec, args: string[], tokens: { kind: string; name?: string; rawName?: string; value?: string }[]): string | undefined {
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== 'option' || t.name === undefined) continue;
    if (seen.has(t.name)) return `option --${t.name} given more than once`;
    seen.add(t.name);
    if (!GLOBAL_OPTIONS.includes(t.name as never) && !spec.options.includes(t.name as never)) return `${spec.name} does not take ${t.rawName}`;
    if (t.value === '' && !EMPTY_OK.has(t.name)) return `option ${t.rawName} needs a non-empty value`;
  }
  const required = spec.args.filter((a) => !a.endsWith('?'));
  if (args.length < required.length) return `${spec.name}: missing ${required.slice(args.length).join(' ')}`;
  if (args.length > spec.args.length) return `${spec.name}: unexpected argument "${args[spec.args.length]}"`;
  return undefined;
}

/** Make a daemon's message one line, and make sure a missing daemon comes with the way out. */
function reason(err: unknown): string {
  let message = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
  // Not for "permission denied on the socket": that daemon is running.
  if (isDaemonUnreachable(err) && !message.includes('ringfenced') && !/permission denied/i.test(message)) {
    message += ': is ringfenced running? start it, or pass --socket / set RINGFENCE_SOCKET';
  }
  const hint = hintOf(err);
  return hint ? `${message}; ${hint}` : message;
}

export async function main(argv: string[], io: Stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    // Parse again leniently, only to show the usage of the command the user meant.
    const loose = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false });
    return usageError(io, parseMessage(err), find(loose.positionals));
  }
  const values = parsed.values as Values;
  const found = find(parsed.positionals);
  if (values.help) {
    // A command that does not exist is a usage error with --help too: a script checking
    // `ringfence frob --help` must not see success (review by helper-117).
    if ('error' in found && found.error && parsed.positionals.length > ('group' in found ? 1 : 0)) return usageError(io, found.error, found);
    const help = new Context(false, undefined, io);
    help.print(usageOf('error' in found && !('group' in found) ? {} : found));
    try {
      await help.flushStdout();
    } catch (err) {
      io.stderr.write(`ringfence: help: ${reason(err)}\n`);
      return 1;
    }
    return 0;
  }
  if (!('spec' in found)) return usageError(io, found.error ?? 'missing command', found);
  const { spec, args } = found;
  const problem = check(spec, args, parsed.tokens);
  if (problem) return usageError(io, problem, found);
  const socket = typeof values.socket === 'string' ? resolve(values.socket) : undefined;
  const ctx = new Context(values.json === true, socket, io);
  try {
    const code = await spec.run(ctx, args, values);
    await ctx.flushStdout();
    return code;
  } catch (err) {
    if (err instanceof UsageError) return usageError(io, err.message, found);
    io.stderr.write(`ringfence: ${spec.what(args)}: ${reason(err)}\n`);
    const note = noteOf(err);
    if (note) io.stderr.write(`ringfence: ${note}\n`);
    return 1;
  } finally {
    await ctx.close().catch(() => {});
  }
}

// A reader that went away (`ringfence random 64 | head -c 1`) is a failed run, not a crash.
let stdoutFailed = false;
process.stdout.on('error', () => (stdoutFailed = true));
// stderr gone too (`2>&1 | true`): its messages are lost, and the exit code main decides stands;
// unheard, the EPIPE was an uncaught exception and every run exited 1 (review by helper-130).
process.stderr.on('error', () => {});
const code = await main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
process.exitCode = code === 0 && stdoutFailed ? 1 : code;
// Done reading: a writer that keeps its end of the pipe open must not keep the CLI running
// (review by helper-106: a refused decrypt exited only once `(...; sleep 5) |` had ended).
process.stdin.destroy();
