/**
 * What every command module shares: the parsed command line, the context a command runs in (its
 * output streams and a lazily connected SDK client), and the shape of a command's specification,
 * from which cli.ts builds the usage text and checks each invocation before running it.
 */
import type { Readable, Writable } from 'node:stream';
import { RingfenceClient } from '../sdk/index.js';
import { CommandError, UsageError } from './args.js';
import { isTerminalPath, openOutput, writeAll } from './io.js';

/** Every option any command takes; cli.ts parses them all, then checks them against the command. */
export const OPTIONS = {
  socket: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  purpose: { type: 'string' },
  suite: { type: 'string' },
  'rotate-every': { type: 'string' },
  from: { type: 'string' },
  after: { type: 'string' },
  aad: { type: 'string' },
  to: { type: 'string' },
  length: { type: 'string' },
  in: { type: 'string', short: 'i' },
  out: { type: 'string', short: 'o' },
  'no-plaintext': { type: 'boolean' },
  mac: { type: 'string' },
  'key-version': { type: 'string' },
  alg: { type: 'string' },
  uid: { type: 'string' },
  gid: { type: 'string' },
  op: { type: 'string' },
  key: { type: 'string' },
  policy: { type: 'string' },
  'daemon-uid': { type: 'string' },
} as const;

export type OptionName = keyof typeof OPTIONS;
/** Options every command accepts. */
export const GLOBAL_OPTIONS: readonly OptionName[] = ['socket', 'json', 'help'];

export interface Values {
  [name: string]: string | boolean | undefined;
}

export interface Stdio {
  stdin: Readable & { fd?: number };
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean; columns?: number };
}

export class Context {
  private connected: RingfenceClient | undefined;

  constructor(
    readonly json: boolean,
    /** --socket, resolved; undefined: RINGFENCE_SOCKET, else the SDK's default. */
    readonly socket: string | undefined,
    readonly io: Stdio,
  ) {}

  /** The SDK client, connected on first use so that usage errors never touch the daemon. */
  client(): RingfenceClient {
    return (this.connected ??= new RingfenceClient(this.socket === undefined ? {} : { socketPath: this.socket }));
  }

  /** Text for stdout (results only: progress and warnings go to stderr). */
  print(text: string): void {
    this.toStdout(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** The one JSON document of a --json run. */
  printJson(doc: unknown): void {
    this.toStdout(`${JSON.stringify(doc, null, 2)}\n`);
  }

  private readonly stdoutWrites: Promise<void>[] = [];
  private stdoutError: NodeJS.ErrnoException | undefined;
  private toStdout(text: string): void {
    this.stdoutWrites.push(new Promise((resolve) => this.io.stdout.write(text, (err) => ((this.stdoutError ??= err ?? undefined), resolve()))));
  }

  /**
   * Waits for what print() and printJson() wrote; a full disk or a reader gone fails the command
   * (found by review, helper-88: `--json encrypt k > full-disk` exited 0 with the ciphertext lost,
   * the stream's error coming only after the exit code was set).
   */
  async flushStdout(): Promise<void> {
    await Promise.all(this.stdoutWrites.splice(0));
    if (this.stdoutError) throw new CommandError(`cannot write stdout: ${this.stdoutError.code ?? this.stdoutError.message}`);
  }

  /** The JSON document of a command that takes -o: to FILE when given (it may hold plaintext), else stdout. */
  async writeJson(doc: unknown, out: string | undefined): Promise<void> {
    if (out === undefined || out === '-') this.printJson(doc);
    else await writeAll(openOutput(out, this.io.stdout), `${JSON.stringify(doc, null, 2)}\n`);
  }

  /**
   * Refuses, before anything runs, to write raw `what` to a terminal: it would garble the terminal
   * and show nothing useful. A pipe, a file or --json are the ways out.
   */
  refuseBinaryToTerminal(out: string | undefined, what: string, ways: string): void {
    if (!this.json && (out === undefined || out === '-' ? this.io.stdout.isTTY === true : isTerminalPath(out))) {
      throw new UsageError(`refusing to write ${what} to a terminal: use ${ways}`);
    }
  }

  warn(text: string): void {
    this.io.stderr.write(`ringfence: ${text}\n`);
  }

  async close(): Promise<void> {
    await this.connected?.close();
  }
}

export interface CommandSpec {
  /** "encrypt", or "key create" for the key group. */
  name: string;
  /** The synopsis after "ringfence ", e.g. "encrypt KEY [--aad TEXT] [-i FILE] [-o FILE]". */
  synopsis: string;
  /** One line for the command list. */
  summary: string;
  /** Options beyond the global ones. */
  options: readonly OptionName[];
  /** Names of the positional arguments; a trailing "?" marks the optional ones. */
  args: readonly string[];
  /** What failed, for error messages: "encrypt with key k1". */
  what(args: string[]): string;
  /** Resolves to the exit code; throws UsageError (2), CommandError or SDK errors (1). */
  run(ctx: Context, args: string[], values: Values): Promise<number>;
}

/** The string value of an option the spec declared. */
export const str = (values: Values, name: OptionName): string | undefined => {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
};
