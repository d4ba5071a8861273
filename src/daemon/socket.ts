/**
 * The gRPC Unix socket's path: refuse one whose directories others may write, claim it with a lock
 * file beside it, make room for it before listening (removing only a stale socket left by a crashed
 * daemon, never a live one or a file that is not a socket) and check its mode after.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { lstatSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { policyPathRefusal } from '../policy/file-mode.js';
import { takePidLock, type PidLock } from './pid-lock.js';

export type Log = (msg: string, fields?: object) => void;

export const PROBE_TIMEOUT_MS = 1000;

/** What is at a socket path: a daemon accepting connections, or a stale socket file nobody binds. */
export type SocketProbe = 'listening' | 'stale';

/**
 * Connects to `path` to tell a live daemon from a leftover socket. Rejects when the answer is
 * neither (e.g. EACCES, or no answer within the timeout) so that the caller does not remove it.
 */
export function probeSocket(path: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<SocketProbe> {
  return new Promise((resolve, reject) => {
    const sock = connect({ path });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${path} did not accept or refuse a connection within ${timeoutMs} ms; refusing to remove it`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve('listening');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      // ECONNREFUSED: a socket file with no listener; ENOENT: it vanished meanwhile.
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve('stale');
      else reject(new Error(`cannot probe ${path}: ${err.code ?? err.message}`, { cause: err }));
    });
  });
}

/**
 * Throws if a daemon is listening on `path` or it is something other than a socket: checked at the
 * start, before a state directory or master key is touched; prepareSocketPath checks again at listen.
 */
export async function assertSocketPathFree(path: string): Promise<'missing' | 'stale'> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to remove it (move it away or choose another --socket)`);
  if ((await probeSocket(path)) === 'listening') throw new Error(`another daemon is listening on ${path}`);
  return 'stale';
}

/**
 * Throws if a user other than root or the daemon's may write a directory leading to the socket
 * (found by review): they could put a socket of theirs in its place and be sent every plaintext and
 * imported key, or swap a symlink in while the daemon works on the path. The rules of the policy
 * file's and the state directory's paths (policy/file-mode.ts): no such directory without the
 * sticky bit, no directory or symlink of another uid.
 */
export function checkSocketPath(path: string): void {
  const uid = process.getuid?.();
  const refusal = policyPathRefusal(path, uid, 'the socket') ?? socketNameRefusal(path, uid);
  if (refusal) throw new Error(`socket path ${path} is refused: ${refusal}`);
}

/**
 * The socket's own directory may not be shared even with the sticky bit, which protects only names
 * that exist: the daemon's socket is gone while it is stopped, and clients do not check who serves
 * a path, so anyone who may add names there could bind it (found by review). Nor may a socket of
 * another uid be at the path.
 */
function socketNameRefusal(path: string, uid: number | undefined): string | undefined {
  let dir: string;
  try {
    dir = realpathSync(dirname(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // made by ensureSocketDir, then checked again
    throw err;
  }
  if ((lstatSync(dir).mode & 0o022) !== 0) {
    return `the directory ${dir} holding it may be written by others, who could bind its name while the daemon is stopped (the sticky bit does not stop that): give the socket a directory of its own, e.g. ${dir === '/' ? '' : dir}/ringfence/`;
  }
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (uid !== undefined && st.uid !== 0 && st.uid !== uid) return `${path} belongs to uid ${st.uid}, not to root or the daemon's uid ${uid}: remove it if it is no daemon's`;
  return undefined;
}

/** Creates the socket's parent directory (mode `dirMode`, default 0755, as for /run/ringfence) if missing. */
async function ensureSocketDir(path: string, dirMode = 0o755): Promise<void> {
  checkSocketPath(path); // before mkdir, so that it creates nothing through another's symlink
  const dir = dirname(path);
  const created = await mkdir(dir, { recursive: true, mode: dirMode });
  // mkdir's mode is filtered by the umask; the socket directory's mode is what we say.
  if (created !== undefined) await chmod(dir, dirMode);
  checkSocketPath(path);
}

export const socketLockPath = (path: string) => `${path}.lock`;

/**
 * Claims `path` for this daemon's life: a lock on `<path>.lock` (pid-lock.ts), taken before the
 * stale-socket probe, so that two daemons starting at once (with different state directories)
 * cannot both find the socket stale and each unlink the one the other has just bound.
 */
export async function lockSocketPath(path: string, opts: { dirMode?: number; log?: Log } = {}): Promise<PidLock> {
  await ensureSocketDir(path, opts.dirMode);
  return takePidLock(socketLockPath(path), {
    log: opts.log,
    // Readable by all (it holds a pid), so that a daemon of another uid can still take it read-only.
    mode: 0o644,
    refuse: (holder) => `another ringfenced${holder !== undefined ? ` (pid ${holder})` : ''} holds ${socketLockPath(path)}: it serves, or is starting to serve, on ${path}`,
  });
}

/**
 * Readies `path` for listen(): creates its parent directory if missing, and removes a stale socket
 * there. Throws if a daemon is listening on it or if it is anything other than a socket. The
 * daemon calls it holding lockSocketPath's lock; alone it cannot tell a stale socket from one
 * another daemon is about to bind.
 */
export async function prepareSocketPath(path: string, opts: { dirMode?: number; log?: Log } = {}): Promise<void> {
  await ensureSocketDir(path, opts.dirMode);
  if ((await assertSocketPathFree(path)) === 'missing') return;
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  opts.log?.('removed a stale socket left by a previous daemon', { path });
}

/**
 * Checks the socket's permissions after listen(): connecting needs write permission, so this mode
 * is who may talk to the daemon. bind() made it with this mode (listener.ts sets the umask); it is
 * never chmod-ed, as chmod follows a symlink swapped in for the socket (found by review). A default
 * ACL on the directory overrides the umask: the mode differs, and the daemon does not serve.
 */
export async function checkSocketMode(path: string, mode: number): Promise<void> {
  const st = await lstat(path);
  if (!st.isSocket()) throw new Error(`${path} is not a socket`);
  const actual = st.mode & 0o7777;
  if (actual !== mode) {
    throw new Error(`${path} was created with mode 0${actual.toString(8)}, not socketMode 0${mode.toString(8)} (a default ACL on its directory? remove it, or choose another --socket)`);
  }
}
