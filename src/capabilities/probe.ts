/**
 * The capability probe: what this kernel lets this process do, said plainly. Used by `ringfence
 * doctor` (no daemon needed) and by the daemon at start-up to choose default suites.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import * as afAlg from '../../native-ffi/af-alg.js';
import { isSyscallError } from '../../native-ffi/syscall-error.js';
import { currentPrivilege, privilegeAdvice, type Privilege } from './privilege.js';
import { driverFor, readProcCrypto } from './proc-crypto.js';
import { allowedWhenRestricted } from './restrict-allowlist.js';
import { probeGeneratedKeys, probeKeySerial, type GeneratedKeysReport, type KeySerialReport } from './keying-probe.js';
import { AEAD_SUITES, ALL_SUITES, MAC_SUITES, type KernelAlg, type Suite } from './suites.js';

export const RESTRICT_SYSCTL = '/proc/sys/crypto/af_alg_restrict';

/**
 * available: binds; restricted: refused under af_alg_restrict; missing: not in this kernel (under
 * af_alg_restrict: on its allowlist, yet ENOENT); error: other.
 */
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
  /** errno: why socket(AF_ALG) failed; EAFNOSUPPORT is a kernel without it (or a filter saying so). */
  afAlg: { present: boolean; errno?: string; tries?: number };
  keySerial: KeySerialReport;
  generatedKeys: GeneratedKeysReport;
  /** value null: no such sysctl (before 7.3), or `unreadable` says why it could not be read. */
  restrict: { sysctl: string; value: number | null; unreadable?: string };
  privilege: Privilege & { required: boolean };
  suites: SuiteReport[];
  defaultAeadSuite: string | null;
  defaultMacSuite: string | null;
  summary: string[];
}

/**
 * Only a missing sysctl means "not restricted": one that cannot be read (EACCES) or holds no number
 * may well restrict, and was reported as not doing so (review by helper-119).
 */
export function readRestrict(): { value: number | null; unreadable?: string } {
  let text: string;
  try {
    text = readFileSync(RESTRICT_SYSCTL, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No /proc/sys at all (ProcSubset=pid, a proc mount with subset=pid) says nothing of the kernel.
    if (code === 'ENOENT' && !existsSync('/proc/sys')) return { value: null, unreadable: 'no /proc/sys in this process' };
    return code === 'ENOENT' ? { value: null } : { value: null, unreadable: code ?? String(err) };
  }
  return /^\d{1,9}$/.test(text) ? { value: Number(text) } : { value: null, unreadable: `not a number: ${JSON.stringify(text.slice(0, 16))}` };
}

/**
 * What af_alg_restrict reads now, when that is not what it read at start-up (`r`): "1", "absent" or
 * "unreadable (EACCES)"; undefined while it is the same. Root may change it while the daemon runs,
 * whose defaults and suite table stay those of its start-up probe (review by helper-179).
 */
export function restrictChangedSince(r: Pick<CapabilityReport, 'restrict'>, now: { value: number | null; unreadable?: string } = readRestrict()): string | undefined {
  const text = (x: { value: number | null; unreadable?: string }) => (x.unreadable !== undefined ? `unreadable (${x.unreadable})` : x.value === null ? 'absent' : String(x.value));
  return text(now) === text(r.restrict) ? undefined : text(now);
}

/** Whether the probe takes AF_ALG to be restricted: the sysctl says so, or it could not be read. */
export function isRestricted(r: Pick<CapabilityReport, 'restrict'>): boolean {
  return r.restrict.unreadable !== undefined || (r.restrict.value !== null && r.restrict.value !== 0);
}

/**
 * Whether af_alg_restrict switches AF_ALG off for every process, root included: on 7.3-rc7 the sysctl
 * takes 2, and socket(AF_ALG) then fails with EAFNOSUPPORT as on a kernel without it (measured in the
 * test VM by review, helper-179). Said as such, not as a kernel lacking CONFIG_CRYPTO_USER_API_*.
 */
export function restrictSwitchesOff(r: Pick<CapabilityReport, 'afAlg' | 'restrict'>): boolean {
  return !r.afAlg.present && r.afAlg.errno === 'EAFNOSUPPORT' && r.restrict.value !== null && r.restrict.value >= 2;
}

/**
 * Errnos after which the same bind() may well succeed a moment later (memory or descriptors short,
 * an algorithm's module still loading). Taken as the answer, one would choose other default and
 * sealing suites for the daemon's life (found by review: helper-89).
 */
export const TRANSIENT_ERRNOS: ReadonlySet<string> = new Set(['ENOMEM', 'ENOBUFS', 'EAGAIN', 'EINTR', 'EMFILE', 'ENFILE', 'EBUSY', 'ETIMEDOUT']);
/** The waits before each retry of a bind() that failed with a transient errno. */
const RETRY_WAITS_MS = [10, 100, 500];

/** The errno of `step`, or undefined if it worked. */
function errnoOf(step: () => void): string | undefined {
  try {
    step();
    return undefined;
  } catch (err) {
    return isSyscallError(err) ? err.code : String(err);
  }
}

/** Runs `step` again while it fails with a transient errno, up to RETRY_WAITS_MS.length times more. */
function withRetries(step: () => void): { errno: string | undefined; tries: number } {
  let errno = errnoOf(step);
  let tries = 1;
  for (const wait of RETRY_WAITS_MS) {
    if (errno === undefined || !TRANSIENT_ERRNOS.has(errno)) break;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait); // a synchronous sleep: the probe is synchronous
    errno = errnoOf(step);
    tries++;
  }
  return { errno, tries };
}

/**
 * ENOENT under af_alg_restrict: refused, unless this process is privileged and the algorithm is on
 * the allowlist; then the kernel does not offer it (a module not built), which was reported as
 * "refused under af_alg_restrict" (review by helper-119).
 */
function enoentStatus(alg: KernelAlg, restricted: boolean, privileged: boolean): AlgStatus {
  return restricted && !(privileged && allowedWhenRestricted(alg)) ? 'restricted' : 'missing';
}

function probeAlg(alg: KernelAlg, restricted: boolean, privileged: boolean): AlgReport {
  const { errno, tries } = withRetries(() => afAlg.closeFd(afAlg.openTransform(alg.type, alg.name)));
  if (errno === undefined) return { ...alg, status: 'available' };
  const status: AlgStatus = errno === 'ENOENT' ? enoentStatus(alg, restricted, privileged) : 'error';
  return status === 'error' ? { ...alg, status, errno, tries } : { ...alg, status, errno };
}

const RANK: Record<AlgStatus, number> = { available: 0, restricted: 1, missing: 2, error: 3 };

export function probeCapabilities(): CapabilityReport {
  const restrict = { sysctl: RESTRICT_SYSCTL, ...readRestrict() };
  const restricted = isRestricted({ restrict });
  const privilege = { ...currentPrivilege(), required: restricted };
  // Retried as a bind is: EMFILE once at start is no kernel without AF_ALG (review by helper-119).
  const family = withRetries(() => afAlg.checkFamily());
  const afAlgErrno = family.errno;
  const afAlgPresent = afAlgErrno === undefined;
  // Without the family every algorithm is missing; refused by a filter (EPERM) or short of
  // descriptors, what the kernel has is unknown.
  const noFamily = (alg: KernelAlg): AlgReport => (afAlgErrno === 'EAFNOSUPPORT' ? { ...alg, status: 'missing', errno: afAlgErrno } : { ...alg, status: 'error', errno: afAlgErrno, tries: family.tries });
  const algCache = new Map<string, AlgReport>();
  const procCrypto = () => readProcCrypto();
  const suites: SuiteReport[] = ALL_SUITES.map((suite) => {
    const algorithms = suite.algorithms.map((alg) => {
      const id = `${alg.type}:${alg.name}`;
      let r = algCache.get(id);
      if (!r) {
        r = afAlgPresent ? probeAlg(alg, restricted, privilege.sufficientForRestricted) : noFamily(alg);
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
    afAlg: afAlgErrno ? { present: afAlgPresent, errno: afAlgErrno, tries: family.tries } : { present: afAlgPresent },
    keySerial,
    generatedKeys,
    restrict,
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
    const errno = r.afAlg.errno ?? 'unknown';
    if (restrictSwitchesOff(r)) out.push(`${r.restrict.sysctl} = ${r.restrict.value}: AF_ALG is switched off for every process, root included (EAFNOSUPPORT). ringfence cannot serve cryptography here; it needs the sysctl at 1 (privileged processes keep an allowlist) or 0.`);
    else if (errno === 'EAFNOSUPPORT') out.push(`AF_ALG is not available (${errno}): this kernel lacks CONFIG_CRYPTO_USER_API_* or blocks the socket family. ringfence cannot serve cryptography here.`);
    else if (TRANSIENT_ERRNOS.has(errno)) out.push(`socket(AF_ALG) failed with ${errno} on each of ${r.afAlg.tries ?? 1} tries (memory or descriptors short): what this kernel offers is unknown; try again.`);
    else out.push(`socket(AF_ALG) is refused to this process (${errno}): a seccomp filter or security module blocks it. ringfence cannot serve cryptography here.`);
    return out;
  }
  out.push('AF_ALG is present. Note: upstream deprecated AF_ALG in 2026; ringfence mediates it for applications.');
  if (r.keySerial.supported === false) out.push(`Keying by kernel key serial is not supported: ${r.keySerial.detail}. ringfence needs it.`);
  else if (r.keySerial.supported === null) out.push(`Keying by kernel key serial: ${r.keySerial.detail}.`);
  else out.push(`Keying by kernel key serial works${r.keySerial.verified ? ' (verified against node:crypto)' : ' but gave a WRONG result'}.`);
  if (r.generatedKeys.supported === true) out.push(`Kernel-generated keys work: ${r.generatedKeys.detail}.`);
  else if (r.generatedKeys.supported === false) out.push(`Kernel-generated keys do not work here: ${r.generatedKeys.detail}. CreateKey will fail; ImportKey still works.`);
  else if (r.generatedKeys.errno === 'EDQUOT') out.push(`Kernel-generated keys could not be checked: ${r.generatedKeys.detail}. Until then CreateKey, ImportKey and RotateKey fail.`);
  if (r.restrict.unreadable !== undefined) out.push(`${r.restrict.sysctl} could not be read (${r.restrict.unreadable}): AF_ALG may be restricted; taken as restricted.`);
  else if (r.restrict.value === null) out.push(`No ${r.restrict.sysctl}: AF_ALG is not restricted on this kernel.`);
  else if (r.restrict.value === 0) out.push(`${r.restrict.sysctl} = 0: AF_ALG is not restricted.`);
  else out.push(`${r.restrict.sysctl} = ${r.restrict.value}: unprivileged processes get no AF_ALG, and privileged ones only an allowlist (no gcm(aes), no chacha20-poly1305, no SHA-3 or BLAKE2b).`);
  if (isRestricted(r)) {
    out.push(
      r.privilege.sufficientForRestricted
        ? 'This process is privileged enough (CAP_NET_ADMIN or CAP_SYS_ADMIN in the initial user namespace).'
        : `This process lacks the privilege restricted kernels require: ${privilegeAdvice(r.privilege)}.`,
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
  if (!r.afAlg.present && r.afAlg.errno !== undefined && TRANSIENT_ERRNOS.has(r.afAlg.errno)) {
    return `socket(AF_ALG) failed with ${r.afAlg.errno} on each of ${r.afAlg.tries ?? 1} tries (memory or descriptors short), so the kernel could not say what it offers; not starting rather than choosing default and sealing suites without knowing`;
  }
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
  const unprivileged = isRestricted(r) && !r.privilege.sufficientForRestricted;
  if (unprivileged && !r.defaultAeadSuite) {
    const state = r.restrict.value !== null ? `= ${r.restrict.value}` : `is unreadable (${r.restrict.unreadable})`;
    return `no AEAD suite is usable: ${r.restrict.sysctl} ${state} and ${privilegeAdvice(r.privilege)}`;
  }
  if (!r.afAlg.present) {
    const errno = r.afAlg.errno ?? 'unknown';
    if (restrictSwitchesOff(r)) return `${r.restrict.sysctl} = ${r.restrict.value} switches AF_ALG off for every process (${errno}); ringfence needs it at 1 or 0`;
    if (errno === 'EAFNOSUPPORT') return `this kernel has no AF_ALG (${errno})`;
    // Short of memory or descriptors: unknown, and inconclusiveProbe says so (start again).
    if (TRANSIENT_ERRNOS.has(errno)) return undefined;
    return `socket(AF_ALG) is refused to this process (${errno}): a seccomp filter or security module blocks it`;
  }
  if (r.keySerial.supported === false) return `this kernel cannot key AF_ALG by kernel key serial (${r.keySerial.detail})`;
  if (r.keySerial.supported === true && !r.keySerial.verified) return 'keying AF_ALG by kernel key serial gave a wrong result on this kernel';
  if (r.keySerial.failed && r.keySerial.errno === 'EDQUOT') return r.keySerial.detail;
  if (r.keySerial.failed) return `keying AF_ALG by kernel key serial could not be checked (${r.keySerial.detail.replace(/^could not check: /, '')})`;
  if (!r.defaultAeadSuite) return 'no AEAD suite is usable on this kernel';
  return undefined;
}
