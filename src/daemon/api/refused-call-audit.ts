/**
 * Audit lines for unary calls that end before their handler runs. A unary handler starts only
 * with the whole request, and grpc-js refuses some requests itself: a message over maxMessageBytes
 * (RESOURCE_EXHAUSTED), a second request message, none at all; or the client cancels, or its
 * deadline passes, while it is still sending. Those calls left no audit line (review by
 * helper-143). Streams and Session need none of this: their handlers start with the call and
 * audit how it ended (oversize-message.test.ts). Calls refused at the open-call limits never reach
 * this interceptor's listener: call-limit.ts audits those.
 */
import * as grpc from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import { afterStatusSent, goneReason } from './call-end.js';
import { auditPrincipal, statusName, type HandlerDeps } from './handler.js';

const PREFIX = '/ringfence.v1.';

export function refusedUnaryAudit(deps: Pick<HandlerDeps, 'audit' | 'access'>): grpc.ServerInterceptor {
  return (method, call) => {
    // Other calls pass as they are, without a layer of their own.
    if (method.requestStream || method.responseStream || !method.path.startsWith(PREFIX)) return call as grpc.ServerInterceptingCall;
    const rpc = method.path.slice(PREFIX.length);
    const start = performance.now();
    // Now: once the call has ended, its connection may be gone, and with it the caller's identity
    // (review by helper-147: a dropped connection was audited without a principal).
    const who = auditPrincipal(deps.access.forCall(call));
    let messages = 0;
    let handled = false;
    let audited = false;
    const audit = (outcome: string) => {
      if (handled || audited) return;
      audited = true;
      deps.audit({ rpc, ...who, bytesIn: 0, bytesOut: 0, outcome, durationMs: +(performance.now() - start).toFixed(3) });
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, nextMessage) => {
            messages++;
            nextMessage(message);
          },
          onReceiveHalfClose: (nextHalfClose) => {
            // With exactly one message, grpc-js now runs the handler, which audits the call itself.
            if (messages === 1) handled = true;
            nextHalfClose();
          },
          // grpc-js reports every end as a cancel; what the client was told is on the HTTP/2 stream.
          onCancel: () => {
            if (handled || audited) return;
            afterStatusSent({ call }, (code) => audit(code === undefined ? goneReason(call) : statusName(code)));
          },
        }),
    });
  };
}
