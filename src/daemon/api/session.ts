/**
 * CryptoService.Session: many small operations on one bidi stream, each answered (in any order) by
 * the same function its unary RPC uses. Flow control both ways: no more than max_session_in_flight
 * operations run at once (the stream stops reading until one finishes), and reading also stops while
 * grpc-js holds responses the client is not taking.
 */
import type * as grpc from '@grpc/grpc-js';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { performance } from 'node:perf_hooks';
import { SessionResponseSchema, type SessionRequest, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import type { OpContext } from '../ops/context.js';
import { encrypt } from '../ops/encrypt.js';
import { decrypt } from '../ops/decrypt.js';
import { reEncrypt } from '../ops/reencrypt.js';
import { generateDataKey } from '../ops/generate-data-key.js';
import { computeMac, verifyMac } from '../ops/mac.js';
import { hash } from '../ops/hash.js';
import { generateRandom } from '../ops/random.js';
import { invalidField, toApiError } from './errors.js';
import { keyOf, payloadBytes } from './audit.js';
import { UndecodableRequest, undecodable } from './decode.js';
import { auditPrincipal, callContext, logInternal, statusName, type HandlerDeps } from './handler.js';

type Result = MessageInitShape<typeof SessionResponseSchema>['result'];

async function run(ctx: OpContext, op: SessionRequest['op']): Promise<Result> {
  switch (op.case) {
    case 'encrypt':
      return { case: op.case, value: await encrypt(ctx, op.value) };
    case 'decrypt':
      return { case: op.case, value: await decrypt(ctx, op.value) };
    case 'reEncrypt':
      return { case: op.case, value: await reEncrypt(ctx, op.value) };
    case 'generateDataKey':
      return { case: op.case, value: await generateDataKey(ctx, op.value) };
    case 'computeMac':
      return { case: op.case, value: await computeMac(ctx, op.value) };
    case 'verifyMac':
      return { case: op.case, value: await verifyMac(ctx, op.value) };
    case 'hash':
      return { case: op.case, value: await hash(ctx, op.value) };
    case 'generateRandom':
      return { case: op.case, value: await generateRandom(ctx, op.value) };
    default:
      throw invalidField('op', 'the session request carries no operation');
  }
}

export function sessionHandler(daemonCtx: OpContext, deps: HandlerDeps): grpc.handleBidiStreamingCall<SessionRequest, SessionResponse> {
  return (call) => {
    // One principal per call; each operation checks its own access (a denied one is that item's error).
    const access = deps.access.forCall(call);
    const who = auditPrincipal(access);
    const ctx = callContext(daemonCtx, access);
    const max = ctx.limits.maxSessionInFlight;
    let inFlight = 0;
    let readEnded = false;
    let waitingDrain = false;
    let paused = false;
    let closed = false;

    const flow = () => {
      const shouldPause = inFlight >= max || waitingDrain;
      if (shouldPause && !paused) call.pause();
      else if (!shouldPause && paused) call.resume();
      paused = shouldPause;
    };
    const maybeEnd = () => {
      if (readEnded && inFlight === 0 && !closed) {
        closed = true;
        call.end();
      }
    };
    call.on('drain', () => {
      waitingDrain = false;
      flow();
    });
    const stop = () => {
      closed = true;
    };
    call.on('cancelled', stop);
    call.on('error', stop);
    call.on('end', () => {
      readEnded = true;
      maybeEnd();
    });
    call.on('data', (req: SessionRequest | UndecodableRequest) => {
      if (closed) return;
      if (req instanceof UndecodableRequest) {
        // Without an id it cannot be one item's error: the whole stream ends, as grpc-js would end it.
        const e = undecodable(req);
        closed = true;
        call.emit('error', e.toServiceError());
        deps.audit({ rpc: 'CryptoService/Session', ...who, bytesIn: 0, bytesOut: 0, outcome: statusName(e.code), reason: e.reasonName, durationMs: 0 });
        return;
      }
      inFlight++;
      flow();
      const start = performance.now();
      const rpc = `Session/${req.op.case ?? 'none'}`;
      run(ctx, req.op)
        .then(
          (result) => {
            deps.audit({ rpc, ...who, ...keyOf(req.op.value, result?.value), bytesIn: payloadBytes(req.op.value), bytesOut: payloadBytes(result?.value), outcome: 'OK', durationMs: +(performance.now() - start).toFixed(3) });
            return result;
          },
          (err: unknown): Result => {
            const e = toApiError(err, rpc);
            logInternal(deps, rpc, e);
            deps.audit({ rpc, ...who, ...keyOf(req.op.value), bytesIn: payloadBytes(req.op.value), bytesOut: 0, outcome: statusName(e.code), reason: e.reasonName, durationMs: +(performance.now() - start).toFixed(3) });
            return { case: 'error', value: e.toItemStatus() };
          },
        )
        .then((result) => {
          if (closed) return;
          if (!call.write(create(SessionResponseSchema, { id: req.id, result }))) waitingDrain = true;
        })
        .catch((err: unknown) => deps.log.error({ rpc, err }, 'failed to answer a session operation'))
        .finally(() => {
          inFlight--;
          flow();
          maybeEnd();
        });
    });
  };
}
