/**
 * The kernel Key Retention Service: add_key(2) and keyctl(2).
 * Every function throws SyscallError; the errno values each can raise are listed with it.
 * Common to all: EACCES (the key exists but the caller lacks the permission named), ENOKEY (no such
 * key, or it was invalidated), EKEYREVOKED, EKEYEXPIRED, EINVAL (bad argument), ENOMEM.
 */
import { rawSyscall } from './libc.js';

// Syscall numbers differ per architecture; the structs in af-alg.ts assume LP64 as well.
const NR_BY_ARCH: Partial<Record<NodeJS.Architecture, { add_key: number; keyctl: number }>> = {
  x64: { add_key: 248, keyctl: 250 },
  arm64: { add_key: 217, keyctl: 219 },
};
const NR = NR_BY_ARCH[process.arch] ?? (() => {
  throw new Error(`ringfence supports x64 and arm64 Linux, not ${process.arch}`);
})();

export type KeySerial = number;

/** Special keyring ids (linux/keyctl.h). */
export const KeySpec = {
  THREAD: -1,
  PROCESS: -2,
  SESSION: -3,
  USER: -4,
  USER_SESSION: -5,
} as const;

const Op = {
  GET_KEYRING_ID: 0,
  JOIN_SESSION_KEYRING: 1,
  REVOKE: 3,
  SETPERM: 5,
  DESCRIBE: 6,
  CLEAR: 7,
  LINK: 8,
  UNLINK: 9,
  SEARCH: 10,
  READ: 11,
  SET_TIMEOUT: 15,
  INVALIDATE: 21,
} as const;

/** Permission bits (linux/key.h): POS = possessor, USR = owner uid, GRP, OTH. */
export const Perm = {
  POS_VIEW: 0x01000000,
  POS_READ: 0x02000000,
  POS_WRITE: 0x04000000,
  POS_SEARCH: 0x08000000,
  POS_LINK: 0x10000000,
  POS_SETATTR: 0x20000000,
  POS_ALL: 0x3f000000,
  USR_VIEW: 0x00010000,
  USR_READ: 0x00020000,
  USR_WRITE: 0x00040000,
  USR_SEARCH: 0x00080000,
  USR_LINK: 0x00100000,
  USR_SETATTR: 0x00200000,
  USR_ALL: 0x003f0000,
} as const;

function keyctl(op: number, what: string, ...typedArgs: unknown[]): number {
  return rawSyscall('keyctl', NR.keyctl, ['int', op, ...typedArgs], what);
}

/**
 * add_key(2): creates a key (or updates one of the same type and description) and links it into `keyring`.
 * Errno: ENODEV the key type is not in this kernel (e.g. `encrypted` without CONFIG_ENCRYPTED_KEYS);
 * EDQUOT the owner's key quota (kernel.keys.maxkeys / maxbytes) is exhausted; EINVAL malformed payload
 * or description (e.g. a logon description without "prefix:", a wrong master key for an encrypted
 * `load`); ENOKEY the master key an encrypted key names does not exist; EACCES no write permission on
 * `keyring`; EKEYREVOKED/EKEYEXPIRED the keyring is dead.
 */
export function addKey(type: string, description: string, payload: Buffer | null, keyring: KeySerial): KeySerial {
  return rawSyscall(
    'add_key',
    NR.add_key,
    ['str', type, 'str', description, 'void *', payload, 'size_t', payload ? payload.length : 0, 'int', keyring],
    `${type} "${description}"`,
  );
}

/** Creates (or finds) a keyring named `name` linked into `parent`. Errno as addKey. */
export function createKeyring(name: string, parent: KeySerial): KeySerial {
  return addKey('keyring', name, null, parent);
}

/** KEYCTL_GET_KEYRING_ID: resolves a special id; `create` makes it if absent. Errno: ENOKEY, EINVAL. */
export function getKeyringId(spec: number, create: boolean): KeySerial {
  return keyctl(Op.GET_KEYRING_ID, 'get keyring id', 'int', spec, 'int', create ? 1 : 0);
}

/** KEYCTL_JOIN_SESSION_KEYRING with no name: a new anonymous session keyring for this process. */
export function joinAnonymousSessionKeyring(): KeySerial {
  return keyctl(Op.JOIN_SESSION_KEYRING, 'join session keyring', 'void *', null);
}

/**
 * KEYCTL_READ: the key's payload. Errno: EOPNOTSUPP the type cannot be read (logon keys, by design);
 * EACCES no read permission (the possessor's READ bit was removed).
 */
export function readKey(serial: KeySerial): Buffer {
  let buf = Buffer.alloc(256);
  for (;;) {
    const len = keyctl(Op.READ, `read key ${serial}`, 'int', serial, 'void *', buf, 'size_t', buf.length);
    if (len <= buf.length) return buf.subarray(0, len);
    buf = Buffer.alloc(len); // the payload grew or was larger than guessed: retry with its size
  }
}

export interface KeyDescription {
  type: string;
  uid: number;
  gid: number;
  perm: number;
  description: string;
}

/** KEYCTL_DESCRIBE: "type;uid;gid;perm;description". Errno: EACCES without VIEW permission. */
export function describeKey(serial: KeySerial): KeyDescription {
  const buf = Buffer.alloc(4096);
  const len = keyctl(Op.DESCRIBE, `describe key ${serial}`, 'int', serial, 'void *', buf, 'size_t', buf.length);
  const text = buf.subarray(0, Math.max(0, Math.min(len, buf.length) - 1)).toString('utf8');
  const [type = '', uid = '0', gid = '0', perm = '0', ...rest] = text.split(';');
  return { type, uid: Number(uid), gid: Number(gid), perm: parseInt(perm, 16), description: rest.join(';') };
}

/** KEYCTL_SETPERM. Errno: EACCES the caller does not own the key (and lacks CAP_SYS_ADMIN). */
export function setPerm(serial: KeySerial, perm: number): void {
  keyctl(Op.SETPERM, `setperm key ${serial}`, 'int', serial, 'uint32_t', perm >>> 0);
}

/** KEYCTL_REVOKE: the key stays but every use fails with EKEYREVOKED. Errno: EACCES without WRITE or SETATTR. */
export function revokeKey(serial: KeySerial): void {
  keyctl(Op.REVOKE, `revoke key ${serial}`, 'int', serial);
}

/** KEYCTL_INVALIDATE: the key is unlinked everywhere and destroyed. Errno: EACCES without SEARCH. */
export function invalidateKey(serial: KeySerial): void {
  keyctl(Op.INVALIDATE, `invalidate key ${serial}`, 'int', serial);
}

/** KEYCTL_LINK. Errno: EACCES (LINK on key, WRITE on keyring), EDQUOT, EDEADLK (a cycle). */
export function linkKey(serial: KeySerial, keyring: KeySerial): void {
  keyctl(Op.LINK, `link key ${serial}`, 'int', serial, 'int', keyring);
}

/** KEYCTL_UNLINK. Errno: ENOENT the key is not in that keyring; EACCES without WRITE on the keyring. */
export function unlinkKey(serial: KeySerial, keyring: KeySerial): void {
  keyctl(Op.UNLINK, `unlink key ${serial}`, 'int', serial, 'int', keyring);
}

/** KEYCTL_CLEAR: unlinks everything from a keyring. Errno: EACCES without WRITE. */
export function clearKeyring(keyring: KeySerial): void {
  keyctl(Op.CLEAR, `clear keyring ${keyring}`, 'int', keyring);
}

/** KEYCTL_SET_TIMEOUT: expire the key after `seconds` (0 = never). Errno: EACCES without SETATTR. */
export function setTimeout(serial: KeySerial, seconds: number): void {
  keyctl(Op.SET_TIMEOUT, `set timeout on key ${serial}`, 'int', serial, 'uint32_t', seconds >>> 0);
}

/**
 * KEYCTL_SEARCH: finds a key by type and description in `keyring` (recursively), optionally linking it
 * into `dest`. Errno: ENOKEY not found (or not searchable by this caller); EKEYEXPIRED/EKEYREVOKED.
 */
export function searchKey(keyring: KeySerial, type: string, description: string, dest = 0): KeySerial {
  return keyctl(Op.SEARCH, `search ${type} "${description}"`, 'int', keyring, 'str', type, 'str', description, 'int', dest);
}
