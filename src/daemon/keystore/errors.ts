import { isSyscallError } from '../../../native-ffi/syscall-error.js';

export type KeystoreErrorCode =
  | 'QUOTA_EXHAUSTED' // EDQUOT: kernel.keys.maxkeys / maxbytes for this uid
  | 'MASTER_KEY_MISSING'
  | 'MASTER_KEY_MISMATCH'
  | 'MASTER_KEY_REFUSED' // the kernel refuses the loaded master key (ENOKEY, EKEYREVOKED, EKEYEXPIRED, EACCES: `errno`)
  | 'KEY_TYPE_UNSUPPORTED' // the kernel lacks the key type
  | 'INVALID_KEY' // bad length or malformed blob
  | 'KEY_GONE'
  | 'KEY_EXISTS' // a key of that type and description is already in the keyring
  | 'INTERNAL';

/** Errors of the kernel key store; messages never contain key material or blobs. */
export class KeystoreError extends Error {
  readonly code: KeystoreErrorCode;
  /** The errno name the kernel refused with, where the code stands for several (MASTER_KEY_REFUSED). */
  readonly errno: string | undefined;
  constructor(code: KeystoreErrorCode, message: string, cause?: unknown, errno?: string) {
    super(message, cause ? { cause } : undefined);
    this.name = 'KeystoreError';
    this.code = code;
    this.errno = errno;
  }
}

export function isKeystoreError(err: unknown, code?: KeystoreErrorCode): err is KeystoreError {
  return err instanceof KeystoreError && (code === undefined || err.code === code);
}

/**
 * The errnos with which the kernel refuses a key serial the daemon still holds: invalidated or gone
 * (ENOKEY), revoked, expired, or no longer the daemon's (EACCES: unlinked from its keyring, or a
 * security module). Not ringfence's doing: it destroys kernel keys only with the keys they hold.
 */
export const KERNEL_KEY_REFUSALS: ReadonlySet<string> = new Set(['ENOKEY', 'EKEYREVOKED', 'EKEYEXPIRED', 'EACCES']);

/**
 * The master key refused by the kernel, with `errno`, while the daemon did `what`. What the daemon
 * answers (api/errors.ts masterKeyUnusable) and logs (its scheduled rotations) says what to do.
 */
export function masterKeyRefused(what: string, errno: string, cause?: unknown): KeystoreError {
  return new KeystoreError('MASTER_KEY_REFUSED', `${what}: the kernel refuses the daemon's master key (${errno}), though ringfence did not remove it; nothing was changed. Restart ringfenced${errno === 'EACCES' ? ' (a security module\'s policy that denies it must be fixed first)' : ''}: it loads the master key into the kernel again from its credential or state directory (master.key)`, cause, errno);
}

/** Converts kernel errors common to every add_key the store makes. */
export function fromKeyctl(err: unknown, what: string): KeystoreError {
  if (err instanceof KeystoreError) return err;
  if (isSyscallError(err)) {
    if (err.code === 'EDQUOT') {
      return new KeystoreError('QUOTA_EXHAUSTED', `${what}: the kernel key quota for uid ${process.getuid?.()} is exhausted; raise kernel.keys.maxkeys and kernel.keys.maxbytes (root: root_maxkeys / root_maxbytes)`, err);
    }
    if (err.code === 'EACCES' && err.syscall === 'add_key') {
      // add_key of an existing type+description updates it, which needs WRITE; our keys have none.
      return new KeystoreError('KEY_EXISTS', `${what}: a key with this description is already loaded`, err);
    }
    if (err.code === 'ENOKEY' || err.code === 'EKEYREVOKED' || err.code === 'EKEYEXPIRED') {
      return new KeystoreError('KEY_GONE', `${what}: the kernel key is gone (${err.code})`, err);
    }
  }
  return new KeystoreError('INTERNAL', `${what}: ${(err as Error).message}`, err);
}
