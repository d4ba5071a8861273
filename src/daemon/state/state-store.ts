/**
 * Crash-safe persistence of the daemon's state as one JSON document in a private directory.
 *
 * save() writes a temp file, fsyncs it, renames it over state.json and fsyncs the directory, so
 * after a crash state.json is either the old or the new document, never a mix. A lock (flock on
 * daemon.lock) keeps two daemons from sharing a directory (each would overwrite the other's keys).
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { chmod, mkdir, open, readdir, realpath, rename, stat, unlink } from 'node:fs/promises';
import { takePidLock, type PidLock } from '../pid-lock.js';
import { dirname, join, resolve } from 'node:path';
import { policyFileRefusal, policyPathRefusal } from '../../policy/file-mode.js';

export const STATE_FILE = 'state.json';
export const LOCK_FILE = 'daemon.lock';
/** Temp files are `state.json.tmp-<pid>`. */
export const STATE_TMP_PREFIX = `${STATE_FILE}.tmp-`;
/** Only names of that form are removed at start: an operator's `state.json.tmp-before-upgrade` is kept (found by review). */
const STATE_TMP_NAME = /^state\.json\.tmp-\d+$/;
/** Earlier versions wrote the lock here first and linked it into place; leftovers are removed. */
const LOCK_TMP_PREFIX = `${LOCK_FILE}.tmp-`;

export type Log = (msg: string, fields?: object) => void;

/**
 * A save that failed before its rename: state.json is unchanged. Keeps the fs error's code and
 * syscall, so the API can say which errno stopped the write whatever it is (EPERM from an immutable
 * file, EFBIG from LimitFSIZE=, ENOENT from a removed directory, not only ENOSPC or EIO).
 */
export class StateWriteError extends Error {
  readonly code: string | undefined;
  readonly syscall: string | undefined;
  constructor(cause: unknown) {
    const e = cause as NodeJS.ErrnoException;
    super(`the state could not be saved: ${e?.message ?? String(cause)}`, { cause });
    this.name = 'StateWriteError';
    this.code = e?.code;
    this.syscall = e?.syscall;
  }
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** True if a process with this pid exists (EPERM: it exists but is not ours). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/**
 * The directories whose entries `mkdir(dir, { recursive: true })` changed when it returned
 * `created` (the first directory it made): the parent of each new directory, deepest first.
 * Fsyncing them keeps a new state directory, and so the master key in it, across a power loss.
 */
export function parentsOfNewDirs(created: string, dir: string): string[] {
  const parents: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    parents.push(dirname(d));
    if (d === created || d === dirname(d)) return parents;
  }
}

/**
 * Creates the directory (0700) or checks that an existing one is this uid's and writable by no one
 * else. Readable by others is left as the operator set it (a backup group, say); the files in it
 * are 0600 when written.
 */
async function ensurePrivateDir(dir: string): Promise<void> {
  let created: string | undefined;
  try {
    created = await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err; // a non-directory is there: reported below
  }
  // mkdir's mode is filtered by the umask; make ours exact.
  if (created !== undefined) {
    await chmod(dir, 0o700);
    for (const parent of parentsOfNewDirs(created, dir)) {
      // A parent this uid may write but not read (e.g. 0733) cannot be opened to fsync; starting
      // matters more than the first start's durability (found by review).
      await fsyncDir(parent).catch((err: unknown) => {
        if (errnoCode(err) !== 'EACCES') throw err;
      });
    }
  }
  const st = await stat(dir);
  if (!st.isDirectory()) throw new Error(`state directory ${dir} exists and is not a directory`);
  if (st.mode & 0o022) {
    throw new Error(`state directory ${dir} is writable by group or others (mode 0${(st.mode & 0o777).toString(8)}); run chmod 700 ${dir}`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`state directory ${dir} belongs to uid ${st.uid}, not to this daemon's uid ${uid}`);
  }
}

/** The directory's lock (pid-lock.ts), held for the store's life. */
function acquireLock(dir: string, log: Log): Promise<PidLock> {
  return takePidLock(join(dir, LOCK_FILE), {
    log,
    refuse: (holder) => `another ringfenced${holder !== undefined ? ` (pid ${holder})` : ''} uses ${dir}; refusing to share a state directory`,
  });
}

export class StateStore {
  readonly dir: string;
  readonly statePath: string;
  private readonly lock: PidLock;
  private readonly log: Log;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(dir: string, lock: PidLock, log: Log) {
    this.dir = dir;
    this.statePath = join(dir, STATE_FILE);
    this.lock = lock;
    this.log = log;
  }

  /**
   * Opens (creating if needed, mode 0700) a private state directory and takes its lock. Throws if
   * the directory is not a directory, is writable by group/others or belongs to another uid, or if
   * a live daemon holds the lock. Removes temp files an interrupted save left behind.
   */
  static async open(dir: string, opts: { log?: Log } = {}): Promise<StateStore> {
    const log = opts.log ?? (() => {});
    const given = resolve(dir);
    // Whoever may write a directory leading to it could swap the state directory for one of theirs
    // while the daemon runs, lock and all (found by review).
    const checkPath = () => {
      const refusal = policyPathRefusal(given, process.getuid?.(), 'the state directory');
      if (refusal) throw new Error(`state directory ${given} is refused: ${refusal}`);
    };
    checkPath(); // before mkdir, so that it creates nothing through another's symlink
    await ensurePrivateDir(given);
    // Again once every name on the path exists (found by review): a symlink planted at a name that
    // was missing at the first check would otherwise go unchecked.
    checkPath();
    // Resolved once (found by review): a symlink on the path re-pointed later must not move where
    // saves go, away from the directory whose lock this daemon holds.
    const abs = await realpath(given);
    const store = new StateStore(abs, await acquireLock(abs, log), log);
    try {
      await store.removeLeftovers();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  private async removeLeftovers(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      const stateTmp = STATE_TMP_NAME.test(name);
      // Another daemon's lock temp file is a leftover only if that daemon is gone.
      const lockTmp = name.startsWith(LOCK_TMP_PREFIX) && !pidAlive(Number(name.slice(LOCK_TMP_PREFIX.length)));
      if (!stateTmp && !lockTmp) continue;
      try {
        await unlink(join(this.dir, name));
      } catch (err) {
        // A file system remounted read-only (after the I/O error that cut the save off, say) still
        // serves keys (pid-lock.ts); the temp file holds no more than state.json does, and a later
        // start removes it (review by helper-177).
        if (errnoCode(err) !== 'EROFS') throw err;
        if (stateTmp) this.log('cannot remove the temp file of an interrupted state write: the file system is read-only', { path: join(this.dir, name) });
        continue;
      }
      if (stateTmp) this.log('removed the temp file of an interrupted state write', { path: join(this.dir, name) });
    }
  }

  /**
   * The parsed state.json, or undefined if there is none yet. A file that does not parse is an
   * error, never an empty state: resetting would forget every key. So is one that a uid other than
   * root and the daemon's may have written (review by helper-190): it could lower the encryption
   * counts (nonces reused past the suite's limit) or bring deletions forward. The file and the path
   * to it are judged by the policy file's rules (policy/file-mode.ts), on the descriptor read: root's
   * is accepted, so a file restored by `cp` as root is read (and replaced by the daemon's own at the
   * first save). Opened without blocking, as the policy file is: a FIFO must not hang the start.
   */
  load(): unknown | undefined {
    this.assertOpen();
    const uid = process.getuid?.();
    const refused = (why: string) => new Error(`state file ${this.statePath} is refused: ${why}; it was left untouched`);
    const pathRefusal = policyPathRefusal(this.statePath, uid, 'the state file');
    if (pathRefusal) throw refused(pathRefusal);
    let fd: number;
    try {
      fd = openSync(this.statePath, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      // A symlink to a missing file (a volume not mounted yet) is not a first start: taken as one,
      // the daemon started with no keys and its first change replaced the link (as master.key).
      const entry = lstatOrUndefined(this.statePath);
      if (entry?.isSymbolicLink()) throw new Error(`state file ${this.statePath} is a symlink to ${readlinkSync(this.statePath)}, which does not exist (a volume not mounted yet?); it was left untouched`);
      return undefined;
    }
    let text: string;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw refused('it is not a regular file');
      const fileRefusal = policyFileRefusal(st, uid);
      if (fileRefusal) throw refused(fileRefusal);
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
    try {
      return JSON.parse(text);
    } catch {
      // The parser's message quotes the content, which holds wrapped key blobs: leave it out.
      throw new Error(
        `${this.statePath} is corrupt (not valid JSON, ${Buffer.byteLength(text)} bytes); it was left untouched — restore it from a backup or move it away to start empty`,
      );
    }
  }

  /**
   * Atomically and durably replaces state.json with `doc`. Saves run one at a time in call order.
   * On failure state.json is unchanged, the temp file is gone and a StateWriteError (with the fs
   * error's code) is thrown. Once the rename is done the save counts as done: the new state.json is what any later
   * start reads (a kill -9 does not undo a rename), so a failing directory fsync is retried and
   * logged, never reported as "nothing was changed" — the caller would undo in memory a change that
   * is on disk. It may then not survive a power loss, which the log line says.
   */
  save(doc: unknown): Promise<void> {
    this.assertOpen();
    const run = this.tail.then(() => this.write(doc));
    this.tail = run.catch(() => {});
    return run;
  }

  private async write(doc: unknown): Promise<void> {
    const text = JSON.stringify(doc, null, 2);
    if (text === undefined) throw new TypeError('state document is not JSON-serializable');
    const tmp = join(this.dir, `${STATE_TMP_PREFIX}${process.pid}`);
    let renamed = false;
    try {
      // Created afresh, never through a symlink (found by review): a leftover of ours is removed first.
      await unlink(tmp).catch((err: unknown) => {
        if (errnoCode(err) !== 'ENOENT') throw err;
      });
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        await fh.writeFile(`${text}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.statePath);
      renamed = true;
    } catch (err) {
      if (!renamed) await unlink(tmp).catch(() => {});
      throw new StateWriteError(err);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await fsyncDir(this.dir);
        return;
      } catch (err) {
        if (attempt === 2) {
          this.log('the state was saved, but its directory could not be fsynced: a power loss now may lose the last change', { path: this.statePath, err: (err as Error).message });
          return;
        }
      }
    }
  }

  /** Waits for pending saves and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    await this.lock.release();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`state store ${this.dir} is closed`);
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
