/**
 * The daemon's API error: a gRPC code, an ErrorReason and metadata (google.rpc.ErrorInfo on the
 * wire, ItemStatus inside batch and session results). Every other error (engine, key store,
 * ciphertext parsing, state store) is converted here, at the boundary, and nowhere else. Messages
 * say what to do and name keys, fields and sizes, never key bytes, payloads or associated data.
 */
import * as grpc from '@grpc/grpc-js';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ErrorReason, ItemStatusSchema } from '../../gen/ringfence/v1/errors_pb.js';
import { encodeStatusDetails, reasonName, STATUS_DETAILS_KEY } from '../../rpc/error-details.js';
import { isEngineError } from '../engine/errors.js';
import { isSyscallError } from '../../../native-ffi/syscall-error.js';
import { KeystoreError } from '../keystore/errors.js';
import { StateWriteError } from '../state/state-store.js';
import { MalformedCiphertextError } from '../ciphertext/envelope.js';
import { AEAD_SUITES, HASH_SUITES, MAC_SUITES } from '../../capabilities/suites.js';

export { ErrorReason };
export const Status = grpc.status;

export class ApiError extends Error {
  readonly code: grpc.status;
  readonly reason: ErrorReason;
  readonly metadata: Record<string, string>;
  /** The key to name in the audit line when the client may not learn it (never sent). */
  auditKey: string | undefined;
  /** The version of it a ciphertext named, for the same line. */
  auditVersion: number | undefined;

  constructor(code: grpc.status, reason: ErrorReason, message: string, metadata: Record<string, string> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiError';
    this.code = code;
    this.reason = reason;
    this.metadata = metadata;
  }

  /** What grpc-js sends: code, message, and the ErrorInfo trailer. */
  toServiceError(): Partial<grpc.StatusObject> {
    const metadata = new grpc.Metadata();
    metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(this.code, this.message, { reason: this.reason, metadata: this.metadata }));
    return { code: this.code, details: this.message, metadata };
  }

  toItemStatus(): MessageInitShape<typeof ItemStatusSchema> {
    return create(ItemStatusSchema, { code: this.code, message: this.message, reason: this.reason, metadata: this.metadata });
  }

  /** For audit lines. */
  get reasonName(): string {
    return reasonName(this.reason);
  }
}

export function isApiError(err: unknown): err is ApiError {
  return err instanceof ApiError;
}

// Shorthands for the common cases; each names the field or key in metadata.
export const invalidField = (field: string, message: string): ApiError =>
  new ApiError(Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD, message, { field, constraint: message });
export const keyNotFound = (name: string): ApiError =>
  new ApiError(Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, `key "${name}" does not exist`, { key_name: name });
/** `hint` says what to do instead, where there is something (a streaming RPC, smaller messages). */
export const payloadTooLarge = (field: string, bytes: number, limit: number, hint?: string): ApiError =>
  new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, `${field} is ${bytes} bytes; the limit is ${limit}${hint ? ` (${hint})` : ''}`, {
    field,
    actual_bytes: String(bytes),
    limit_bytes: String(limit),
  });
/** The daemon does no operation it could not audit (daemon/log-sink.ts). */
export const auditUnavailable = (errno: string): ApiError =>
  new ApiError(Status.UNAVAILABLE, ErrorReason.AUDIT_UNAVAILABLE, `the daemon cannot write its audit trail (${errno}), so it does no operation: nothing was done; retry once the operator has fixed the log's destination (the daemon's stderr says more)`, { errno });
/** `notDone`: what of the call the daemon did not do ("the operation"), so the client knows to send it again. */
export const shuttingDown = (notDone?: string): ApiError =>
  new ApiError(Status.UNAVAILABLE, ErrorReason.SHUTTING_DOWN, notDone ? `the daemon is shutting down; ${notDone} was not done: send it again to the restarted daemon` : 'the daemon is shutting down; retry against the restarted daemon');

/** What the kernel said of a key version's kernel key it refuses (errors.proto, KERNEL_KEY_UNUSABLE). */
const KERNEL_KEY_REFUSALS: Record<string, string> = {
  ENOKEY: 'its kernel key was invalidated or removed from the kernel (ENOKEY)',
  EKEYREVOKED: 'its kernel key was revoked (EKEYREVOKED)',
  EKEYEXPIRED: 'its kernel key has expired (EKEYEXPIRED)',
  EACCES: 'the kernel no longer lets the daemon use its kernel key (EACCES: unlinked from the daemon\'s keyring, or refused by a security module)',
};

/** The errnos KERNEL_KEY_UNUSABLE stands for: the kernel refusing a key serial the daemon still holds. */
export function isKernelKeyRefusal(errno: string | undefined): boolean {
  return errno !== undefined && KERNEL_KEY_REFUSALS[errno] !== undefined;
}

/**
 * A key version ringfence holds as usable whose kernel key the kernel refuses (found at keying a
 * transform with it): not the daemon's doing nor the request's, and no retry helps until the
 * operator acts. What brings it back is a restart: the daemon loads every version from its state
 * directory into new kernel keys (keys/key-loading.ts); the running daemon cannot revive a serial.
 */
export function kernelKeyUnusable(name: string, version: number, errno: string, options?: { cause?: unknown }): ApiError {
  const e = new ApiError(
    Status.FAILED_PRECONDITION,
    ErrorReason.KERNEL_KEY_UNUSABLE,
    `key "${name}" version ${version} cannot be used: ${KERNEL_KEY_REFUSALS[errno] ?? `the kernel refuses its kernel key (${errno})`}, though ringfence did not disable or delete it; nothing was done. The operator restarts ringfenced, which loads every key version into the kernel again from its state directory${errno === 'EACCES' ? ' (a security module\'s policy that denies it must be fixed first)' : ''}; the daemon's log warns its operator`,
    { key_name: name, key_version: String(version), errno },
    options,
  );
  e.auditVersion = version;
  return e;
}

/** What the kernel said of the daemon's master key it refuses (the same errnos as KERNEL_KEY_REFUSALS). */
const MASTER_KEY_REFUSALS: Record<string, string> = {
  ENOKEY: 'it was invalidated or removed from the kernel (ENOKEY)',
  EKEYREVOKED: 'it was revoked (EKEYREVOKED)',
  EKEYEXPIRED: 'it has expired (EKEYEXPIRED)',
  EACCES: 'the kernel no longer lets the daemon use it (EACCES: unlinked from the daemon\'s keyring, or refused by a security module)',
};

/**
 * The daemon's master key (the kernel key that wraps every generated version and seals imported
 * material) refused by the kernel, found while wrapping or sealing with it: a new key, imported
 * material, a rotation. As KERNEL_KEY_UNUSABLE for a version (a client's answer is the same: no
 * retry helps until the operator restarts ringfenced), told apart by `kernel_key` "master"; no key
 * version is named, none is at fault (review by helper-210). Key versions loaded already keep
 * serving: they need the master key only to be saved or loaded.
 */
export function masterKeyUnusable(errno: string, options?: { cause?: unknown }): ApiError {
  return new ApiError(
    Status.FAILED_PRECONDITION,
    ErrorReason.KERNEL_KEY_UNUSABLE,
    `the daemon's master key, which wraps every key it saves, cannot be used: ${MASTER_KEY_REFUSALS[errno] ?? `the kernel refuses it (${errno})`}, though ringfence did not remove it; nothing was done (no key or version was created). Existing key versions keep serving; creating, importing and rotating keys fail until the operator restarts ringfenced, which loads the master key into the kernel again from its credential or state directory (master.key)${errno === 'EACCES' ? ' (a security module\'s policy that denies it must be fixed first)' : ''}; the daemon's log warns its operator`,
    { kernel_key: 'master', errno },
    options,
  );
}

/**
 * A call still open when the daemon's drain period ended (drain.ts), answered before its connection
 * is closed. `notDone` says what of it was not done and what to do ("its operation was not
 * answered: send it again to the restarted daemon").
 */
export const cutOff = (notDone: string): ApiError =>
  new ApiError(Status.UNAVAILABLE, ErrorReason.SHUTTING_DOWN, `the daemon stopped before this call ended (its drain period on shutdown was over): ${notDone}`);

/**
 * The metadata of SUITE_* errors from the engine: the kernel algorithm, and the suite when only one
 * needs it (hmac(sha256) serves two; errors.proto's `suite` is one name).
 */
function suiteMetadata(kernelAlgorithm: string): Record<string, string> {
  const suites = [...AEAD_SUITES, ...MAC_SUITES, ...HASH_SUITES].filter((s) => s.algorithms.some((a) => a.name === kernelAlgorithm));
  return suites.length === 1 ? { kernel_algorithm: kernelAlgorithm, suite: suites[0]!.name } : { kernel_algorithm: kernelAlgorithm };
}

/**
 * Converts anything thrown below the API into an ApiError. `what` says what the daemon was doing
 * ("encrypting with key orders v2") and goes into INTERNAL messages.
 */
export function toApiError(err: unknown, what = 'the operation'): ApiError {
  const e = convert(err, what);
  const about = err !== null && typeof err === 'object' ? errorKeys.get(err) : undefined;
  if (about !== undefined) {
    e.auditKey ??= about.name;
    e.auditVersion ??= about.version;
  }
  return e;
}

/** Keys (and versions) that errors from below the API concern, for their audit lines (see aboutKey). */
const errorKeys = new WeakMap<object, { name: string; version: number | undefined }>();

/**
 * Marks what using key `name` threw as being about that key, for the audit line only (never sent):
 * a Decrypt request names no key, and the engine's AUTHENTICATION_FAILED none either, so a run of
 * failed decryptions could not be tied to the key they were tried against (review by helper-143).
 */
export function aboutKey(err: unknown, name: string, version?: number): unknown {
  if (err instanceof ApiError) {
    err.auditKey ??= name;
    err.auditVersion ??= version;
  } else if (err !== null && typeof err === 'object') errorKeys.set(err, { name, version });
  return err;
}

function convert(err: unknown, what: string): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof MalformedCiphertextError) {
    return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, err.message, { detail: err.message }, { cause: err });
  }
  if (isEngineError(err)) {
    switch (err.code) {
      case 'AUTHENTICATION_FAILED':
        return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.AUTHENTICATION_FAILED, 'authentication failed: the associated data differs from the one given at encryption (leaving it out counts as different), or the ciphertext was altered', {}, { cause: err });
      case 'ALGORITHM_UNAVAILABLE':
        // The probe at start-up found it usable (new keys of suites it did not, and uses of existing
        // ones the kernel refuses or lacks, are refused before the engine): the kernel changed since,
        // e.g. a module was removed, or its probe failed with another errno (given here).
        return new ApiError(Status.FAILED_PRECONDITION, err.restricted ? ErrorReason.SUITE_RESTRICTED_BY_KERNEL : ErrorReason.SUITE_UNAVAILABLE, `${err.message}; \`ringfence doctor\` shows what the kernel allows now, and a restart of ringfenced makes its defaults and \`ringfence status\` follow (they are from its start-up probe)`, err.algorithm ? suiteMetadata(err.algorithm) : {}, { cause: err });
      case 'AF_ALG_UNAVAILABLE':
        return new ApiError(Status.UNAVAILABLE, ErrorReason.AF_ALG_UNAVAILABLE, err.message, err.errno ? { errno: err.errno } : {}, { cause: err });
      case 'PAYLOAD_TOO_LARGE': {
        // errors.proto promises field, limit_bytes and actual_bytes (found by review: aes-256-ccm's bound had none).
        const size: Record<string, string> = err.size ? { ...(err.size.field ? { field: err.size.field } : {}), actual_bytes: String(err.size.actualBytes), limit_bytes: String(err.size.limitBytes) } : {};
        return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, `${err.message}; send less at once`, { ...size, ...(err.errno ? { errno: err.errno } : {}) }, { cause: err });
      }
      case 'BUSY':
        return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, err.message, err.limit ? { limit: err.limit } : {}, { cause: err });
      case 'OUT_OF_RESOURCES': {
        // The daemon's own shortage, not a bug nor the request's doing: retrying later may work (review by helper-197).
        const metadata: Record<string, string> = err.errno ? { errno: err.errno } : {};
        if (isSyscallError(err.cause)) metadata.call = err.cause.syscall;
        return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_OUT_OF_RESOURCES, `${err.message}; nothing was done: retry with backoff (the daemon's log warns its operator)`, metadata, { cause: err });
      }
      default:
        return new ApiError(Status.INTERNAL, ErrorReason.KERNEL_ERROR, `the kernel failed ${what}: ${err.message}`, err.errno ? { errno: err.errno } : {}, { cause: err });
    }
  }
  if (err instanceof KeystoreError) {
    switch (err.code) {
      case 'QUOTA_EXHAUSTED': {
        // EDQUOT does not say which quota ran out; with the defaults it is usually the bytes (found by review).
        const sysctls = process.getuid?.() === 0 ? ['kernel.keys.root_maxkeys', 'kernel.keys.root_maxbytes'] : ['kernel.keys.maxkeys', 'kernel.keys.maxbytes'];
        return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.KERNEL_KEY_QUOTA, `${err.message} (raise ${sysctls.join(' and ')}, or delete keys)`, { sysctl: sysctls.join(',') }, { cause: err });
      }
      case 'INVALID_KEY':
        return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID, err.message, { field: 'material' }, { cause: err });
      case 'MASTER_KEY_REFUSED':
        return masterKeyUnusable(err.errno ?? 'unknown errno', { cause: err });
      default:
        return new ApiError(Status.INTERNAL, ErrorReason.KERNEL_ERROR, `the kernel key store failed ${what}: ${err.message}`, {}, { cause: err });
    }
  }
  // A kernel call outside the engine and key store (getrandom for nonces, data keys, random bytes).
  if (isSyscallError(err)) {
    return new ApiError(Status.INTERNAL, ErrorReason.KERNEL_ERROR, `the kernel failed ${what}: ${err.syscall} ${err.code}`, { errno: err.code, call: err.syscall }, { cause: err });
  }
  // A save refused by the file system: nothing was changed, whatever the errno.
  if (err instanceof StateWriteError && err.code !== 'ENOSPC' && err.code !== 'EDQUOT') {
    return new ApiError(Status.INTERNAL, ErrorReason.STATE_NOT_PERSISTED, `the state could not be written (${err.code ?? 'no errno'}${err.syscall ? ` in ${err.syscall}` : ''}); nothing was changed`, err.code ? { errno: err.code } : {}, { cause: err });
  }
  // What is left with an errno comes from the state store's file system calls.
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
    return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.STATE_NOT_PERSISTED, `the state directory is full (${e.code}); nothing was changed — free space and retry`, { errno: e.code }, { cause: err });
  }
  if (e?.code === 'EIO' || e?.code === 'EROFS' || e?.code === 'EACCES') {
    return new ApiError(Status.INTERNAL, ErrorReason.STATE_NOT_PERSISTED, `the state could not be written (${e.code}); nothing was changed`, { errno: e.code }, { cause: err });
  }
  return new ApiError(Status.INTERNAL, ErrorReason.KERNEL_ERROR, `internal error while ${what}`, {}, { cause: err });
}

/**
 * A denial for a key the caller knows only by the id inside its ciphertext: the answer names the
 * key by that id, not by name (which would tell the caller more than that the key exists); the
 * audit line keeps the name.
 */
export function deniedByCiphertext(err: unknown, keyId: Buffer, name: string): unknown {
  if (!(err instanceof ApiError) || err.code !== Status.PERMISSION_DENIED) return err;
  const { key_name: _hidden, ...metadata } = err.metadata;
  const e = new ApiError(err.code, err.reason, err.message.replace(`with key "${name}"`, 'with the key this ciphertext names'), { ...metadata, key_id: keyId.toString('hex') });
  e.auditKey = name;
  return e;
}
