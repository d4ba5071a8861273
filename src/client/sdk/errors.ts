/**
 * Typed errors: every failed call, batch item or session operation surfaces as a RingfenceError
 * carrying the gRPC code and the daemon's ErrorReason + metadata (from the google.rpc.ErrorInfo in
 * the trailers, or from an ItemStatus), so callers branch on `reason`, never on message text.
 */
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, type ItemStatus } from '../../gen/ringfence/v1/errors_pb.js';
import { decodeStatusDetails, reasonName as nameOfReason } from '../../rpc/error-details.js';

export interface RingfenceErrorInit {
  code: grpc.status;
  message: string;
  reason?: ErrorReason;
  metadata?: Record<string, string>;
  /** The RPC that failed, e.g. "ringfence.v1.CryptoService/Encrypt". */
  rpc?: string;
  unreachable?: boolean;
  cause?: unknown;
}

export class RingfenceError extends Error {
  override readonly name = 'RingfenceError';
  readonly code: grpc.status;
  /** "NOT_FOUND" for grpc.status.NOT_FOUND. */
  readonly codeName: string;
  /** UNSPECIFIED when the daemon gave none, or one newer than this SDK (go by `code` then). */
  readonly reason: ErrorReason;
  /** "KEY_NOT_FOUND" for ErrorReason.KEY_NOT_FOUND, as in the ErrorInfo on the wire. */
  readonly reasonName: string;
  /** The reason's metadata (keys listed per reason in errors.proto); never secrets. */
  readonly metadata: Record<string, string>;
  readonly rpc: string | undefined;
  /**
   * True when no daemon answered at the socket (not running, refused, no permission on it, or the
   * connection never became ready before the deadline): the request was not sent.
   */
  readonly unreachable: boolean;

  constructor(init: RingfenceErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.codeName = grpc.status[init.code] ?? `CODE_${init.code}`;
    // Reasons are only ever added: one this SDK does not know counts as UNSPECIFIED.
    this.reason = init.reason !== undefined && ErrorReason[init.reason] !== undefined ? init.reason : ErrorReason.UNSPECIFIED;
    this.reasonName = nameOfReason(this.reason);
    this.metadata = init.metadata ?? {};
    this.rpc = init.rpc;
    this.unreachable = init.unreachable ?? false;
  }
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}

export interface ErrorContext {
  rpc?: string;
  socketPath: string;
  /** Set when the caller's AbortSignal fired: the CANCELLED status is ours, not the daemon's. */
  abortReason?: unknown;
  aborted?: boolean;
}

// grpc-js reports a failed connect as UNAVAILABLE with no status details and this text.
const CONNECT_FAILURE = /No connection established|connect (E[A-Z]+)/;
// ... a stream the daemon reset with RST_STREAM(CANCEL), which is what it does to calls still running
// when its SIGTERM drain period ends (grpc-js forceShutdown); grpc-js's own cancel() says "Cancelled
// on client" ... The text is the only sign of it that reaches us (grpc-js 1.14): the RST_STREAM code
// is in the subchannel call's status but RetryingCall, which every call goes through, passes on only
// code, details and metadata; a CANCELLED status the daemon sends ("the client went away") differs
// only in its text; and the SDK's own cancels (signal, local deadline, closing a stream) are told
// apart already (ctx.aborted, "Cancelled on client", transport.ts). errors.test.ts resets a real
// stream, so a grpc-js that changes the text fails there (review by helper-211) ...
const RESET_BY_PEER = 'Call cancelled';
// ... and a deadline that passed while the call still waited for a ready connection with this: the
// request was never sent (load-balancing-call.ts getDeadlineInfo).
const NEVER_SENT = /Waiting for LB pick/;

/** A RingfenceError for whatever a grpc-js call failed with (passes RingfenceErrors through). */
export function toRingfenceError(err: unknown, ctx: ErrorContext): RingfenceError {
  if (err instanceof RingfenceError) return err;
  // The signal may fire after the daemon already failed the call: only CANCELLED is the abort's.
  if (ctx.aborted && (!isServiceError(err) || err.code === grpc.status.CANCELLED)) {
    const why = ctx.abortReason instanceof Error ? `: ${ctx.abortReason.message}` : '';
    return new RingfenceError({ code: grpc.status.CANCELLED, message: `aborted by the caller${why}`, rpc: ctx.rpc, cause: ctx.abortReason });
  }
  if (!isServiceError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new RingfenceError({ code: grpc.status.UNKNOWN, message, rpc: ctx.rpc, cause: err });
  }
  const details = decodeStatusDetails(err.metadata);
  const match = CONNECT_FAILURE.exec(err.details ?? '');
  if (err.code === grpc.status.UNAVAILABLE && !details && match) {
    const errno = match[1] ?? /\b(E[A-Z]{3,})\b/.exec(err.details)?.[1];
    const message =
      errno === 'EACCES' || errno === 'EPERM'
        ? `permission denied on the ringfence daemon's socket ${ctx.socketPath} (${errno}): this user may not connect to it; the shipped units let members of group ringfence-clients (socket 0660 ringfence:ringfence-clients), else ask whoever runs the daemon`
        : `the ringfence daemon is not running or not reachable at ${ctx.socketPath}${errno ? ` (${errno})` : ''}: start ringfenced, or set RINGFENCE_SOCKET to its socket`;
    return new RingfenceError({ code: err.code, message, rpc: ctx.rpc, unreachable: true, cause: err });
  }
  // Not the caller's cancellation: as CANCELLED, a service that ignores its own aborts (isCancelled)
  // ignored a call the daemon cut off while stopping (review by helper-208).
  if (err.code === grpc.status.CANCELLED && !details && err.details === RESET_BY_PEER) {
    const message = `the daemon cut the call off before it completed (it reset the stream: it is stopping and its drain period ended); this client did not cancel it, and it may or may not have taken effect: check, or send it again, once the daemon serves`;
    return new RingfenceError({ code: grpc.status.UNAVAILABLE, message, rpc: ctx.rpc, cause: err });
  }
  // Something accepted the connection but never spoke HTTP/2: grpc-js's own text ("Deadline exceeded
  // after 30.008s,name resolution: ...,Waiting for LB pick") said neither where nor what to do.
  if (err.code === grpc.status.DEADLINE_EXCEEDED && !details && NEVER_SENT.test(err.details ?? '')) {
    const message = `deadline exceeded: nothing at ${ctx.socketPath} answered the connection as a ringfence daemon does, so the request was not sent; the daemon may be stopped (SIGSTOP) or hung, or this is not its socket (set RINGFENCE_SOCKET or --socket)`;
    return new RingfenceError({ code: err.code, message, rpc: ctx.rpc, unreachable: true, cause: err });
  }
  return new RingfenceError({
    code: err.code,
    message: err.details || (grpc.status[err.code] ?? `code ${err.code}`),
    reason: details?.reason,
    metadata: details?.metadata,
    rpc: ctx.rpc,
    cause: err,
  });
}

/** The error a failed batch item or session operation stands for. */
export function itemStatusError(status: ItemStatus, rpc?: string): RingfenceError {
  return new RingfenceError({
    code: status.code as grpc.status,
    message: status.message || (grpc.status[status.code] ?? `code ${status.code}`),
    reason: status.reason,
    metadata: { ...status.metadata },
    rpc,
  });
}

export function isRingfenceError(err: unknown): err is RingfenceError {
  return err instanceof RingfenceError;
}

const byCode =
  (code: grpc.status) =>
  (err: unknown): err is RingfenceError =>
    err instanceof RingfenceError && err.code === code;

export const isNotFound = byCode(grpc.status.NOT_FOUND);
export const isAlreadyExists = byCode(grpc.status.ALREADY_EXISTS);
export const isPermissionDenied = byCode(grpc.status.PERMISSION_DENIED);
export const isInvalidArgument = byCode(grpc.status.INVALID_ARGUMENT);
export const isFailedPrecondition = byCode(grpc.status.FAILED_PRECONDITION);
export const isResourceExhausted = byCode(grpc.status.RESOURCE_EXHAUSTED);
export const isUnavailable = byCode(grpc.status.UNAVAILABLE);
export const isDeadlineExceeded = byCode(grpc.status.DEADLINE_EXCEEDED);
/** The caller's AbortSignal, or the client closed; a call the daemon cut off while stopping is UNAVAILABLE. */
export const isCancelled = byCode(grpc.status.CANCELLED);
/** The daemon failed unexpectedly (a kernel error it does not map, say); its log says why. */
export const isInternal = byCode(grpc.status.INTERNAL);
/** The daemon has no such RPC: it is older than this SDK. */
export const isUnimplemented = byCode(grpc.status.UNIMPLEMENTED);

/** Tampered ciphertext or wrong associated data (INVALID_ARGUMENT, AUTHENTICATION_FAILED). */
export function isAuthenticationFailed(err: unknown): err is RingfenceError {
  return err instanceof RingfenceError && err.reason === ErrorReason.AUTHENTICATION_FAILED;
}

/**
 * No daemon answered at the socket, so the request was not sent: `isUnavailable` too, or
 * `isDeadlineExceeded` when something there took the connection but never answered it.
 */
export function isDaemonUnreachable(err: unknown): err is RingfenceError {
  return err instanceof RingfenceError && err.unreachable;
}
