import { call } from './libc.js';
import { isSyscallError } from './syscall-error.js';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * getsockopt(SO_PEERCRED) on a connected Unix socket: the peer's credentials as the kernel recorded
 * them at connect() time; the client cannot forge them. Errno: ENOTSOCK, EBADF, ENOTCONN.
 * For a Node net.Socket the fd is `(socket as any)._handle.fd`.
 */
export function peerCred(fd: number): PeerCred {
  const ucred = Buffer.alloc(12);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(12);
  call('getsockopt', [fd, SOL_SOCKET, SO_PEERCRED, ucred, len], 'SO_PEERCRED');
  return { pid: ucred.readInt32LE(0), uid: ucred.readUInt32LE(4), gid: ucred.readUInt32LE(8) };
}

/**
 * getsockopt(SO_PEERGROUPS) (Linux 4.13+): the peer's supplementary groups as the kernel recorded
 * them at connect() time, like SO_PEERCRED. The buffer grows when the kernel answers ERANGE with
 * the length it needs.
 */
export function peerGroups(fd: number): number[] {
  let room = 64;
  for (;;) {
    const groups = Buffer.alloc(room * 4);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(groups.length);
    try {
      call('getsockopt', [fd, SOL_SOCKET, SO_PEERGROUPS, groups, len], 'SO_PEERGROUPS');
    } catch (err) {
      const needed = len.readUInt32LE(0) / 4;
      if (isSyscallError(err, 'ERANGE') && needed > room) {
        room = needed;
        continue;
      }
      throw err;
    }
    return Array.from({ length: len.readUInt32LE(0) / 4 }, (_, i) => groups.readUInt32LE(i * 4));
  }
}
