/**
 * Where ringfenced listens by default. Shared by the daemon's config and by the SDK/CLI, so it
 * imports nothing from the daemon.
 */
import { isAbsolute, join, resolve } from 'node:path';

export const SOCKET_ENV = 'RINGFENCE_SOCKET';
export const ROOT_SOCKET_PATH = '/run/ringfence/ringfence.sock';
export const SOCKET_FILE_NAME = 'ringfence.sock';
/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The socket path to use when none was given on the command line: `RINGFENCE_SOCKET` if set
 * (resolved against the working directory), else `/run/ringfence/ringfence.sock` for root, else
 * `$XDG_RUNTIME_DIR/ringfence.sock`. Throws when a non-root user has no (absolute) XDG_RUNTIME_DIR,
 * since there is no private place to guess.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv, uid: number): string {
  const explicit = env[SOCKET_ENV];
  if (explicit) return resolve(explicit);
  return builtinSocketPath(env, uid);
}

/** Like defaultSocketPath but ignoring RINGFENCE_SOCKET (for callers with their own precedence). */
export function builtinSocketPath(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0) return ROOT_SOCKET_PATH;
  const runtime = env.XDG_RUNTIME_DIR;
  // The XDG spec says relative values are invalid and must be ignored.
  if (!runtime || !isAbsolute(runtime)) {
    throw new Error(
      `cannot choose a socket path for uid ${uid}: XDG_RUNTIME_DIR is not set to an absolute path; set --socket or ${SOCKET_ENV}`,
    );
  }
  return join(runtime, SOCKET_FILE_NAME);
}
