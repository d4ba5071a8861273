/**
 * Runs the real `ringfence` CLI as a child process for tests, so exit codes, stdout bytes and
 * stderr are exactly what a shell sees. The CLI is bundled once per test file with esbuild (what
 * tsx compiles with; packages stay external), because starting it through tsx compiles ~40 modules
 * per run (1.8 s against 0.35 s). Spawning is asynchronous: the fake daemon lives in the test's
 * own event loop and must keep answering while the CLI runs.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI_SOURCE = join(REPO, 'src/client/cli.ts');

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** The child's peak resident set size in bytes (sampled every 10 ms), with `measureRss`. */
  maxRss?: number;
}

export interface RunOptions {
  stdin?: Buffer | string;
  /** Stdin opened from this file (a regular file, as with `< FILE`), instead of a pipe. */
  stdinFile?: string;
  /** Report the child's peak RSS (sampled, written to fd 3 at exit). */
  measureRss?: boolean;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export interface CliRunner {
  /** The bundled CLI, for tests that spawn it themselves. */
  entry: string;
  run(args: string[], opts?: RunOptions): Promise<CliResult>;
  close(): void;
}

/** Bundles src/client/cli.ts into node_modules/.cache (where its packages resolve). */
export async function buildCli(): Promise<CliRunner> {
  const { build } = await import('esbuild');
  const cacheDir = join(REPO, 'node_modules/.cache');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(cacheDir, { recursive: true });
  const dir = mkdtempSync(join(cacheDir, 'ringfence-cli-test-'));
  const outfile = join(dir, 'cli.mjs');
  await build({ entryPoints: [CLI_SOURCE], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile, logLevel: 'error' });
  return {
    entry: outfile,
    run: (args, opts) => runNode([outfile, ...args], opts),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}

// Samples the child's own RSS: getrusage's maxrss would include the parent's pages inherited
// across fork and exec (the test worker's), hiding the child's own use.
const RSS_REPORTER = `import { writeSync } from 'node:fs';
let max = 0;
const sample = () => { max = Math.max(max, process.memoryUsage.rss()); };
setInterval(sample, 10).unref();
process.on('exit', () => { sample(); writeSync(3, String(max)); });`;

/** Runs node with `args`; stdin is closed after `opts.stdin` (or at once). */
export function runNode(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // A clean environment: no RINGFENCE_SOCKET from the developer's shell leaks into the tests.
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', XDG_RUNTIME_DIR: '/nonexistent-runtime-dir' };
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const stdinFd = opts.stdinFile === undefined ? undefined : openSync(opts.stdinFile, 'r');
    const preload = opts.measureRss ? ['--import', `data:text/javascript,${encodeURIComponent(RSS_REPORTER)}`] : [];
    const child = spawn(process.execPath, [...preload, ...args], { cwd: opts.cwd ?? REPO, env, stdio: [stdinFd ?? 'pipe', 'pipe', 'pipe', 'pipe'] });
    if (stdinFd !== undefined) closeSync(stdinFd);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const rss: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    (child.stdio[3] as Readable).on('data', (b: Buffer) => rss.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const maxRss = opts.measureRss ? Number(Buffer.concat(rss).toString()) : undefined;
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), ...(maxRss === undefined ? {} : { maxRss }) });
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // the CLI may exit without reading stdin
      child.stdin.end(opts.stdin ?? Buffer.alloc(0));
    }
  });
}
