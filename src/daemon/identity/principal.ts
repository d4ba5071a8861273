/**
 * Who is calling: the peer credentials the kernel recorded at connect() (SO_PEERCRED and
 * SO_PEERGROUPS), never anything the client sends, plus the executable path when /proc lets the
 * daemon read it.
 */
import { readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { peerCred, peerGroups } from '../../../native-ffi/peer-cred.js';

export interface Principal {
  uid: number;
  gid: number;
  pid: number;
  /** Supplementary groups the process had at connect(), as the policy matches `group:` against. */
  groups: number[];
  /** /proc/<pid>/exe at accept time; absent when unreadable (another uid without privilege, or gone). */
  exe?: string;
}

/** The fd of an accepted Unix socket (grpc-js and net expose no public accessor). */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * /proc/<pid>/exe for the audit line. A path is bytes, and the client chose them: anything but
 * printable ASCII (and the backslash) is given as \xHH, so that control characters or bidi
 * overrides never reach a reader's terminal and two paths never show as the same string (review
 * by helper-143: read as UTF-8, invalid bytes all became U+FFFD).
 */
export function readExe(pid: number): string | undefined {
  if (!(pid > 0)) return undefined;
  try {
    const path = readlinkSync(`/proc/${pid}/exe`, { encoding: 'buffer' });
    let out = '';
    for (const b of path) out += b >= 0x20 && b <= 0x7e && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
    return out;
  } catch {
    return undefined;
  }
}

/** Throws if the socket has no fd or SO_PEERCRED fails: such a connection must not be served. */
export function principalOfSocket(socket: Socket): Principal {
  const fd = socketFd(socket);
  if (fd === undefined) throw new Error('the connection has no file descriptor');
  const cred = { ...peerCred(fd), groups: peerGroups(fd) };
  const exe = readExe(cred.pid);
  return exe === undefined ? cred : { ...cred, exe };
}
