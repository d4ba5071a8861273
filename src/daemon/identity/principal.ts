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

export function readExe(pid: number): string | undefined {
  if (!(pid > 0)) return undefined;
  try {
    return readlinkSync(`/proc/${pid}/exe`);
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
