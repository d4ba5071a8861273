import { constants } from 'node:os';

// Where two names share a number, Linux's own (strerrorname_np) wins: EAGAIN, not EWOULDBLOCK.
const CANONICAL = new Set(['EAGAIN', 'EOPNOTSUPP', 'EDEADLK']);
const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  if (!errnoNames.has(num) || CANONICAL.has(name)) errnoNames.set(num, name);
}
// Node's table lacks the key-retention errnos; they are Linux-specific.
for (const [num, name] of [
  [126, 'ENOKEY'],
  [127, 'EKEYEXPIRED'],
  [128, 'EKEYREVOKED'],
  [129, 'EKEYREJECTED'],
] as const) {
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}

/** The symbolic name of an errno value, e.g. 2 -> "ENOENT". */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/**
 * A failed system call, with errno captured immediately after the call.
 * `detail` says what was being attempted; it never contains key bytes or payloads.
 */
export class SyscallError extends Error {
  readonly syscall: string;
  readonly errno: number;
  readonly code: string;

  constructor(syscall: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${syscall}${detail ? ` (${detail})` : ''} failed: ${code} (errno ${errno})`);
    this.name = 'SyscallError';
    this.syscall = syscall;
    this.errno = errno;
    this.code = code;
  }
}

export function isSyscallError(err: unknown, code?: string): err is SyscallError {
  return err instanceof SyscallError && (code === undefined || err.code === code);
}
