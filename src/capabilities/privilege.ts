import { readFileSync, readlinkSync } from 'node:fs';

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

export interface Privilege {
  uid: number;
  capNetAdmin: boolean;
  capSysAdmin: boolean;
  initialUserNamespace: boolean;
  /**
   * What af_alg_restrict=1 asks of a caller: CAP_NET_ADMIN in the initial user namespace, or
   * CAP_SYS_ADMIN (from the patch text).
   */
  sufficientForRestricted: boolean;
}

/** The initial user namespace's inode, fixed by the kernel (PROC_USER_INIT_INO, include/linux/proc_ns.h). */
const INITIAL_USER_NS = 'user:[4026531837]';

/**
 * Not "uid_map is the identity": a child namespace can have that map too (systemd's
 * PrivateUsers=full writes it), and the kernel counts capabilities only in the initial one
 * (review by helper-119). The map is read only where /proc/self/ns cannot be.
 */
function inInitialUserNamespace(): boolean {
  try {
    return readlinkSync('/proc/self/ns/user') === INITIAL_USER_NS;
  } catch {
    return /^\s*0\s+0\s+4294967295\s*$/.test(read('/proc/self/uid_map'));
  }
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function currentPrivilege(): Privilege {
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(read('/proc/self/status'))?.[1] ?? '0';
  const caps = BigInt(`0x${capEff}`);
  const has = (bit: bigint) => ((caps >> bit) & 1n) === 1n;
  const initialUserNamespace = inInitialUserNamespace();
  const capNetAdmin = has(CAP_NET_ADMIN);
  const capSysAdmin = has(CAP_SYS_ADMIN);
  return {
    uid: process.getuid?.() ?? -1,
    capNetAdmin,
    capSysAdmin,
    initialUserNamespace,
    // The kernel asks capable(): in the initial user namespace, for CAP_SYS_ADMIN as for CAP_NET_ADMIN
    // (root in a rootless container has both, in its own namespace only).
    sufficientForRestricted: initialUserNamespace && (capNetAdmin || capSysAdmin),
  };
}

/** What to do about a privilege that af_alg_restrict=1 does not accept, in one clause. */
export function privilegeAdvice(p: Privilege): string {
  if (!p.initialUserNamespace) return 'this process runs in a user namespace other than the initial one (a container, or systemd PrivateUsers=), where the kernel does not count its capabilities: run ringfenced in the initial user namespace with CAP_NET_ADMIN';
  if (p.uid === 0) return 'this process is root but lacks CAP_NET_ADMIN (a CapabilityBoundingSet= or container that drops it): keep CAP_NET_ADMIN, as deploy/ringfenced.service does';
  return 'this process lacks CAP_NET_ADMIN: run ringfenced as root or with AmbientCapabilities=CAP_NET_ADMIN, as deploy/ringfenced.service does';
}
