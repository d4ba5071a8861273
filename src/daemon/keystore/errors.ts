import { isSyscallError } from '../../../native-ffi/syscall-error.js';

export type KeystoreErrorCode =
  | 'QUOTA_EXHAUSTED' // EDQUOT: kernel.keys.maxkeys / maxbytes for this uid
  | 'MASTER_KEY_MISSING'
  | 'MASTER_KEY_MISMATCH'
  | 'KEY_TYPE_UNSUPPORTED' // the kernel lacks the key type
  | 'INVALID_KEY' // bad length or malformed blob
  | 'KEY_GONE'
  | 'KEY_EXISTS' // a key of that type and description is already in the keyring
  | 'INTERNAL';

/** Errors of the kernel key store; messages never contain key material or blobs. */
export class KeystoreError extends Error {
  readonly code: KeystoreErrorCode;
  constructor(code: KeystoreErrorCode, message: string, cause?: unknown) {
    super(message, cause ? { cause } : undefined);
    this.name = 'KeystoreError';
    this.code = code;
  }
}

export function isKeystoreError(err: unknown, code?: KeystoreErrorCode): err is KeystoreError {
  return err instanceof KeystoreError && (code === undefined || err.code === code);
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
