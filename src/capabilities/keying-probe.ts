/**
 * Keying AF_ALG from kernel keys, as the daemon does it: by a logon key's serial (imported keys) and
 * by an encrypted key's serial (keys generated in the kernel, reloaded from their wrapped blob after
 * a restart). Each check works in a throwaway keyring under the process keyring.
 */
import { createHmac, randomBytes } from 'node:crypto';
import * as afAlg from '../../native-ffi/af-alg.js';
import * as keyctl from '../../native-ffi/keyctl.js';
import { isSyscallError } from '../../native-ffi/syscall-error.js';
import type { AlgReport } from './probe.js';

/** supported null: not checked (no AF_ALG, no hmac(sha256)), or the check failed (`failed`, with the errno when the kernel gave one). */
export interface KeySerialReport {
  supported: boolean | null;
  verified: boolean;
  detail: string;
  failed?: boolean;
  errno?: string;
}

/** supported null: not checked, because keying by serial itself is not supported, or the key quota is full (errno EDQUOT). */
export interface GeneratedKeysReport {
  supported: boolean | null;
  detail: string;
  errno?: string;
}

const PROBE_DATA = Buffer.from('ringfence');

/**
 * add_key's EDQUOT: this uid holds as many keys, or key bytes, as the kernel lets it (the daemon's
 * own keys count, and another daemon's of the same uid). The kernel does not say which of the two.
 */
export function keyQuotaFull(uid = process.getuid?.()): string {
  const [keys, bytes] = uid === 0 ? ['root_maxkeys', 'root_maxbytes'] : ['maxkeys', 'maxbytes'];
  return `the kernel key quota of uid ${uid} is full (EDQUOT from add_key): raise /proc/sys/kernel/keys/${keys} and ${bytes} (sysctl kernel.keys.${keys} / kernel.keys.${bytes}; /proc/key-users shows the use), or free keys this uid holds`;
}

/** HMAC-SHA256 of PROBE_DATA keyed by the kernel key `serial`. */
function hmacBySerial(serial: number): Buffer {
  const tfm = afAlg.openTransform('hash', 'hmac(sha256)');
  try {
    afAlg.setKeyBySerial(tfm, serial);
    const op = afAlg.acceptOp(tfm);
    const out = Buffer.alloc(32);
    try {
      afAlg.sendRequest(op, {}, [PROBE_DATA]);
      afAlg.readResult(op, out);
    } finally {
      afAlg.closeFd(op);
    }
    return out;
  } finally {
    afAlg.closeFd(tfm);
  }
}

function withProbeKeyring<T>(name: string, fn: (ring: number) => T): T {
  const ring = keyctl.createKeyring(`ringfence-probe-${name}-${process.pid}`, keyctl.getKeyringId(keyctl.KeySpec.PROCESS, true));
  try {
    return fn(ring);
  } finally {
    keyctl.invalidateKey(ring);
  }
}

/** Keys an HMAC transform by a fresh logon key's serial and checks the result against node:crypto. */
export function probeKeySerial(algs: AlgReport[]): KeySerialReport {
  if (!algs.some((a) => a.name === 'hmac(sha256)' && a.status === 'available')) {
    return { supported: null, verified: false, detail: 'not checked: hmac(sha256) is not available to this process' };
  }
  const key = randomBytes(32);
  try {
    const mac = withProbeKeyring('logon', (ring) => hmacBySerial(keyctl.addKey('logon', `ringfence-probe:${process.pid}`, key, ring)));
    const verified = mac.equals(createHmac('sha256', key).update(PROBE_DATA).digest());
    return { supported: true, verified, detail: verified ? 'ALG_SET_KEY_BY_KEY_SERIAL keyed hmac(sha256) from a logon key; output matched node:crypto' : 'keyed by serial, but the output did not match node:crypto' };
  } catch (err) {
    if (isSyscallError(err, 'ENOPROTOOPT')) return { supported: false, verified: false, detail: 'ALG_SET_KEY_BY_KEY_SERIAL unknown to this kernel (needs Linux >= 6.2)' };
    // Not a kernel that cannot: one whose quota is full, which the operator can raise (review by helper-197).
    if (isSyscallError(err, 'EDQUOT')) return { supported: null, verified: false, failed: true, errno: 'EDQUOT', detail: keyQuotaFull() };
    // The keyring or AF_ALG failing here (ENOSYS, EPERM from seccomp, a quota) fails the daemon too.
    return { supported: null, verified: false, failed: true, detail: `could not check: ${(err as Error).message}` };
  } finally {
    key.fill(0);
  }
}

/**
 * Generates an encrypted key under a throwaway `user` master key, keys hmac(sha256) by its serial,
 * then loads a second key from the first one's wrapped blob and checks that it gives the same MAC
 * (what a restart relies on) and that another generated key does not. Its bytes never leave the
 * kernel, so node:crypto cannot check the MAC itself; the logon check above covers the transform.
 */
export function probeGeneratedKeys(): GeneratedKeysReport {
  const master = randomBytes(32);
  const masterName = `ringfence-probe-master-${process.pid}`;
  try {
    return withProbeKeyring('encrypted', (ring) => {
      keyctl.addKey('user', masterName, master, ring);
      const generate = (n: number) => keyctl.addKey('encrypted', `ringfence-probe-${n}`, Buffer.from(`new default user:${masterName} 32`), ring);
      const first = generate(1);
      const blob = keyctl.readKey(first);
      const reloaded = keyctl.addKey('encrypted', 'ringfence-probe-3', Buffer.concat([Buffer.from('load '), blob]), ring);
      const [a, b, other] = [hmacBySerial(first), hmacBySerial(reloaded), hmacBySerial(generate(2))];
      if (!a.equals(b)) return { supported: false, detail: 'an encrypted key reloaded from its wrapped blob keyed hmac(sha256) differently from the original' };
      if (a.equals(other)) return { supported: false, detail: 'two generated encrypted keys keyed hmac(sha256) identically' };
      return { supported: true, detail: 'encrypted keys keyed hmac(sha256) by serial, and one reloaded from its wrapped blob gave the same MAC' };
    });
  } catch (err) {
    const errno = isSyscallError(err) ? err.code : undefined;
    // add_key answers ENODEV for a key type the kernel does not have.
    // A full key quota says nothing of the kernel: not checked.
    if (errno === 'EDQUOT') return { supported: null, detail: keyQuotaFull(), errno };
    const why = errno === 'ENODEV' ? 'the kernel has no encrypted key type (CONFIG_ENCRYPTED_KEYS)' : (err as Error).message;
    return { supported: false, detail: why, ...(errno ? { errno } : {}) };
  } finally {
    master.fill(0);
  }
}
