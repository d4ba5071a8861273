/**
 * flock(2): an advisory lock on an open file that the kernel releases when the last descriptor of
 * that open file is closed, including when the process is killed. Errno: EAGAIN (held by
 * another open file; reported here as false), EBADF, ENOLCK.
 */
import { call } from './libc.js';

const LOCK_EX = 2;
const LOCK_NB = 4;

/** Takes an exclusive lock without waiting: true if taken, false if another open file holds it. */
export function tryLockExclusive(fd: number): boolean {
  try {
    call('flock', [fd, LOCK_EX | LOCK_NB], 'exclusive lock');
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EAGAIN') return false;
    throw err;
  }
}
