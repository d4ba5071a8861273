/**
 * Where ringfenced listens by default. Shared by the daemon's config and by the SDK/CLI, so it
 * imports nothing from the daemon.
 */
import { existsSync } from 'node:fs';
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

/**
 * The socket a client (SDK, CLI) uses when none was given: `RINGFENCE_SOCKET` if set; for root the
 * system daemon's; otherwise the user's own daemon (`$XDG_RUNTIME_DIR/ringfence.sock`) if that
 * socket exists, else the system daemon's (`/run/ringfence/ringfence.sock`, where the systemd units
 * put it) if that exists. With neither, the path the user's own daemon would use, so the error
 * names it; the system path when there is no XDG_RUNTIME_DIR (a service account's usual case).
 */
export function clientSocketPath(env: NodeJS.ProcessEnv, uid: number, exists: (path: string) => boolean = existsSync): string {
  const candidates = clientSocketCandidates(env, uid);
  if (candidates.length === 1) return candidates[0]!;
  return candidates.find((path) => exists(path)) ?? candidates[0]!;
}

/**
 * The paths clientSocketPath chooses among, in its order: one when the choice does not depend on
 * which sockets exist (RINGFENCE_SOCKET, root, no XDG_RUNTIME_DIR); else the user's own daemon's and
 * the system daemon's. The SDK chooses again among them when its socket has gone (transport.ts).
 */
export function clientSocketCandidates(env: NodeJS.ProcessEnv, uid: number): string[] {
  const explicit = env[SOCKET_ENV];
  if (explicit) return [resolve(explicit)];
  if (uid === 0) return [ROOT_SOCKET_PATH];
  const runtime = env.XDG_RUNTIME_DIR;
  return runtime && isAbsolute(runtime) ? [join(runtime, SOCKET_FILE_NAME), ROOT_SOCKET_PATH] : [ROOT_SOCKET_PATH];
}
