/**
 * systemd socket activation (deploy/ringfenced.socket) with systemd's own test tool,
 * systemd-socket-activate: it binds the socket, waits for the first connection, then execs the
 * daemon with the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID=<its pid>. The daemon must serve that
 * socket as it is (same inode, the activator's mode — never unlinked or chmod-ed: the .socket unit
 * owns path and mode), exit 0 on SIGTERM and leave the socket file to systemd. Without LISTEN_FDS, or
 * with a LISTEN_PID that is not its own, it binds its --socket itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, type Stats } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RingfenceClient, isDeadlineExceeded } from '../../src/client/sdk/index.js';
import { DAEMON_MAIN, TestDaemon } from '../support/daemon.js';
import { until } from '../support/wait.js';

const LISTEN_FDS_MSG = 'listening on the socket passed by systemd (LISTEN_FDS)';
const DAEMON_SOCKET_MODE = 0o660; // the daemon's default socketMode when it binds itself
const READY_TIMEOUT_MS = 120_000; // node start-up under TCG

/** The activator from the host's systemd package; missing means the test bed is incomplete: fail. */
function activatorPath(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'systemd-socket-activate');
    if (dir && existsSync(p)) return p;
  }
  throw new Error('systemd-socket-activate is not on PATH: install the Debian package "systemd" on the host (.ci/run does); this test needs it');
}


/** A daemon started under systemd-socket-activate; `output` is everything both wrote. */
class Activated {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (b: Buffer) => (this.output += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (this.output += b.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Spawns `systemd-socket-activate -l <listen> [prefix...] node main.js args`, and waits until the socket is bound. */
  static async start(listen: string, daemonArgs: string[], prefix: string[] = []): Promise<Activated> {
    const child = spawn(activatorPath(), ['-l', listen, ...prefix, process.execPath, DAEMON_MAIN, ...daemonArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    const a = new Activated(child);
    let gone = false;
    void a.exited.then(() => (gone = true));
    await until(`the activator to bind ${listen}`, () => {
      if (gone) throw new Error(`systemd-socket-activate exited early:\n${a.output}`);
      return existsSync(listen);
    }, 30_000);
    return a;
  }

  logLines(): Record<string, unknown>[] {
    return this.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async ready(): Promise<Record<string, unknown>> {
    await until('"ringfenced ready"', () => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`exited before ready:\n${this.output}`);
      return this.output.includes('"msg":"ringfenced ready"');
    }, READY_TIMEOUT_MS);
    return this.logLines().find((l) => l.msg === 'ringfenced ready')!;
  }

  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    return (await this.exited).code;
  }
}

/** The activator starts the daemon on the first connection: a raw connect is that connection. */
function firstConnection(path: string): Socket {
  const s = connect({ path });
  s.on('error', () => undefined); // reset when the daemon exits; not what is tested
  return s;
}

const identity = (st: Stats) => ({ ino: st.ino, dev: st.dev, mode: st.mode });
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'rf-activation-'));
  dirs.push(d);
  return d;
};

describe('socket activation', () => {
  const running: Activated[] = [];
  afterAll(async () => {
    for (const a of running) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('serves the socket systemd-socket-activate passes, as it is, and leaves it on SIGTERM', async () => {
    const dir = tempDir();
    const sock = join(dir, 'activated.sock');
    const a = await Activated.start(sock, ['--socket', sock, '--state-dir', join(dir, 'state'), '--log-level', 'info']);
    running.push(a);
    const before = identity(lstatSync(sock));
    expect(lstatSync(sock).isSocket()).toBe(true);
    // The activator's mode must differ from what the daemon would set, or a chmod would go unseen.
    expect(before.mode & 0o777).not.toBe(DAEMON_SOCKET_MODE);

    const first = firstConnection(sock);
    const ready = await a.ready();
    // exec'd by the activator: same pid, so LISTEN_PID was the daemon's own.
    expect(ready.pid).toBe(a.child.pid);
    expect(ready.socket).toBe('systemd (LISTEN_FDS)');
    expect([ready.masterKey, ready.masterKeySource]).toEqual([join(dir, 'state', 'master.key'), 'state-dir']);
    const listening = a.logLines().find((l) => l.msg === LISTEN_FDS_MSG);
    expect(listening, a.output).toBeDefined();
    expect(listening!.fd).toBe(3);
    expect(a.output).not.toContain('removed a stale socket');

    const client = new RingfenceClient({ socketPath: sock, defaultTimeoutMs: 60_000 });
    try {
      const status = await client.getStatus();
      expect(status).toBeDefined();
      await client.createKey('activated');
      const { ciphertext } = await client.encrypt('activated', 'socket activation', { associatedData: 'ad' });
      const { plaintext } = await client.decrypt(ciphertext, { associatedData: 'ad' });
      expect(Buffer.from(plaintext).toString()).toBe('socket activation');
    } finally {
      await client.close();
      first.destroy();
    }
    expect(identity(lstatSync(sock))).toEqual(before); // not unlinked and re-bound, not chmod-ed

    expect(await a.stop()).toBe(0);
    expect(a.output).toContain('"msg":"ringfenced stopped"');
    // systemd owns the socket file: it survives the daemon, unchanged.
    expect(identity(lstatSync(sock))).toEqual(before);
  }, 180_000);

  it('ignores LISTEN_FDS when LISTEN_PID is another process, and binds its own --socket', async () => {
    const dir = tempDir();
    const passed = join(dir, 'passed.sock');
    const own = join(dir, 'own.sock');
    // sh overrides the activator's LISTEN_PID (its own pid, which exec keeps) with PID 1's, then execs
    // node: fd 3 and LISTEN_FDS=1 arrive, but meant for another process.
    const a = await Activated.start(passed, ['--socket', own, '--state-dir', join(dir, 'state'), '--log-level', 'info'], ['sh', '-c', 'LISTEN_PID=1 exec "$@"', 'sh']);
    running.push(a);
    const before = identity(lstatSync(passed));
    const first = firstConnection(passed);
    const ready = await a.ready();
    expect(ready.socket).toBe(own);
    expect(a.output).not.toContain(LISTEN_FDS_MSG);
    expect(lstatSync(own).isSocket()).toBe(true);
    expect(lstatSync(own).mode & 0o777).toBe(DAEMON_SOCKET_MODE);

    const client = new RingfenceClient({ socketPath: own, defaultTimeoutMs: 60_000 });
    // Nobody accepts on the passed socket: a call there connects (backlog) but never gets an answer.
    const ignored = new RingfenceClient({ socketPath: passed, defaultTimeoutMs: 3_000 });
    try {
      expect(await client.getStatus()).toBeDefined();
      const err = await ignored.getStatus().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isDeadlineExceeded(err), String(err)).toBe(true);
    } finally {
      await client.close();
      await ignored.close();
      first.destroy();
    }
    expect(identity(lstatSync(passed))).toEqual(before);
    expect(await a.stop()).toBe(0);
  }, 180_000);

  it('without LISTEN_FDS binds its own socket, sets its mode, and removes it on SIGTERM', async () => {
    expect(process.env.LISTEN_FDS).toBeUndefined(); // the guest's environment passes none on
    const daemon = await TestDaemon.start({ readyTimeoutMs: READY_TIMEOUT_MS });
    let stopped = false;
    try {
      expect(daemon.output).not.toContain(LISTEN_FDS_MSG);
      expect(daemon.output).toContain(`"socket":${JSON.stringify(daemon.socket)}`);
      const st = lstatSync(daemon.socket);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(DAEMON_SOCKET_MODE);
      const client = new RingfenceClient({ socketPath: daemon.socket, defaultTimeoutMs: 60_000 });
      try {
        expect(await client.getStatus()).toBeDefined();
      } finally {
        await client.close();
      }
      expect(await daemon.stop()).toBe(0);
      stopped = true;
      // Its own socket is its to remove (node's server.close unlinks a path it bound).
      expect(existsSync(daemon.socket)).toBe(false);
    } finally {
      if (!stopped) await daemon.kill9();
    }
  }, 180_000);
});
