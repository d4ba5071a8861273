import { readFileSync } from 'node:fs';

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
  // The initial user namespace maps every uid onto itself.
  const initialUserNamespace = /^\s*0\s+0\s+4294967295\s*$/.test(read('/proc/self/uid_map'));
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
