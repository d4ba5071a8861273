import { call } from './libc.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
/** A full receive queue at the manager fails the send (EAGAIN) instead of blocking the event loop. */
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/**
 * Sends a sd_notify(3) datagram ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1") to
 * $NOTIFY_SOCKET. Node has no Unix datagram sockets, hence the FFI. Returns false when there is no
 * NOTIFY_SOCKET (not run by systemd). Errno: ENOENT/ECONNREFUSED the socket is gone; EACCES; EAGAIN
 * the manager's queue is full.
 */
export function sdNotify(state: string, socketPath = process.env.NOTIFY_SOCKET): boolean {
  if (!socketPath) return false;
  // sockaddr_un: family u16 + path[108]; a leading '@' means the abstract namespace (NUL first byte).
  const path = Buffer.from(socketPath.startsWith('@') ? `\0${socketPath.slice(1)}` : socketPath);
  // A path needs its terminating NUL within the 108 bytes; an abstract name has none (review by helper-116).
  if (path.length > (path[0] === 0 ? 108 : 107)) throw new RangeError('NOTIFY_SOCKET path too long');
  const addr = Buffer.alloc(2 + path.length + (path[0] === 0 ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  path.copy(addr, 2);
  const fd = call('socket', [AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0], 'notify socket');
  try {
    const msg = Buffer.from(state);
    call('sendto', [fd, msg, msg.length, MSG_DONTWAIT | MSG_NOSIGNAL, addr, addr.length], 'sd_notify');
    return true;
  } finally {
    call('close', [fd]);
  }
}
