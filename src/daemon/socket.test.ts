import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { until } from '../../test/support/wait.js';
import { NOBODY, projectModule, runTsJson } from '../../test/support/run-ts.js';
import { checkSocketMode, lockSocketPath, prepareSocketPath, probeSocket, socketLockPath } from './socket.js';

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-socket-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

let n = 0;
const sockPath = () => join(tmp, `s${n++}.sock`);

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((c) => c.destroy());
    server.once('error', reject);
    server.listen(path, () => {
      servers.push(server);
      resolve(server);
    });
  });
}

/** A socket file whose listener died without cleaning up, as after SIGKILL. */
function staleSocket(path: string): void {
  const script = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  const r = spawnSync(process.execPath, ['-e', script]);
  expect(r.signal).toBe('SIGKILL');
  expect(lstatSync(path).isSocket()).toBe(true);
}

describe('probeSocket', () => {
  it('tells a listening socket from a stale one', async () => {
    const live = sockPath();
    await listen(live);
    expect(await probeSocket(live)).toBe('listening');
    const stale = sockPath();
    staleSocket(stale);
    expect(await probeSocket(stale)).toBe('stale');
  });
});

describe('prepareSocketPath', () => {
  it('does nothing when the path is free, creating the parent with dirMode', async () => {
    const dir = join(tmp, 'run', 'ringfence');
    const path = join(dir, 'ringfence.sock');
    const old = process.umask(0o077); // the mode is set exactly, whatever the umask
    try {
      await prepareSocketPath(path, { dirMode: 0o750 });
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o7777).toBe(0o750);
    expect(existsSync(path)).toBe(false);
    await listen(path); // and listen() works there
  });

  it('defaults the parent directory to 0755 and leaves an existing directory alone', async () => {
    const dir = join(tmp, 'default-mode');
    await prepareSocketPath(join(dir, 'x.sock'));
    expect(statSync(dir).mode & 0o7777).toBe(0o755);
    const existing = join(tmp, 'existing');
    mkdirSync(existing, { mode: 0o700 });
    await prepareSocketPath(join(existing, 'x.sock'), { dirMode: 0o755 });
    expect(statSync(existing).mode & 0o7777).toBe(0o700);
  });

  it('removes a stale socket and logs it', async () => {
    const path = sockPath();
    staleSocket(path);
    const logs: [string, object | undefined][] = [];
    await prepareSocketPath(path, { log: (m, f) => logs.push([m, f]) });
    expect(existsSync(path)).toBe(false);
    expect(logs).toEqual([['removed a stale socket left by a previous daemon', { path }]]);
    await listen(path);
  });

  it('refuses a socket a daemon is listening on, and leaves it', async () => {
    const path = sockPath();
    await listen(path);
    await expect(prepareSocketPath(path)).rejects.toThrow(`another daemon is listening on ${path}`);
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(await probeSocket(path)).toBe('listening');
  });

  it('refuses to remove a regular file or a directory', async () => {
    const file = join(tmp, 'not-a-socket');
    writeFileSync(file, 'precious');
    await expect(prepareSocketPath(file)).rejects.toThrow(/exists and is not a socket; refusing to remove it/);
    expect(existsSync(file)).toBe(true);
    const dir = join(tmp, 'a-dir.sock');
    mkdirSync(dir);
    await expect(prepareSocketPath(dir)).rejects.toThrow(/is not a socket/);
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});

describe('lockSocketPath', () => {
  it('lets one daemon at a time claim a path; a second is refused and leaves the stale socket alone', async () => {
    const path = join(tmp, 'locked', 'r.sock');
    const first = await lockSocketPath(path, { dirMode: 0o750 });
    expect(statSync(join(tmp, 'locked')).mode & 0o7777).toBe(0o750);
    expect(readFileSync(socketLockPath(path), 'utf8')).toBe(`${process.pid}\n`);
    // A stale socket the first daemon is about to replace: the second must leave it alone.
    staleSocket(path);
    // flock(2) locks belong to open files, so a second open in this process is refused as another daemon's would be.
    await expect(lockSocketPath(path)).rejects.toThrow(`another ringfenced (pid ${process.pid}) holds ${path}.lock: it serves, or is starting to serve, on ${path}`);
    expect(lstatSync(path).isSocket()).toBe(true);
    await first.release();
    await first.release();
    // Emptied, not removed: a daemon could otherwise lock a file that another has just replaced.
    expect(readFileSync(socketLockPath(path), 'utf8')).toBe('');
    const second = await lockSocketPath(path);
    await prepareSocketPath(path);
    expect(existsSync(path)).toBe(false);
    await second.release();
  });

  it('is refused while another process holds the lock, and taken once that process is killed -9', async () => {
    const path = sockPath();
    const lockPath = socketLockPath(path);
    const holder = spawn('flock', ['--exclusive', '--close', lockPath, 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      await until('flock(1) to hold the lock', () => spawnSync('flock', ['--nonblock', lockPath, 'true']).status === 1);
      writeFileSync(lockPath, `${holder.pid}\n`);
      await expect(lockSocketPath(path)).rejects.toThrow(`another ringfenced (pid ${holder.pid}) holds ${lockPath}`);
      process.kill(-holder.pid!, 'SIGKILL');
      await once(holder, 'exit');
      const logs: [string, object | undefined][] = [];
      const lock = await lockSocketPath(path, { log: (m, f) => logs.push([m, f]) });
      expect(logs).toEqual([['took over the lock of a daemon that is gone', { path: lockPath, pid: holder.pid }]]);
      await lock.release();
    } finally {
      if (holder.exitCode === null && holder.signalCode === null) process.kill(-holder.pid!, 'SIGKILL');
    }
  });

  it('a lock file root left is taken read-only by another uid, and refused to it while root holds it (found by review)', async () => {
    // Outside `tmp` (0700): nobody must be able to reach it.
    const dir = mkdtempSync(join(tmpdir(), 'rf-shared-lock-'));
    chmodSync(dir, 0o755);
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'r.sock');
    const asNobody = () =>
      runTsJson<{ ok?: true; err?: string }>(
        `import { lockSocketPath } from ${projectModule('src/daemon/socket.ts')};
         try { const l = await lockSocketPath(${JSON.stringify(path)}); await l.release(); console.log(JSON.stringify({ ok: true })); }
         catch (e) { console.log(JSON.stringify({ err: e.message })); }`,
        { uid: NOBODY },
      );
    const root = await lockSocketPath(path);
    expect(statSync(socketLockPath(path)).mode & 0o777).toBe(0o644);
    expect(asNobody()).toEqual({ err: `another ringfenced (pid ${process.pid}) holds ${path}.lock: it serves, or is starting to serve, on ${path}` });
    await root.release();
    expect(asNobody()).toEqual({ ok: true });
    // One it may not even read: said plainly.
    chmodSync(socketLockPath(path), 0o600);
    expect(asNobody().err).toBe(`cannot open the lock file ${path}.lock (EACCES): another user made it; with no daemon running, remove it`);
  });

  it('does not follow a symlink planted at the lock path', async () => {
    const path = sockPath();
    const target = join(tmp, 'victim');
    writeFileSync(target, 'precious');
    symlinkSync(target, socketLockPath(path));
    await expect(lockSocketPath(path)).rejects.toThrow(/ELOOP/);
    expect(readFileSync(target, 'utf8')).toBe('precious');
  });
});

describe('checkSocketMode', () => {
  it('accepts a socket of the mode and refuses another, changing nothing', async () => {
    const path = sockPath();
    const old = process.umask(0o117);
    try {
      await listen(path);
    } finally {
      process.umask(old);
    }
    await checkSocketMode(path, 0o660);
    await expect(checkSocketMode(path, 0o600)).rejects.toThrow(/was created with mode 0660, not socketMode 0600/);
    expect(statSync(path).mode & 0o7777).toBe(0o660);
  });

  it('refuses something that is not a socket', async () => {
    const file = join(tmp, 'plain');
    writeFileSync(file, '');
    await expect(checkSocketMode(file, 0o600)).rejects.toThrow(/is not a socket/);
  });
});

describe('the socket path: no directory on it that others may write (found by review)', () => {
  it('refuses a directory writable by every user or by its group, before creating anything under it', async () => {
    for (const [mode, who] of [[0o777, 'every user'], [0o770, 'its group']] as const) {
      const open = mkdtempSync(join(tmp, 'open-'));
      chmodSync(open, mode);
      const path = join(open, 'run', 'rf.sock');
      await expect(lockSocketPath(path)).rejects.toThrow(new RegExp(`socket path .* is refused: the directory ${open} on its path is writable by ${who}`));
      await expect(prepareSocketPath(path)).rejects.toThrow(/is refused/);
      expect(existsSync(join(open, 'run'))).toBe(false);
    }
  });

  it("accepts a sticky directory above the socket, not as the socket's own directory (found by review: anyone may bind a free name there)", async () => {
    const sticky = mkdtempSync(join(tmp, 'sticky-'));
    chmodSync(sticky, 0o1777);
    const path = join(sticky, 'run', 'rf.sock');
    const lock = await lockSocketPath(path);
    await prepareSocketPath(path);
    await lock.release();
    await expect(lockSocketPath(join(sticky, 'rf.sock'))).rejects.toThrow(new RegExp(`the directory ${sticky} holding it may be written by others, who could bind its name while the daemon is stopped`));
  });

  it("refuses another uid's socket at the path, naming its uid (not \"another daemon is listening\")", async () => {
    const path = sockPath();
    await listen(path);
    chownSync(path, NOBODY, NOBODY);
    await expect(lockSocketPath(path)).rejects.toThrow(new RegExp(`${path} belongs to uid ${NOBODY}, not to root`));
    await expect(prepareSocketPath(path)).rejects.toThrow(/belongs to uid/);
  });

  it('refuses a directory of another uid (the tests run as root)', async () => {
    const theirs = mkdtempSync(join(tmp, 'theirs-'));
    chownSync(theirs, NOBODY, NOBODY);
    await expect(lockSocketPath(join(theirs, 'rf.sock'))).rejects.toThrow(new RegExp(`the directory ${theirs} on its path belongs to uid ${NOBODY}`));
  });
});
