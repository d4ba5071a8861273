/**
 * The calls each caller (uid) may have open at once, and all callers together (Limits
 * maxCallsPerCaller, maxCalls), on every service of the daemon's server (health and reflection
 * too). grpc-js reads a unary call's whole request (up to maxMessageBytes) before any handler or
 * policy check runs, and a stream's partial message: bounded only by connections × streams per
 * connection, one uid could make the daemon hold 256 × 128 × 4 MiB (found by review).
 *
 * When a call is counted: grpc-js builds its interceptors as the HTTP/2 stream arrives, with the
 * stream paused (server-interceptors.js, BaseServerInterceptingCall), and reads its body only once
 * the handler's onReceiveMetadata asks (startRead), which runs only if every interceptor's start
 * passes the call on. A refused call never gets there: none of its body is read, what HTTP/2 flow
 * control already let in is dropped, and its stream is closed (RST_STREAM NO_ERROR after the
 * status, as HTTP/2 allows a server that answered before the request ended) so that a client that
 * holds it open keeps nothing in the daemon.
 *
 * Until when: the HTTP/2 stream's close, not the status. grpc-js keeps a call's partial message in
 * its decoder while the stream is open, and a client may keep it open after the status (a deadline
 * that passed mid-message): such a call still holds memory, so it still counts, against its caller.
 * The close comes on every end: both sides done, a reset, the connection gone, the daemon's stop.
 *
 * Calls to a method the daemon does not have never get here: grpc-js answers them UNIMPLEMENTED as
 * their HEADERS arrive (server.js _respondWithError), and Node closes such a stream at once (answer
 * out, nothing read: RST_STREAM NO_ERROR), so they hold nothing to count (call-limit.test.ts).
 *
 * The refusal is RESOURCE_EXHAUSTED / DAEMON_BUSY (limit `calls_per_caller` or `calls`), audited
 * (the audit trail bounds a caller's refusal lines: audit-refusals.ts) and warned about at most once
 * per caller per DROP_WARN_INTERVAL_MS, with counts, like connections closed at accept.
 *
 * Compressed messages are refused the same way, before anything is read (UNIMPLEMENTED, as gRPC
 * says for an encoding a server does not take, after response headers naming the one it takes:
 * identity, as every answer of the daemon says, response-encoding.ts): grpc-js inflates every message of a DATA frame at
 * once, each up to maxMessageBytes, so that one 16 KiB frame of deflate bombs made a call hold
 * some 12 MiB where an uncompressed one holds one message (review by helper-193). No ringfence
 * client compresses, nor would AEAD output shrink.
 */
import * as grpc from '@grpc/grpc-js';
import { constants as http2 } from 'node:http2';
import type { Logger } from 'pino';
import { throttledRefusals, type RefusalCounter } from '../identity/warn-throttle.js';
import { DROP_WARN_INTERVAL_MS } from '../identity/listener.js';
import type { Access } from '../policy/access.js';
import type { Audit } from './audit.js';
import type { CallerSlots } from './caller-slots.js';
import { http2StreamOf } from './call-end.js';
import { ApiError, ErrorReason, isApiError, Status } from './errors.js';
import { auditPrincipal, callerKey, statusName } from './handler.js';
import { advertiseIdentity } from './response-encoding.js';

const OWN_PREFIX = '/ringfence.v1.';

export interface CallLimitDeps {
  /** The open calls, by caller (callerKey): the daemon's `CallerSlots` with maxCalls as its whole. */
  calls: CallerSlots;
  audit: Audit;
  access: Pick<Access, 'forCall'>;
  log: Pick<Logger, 'warn'>;
}

interface Refusal {
  rpc: string;
  who: ReturnType<typeof auditPrincipal>;
  err: ApiError;
}

/**
 * The grpc-encoding a call declared for its messages. grpc-js keeps it private
 * (BaseServerInterceptingCall.incomingEncoding, the call this innermost interceptor is given) and
 * removes the header from the metadata; undefined when not found (call-limit.test.ts would fail).
 */
function requestEncoding(call: object): string | undefined {
  const encoding = (call as { incomingEncoding?: unknown }).incomingEncoding;
  return typeof encoding === 'string' ? encoding : undefined;
}

function compressedRefusal(encoding: string): ApiError {
  // The client's own text goes into the answer only when it is a plain token.
  const named = /^[a-z0-9._-]{1,32}$/i.test(encoding) ? ` grpc-encoding ${encoding}` : ' a grpc-encoding other than identity';
  return new ApiError(Status.UNIMPLEMENTED, ErrorReason.UNSPECIFIED, `the daemon takes only uncompressed messages, and this call declared${named}: send it without compression (grpc-encoding identity, or none)`);
}

/** The rpc as audit lines name it: "CryptoService/Hash", or the full path of another package's. */
function rpcName(path: string): string {
  return path.startsWith(OWN_PREFIX) ? path.slice(OWN_PREFIX.length) : path.replace(/^\//, '');
}

export function callLimit(deps: CallLimitDeps, intervalMs = DROP_WARN_INTERVAL_MS): grpc.ServerInterceptor {
  // Every refusal has its audit line (the daemon's audit trail bounds a caller's refusal lines
  // itself: audit-refusals.ts); the warning comes at most once per caller per interval, with
  // counts. Audited through the throttle, the refusals after an interval's first were written only
  // with a later one, and never if none came (review by helper-154).
  const warnings = new Map<string, RefusalCounter>();
  const refused = (caller: string, { rpc, who, err }: Refusal) => {
    deps.audit({ rpc, ...who, bytesIn: 0, bytesOut: 0, outcome: statusName(err.code), reason: err.reasonName, durationMs: 0 });
    let counter = warnings.get(caller);
    if (!counter) {
      counter = throttledRefusals(intervalMs, (counts) =>
        deps.log.warn({ uid: who.principal?.uid, limit: err.metadata.limit, refused: counts.closed, refusedTotal: counts.closedTotal }, 'a caller is at a limit of open calls: refused its new ones with RESOURCE_EXHAUSTED'),
      );
      warnings.set(caller, counter);
    }
    counter.count();
  };

  /**
   * The call is not passed on: grpc-js never reads its body, nor runs a handler or another
   * interceptor's listener.
   *
   * `headersFirst`: response headers before the status rather than a trailers-only answer. gRPC has
   * a server refusing an encoding name the ones it takes, and grpc-js clients read that only from
   * response headers: answered trailers-only, one set to compress (grpc.default_compression_algorithm)
   * went on compressing, and was refused, every call of its channel.
   */
  const refuse = (call: grpc.ServerInterceptingCallInterface, status: Partial<grpc.StatusObject>, stream: ReturnType<typeof http2StreamOf>, headersFirst = false) =>
    new grpc.ServerInterceptingCall(call, {
      start: () => {
        const close = () => stream?.close(http2.NGHTTP2_NO_ERROR);
        if (headersFirst) call.sendMetadata(advertiseIdentity(new grpc.Metadata()));
        call.sendStatus(status as grpc.StatusObject);
        // After headers, grpc-js sends the status as trailers only when the stream asks for them
        // ('wantTrailers', which sendStatus has just listened for), and Node hands them to HTTP/2 in a
        // setImmediate (Http2Stream.sendTrailers): the reset goes after, else it cuts them off.
        if (headersFirst && stream && !stream.closed && !stream.destroyed) stream.once('wantTrailers', () => setImmediate(close));
        else close();
      },
    });

  return (method, call) => {
    const access = deps.access.forCall(call);
    const caller = callerKey(access);
    const stream = http2StreamOf({ call });
    const encoding = requestEncoding(call);
    // Content-codings are case-insensitive (RFC 9110 section 8.4.1).
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
      const err = compressedRefusal(encoding);
      deps.audit({ rpc: rpcName(method.path), ...auditPrincipal(access), bytesIn: 0, bytesOut: 0, outcome: statusName(err.code), durationMs: 0 });
      return refuse(call, err.toServiceError(), stream, true);
    }
    let release: () => void;
    try {
      release = deps.calls.acquire(caller);
    } catch (err) {
      if (!isApiError(err)) throw err;
      refused(caller, { rpc: rpcName(method.path), who: auditPrincipal(access), err });
      return refuse(call, err.toServiceError(), stream);
    }
    if (stream) {
      if (stream.closed || stream.destroyed) release();
      else {
        stream.once('close', release);
        // A client's RST_STREAM NO_ERROR on a stream grpc-js has paused with data buffered ends it
        // only once that data is read: Node emits 'aborted' and waits for 'end', which a paused
        // stream never reaches, so 'close' (and grpc-js's cancel) never came (review by helper-154,
        // shown with a plain Node HTTP/2 server; not reproduced through grpc-js here).
        stream.once('aborted', () => stream.resume());
      }
      return call as grpc.ServerInterceptingCall;
    }
    // No stream found (a grpc-js upgrade moved it; call-limit.test.ts would fail): released at the
    // status or the stream's close, whichever grpc-js reports first.
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onCancel: release,
        }),
    });
  };
}
