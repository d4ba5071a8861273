/**
 * The capability probe: what this kernel lets this process do, said plainly. Used by `ringfence
 * doctor` (no daemon needed) and by the daemon at start-up to choose default suites.
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import * as afAlg from '../../native-ffi/af-alg.js';
import { isSyscallError } from '../../native-ffi/syscall-error.js';
import { currentPrivilege, type Privilege } from './privilege.js';
import { driverFor, readProcCrypto } from './proc-crypto.js';
import { probeGeneratedKeys, probeKeySerial, type GeneratedKeysReport, type KeySerialReport } from './keying-probe.js';
import { AEAD_SUITES, ALL_SUITES, MAC_SUITES, type KernelAlg, type Suite } from './suites.js';

export const RESTRICT_SYSCTL = '/proc/sys/crypto/af_alg_restrict';

/** available: binds; restricted: refused under af_alg_restrict; missing: not in this kernel; error: other. */
export type AlgStatus = 'available' | 'restricted' | 'missing' | 'error';

export interface AlgReport extends KernelAlg {
  status: AlgStatus;
  driver?: string;
  module?: string;
  errno?: string;
  /** For status error: how many times bind() was tried. */
  tries?: number;
}

export interface SuiteReport {
  name: string;
  kind: Suite['kind'];
  status: AlgStatus;
  algorithms: AlgReport[];
}

export interface CapabilityReport {
  kernel: { release: string };
  afAlg: { present: boolean; errno?: string };
  keySerial: KeySerialReport;
  generatedKeys: GeneratedKeysReport;
  restrict: { sysctl: string; value: number | null };
  privilege: Privilege & { required: boolean };
  suites: SuiteReport[];
  defaultAeadSuite: string | null;
  defaultMacSuite: string | null;
  summary: string[];
}

function readRestrict(): number | null {
  try {
    return Number(readFileSync(RESTRICT_SYSCTL, 'utf8').trim());
  } catch {
    return null;
  }
}

/**
 * Errnos after which the same bind() may well succeed a moment later (memory or descriptors short,
 * an algorithm's module still loading). Taken as the answer, one would choose other default and
 * sealing suites for the daemon's life (found by review: helper-89).
 */
export const TRANSIENT_ERRNOS: ReadonlySet<string> = new Set(['ENOMEM', 'ENOBUFS', 'EAGAIN', 'EINTR', 'EMFILE', 'ENFILE', 'EBUSY', 'ETIMEDOUT']);
/** The waits before each retry of a bind() that failed with a transient errno. */
const RETRY_WAITS_MS = [10, 100, 500];

function bindOnce(alg: KernelAlg): string | undefined {
  try {
    afAlg.closeFd(afAlg.openTransform(alg.type, alg.name));
    return undefined;
  } catch (err) {
    return isSyscallError(err) ? err.code : String(err);
  }
}

function probeAlg(alg: KernelAlg, restricted: boolean): AlgReport {
  let errno = bindOnce(alg);
  let tries = 1;
  for (const wait of RETRY_WAITS_MS) {
    if (errno === undefined || !TRANSIENT_ERRNOS.has(errno)) break;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait); // a synchronous sleep: the probe is synchronous
    errno = bindOnce(alg);
    tries++;
  }
  if (errno === undefined) return { ...alg, status: 'available' };
  const status: AlgStatus = errno === 'ENOENT' ? (restricted ? 'restricted' : 'missing') : 'error';
  return status === 'error' ? { ...alg, status, errno, tries } : { ...alg, status, errno };
}

const RANK: Record<AlgStatus, number> = { available: 0, restricted: 1, missing: 2, error: 3 };

export function probeCapabilities(): CapabilityReport {
  const restrictValue = readRestrict();
  const restricted = restrictValue !== null && restrictValue !== 0;
  const privilege = { ...currentPrivilege(), required: restricted };
  let afAlgPresent = true;
  let afAlgErrno: string | undefined;
  try {
    afAlg.checkFamily();
  } catch (err) {
    afAlgPresent = false;
    afAlgErrno = isSyscallError(err) ? err.code : String(err);
  }
  const algCache = new Map<string, AlgReport>();
  const procCrypto = () => readProcCrypto();
  const suites: SuiteReport[] = ALL_SUITES.map((suite) => {
    const algorithms = suite.algorithms.map((alg) => {
      const id = `${alg.type}:${alg.name}`;
      let r = algCache.get(id);
      if (!r) {
        r = afAlgPresent ? probeAlg(alg, restricted) : { ...alg, status: 'missing', errno: afAlgErrno };
        algCache.set(id, r);
      }
      return r;
    });
    const status = algorithms.reduce<AlgStatus>((w, a) => (RANK[a.status] > RANK[w] ? a.status : w), 'available');
    return { name: suite.name, kind: suite.kind, status, algorithms };
  });
  // Binding instantiates templates (gcm(aes) from gcm + aes), so read /proc/crypto afterwards.
  const entries = procCrypto();
  for (const a of algCache.values()) {
    const e = driverFor(entries, a.name);
    if (e) Object.assign(a, { driver: e.driver, module: e.module });
  }
  const keySerial = afAlgPresent ? probeKeySerial([...algCache.values()]) : { supported: null, verified: false, detail: 'not checked: no AF_ALG' };
  const generatedKeys: GeneratedKeysReport = keySerial.supported ? probeGeneratedKeys() : { supported: null, detail: `not checked: keying by serial ${keySerial.supported === false ? 'is not supported' : 'was not checked'}` };
  const firstAvailable = (names: readonly { name: string }[]) => names.find((s) => suites.find((r) => r.name === s.name)?.status === 'available')?.name ?? null;
  const report: CapabilityReport = {
    kernel: { release: release() },
    afAlg: afAlgErrno ? { present: afAlgPresent, errno: afAlgErrno } : { present: afAlgPresent },
    keySerial,
    generatedKeys,
    restrict: { sysctl: RESTRICT_SYSCTL, value: restrictValue },
    privilege,
    suites,
    defaultAeadSuite: firstAvailable(AEAD_SUITES),
    defaultMacSuite: firstAvailable(MAC_SUITES),
    summary: [],
  };
  report.summary = summarize(report);
  return report;
}

export function summarize(r: CapabilityReport): string[] {
  const out: string[] = [];
  if (!r.afAlg.present) {
    out.push(`AF_ALG is not available (${r.afAlg.errno}): this kernel lacks CONFIG_CRYPTO_USER_API_* or blocks the socket family. ringfence cannot serve cryptography here.`);
    return out;
  }
  out.push('AF_ALG is present. Note: upstream deprecated AF_ALG in 2026; ringfence mediates it for applications.');
  if (r.keySerial.supported === false) out.push(`Keying by kernel key serial is not supported: ${r.keySerial.detail}. ringfence needs it.`);
  else if (r.keySerial.supported === null) out.push(`Keying by kernel key serial: ${r.keySerial.detail}.`);
  else out.push(`Keying by kernel key serial works${r.keySerial.verified ? ' (verified against node:crypto)' : ' but gave a WRONG result'}.`);
  if (r.generatedKeys.supported === true) out.push(`Kernel-generated keys work: ${r.generatedKeys.detail}.`);
  else if (r.generatedKeys.supported === false) out.push(`Kernel-generated keys do not work here: ${r.generatedKeys.detail}. CreateKey will fail; ImportKey still works.`);
  if (r.restrict.value === null) out.push(`No ${r.restrict.sysctl}: AF_ALG is not restricted on this kernel.`);
  else if (r.restrict.value === 0) out.push(`${r.restrict.sysctl} = 0: AF_ALG is not restricted.`);
  else {
    out.push(`${r.restrict.sysctl} = ${r.restrict.value}: unprivileged processes get no AF_ALG, and privileged ones only an allowlist (no gcm(aes), no chacha20-poly1305).`);
    out.push(
      r.privilege.sufficientForRestricted
        ? 'This process is privileged enough (CAP_NET_ADMIN or CAP_SYS_ADMIN in the initial user namespace).'
        : 'This process lacks the privilege restricted kernels require: run ringfenced as root or with AmbientCapabilities=CAP_NET_ADMIN (see deploy/).',
    );
  }
  const by = (s: string) => r.suites.filter((x) => x.status === s).map((x) => x.name);
  if (by('available').length) out.push(`Available: ${by('available').join(', ')}.`);
  if (by('restricted').length) out.push(`Refused under af_alg_restrict: ${by('restricted').join(', ')}.`);
  if (by('missing').length) out.push(`Not in this kernel: ${by('missing').join(', ')}.`);
  const failed = r.suites.filter((x) => x.status === 'error').map((x) => `${x.name} (${x.algorithms.filter((a) => a.status === 'error').map((a) => `${a.name}: ${a.errno ?? 'unknown'}`).join(', ')})`);
  if (failed.length) out.push(`Failed to probe: ${failed.join(', ')}.`);
  out.push(r.defaultAeadSuite ? `Default AEAD suite for new keys: ${r.defaultAeadSuite}.` : 'No AEAD suite is usable: ringfence cannot encrypt here.');
  return out;
}

/**
 * Why the daemon does not start on this probe, or undefined: an algorithm's bind() failed with a
 * transient errno on every try, so the probe cannot tell whether the kernel offers it. Started
 * anyway, the daemon would give new keys, and seal imported material with, another suite for good;
 * refused, it starts again (systemd's Restart=) once the kernel answers. `ringfence doctor` exits 1
 * on it too.
 */
export function inconclusiveProbe(r: CapabilityReport): string | undefined {
  const algs = new Map(r.suites.flatMap((s) => s.algorithms).filter((a) => a.status === 'error' && a.errno !== undefined && TRANSIENT_ERRNOS.has(a.errno)).map((a) => [a.name, a]));
  if (algs.size === 0) return undefined;
  const list = [...algs.values()].map((a) => `${a.name} (${a.errno}, ${a.tries ?? 1} tries)`).join(', ');
  return `the kernel could not say whether it offers ${list}: binding an AF_ALG socket to it failed with an errno that passes (memory, descriptors, a module loading); not starting rather than choosing default and sealing suites without it`;
}

/**
 * Why ringfence cannot work in this process on this kernel, or undefined if it can: no AF_ALG, no
 * keying by key serial (or a wrong result from it), or no usable AEAD suite (e.g. af_alg_restrict=1
 * without CAP_NET_ADMIN). The daemon refuses to start and `ringfence doctor` exits 1 for the same.
 */
export function cannotWork(r: CapabilityReport): string | undefined {
  const unprivileged = r.restrict.value !== null && r.restrict.value > 0 && !r.privilege.sufficientForRestricted;
  if (unprivileged && !r.defaultAeadSuite) {
    return `no AEAD suite is usable: ${r.restrict.sysctl} = ${r.restrict.value} and this process lacks CAP_NET_ADMIN (run ringfenced as root or with AmbientCapabilities=CAP_NET_ADMIN, as deploy/ringfenced.service does)`;
  }
  if (!r.afAlg.present) return `this kernel has no AF_ALG (${r.afAlg.errno ?? 'unknown'})`;
  if (r.keySerial.supported === false) return `this kernel cannot key AF_ALG by kernel key serial (${r.keySerial.detail})`;
  if (r.keySerial.supported === true && !r.keySerial.verified) return 'keying AF_ALG by kernel key serial gave a wrong result on this kernel';
  if (r.keySerial.failed) return `keying AF_ALG by kernel key serial could not be checked (${r.keySerial.detail.replace(/^could not check: /, '')})`;
  if (!r.defaultAeadSuite) return 'no AEAD suite is usable on this kernel';
  return undefined;
}
