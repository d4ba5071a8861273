/**
 * Who may write the policy file. Anyone who can write it can grant themselves every key, so the
 * daemon refuses a file that is group- or world-writable or that belongs to anyone but root or the
 * daemon's own user. The same holds for what leads to it: whoever can write a directory on its path
 * can rename an older policy over it (undoing a revocation), delete it, or put a symlink of theirs
 * in its place. `ringfence policy check` applies the same rules, so it refuses what the daemon would.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';

/** Why a policy file with this owner and mode is refused, or undefined when it is accepted. */
export function policyFileRefusal(st: { mode: number; uid: number }, daemonUid: number | undefined): string | undefined {
  if ((st.mode & 0o002) !== 0) return 'it is writable by every user (chmod o-w it)';
  if ((st.mode & 0o020) !== 0) return 'it is writable by its group (chmod g-w it)';
  if (daemonUid !== undefined && st.uid !== 0 && st.uid !== daemonUid) return `it belongs to uid ${st.uid}, not to root or the daemon's uid ${daemonUid} (chown it)`;
  return undefined;
}

/** As the kernel's limit (ELOOP). */
const MAX_SYMLINKS = 40;

/**
 * Why the directories and symlinks leading to the policy file are refused, or undefined when only
 * root or the daemon's uid can change which file the path names. The path is resolved one name at
 * a time from `/`, following symlinks here, so that the directories a symlink leads through are
 * checked too. A name that does not exist is not refused: the open that follows reports the file
 * missing, and the directories it was looked up in have been checked by then. The file itself is
 * left to policyFileRefusal, on the descriptor that is read. The state directory's path,
 * state.json and the master key are checked the same way (state-store.ts, master-key.ts; `what`
 * names it in the refusal).
 */
export function policyPathRefusal(path: string, daemonUid: number | undefined, what = 'the file'): string | undefined {
  // process.cwd() has no symlinks in it; `..` must not be resolved lexically before the symlinks are.
  const names = (path.startsWith('/') ? path : `${process.cwd()}/${path}`).split('/');
  let dir = '/'; // the directory (without symlinks) the next name is looked up in
  let dirStat: Stats | undefined; // its lstat, when already known
  let symlinks = 0;
  for (let name = names.shift(); name !== undefined; name = names.shift()) {
    if (name === '' || name === '.') continue;
    if (name === '..') {
      // Nobody can change what `..` names, so dir itself does not matter here.
      dir = dir.slice(0, dir.lastIndexOf('/')) || '/';
      dirStat = undefined;
      continue;
    }
    const next = dir === '/' ? `/${name}` : `${dir}/${name}`;
    let st: Stats;
    try {
      dirStat ??= lstatSync(dir);
      const refusal = directoryRefusal(dir, dirStat, daemonUid, what);
      if (refusal) return refusal;
      st = lstatSync(next);
      if (st.isSymbolicLink()) {
        if (++symlinks > MAX_SYMLINKS) return `resolving it takes more than ${MAX_SYMLINKS} symlinks (a loop at ${next}?)`;
        const owner = ownerRefusal(`the symlink ${next}`, st.uid, daemonUid, `chown -h root ${next}`);
        if (owner) return owner;
        const target = readlinkSync(next);
        if (target.startsWith('/')) [dir, dirStat] = ['/', undefined];
        names.unshift(...target.split('/'));
        continue;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      return `cannot check ${next} on its path (${code ?? (err as Error).message})`;
    }
    [dir, dirStat] = [next, st];
  }
  return undefined;
}

function directoryRefusal(dir: string, st: Stats, daemonUid: number | undefined, what: string): string | undefined {
  // The sticky bit lets others add names but not rename or delete root's (a symlink they add is
  // refused for its owner). A read-only mount is no exception (found by review): nothing seen from
  // here tells a Kubernetes ConfigMap volume (a read-only bind of a directory only the kubelet
  // writes) from a read-only view of a directory others write elsewhere; ProtectSystem=strict makes
  // every directory read-only in the daemon's view.
  const writers = (st.mode & 0o1000) !== 0 ? 0 : st.mode & 0o022;
  if (writers !== 0) {
    const [who, fix] = (writers & 0o002) !== 0 ? ['every user', 'o-w'] : ['its group', 'g-w'];
    return `the directory ${dir} on its path is writable by ${who}, who could replace or delete ${what} (chmod ${fix} ${dir})`;
  }
  return ownerRefusal(`the directory ${dir}`, st.uid, daemonUid, `chown root ${dir}`);
}

function ownerRefusal(what: string, uid: number, daemonUid: number | undefined, fix: string): string | undefined {
  if (daemonUid === undefined || uid === 0 || uid === daemonUid) return undefined;
  return `${what} on its path belongs to uid ${uid}, not to root or the daemon's uid ${daemonUid} (${fix})`;
}

/** The largest policy file read: far beyond any real policy, and a bound on what a reload reads. */
export const MAX_POLICY_BYTES = 4 * 1024 * 1024;

export type PolicyFile = { state: 'read'; text: string; uid: number } | { state: 'missing' } | { state: 'refused'; why: string };

/**
 * Reads the policy file as the daemon does: the path checked first (policyPathRefusal); then,
 * on the descriptor that is read (so the file cannot be swapped in between), a regular file of at
 * most MAX_POLICY_BYTES whose owner and mode pass policyFileRefusal. Opened without blocking: a
 * FIFO there hung the daemon's event loop for good, at start or at a reload, and a device was
 * read without end (review by helper-132; config.ts reads its file the same way). Other errors
 * (EACCES, ...) are thrown.
 */
export function readPolicyFile(path: string, daemonUid: number | undefined): PolicyFile {
  const pathRefusal = policyPathRefusal(path, daemonUid);
  if (pathRefusal) return { state: 'refused', why: pathRefusal };
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { state: 'refused', why: 'it is not a regular file' };
    const refusal = policyFileRefusal(st, daemonUid);
    if (refusal) return { state: 'refused', why: refusal };
    const tooLarge = (size: number | string) => ({ state: 'refused' as const, why: `it is ${size} bytes; a policy file is at most ${MAX_POLICY_BYTES}` });
    if (st.size > MAX_POLICY_BYTES) return tooLarge(st.size);
    // Read to the limit, not to the end: a file may grow after fstat, and some report size 0
    // (/proc files; review by helper-136).
    const buf = Buffer.alloc(MAX_POLICY_BYTES + 1);
    let n = 0;
    for (let got = 1; got > 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    if (n > MAX_POLICY_BYTES) return tooLarge(`over ${MAX_POLICY_BYTES}`);
    return { state: 'read', text: buf.toString('utf8', 0, n), uid: st.uid };
  } finally {
    closeSync(fd);
  }
}
