import { call } from './libc.js';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

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
