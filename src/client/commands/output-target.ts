/**
 * Where `-o FILE` writes, found before anything is written: an open descriptor (/dev/stdout,
 * /dev/fd/N), a device or FIFO written in place, an existing file to replace, or a new file; and
 * whether the caller may write there. checkOutput runs these checks before a command's first RPC,
 * openOutput (io.ts) again when it opens the output.
 */
import { accessSync, constants, existsSync, fstatSync, lstatSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { CommandError } from './args.js';

/**
 * The kernel's realpath(3). Node's JS realpathSync removes `..` as text first, so `l/../f` with `l` a
 * link to another directory named the wrong file (review by helper-169).
 */
const realpath = realpathSync.native;

/**
 * Everything openOutput(path) checks before it creates anything: the directory exists and the
 * caller may write it, FILE is not a directory, an existing FILE may be replaced. Commands call it
 * before their first RPC: found out only afterwards, an encryption the daemon counted (or a
 * decryption) was thrown away.
 */
export function checkOutput(path: string | undefined): void {
  if (path === undefined || path === '-') return;
  resolveOutput(path, failWriting(path));
}

export const failWriting = (path: string) => (err: unknown) => new CommandError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);

/** What `path` writes to: an open descriptor, or what outputTarget finds. */
export function resolveOutput(path: string, fail: (err: unknown) => CommandError): { kind: 'descriptor'; fd: number } | OutputTarget {
  // open("") is ENOENT; found only at the rename, after the RPC (review by helper-169).
  if (path === '') throw new CommandError("cannot write '': -o needs a file name");
  // /dev/stdout on a file would be that file replaced, dropping what the shell wrote there before
  // and after, and ignoring >> (review by helper-106): it is stdout, and /dev/fd/N is descriptor N.
  const fd = descriptorNamed(path);
  if (fd === 1 || fd === 2) return { kind: 'descriptor', fd };
  // Another descriptor is written where it is only when it holds a regular file (`3>>log`) or a
  // socket (a parent's socketpair, which open(2) of the path refuses: ENXIO); any other (a pipe, a
  // terminal, or one of Node's own, such as its event loop's) is opened by path as before (reviews
  // by helper-108: writing to Node's epoll descriptor aborted the process; helper-111).
  if (fd !== undefined && writableInPlace(fd)) return { kind: 'descriptor', fd };
  const target = outputTarget(path, fail);
  // openOutput creates and renames through /proc/self/fd (io.ts): without /proc (a chroot), found
  // only at the rename, after the RPC, as a bare ENOENT.
  if (target.kind !== 'special' && !existsSync('/proc/self/fd')) {
    throw new CommandError(`cannot write ${path}: /proc is not mounted, and -o FILE writes through /proc/self/fd; mount /proc, or write to stdout`);
  }
  return target;
}

function writableInPlace(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFile() || st.isSocket();
  } catch {
    return false;
  }
}

/** The sticky bit (not in Node's fs.constants). */
const S_ISVTX = 0o1000;

/**
 * `dir` is the directory's stat when checked, `checked` the replaced file's: openOutput holds the
 * directory open and requires both to be still what was checked.
 */
export type OutputTarget =
  | { kind: 'new'; path: string; dir: Stats }
  | { kind: 'file'; path: string; mode: number; chown: { uid: number; gid: number } | undefined; dir: Stats; checked: Stats }
  /** Written in place, opened later: openOutput requires what it opens to be still `checked`. */
  | { kind: 'special'; checked: Stats };

/**
 * What writing to `path` replaces, with symlinks resolved by the kernel (stat, realpath), never by
 * the text of the path: `..` after a symlinked directory, and /dev/stdout or /dev/fd/N (links to
 * `pipe:[N]`), mean what they mean to open(2). A dangling link names the file to create.
 */
function outputTarget(path: string, fail: (err: unknown) => CommandError): OutputTarget {
  // Before anything follows them: a link the kernel would refuse to follow is never resolved here.
  const end = followLinks(path, fail);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOTDIR: a file where a directory should be (out.bin/f), which writableDirectory names.
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fail(err);
    // `> new/` is refused by open(2) (EISDIR); here the rename, after the RPC, would refuse it.
    if (path.endsWith('/')) throw new CommandError(`cannot write ${path}: a path ending in / names a directory; -o needs a file name`);
    // A dangling link names the file to create: where its (chain of) links points. Its directory
    // resolved by the kernel: the temporary file goes there, and is renamed within it.
    const dir = writableDirectory(path, dirname(end));
    try {
      return { kind: 'new', path: join(realpath(dirname(end)), basename(end)), dir };
    } catch (err) {
      throw fail(err);
    }
  }
  if (st.isDirectory()) throw new CommandError(`cannot write ${path}: it is a directory`);
  const euid = process.geteuid?.();
  if (st.isFIFO()) protectedFifo(path, st, euid, fail);
  if (!st.isFile()) return { kind: 'special', checked: st };
  const asRoot = process.getuid?.() === 0;
  // Replacing is a rename in its directory: without this, a file the caller may not write (0444,
  // or another user's) in a directory it may write would be replaced, as `>` would refuse.
  try {
    accessSync(path, constants.W_OK);
  } catch (err) {
    throw fail(err);
  }
  // Nor may it take over another user's file it may write (group-writable): the new file would be
  // the caller's, and its owner locked out (review by helper-108). Root keeps the owner (chown).
  if (!asRoot && euid !== undefined && st.uid !== euid) {
    throw new CommandError(`cannot write ${path}: it belongs to uid ${st.uid}, and -o replaces FILE with a new file of yours; write elsewhere, or as its owner`);
  }
  let real: string;
  try {
    real = realpath(path);
  } catch (err) {
    throw fail(err);
  }
  const dirPath = dirname(real);
  const dir = writableDirectory(path, dirPath);
  // fs.protected_regular: root's `>` refuses another user's file in a sticky directory others may
  // write (as /tmp), unless it is the directory owner's: that user could have made it in advance
  // (0666, say) to receive what is written, and keeping its owner and mode would hand it to them.
  // Group-writable counts too, as protected_regular=2 has it, whatever this system's setting.
  if (euid !== undefined && st.uid !== euid && st.uid !== dir.uid && dir.mode & S_ISVTX && dir.mode & 0o022) {
    throw new CommandError(
      `cannot write ${path}: it belongs to uid ${st.uid} and is in ${dirPath}, a sticky directory others may write, so replacing it would leave the output in that user's file (as \`>\` would under fs.protected_regular); remove it first, or write elsewhere`,
    );
  }
  return { kind: 'file', path: real, mode: st.mode & 0o7777, chown: asRoot && (st.uid !== 0 || st.gid !== 0) ? { uid: st.uid, gid: st.gid } : undefined, dir, checked: st };
}

/**
 * The directory the temporary file is created in and renamed out of: it must exist, be a
 * directory, and be writable (and searchable) for the caller, or the output fails only once made.
 */
function writableDirectory(path: string, dir: string): Stats {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CommandError(`cannot write ${path}: directory ${dir} does not exist`);
    if (code === 'ENOTDIR') throw new CommandError(`cannot write ${path}: ${dir} is not a directory`);
    throw new CommandError(`cannot write ${path}: directory ${dir}: ${code ?? (err as Error).message}`);
  }
  if (!st.isDirectory()) throw new CommandError(`cannot write ${path}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new CommandError(`cannot write ${path}: directory ${dir} is not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return st;
}

/**
 * Where `path` leads once its trailing symlinks are followed, one by one as open(2) follows them:
 * the first name that is not a link, existing or to be created (writableDirectory checks where).
 * Each link is checked as fs.protected_symlinks has the kernel check it, whatever this system's
 * setting (it may be 0): the CLI follows them itself (stat, realpath) and then renames onto the
 * target, so nothing else would. The directories on the way are resolved by the kernel (realpath,
 * stat), which never applies protected_symlinks to them either: only to trailing links.
 */
function followLinks(path: string, fail: (err: unknown) => CommandError): string {
  const euid = process.geteuid?.();
  let at = path;
  for (let links = 0; links <= 40; links++) {
    let st: Stats;
    try {
      st = lstatSync(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return at;
      throw fail(err);
    }
    if (!st.isSymbolicLink()) return at;
    let dir: string;
    try {
      // Relative to the directory the link is really in, as the kernel resolves it.
      dir = realpath(dirname(at));
      if (euid !== undefined && st.uid !== euid) protectedLink(path, at, st.uid, dir);
      // Joined as text, never normalised: `..` in a link's target is the kernel's to resolve.
      const target = readlinkSync(at);
      at = isAbsolute(target) ? target : `${dir === '/' ? '' : dir}/${target}`;
    } catch (err) {
      if (err instanceof CommandError) throw err;
      throw fail(err);
    }
  }
  throw fail(Object.assign(new Error('too many symlinks'), { code: 'ELOOP' }));
}

/**
 * fs.protected_symlinks (may_follow_link): another user's link in a sticky world-writable directory
 * (as /tmp) is not followed unless the directory is that user's. Followed, it would have root
 * replace (or create) whatever file that user pointed it at, /etc/shadow say, keeping its owner.
 */
function protectedLink(path: string, link: string, linkUid: number, dirPath: string): void {
  const dir = statSync(dirPath);
  if (!(dir.mode & S_ISVTX && dir.mode & 0o002) || linkUid === dir.uid) return;
  const what = link === path ? 'it is a symlink' : `it leads through ${link}, a symlink`;
  throw new CommandError(
    `cannot write ${path}: ${what} of uid ${linkUid} in ${dirPath}, a sticky directory others may write, so that user chooses what it points at (as the kernel would under fs.protected_symlinks); name the real file instead, or write elsewhere`,
  );
}

/**
 * fs.protected_fifos=2: a FIFO is written in place (as `>` writes it, O_CREAT), so another user's
 * FIFO in a sticky directory others may write (world- or group-writable) is refused unless it is
 * the directory owner's: whoever made it there in advance would read the output from it.
 */
function protectedFifo(path: string, st: Stats, euid: number | undefined, fail: (err: unknown) => CommandError): void {
  if (euid === undefined || st.uid === euid) return;
  let dirPath: string;
  let dir: Stats;
  try {
    dirPath = dirname(realpath(path));
    dir = statSync(dirPath);
  } catch (err) {
    throw fail(err);
  }
  if (st.uid === dir.uid || !(dir.mode & S_ISVTX && dir.mode & 0o022)) return;
  throw new CommandError(
    `cannot write ${path}: it is a FIFO of uid ${st.uid} in ${dirPath}, a sticky directory others may write, so that user would read the output from it (as \`>\` would under fs.protected_fifos); remove it first, or write elsewhere`,
  );
}

/** The open descriptor a path names as written (/dev/stdout, /dev/fd/N, /proc/self/fd/N), if any. */
export function descriptorNamed(path: string): number | undefined {
  const std = /^\/dev\/(stdin|stdout|stderr)$/.exec(path);
  if (std) return ['stdin', 'stdout', 'stderr'].indexOf(std[1]!);
  const fd = new RegExp(`^(?:/dev/fd|/proc/(?:self|thread-self|${process.pid})/fd)/(\\d{1,9})$`).exec(path);
  return fd ? Number(fd[1]) : undefined;
}
