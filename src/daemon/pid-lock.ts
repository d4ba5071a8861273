/**
 * A lock file held for a daemon's life: flock(2) on `path`, kept open. The kernel drops it when
 * the process ends, kill -9 included, so a dead daemon never blocks the next start; a pid check
 * could not tell, since the dead daemon's pid may belong to another process by then, or to the new
 * daemon itself (pid 1 in a container). The file holds the holder's pid, for messages. It is never
 * unlinked: a daemon could otherwise lock an unlinked file while another locks its replacement.
 */
import { constants as fsConstants } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { tryLockExclusive } from '../../native-ffi/file-lock.js';

export type Log = (msg: string, fields?: object) => void;

export interface PidLock {
  readonly path: string;
  /** Empties the file and releases the lock. Idempotent. */
  release(): Promise<void>;
}

async function readLockPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Takes the lock at `path` (created with `mode`, default 0600; never through a symlink) without
 * waiting. When another open file holds it, throws the message `refuse` makes from the holder's pid
 * (if the file names one).
 */
export async function takePidLock(path: string, opts: { refuse: (holder: number | undefined) => string; log?: Log; mode?: number }): Promise<PidLock> {
  let handle: FileHandle;
  let writable = true;
  try {
    handle = await open(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, opts.mode ?? 0o600);
  } catch (err) {
    // A lock file another user left (root once ran the daemon by hand), or a file system mounted
    // read-only: flock needs no write access, so it is taken read-only if it may be read, without
    // the pid (found by review; EROFS: helper-126).
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EROFS') throw err;
    try {
      handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch {
      throw new Error(code === 'EACCES' ? `cannot open the lock file ${path} (EACCES): another user made it; with no daemon running, remove it` : `cannot open the lock file ${path} (EROFS): it does not exist on a read-only file system`, { cause: err });
    }
    writable = false;
  }
  try {
    if (!tryLockExclusive(handle.fd)) throw new Error(opts.refuse(await readLockPid(path).catch(() => undefined)));
    const previous = await readLockPid(path).catch(() => undefined);
    if (previous !== undefined) opts.log?.('took over the lock of a daemon that is gone', { path, pid: previous });
    if (writable) {
      await handle.truncate(0);
      // The pid is only for messages. Writing it needs a block, which a full disk refuses after a
      // clean stop emptied the file: the daemon would not start, though decrypt, MAC and hash need
      // no write (review by helper-126). Encryption does (its counter reservation): it fails with
      // RESOURCE_EXHAUSTED STATE_NOT_PERSISTED until there is room.
      await handle.write(`${process.pid}\n`, 0).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOSPC' && e.code !== 'EDQUOT') throw e;
        opts.log?.('the lock file holds no pid: the file system is full', { path, code: e.code });
      });
    }
  } catch (err) {
    await handle.close();
    throw err;
  }
  let released = false;
  return {
    path,
    release: async () => {
      if (released) return;
      released = true;
      if (writable) await handle.truncate(0).catch(() => {});
      await handle.close();
    },
  };
}
