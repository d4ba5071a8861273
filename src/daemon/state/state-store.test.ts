import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { projectModule, runTsJson } from '../../../test/support/run-ts.js';
import { LOCK_FILE, STATE_FILE, StateStore, StateWriteError } from './state-store.js';

// Fault injection for errors a real filesystem will not produce on demand (EIO), and a trace of the
// calls that make a save durable. Everything else passes through to the real node:fs/promises.
const faults = vi.hoisted(() => ({
  sync: undefined as string | undefined,
  /** Fails only the fsync of the directory (after the rename). */
  syncDir: undefined as string | undefined,
  rename: undefined as string | undefined,
  write: undefined as string | undefined,
  /** Called with the path just before a file is opened, or a directory made (to race them). */
  beforeOpen: undefined as ((path: string) => void) | undefined,
  beforeMkdir: undefined as ((path: string) => void) | undefined,
  trace: [] as string[],
}));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const fail = (code: string) => Object.assign(new Error(`${code}: injected`), { code });
  const name = (p: unknown) => String(p).split('/').pop();
  return {
    ...fs,
    rename: async (from: string, to: string) => {
      faults.trace.push(`rename ${name(from)} ${name(to)}`);
      if (faults.rename) throw fail(faults.rename);
      return fs.rename(from, to);
    },
    mkdir: async (...args: Parameters<typeof fs.mkdir>) => {
      faults.beforeMkdir?.(String(args[0]));
      return fs.mkdir(...args);
    },
    open: async (...args: Parameters<typeof fs.open>) => {
      faults.beforeOpen?.(String(args[0]));
      const fh = await fs.open(...args);
      return new Proxy(fh, {
        get(target, prop) {
          if (prop === 'sync') {
            return async () => {
              faults.trace.push(`fsync ${name(args[0])}`);
              if (faults.sync) throw fail(faults.sync);
              if (faults.syncDir && !String(args[0]).endsWith('.json') && !String(args[0]).includes('.tmp-')) throw fail(faults.syncDir);
              return target.sync();
            };
          }
          if (prop === 'writeFile' && faults.write) return async () => Promise.reject(fail(faults.write!));
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    },
  };
});

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-state-'));
const stores: StateStore[] = [];
afterEach(async () => {
  Object.assign(faults, { sync: undefined, syncDir: undefined, rename: undefined, write: undefined, beforeOpen: undefined, beforeMkdir: undefined, trace: [] });
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const newDir = () => join(tmp, `d${n++}`);

async function open(dir: string, logs?: [string, object | undefined][]): Promise<StateStore> {
  const store = await StateStore.open(dir, { log: (m, f) => logs?.push([m, f]) });
  stores.push(store);
  return store;
}

const stateText = (dir: string) => readFileSync(join(dir, STATE_FILE), 'utf8');
const mode = (path: string) => statSync(path).mode & 0o7777;

describe('StateStore directory', () => {
  it('creates missing directories with mode 0700 whatever the umask', async () => {
    const dir = join(newDir(), 'a', 'b');
    const old = process.umask(0o000);
    try {
      await open(dir);
    } finally {
      process.umask(old);
    }
    expect(mode(dir)).toBe(0o700);
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
  });

  it('refuses a file, a group/other-writable directory and one of another uid', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, '');
    await expect(StateStore.open(file)).rejects.toThrow(`state directory ${file} exists and is not a directory`);
    for (const bad of [0o770, 0o702, 0o777]) {
      const dir = newDir();
      mkdirSync(dir);
      chmodSync(dir, bad);
      await expect(StateStore.open(dir)).rejects.toThrow(`is writable by group or others (mode 0${bad.toString(8)}); run chmod 700 ${dir}`);
    }
    const readable = newDir();
    mkdirSync(readable, { mode: 0o755 });
    chmodSync(readable, 0o755);
    await open(readable); // readable by others is the operator's choice; writable is not
    const foreign = newDir();
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, 12345, 12345);
    await expect(StateStore.open(foreign)).rejects.toThrow(/belongs to uid 12345, not to this daemon's uid 0/);
  });

  it('refuses a path others could swap the directory on: a parent writable by others, not sticky, or a symlink of another uid (found by review)', async () => {
    const parent = newDir();
    mkdirSync(parent);
    chmodSync(parent, 0o777);
    await expect(StateStore.open(join(parent, 'state'))).rejects.toThrow(
      `state directory ${join(parent, 'state')} is refused: the directory ${parent} on its path is writable by every user, who could replace or delete the state directory (chmod o-w ${parent})`,
    );
    chmodSync(parent, 0o1777); // sticky, as /tmp: others cannot rename or delete what is not theirs
    await open(join(parent, 'state'));
    const link = join(newDir());
    symlinkSync(join(parent, 'state'), link);
    await StateStore.open(link).then(() => expect.unreachable(), (e: Error) => expect(e.message).toMatch(/another ringfenced/)); // followed: the same directory, locked
    const theirs = join(tmp, `theirs-${n++}`);
    symlinkSync(newDir(), theirs);
    execFileSync('chown', ['-h', '12345', theirs]);
    await expect(StateStore.open(theirs)).rejects.toThrow(`the symlink ${theirs} on its path belongs to uid 12345, not to root or the daemon's uid 0 (chown -h root ${theirs})`);
  });

  it('a symlinked state directory is resolved once: re-pointed later, saves still go where the lock is (found by review)', async () => {
    const [v1, v2] = [newDir(), newDir()];
    for (const v of [v1, v2]) mkdirSync(v, { mode: 0o700 });
    const current = join(tmp, `current-${n++}`);
    symlinkSync(v1, current);
    const a = await open(current);
    expect(a.dir).toBe(v1);
    // The operator switches the link and starts another daemon on it.
    unlinkSync(current);
    symlinkSync(v2, current);
    const b = await open(current);
    await b.save({ owner: 'b' });
    await a.save({ owner: 'a' });
    expect(JSON.parse(readFileSync(join(v2, STATE_FILE), 'utf8'))).toEqual({ owner: 'b' });
    expect(JSON.parse(readFileSync(join(v1, STATE_FILE), 'utf8'))).toEqual({ owner: 'a' });
  });
});

describe('StateStore load/save', () => {
  it('round-trips a document in a 0600 file; no state is undefined', async () => {
    const dir = newDir();
    const store = await open(dir);
    expect(store.load()).toBeUndefined();
    const doc = { version: 1, keys: [{ id: 'k1', blob: 'AAEC', labels: { 'é': '✓' } }], n: null };
    await store.save(doc);
    expect(store.load()).toEqual(doc);
    expect(mode(join(dir, STATE_FILE))).toBe(0o600);
    await store.close();
    expect((await open(dir)).load()).toEqual(doc);
  });

  it('fsyncs the temp file before the rename and the directory after', async () => {
    const dir = newDir();
    const store = await open(dir);
    faults.trace = [];
    await store.save({ a: 1 });
    const tmpName = `${STATE_FILE}.tmp-${process.pid}`;
    const leaf = dir.split('/').pop();
    expect(faults.trace).toEqual([`fsync ${tmpName}`, `rename ${tmpName} ${STATE_FILE}`, `fsync ${leaf}`]);
  });

  it('serializes concurrent saves: all succeed, the last wins', async () => {
    const dir = newDir();
    const store = await open(dir);
    await Promise.all(Array.from({ length: 25 }, (_, i) => store.save({ i })));
    expect(store.load()).toEqual({ i: 24 });
    expect(readdirSync(dir).sort()).toEqual([LOCK_FILE, STATE_FILE]);
  });

  for (const [fault, code] of [['write', 'EIO'], ['sync', 'EIO'], ['rename', 'EROFS']] as const) {
    it(`a failing ${fault} (${code}) keeps the old state, removes the temp file and rethrows the errno error`, async () => {
      const dir = newDir();
      const store = await open(dir);
      await store.save({ v: 1 });
      faults[fault] = code;
      const err = await store.save({ v: 2 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateWriteError);
      expect(err).toMatchObject({ code });
      expect(JSON.parse(stateText(dir))).toEqual({ v: 1 });
      expect(readdirSync(dir).sort()).toEqual([LOCK_FILE, STATE_FILE]);
      faults[fault] = undefined;
      await store.save({ v: 3 }); // a failed save does not wedge the queue
      expect(store.load()).toEqual({ v: 3 });
    });
  }

  it('a failing directory fsync after the rename is retried and logged, and the save counts as done', async () => {
    const dir = newDir();
    const logs: [string, object | undefined][] = [];
    const store = await open(dir, logs);
    await store.save({ v: 1 });
    faults.syncDir = 'EIO';
    faults.trace = [];
    await expect(store.save({ v: 2 })).resolves.toBeUndefined();
    expect(store.load()).toEqual({ v: 2 }); // what the next start reads, so what the caller must keep
    expect(faults.trace.filter((t) => t.startsWith('fsync ') && !t.includes('.tmp-'))).toHaveLength(2);
    expect(logs.map(([m]) => m)).toContain('the state was saved, but its directory could not be fsynced: a power loss now may lose the last change');
  });

  it('rejects documents JSON cannot represent without touching the state', async () => {
    const dir = newDir();
    const store = await open(dir);
    await store.save({ v: 1 });
    await expect(store.save(undefined)).rejects.toThrow(/not JSON-serializable/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(store.save(cyclic)).rejects.toThrow(TypeError);
    expect(store.load()).toEqual({ v: 1 });
  });

  it('refuses a corrupt file without echoing it and leaves it untouched', async () => {
    const dir = newDir();
    const corrupt = '{"keys": [{"blob": "c2VjcmV0"';
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, STATE_FILE), corrupt);
    const store = await open(dir);
    expect(() => store.load()).toThrow(`${join(dir, STATE_FILE)} is corrupt (not valid JSON, ${corrupt.length} bytes); it was left untouched`);
    let message = '';
    try {
      store.load();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).not.toContain('c2VjcmV0');
    expect(stateText(dir)).toBe(corrupt);
  });

  it('is unusable after close, and close is idempotent', async () => {
    const store = await open(newDir());
    await store.close();
    await store.close();
    expect(() => store.load()).toThrow(/is closed/);
    expect(() => store.save({})).toThrow(/is closed/);
  });
});

describe('StateStore load: who may have written state.json', () => {
  // A directory others may enter (the store accepts a readable one), so that another uid can reach
  // state.json at all; `tmp` is private.
  const reachable = () => {
    const base = mkdtempSync(join(tmpdir(), 'ringfence-state-reachable-'));
    chmodSync(base, 0o755);
    onTestFinished(() => rmSync(base, { recursive: true, force: true }));
    const dir = join(base, 'state');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    return dir;
  };
  const doc = { keys: [{ id: 'k1', encryptions: 5000000000 }] };

  it('refuses a state.json writable by group or others, or of a uid other than root and its own, and leaves it untouched (review by helper-190)', async () => {
    const dir = reachable();
    const store = await open(dir);
    await store.save(doc);
    const path = join(dir, STATE_FILE);
    for (const [bad, why] of [
      [0o666, 'it is writable by every user (chmod o-w it)'],
      [0o620, 'it is writable by its group (chmod g-w it)'],
    ] as const) {
      chmodSync(path, bad);
      expect(() => store.load()).toThrow(`state file ${path} is refused: ${why}`);
      expect(mode(path)).toBe(bad);
    }
    chmodSync(path, 0o600);
    chownSync(path, 12345, 12345);
    // Its owner can rewrite it: lower the counts (nonces reused) or bring a deletion forward.
    execFileSync('sh', ['-c', `printf '{"keys":[{"id":"k1","encryptions":0}]}' > ${path}`], { uid: 12345, gid: 12345 });
    expect(() => store.load()).toThrow(`state file ${path} is refused: it belongs to uid 12345, not to root or the daemon's uid 0 (chown it)`);
    expect(stateText(dir)).toBe('{"keys":[{"id":"k1","encryptions":0}]}');
    chownSync(path, 0, 0);
    expect(store.load()).toEqual({ keys: [{ id: 'k1', encryptions: 0 }] });
  });

  it('refuses a state.json symlink to a missing file (a volume not mounted yet): not a first start with no keys', async () => {
    // As master.key does (helper-91). Taken as no state, the daemon started with no keys, and its
    // first change replaced the link with a new file: the real one, once mounted, was no longer read.
    const dir = newDir();
    const store = await open(dir);
    const path = join(dir, STATE_FILE);
    const missing = join(dir, 'not-mounted', 'state.json');
    symlinkSync(missing, path);
    expect(() => store.load()).toThrow(`state file ${path} is a symlink to ${missing}, which does not exist (a volume not mounted yet?); it was left untouched`);
    unlinkSync(path);
    expect(store.load()).toBeUndefined(); // no file at all: a first start
  });

  it('refuses a state.json symlink of another uid, and a FIFO there without hanging', async () => {
    const dir = reachable();
    const store = await open(dir);
    const path = join(dir, STATE_FILE);
    const elsewhere = join(newDir());
    writeFileSync(elsewhere, JSON.stringify(doc));
    symlinkSync(elsewhere, path);
    execFileSync('chown', ['-h', '12345', path]);
    expect(() => store.load()).toThrow(`state file ${path} is refused: the symlink ${path} on its path belongs to uid 12345`);
    unlinkSync(path);
    await store.close();
    execFileSync('mkfifo', ['-m', '600', path]);
    // In a child, with a deadline: a blocking open of a FIFO would stop this process for good.
    const r = runTsJson<{ err?: string; ok?: unknown }>(
      `import { StateStore } from ${projectModule('src/daemon/state/state-store.ts')};
       const s = await StateStore.open(${JSON.stringify(dir)});
       try { console.log(JSON.stringify({ ok: s.load() ?? null })); } catch (e) { console.log(JSON.stringify({ err: e.message })); }
       await s.close();`,
      { timeoutMs: 20_000 },
    );
    expect(r).toEqual({ err: `state file ${path} is refused: it is not a regular file; it was left untouched` });
  }, 60_000); // a child process of tsx

  it('as a non-root daemon: reads a state.json restored by root (cp as root), refuses one of a third uid', async () => {
    const dir = reachable();
    chmodSync(dir, 0o700);
    chownSync(dir, 12345, 12345);
    const path = join(dir, STATE_FILE);
    const loadAsDaemon = () =>
      runTsJson<{ err?: string; ok?: unknown }>(
        `import { StateStore } from ${projectModule('src/daemon/state/state-store.ts')};
         const s = await StateStore.open(${JSON.stringify(dir)});
         try { console.log(JSON.stringify({ ok: s.load() ?? null })); } catch (e) { console.log(JSON.stringify({ err: e.message })); }
         await s.close();`,
        { uid: 12345 },
      );
    // What `cp` as root with umask 022 makes where there was no file: root's, 0644.
    writeFileSync(path, JSON.stringify(doc));
    chmodSync(path, 0o644);
    expect(loadAsDaemon()).toEqual({ ok: doc });
    chownSync(path, 23456, 23456);
    expect(loadAsDaemon()).toEqual({ err: `state file ${path} is refused: it belongs to uid 23456, not to root or the daemon's uid 12345 (chown it); it was left untouched` });
    chownSync(path, 12345, 12345);
    chmodSync(path, 0o600);
    expect(loadAsDaemon()).toEqual({ ok: doc });
  }, 60_000); // three child processes of tsx
});

describe('StateStore crash recovery and lock', () => {
  it('only temp files of the form state.json.tmp-<pid> are removed on open; a save never writes through a symlink at its temp name (found by review)', async () => {
    const dir = newDir();
    const store = await open(dir);
    await store.close();
    for (const name of ['before-upgrade', '123.bak']) writeFileSync(join(dir, `${STATE_FILE}.tmp-${name}`), '{"operator": "copy"}');
    const reopened = await open(dir);
    for (const name of ['before-upgrade', '123.bak']) expect(readFileSync(join(dir, `${STATE_FILE}.tmp-${name}`), 'utf8')).toBe('{"operator": "copy"}');
    const victim = join(tmp, `victim-${n++}`);
    writeFileSync(victim, 'untouched');
    symlinkSync(victim, join(dir, `${STATE_FILE}.tmp-${process.pid}`));
    await reopened.save({ v: 1 });
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(reopened.load()).toEqual({ v: 1 });
    expect(existsSync(join(dir, `${STATE_FILE}.tmp-${process.pid}`))).toBe(false);
    // Planted between the removal and the open: the open refuses it, and the save fails saying so.
    faults.beforeOpen = (path) => {
      if (path.includes('.tmp-')) symlinkSync(victim, path);
    };
    await expect(reopened.save({ v: 2 })).rejects.toMatchObject({ name: 'StateWriteError', code: 'EEXIST' });
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(reopened.load()).toEqual({ v: 1 });
  });

  it('a symlink planted at a name of the path that did not exist at the first check is refused (found by review)', async () => {
    const parent = newDir();
    mkdirSync(parent, { mode: 0o1777 });
    chmodSync(parent, 0o1777);
    const target = newDir();
    mkdirSync(target, { mode: 0o700 });
    const planted = join(parent, 'state');
    // Another uid plants the link after the first check, just before the store makes the directory.
    faults.beforeMkdir = () => {
      faults.beforeMkdir = undefined;
      symlinkSync(target, planted);
      execFileSync('chown', ['-h', '12345', planted]);
    };
    await expect(StateStore.open(planted)).rejects.toThrow(`the symlink ${planted} on its path belongs to uid 12345`);
    expect(readdirSync(target)).toEqual([]);
  });

  it('a crash between write and rename leaves the old state; the temp file is removed on open', async () => {
    const dir = newDir();
    const store = await open(dir);
    await store.save({ v: 1 });
    await store.close();
    // What a daemon killed mid-save leaves: a partial temp file (and maybe its lock temp file).
    writeFileSync(join(dir, `${STATE_FILE}.tmp-424242`), '{"v": 2, "ke');
    writeFileSync(join(dir, `${LOCK_FILE}.tmp-424242`), '424242\n');
    const logs: [string, object | undefined][] = [];
    const reopened = await open(dir, logs);
    expect(reopened.load()).toEqual({ v: 1 });
    expect(readdirSync(dir).sort()).toEqual([LOCK_FILE, STATE_FILE]);
    expect(logs).toEqual([['removed the temp file of an interrupted state write', { path: join(dir, `${STATE_FILE}.tmp-424242`) }]]);
  });

  it('refuses a directory another live process has locked, and opens it once that process is killed -9', async () => {
    const dir = newDir();
    mkdirSync(dir, { mode: 0o700 });
    const lockPath = join(dir, LOCK_FILE);
    // flock(1) from util-linux holds the lock itself (-o: not the command), as a daemon would.
    const holder = spawn('flock', ['--exclusive', '--close', lockPath, 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      await until(() => spawnSync('flock', ['--nonblock', lockPath, 'true']).status === 1);
      writeFileSync(lockPath, `${holder.pid}\n`);
      await expect(StateStore.open(dir)).rejects.toThrow(`another ringfenced (pid ${holder.pid}) uses ${dir}`);
      expect(readFileSync(lockPath, 'utf8')).toBe(`${holder.pid}\n`);
      expect(readdirSync(dir)).toEqual([LOCK_FILE]);
      process.kill(-holder.pid!, 'SIGKILL');
      await once(holder, 'exit');
      const logs: [string, object | undefined][] = [];
      const store = await open(dir, logs);
      expect(readFileSync(lockPath, 'utf8')).toBe(`${process.pid}\n`);
      expect(logs).toEqual([['took over the lock of a daemon that is gone', { path: lockPath, pid: holder.pid }]]);
      await store.close();
    } finally {
      if (holder.exitCode === null && holder.signalCode === null) process.kill(-holder.pid!, 'SIGKILL');
    }
  });

  it('is not fooled by a stale lock naming a live pid: its own (pid 1 again in a container) or another process', async () => {
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      for (const pid of [process.pid, sleeper.pid!]) {
        const dir = newDir();
        mkdirSync(dir, { mode: 0o700 });
        writeFileSync(join(dir, LOCK_FILE), `${pid}\n`); // what a daemon killed -9 leaves
        const store = await open(dir);
        expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
        await store.close();
      }
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('refuses a second store on the same directory until the first closes', async () => {
    const dir = newDir();
    const first = await open(dir);
    await expect(StateStore.open(dir)).rejects.toThrow(`another ringfenced (pid ${process.pid}) uses ${dir}`);
    await first.close();
    // The lock file stays, emptied: removing it could let two daemons lock two different files.
    expect(readdirSync(dir)).toEqual([LOCK_FILE]);
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe('');
    await open(dir);
  });

  it('takes over the lock of a dead process, or an empty lock', async () => {
    const dead = spawnSync('true').pid!; // exited and reaped
    for (const content of [`${dead}\n`, '']) {
      const dir = newDir();
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, LOCK_FILE), content);
      const logs: [string, object | undefined][] = [];
      await open(dir, logs);
      expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
      expect(logs).toEqual(content ? [['took over the lock of a daemon that is gone', { path: join(dir, LOCK_FILE), pid: dead }]] : []);
    }
  });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Mounts a 64 KiB tmpfs on `dir`. The host tests run as root (see .ci/run and the README): a host
 * that may not mount fails here, saying so, rather than testing an injected ENOSPC in its place.
 */
function mountSmallTmpfs(dir: string): void {
  mkdirSync(dir);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
    throw new Error(`cannot mount a tmpfs for the full-disk test (${why}): the host tests need root with CAP_SYS_ADMIN, as in CI`);
  }
}

describe('StateStore on a full disk', () => {
  const mnt = newDir();
  let mounted = false;
  afterAll(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  it('save rejects with ENOSPC on a real full 64 KiB tmpfs, keeps the old state, and works once space is freed', async () => {
    mountSmallTmpfs(mnt);
    mounted = true;
    const store = await open(mnt);
    await store.save({ v: 1 });
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(4096, 1);
    let full: unknown;
    try {
      for (let i = 0; ; i++) {
        writeSync(fd, chunk);
        expect(i).toBeLessThan(16); // 64 KiB is 16 pages
      }
    } catch (err) {
      full = err;
    } finally {
      closeSync(fd);
    }
    expect(full).toMatchObject({ code: 'ENOSPC' });
    const err = await store.save({ v: 2, pad: 'x'.repeat(10_000) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ENOSPC' });
    expect(JSON.parse(stateText(mnt))).toEqual({ v: 1 });
    expect(readdirSync(mnt).sort()).toEqual([LOCK_FILE, 'filler', STATE_FILE]);
    unlinkSync(filler);
    await store.save({ v: 3, pad: 'x'.repeat(10_000) });
    await store.close();
    expect((await open(mnt)).load()).toEqual({ v: 3, pad: 'x'.repeat(10_000) });
  });
});

describe('StateStore on a read-only file system', () => {
  const mnt = newDir();
  let mounted = false;
  afterAll(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  it('opens a directory remounted read-only after a crash mid-save: the temp file is left, the state read (review by helper-177)', async () => {
    mountSmallTmpfs(mnt);
    mounted = true;
    const store = await open(mnt);
    await store.save({ v: 1 });
    await store.close();
    // A save cut off by kill -9 (or by the I/O error that made the kernel remount it read-only).
    const leftover = join(mnt, `${STATE_FILE}.tmp-424242`);
    writeFileSync(leftover, '{"v": 2, "ke', { mode: 0o600 });
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const logs: [string, object | undefined][] = [];
    const reopened = await open(mnt, logs);
    expect(reopened.load()).toEqual({ v: 1 });
    expect(existsSync(leftover)).toBe(true);
    expect(logs).toEqual([['cannot remove the temp file of an interrupted state write: the file system is read-only', { path: leftover }]]);
    await expect(reopened.save({ v: 3 })).rejects.toMatchObject({ name: 'StateWriteError', code: 'EROFS' });
  });
});
