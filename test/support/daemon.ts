/**
 * Runs a real ringfenced (the compiled build, dist/) as a child process for end-to-end tests in the
 * kernel guests: its own socket and state directory, logs captured for assertions (e.g. that no key
 * or payload bytes appear), and the ways a daemon ends — SIGTERM, kill -9 — plus restart on the same
 * state.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from './run-ts.js';
import { sleep } from './wait.js';

/** The daemon as bin/ringfenced runs it after npm run build: the bundle (dist/ringfenced.mjs). */
export const DAEMON_MAIN = join(PROJECT_ROOT, 'dist/ringfenced.mjs');
/** The CLI as installed: bin/ringfence runs the bundle npm run build makes (dist/ringfence.mjs). */
export const CLI_MAIN = join(PROJECT_ROOT, 'bin/ringfence');

export interface TestDaemonOptions {
  /** Reuse a directory (restart); default: a fresh temp dir holding socket, state and config. */
  dir?: string;
  /** Written as the JSON config file (e.g. { limits: { minDeletionWaitingPeriod: '1s' } }). */
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /** Runs the daemon through this command, e.g. setpriv to drop to a uid keeping CAP_NET_ADMIN. */
  wrapper?: string[];
  readyTimeoutMs?: number;
}

export class TestDaemon {
  readonly dir: string;
  readonly socket: string;
  readonly stateDir: string;
  /** Everything the daemon wrote to stdout and stderr, across restarts. */
  output = '';
  private child: ChildProcess | undefined;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;

  private constructor(private readonly opts: TestDaemonOptions) {
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'rf-e2e-'));
    this.socket = join(this.dir, 'rf.sock');
    this.stateDir = join(this.dir, 'state');
  }

  static async start(opts: TestDaemonOptions = {}): Promise<TestDaemon> {
    const d = new TestDaemon(opts);
    await d.restart();
    return d;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the daemon (again) on the same socket and state; resolves once it logged "ringfenced ready". */
  async restart(extra: Partial<TestDaemonOptions> = {}): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) throw new Error('the daemon is still running');
    mkdirSync(this.dir, { recursive: true });
    const args = [DAEMON_MAIN, '--socket', this.socket, '--state-dir', this.stateDir, '--log-level', 'info'];
    const config = extra.config ?? this.opts.config;
    if (config) {
      const file = join(this.dir, 'config.json');
      writeFileSync(file, JSON.stringify(config));
      args.push('--config', file);
    }
    const [cmd, ...cmdArgs] = [...(this.opts.wrapper ?? []), process.execPath, ...args];
    const child = spawn(cmd!, cmdArgs, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.opts.env, ...extra.env },
      ...(this.opts.uid !== undefined ? { uid: this.opts.uid, gid: this.opts.gid ?? this.opts.uid } : {}),
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let seen = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ringfenced not ready after ${this.opts.readyTimeoutMs ?? 60_000} ms:\n${seen.slice(-3000)}`)), this.opts.readyTimeoutMs ?? 60_000);
      const onData = (b: Buffer) => {
        const s = b.toString();
        this.output += s;
        seen += s;
        if (seen.includes('"msg":"ringfenced ready"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      void this.exited!.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`ringfenced exited (${code ?? signal}) before it was ready:\n${seen.slice(-3000)}`));
      });
    });
  }

  /** SIGTERM and wait: resolves with the exit code (0 expected), or the signal that ended it. */
  async stop(): Promise<number | NodeJS.Signals | null> {
    if (!this.child) return null;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const { code, signal } = await this.exited!;
    return code ?? signal;
  }

  async kill9(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Waits for the daemon to exit on its own (e.g. a start-up failure). */
  async exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited!;
  }

  /** The audit lines logged so far, parsed. */
  auditLines(): Record<string, unknown>[] {
    return this.output
      .split('\n')
      .filter((l) => l.includes('"log":"audit"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** Stops the daemon; one that does not exit within 60 s of SIGTERM is killed, and the test fails with its output. */
export async function stopOrExplain(daemon: TestDaemon | undefined): Promise<number | NodeJS.Signals | null | undefined> {
  if (!daemon) return undefined;
  const code = await Promise.race([daemon.stop(), sleep(60_000).then(() => 'hung' as const)]);
  if (code !== 'hung') return code;
  await daemon.kill9();
  throw new Error(`ringfenced did not exit within 60 s of SIGTERM:\n${daemon.output.slice(-4000)}`);
}
