/**
 * The engine's one error type, with a closed set of codes. Kernel errors (SyscallError) are
 * converted here, where the engine knows what it was doing, and nowhere else. Messages name the
 * algorithm or key serial, never key bytes or data.
 */
import { readFileSync } from 'node:fs';
import { isSyscallError } from '../../../native-ffi/syscall-error.js';
import type { AlgType } from '../../../native-ffi/af-alg.js';
import { currentPrivilege } from '../../capabilities/privilege.js';
import { allowedWhenRestricted } from '../../capabilities/restrict-allowlist.js';
import { estimatedRequestBound, readOptmemMax } from './request-bound.js';

export type EngineErrorCode =
  | 'AF_ALG_UNAVAILABLE' // no AF_ALG in this kernel, or it is blocked
  | 'ALGORITHM_UNAVAILABLE' // the kernel lacks the algorithm or af_alg_restrict refuses it
  | 'KEY_UNUSABLE' // the key serial is gone, revoked, expired or not ours
  | 'AUTHENTICATION_FAILED' // tag or MAC mismatch
  | 'INVALID_ARGUMENT' // a length the algorithm cannot take
  | 'PAYLOAD_TOO_LARGE'
  | 'BUSY' // too many requests wait for, or streams hold, the kernel's sockets
  | 'OUT_OF_RESOURCES' // no descriptor or kernel memory for a new AF_ALG socket
  | 'INTERNAL';

/** Which bound a BUSY refusal met (ErrorInfo metadata `limit`). */
export type EngineLimit = 'queued_requests' | 'queued_requests_per_caller' | 'hash_streams';

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** The errno name, when the kernel said no. */
  readonly errno: string | undefined;
  /** For BUSY: which limit was reached. */
  readonly limit: EngineLimit | undefined;
  /** For ALGORITHM_UNAVAILABLE: the kernel's name (e.g. "gcm(aes)"), and whether af_alg_restrict=1 is why. */
  readonly algorithm: string | undefined;
  readonly restricted: boolean;
  /** For PAYLOAD_TOO_LARGE, where known: the size and the bound, and the request field when the engine can name it (errors.proto's metadata). */
  readonly size: { field?: string; actualBytes: number; limitBytes: number } | undefined;

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown; errno?: string; limit?: EngineLimit; algorithm?: string; restricted?: boolean; size?: { field?: string; actualBytes: number; limitBytes: number } }) {
    super(message, options?.cause ? { cause: options.cause } : undefined);
    this.name = 'EngineError';
    this.code = code;
    this.errno = options?.errno;
    this.limit = options?.limit;
    this.algorithm = options?.algorithm;
    this.restricted = options?.restricted ?? false;
    this.size = options?.size;
  }
}

export function isEngineError(err: unknown, code?: EngineErrorCode): err is EngineError {
  return err instanceof EngineError && (code === undefined || err.code === code);
}

/** What the engine was doing when the kernel said no. */
export type Stage = 'open' | 'key' | 'authsize' | 'request';

/** `type`: for stage open, the algorithm's AF_ALG type (tells af_alg_restrict's refusal from a missing module). */
export function fromKernel(err: unknown, stage: Stage, what: string, type?: AlgType): EngineError {
  if (err instanceof EngineError) return err;
  if (!isSyscallError(err)) return new EngineError('INTERNAL', `${what}: ${String(err)}`, { cause: err });
  const c = err.code;
  const opts = { cause: err, errno: c };
  if (c === 'EAFNOSUPPORT') {
    // 7.3's af_alg_restrict=2 switches AF_ALG off for root too, with this errno (review by helper-179).
    const v = Number(restrictValue());
    if (v >= 2) return new EngineError('AF_ALG_UNAVAILABLE', `af_alg_restrict=${v} switches AF_ALG off for every process, the daemon included: set it to 1 or 0`, opts);
    return new EngineError('AF_ALG_UNAVAILABLE', 'this kernel has no AF_ALG (CONFIG_CRYPTO_USER_API*), or it is blocked', opts);
  }
  // Out of descriptors or kernel memory for a new socket: the daemon's resources, not the request
  // (review by helper-197: INTERNAL, and ENOMEM at accept PAYLOAD_TOO_LARGE). The syscall tells it
  // from ENOMEM on sendmsg, which is the request's size (below).
  if ((err.syscall === 'socket' || err.syscall === 'accept4') && SOCKET_RESOURCES[c] !== undefined) {
    return new EngineError('OUT_OF_RESOURCES', `${what}: the daemon could not open an AF_ALG socket: ${SOCKET_RESOURCES[c]}`, opts);
  }
  if (stage === 'open' && c === 'ENOENT') {
    // As the probe tells them apart (capabilities/probe.ts): on the allowlist, and privileged, it is missing.
    if (afAlgRestricted() && type !== undefined && allowedWhenRestricted({ type, name: what }) && privileged()) {
      return new EngineError('ALGORITHM_UNAVAILABLE', `${what}: not offered by this kernel (it is on af_alg_restrict's allowlist: the kernel lacks its module)`, { ...opts, algorithm: what, restricted: false });
    }
    return new EngineError('ALGORITHM_UNAVAILABLE', `${what}: not offered by this kernel to this process${restrictHint()}`, { ...opts, algorithm: what, restricted: afAlgRestricted() });
  }
  if (stage === 'key') {
    if (c === 'ENOKEY') return new EngineError('KEY_UNUSABLE', `${what}: the kernel key no longer exists`, opts);
    if (c === 'EKEYREVOKED') return new EngineError('KEY_UNUSABLE', `${what}: the kernel key was revoked`, opts);
    if (c === 'EKEYEXPIRED') return new EngineError('KEY_UNUSABLE', `${what}: the kernel key has expired`, opts);
    if (c === 'EACCES') return new EngineError('KEY_UNUSABLE', `${what}: this process may not use the kernel key`, opts);
    if (c === 'ENOPROTOOPT') {
      return new EngineError('KEY_UNUSABLE', `${what}: this kernel cannot key a transform by key serial (needs Linux >= 6.2 and a user, logon or encrypted key)`, opts);
    }
    if (c === 'EINVAL') return new EngineError('INVALID_ARGUMENT', `${what}: the key's length does not suit the algorithm`, opts);
  }
  if (stage === 'request') {
    if (c === 'EBADMSG') return new EngineError('AUTHENTICATION_FAILED', `${what}: authentication failed`, opts);
    if (c === 'EINVAL') return new EngineError('INVALID_ARGUMENT', `${what}: the kernel rejected the request's lengths`, opts);
    if (c === 'ENOMEM' || c === 'EAGAIN') return new EngineError('PAYLOAD_TOO_LARGE', `${what}: request larger than the kernel will buffer${optmemHint()}`, opts);
  }
  if (stage === 'authsize' && c === 'EINVAL') return new EngineError('INVALID_ARGUMENT', `${what}: tag size not supported`, opts);
  return new EngineError('INTERNAL', `${what}: ${err.message}`, opts);
}

/** What each errno of socket() or accept() that means "no resources" says ran out, and where its bound is set. */
const SOCKET_RESOURCES: Record<string, string | undefined> = {
  EMFILE: 'it has as many files open as it may (EMFILE: its RLIMIT_NOFILE, LimitNOFILE= in its systemd unit)',
  ENFILE: 'the system has as many files open as it may (ENFILE: fs.file-max)',
  ENOMEM: 'the kernel is short of memory (ENOMEM)',
  ENOBUFS: 'the kernel is short of memory (ENOBUFS)',
};

/**
 * The sysctl's value, "unreadable", or undefined where the kernel has none: read on the error path
 * only, and each time: root may change it while the daemon runs, and a value kept from the first
 * error told later ones the wrong cause (review by helper-179).
 */
function restrictValue(): string | undefined {
  try {
    return readFileSync('/proc/sys/crypto/af_alg_restrict', 'utf8').trim();
  } catch (err) {
    // As the probe reads it (capabilities/probe.ts): only a missing sysctl restricts nothing.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : 'unreadable';
  }
}

let privilegedCache: boolean | undefined;
/** Whether af_alg_restrict's allowlist applies to this process: read once, on the error path only. */
function privileged(): boolean {
  return (privilegedCache ??= currentPrivilege().sufficientForRestricted);
}

function afAlgRestricted(): boolean {
  const v = restrictValue();
  return v !== undefined && v !== '0';
}

function restrictHint(): string {
  return afAlgRestricted()
    ? ` (af_alg_restrict=${restrictValue()}: unprivileged processes get no AF_ALG, and privileged ones only an allowlist that excludes e.g. gcm(aes))`
    : '';
}

/** The request bound's sysctl and its value (request-bound.ts). */
function optmemHint(): string {
  const value = readOptmemMax();
  if (value === undefined) return ' (AF_ALG bounds a request by net.core.optmem_max)';
  if (value === 'host-only') return " (AF_ALG bounds a request by net.core.optmem_max, the host's: kernels before 6.8 do not show it in the daemon's network namespace; raise it on the host, or lower the daemon's payload limits: docs/operations.md, Limits)";
  const mib = (estimatedRequestBound(value) / (1024 * 1024)).toFixed(1);
  return ` (AF_ALG bounds a request by net.core.optmem_max, ${value} in the daemon's network namespace, which takes about ${mib} MiB; lower the daemon's payload limits, or raise it: docs/operations.md, Limits)`;
}
