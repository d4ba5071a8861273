/**
 * Who is calling: the peer credentials the kernel recorded at connect() (SO_PEERCRED and
 * SO_PEERGROUPS), never anything the client sends, plus the executable path when /proc lets the
 * daemon read it.
 */
import { readFileSync, readlinkSync } from 'node:fs';
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

/**
 * The id the kernel gives a peer whose id this user namespace does not map (overflowuid/gid,
 * 65534), when `idMap` (/proc/self/uid_map or gid_map) maps no id of its own to that number: then
 * the number can only mean "unmapped". Undefined when it is mapped (the initial namespace maps
 * every id, and a peer's id is then always its own), as it is then also some real account's.
 */
export function unmappedId(overflow: number, idMap: string): number | undefined {
  for (const line of idMap.split('\n')) {
    const [inside, , count] = line.trim().split(/\s+/).map(Number) as [number, number, number];
    if (overflow >= inside && overflow - inside < count) return undefined;
  }
  return overflow;
}

let unmapped: { uid: number | undefined; gid: number | undefined } | undefined;
/**
 * unmappedId for this process's user namespace (which it never leaves), kept once read. A read
 * that failed (EMFILE at a busy moment, say) is not kept: it would switch the check off for good
 * (review by helper-187).
 */
function unmappedIds(): { uid: number | undefined; gid: number | undefined } {
  if (unmapped) return unmapped;
  let failed = false;
  const of = (kind: 'uid' | 'gid') => {
    try {
      return unmappedId(Number(readFileSync(`/proc/sys/kernel/overflow${kind}`, 'utf8')), readFileSync(`/proc/self/${kind}_map`, 'utf8'));
    } catch {
      failed = true;
      return undefined;
    }
  };
  const ids = { uid: of('uid'), gid: of('gid') };
  if (!failed) unmapped = ids;
  return ids;
}

/**
 * Throws if the socket has no fd or SO_PEERCRED fails, or if the peer's uid or gid is not mapped
 * in the daemon's user namespace (a daemon in a container, a caller outside its mapping: the kernel
 * says 65534, which a rule for nobody would match): such a connection must not be served.
 * Supplementary groups not mapped here are left out: they name no group the policy can mean.
 */
export function principalOfSocket(socket: Socket): Principal {
  const fd = socketFd(socket);
  if (fd === undefined) throw new Error('the connection has no file descriptor');
  const ids = unmappedIds();
  const peer = peerCred(fd);
  if (peer.uid === ids.uid || peer.gid === ids.gid) {
    throw new Error(`the peer (pid ${peer.pid}) has a uid or gid that the daemon's user namespace does not map (the kernel reports uid ${peer.uid}, gid ${peer.gid})`);
  }
  const cred = { ...peer, groups: peerGroups(fd).filter((g) => g !== ids.gid) };
  const exe = readExe(cred.pid);
  return exe === undefined ? cred : { ...cred, exe };
}
