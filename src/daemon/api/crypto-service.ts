/** CryptoService: unary and batch RPCs map one-to-one onto src/daemon/ops; streams and the session have their own modules. */
import type * as grpc from '@grpc/grpc-js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import type { OpContext } from '../ops/context.js';
import { encrypt } from '../ops/encrypt.js';
import { decrypt } from '../ops/decrypt.js';
import { reEncrypt } from '../ops/reencrypt.js';
import { generateDataKey } from '../ops/generate-data-key.js';
import { computeMac, verifyMac } from '../ops/mac.js';
import { hash, hashStream } from '../ops/hash.js';
import { generateRandom } from '../ops/random.js';
import { batchComputeMac, batchDecrypt, batchEncrypt, type OnItem } from '../ops/batch.js';
import { auditKeyOf, auditPrincipal, callContext, callerKey, clientStreaming, logForOperator, statusName, unary, UNARY_ANSWER_OVERHEAD, type HandlerDeps, type UnaryBudget } from './handler.js';
import { keyOf, payloadBytes } from './audit.js';
import { Status, type ApiError } from './errors.js';
import type { CallAccess } from '../policy/access.js';
import { reservedBytes, sessionHandler } from './session.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';

export function cryptoServiceHandlers(ctx: OpContext, deps: HandlerDeps): grpc.UntypedServiceImplementation {
  const m = CryptoService.method;
  // Unary calls take their request and answer from the buffer budget, as streams do, and a call
  // still waiting for room ends when the daemon stops, as a Session does (handler.ts unary).
  const budget = { budget: ctx.budget, drain: ctx.drain, reserve: answerAtMostTwiceInput };
  const max = ctx.limits.maxPayloadBytes;
  const random: UnaryBudget<{ lengthBytes: number }> = { budget: ctx.budget, drain: ctx.drain, reserve: (req, bytesIn) => reservedBytes({ case: 'generateRandom', value: req } as never, max, bytesIn) };
  const dataKey: UnaryBudget<{ lengthBytes: number }> = { budget: ctx.budget, drain: ctx.drain, reserve: (req, bytesIn) => reservedBytes({ case: 'generateDataKey', value: req } as never, max, bytesIn) };
  return {
    // Every operation checks the caller's access itself (ctx.authorize), so batch items are checked one by one.
    encrypt: unary(m.encrypt, deps, (req, a) => encrypt(callContext(ctx, a), req), budget),
    decrypt: unary(m.decrypt, deps, (req, a) => decrypt(callContext(ctx, a), req), budget),
    reEncrypt: unary(m.reEncrypt, deps, (req, a) => reEncrypt(callContext(ctx, a), req), budget),
    generateDataKey: unary(m.generateDataKey, deps, (req, a) => generateDataKey(callContext(ctx, a), req), dataKey),
    computeMac: unary(m.computeMac, deps, (req, a) => computeMac(callContext(ctx, a), req), budget),
    verifyMac: unary(m.verifyMac, deps, (req, a) => verifyMac(callContext(ctx, a), req), budget),
    hash: unary(m.hash, deps, (req, a) => hash(callContext(ctx, a), req), budget),
    // A HashStream holds a kernel socket for its life: one caller may hold only so many.
    hashStream: clientStreaming(m.hashStream, deps, async (messages, a) => {
      const release = ctx.hashStreamSlots.acquire(callerKey(a));
      try {
        return await hashStream(callContext(ctx, a), messages);
      } finally {
        release();
      }
    }),
    generateRandom: unary(m.generateRandom, deps, (req, a) => generateRandom(callContext(ctx, a), req), random),
    // One audit line per item (as for Session operations), besides the call's own line.
    batchEncrypt: unary(m.batchEncrypt, deps, (req, a) => batchEncrypt(callContext(ctx, a), req, auditItem(deps, a, 'Batch/encrypt')), budget),
    batchDecrypt: unary(m.batchDecrypt, deps, (req, a) => batchDecrypt(callContext(ctx, a), req, auditItem(deps, a, 'Batch/decrypt')), budget),
    batchComputeMac: unary(m.batchComputeMac, deps, (req, a) => batchComputeMac(callContext(ctx, a), req, auditItem(deps, a, 'Batch/computeMac')), budget),
    encryptStream: encryptStreamHandler(ctx, deps),
    decryptStream: decryptStreamHandler(ctx, deps),
    session: sessionHandler(ctx, deps),
  };
}

/**
 * What an Encrypt, Decrypt, ReEncrypt, MAC, Hash or batch call holds at most: its request, and an
 * answer no larger than its input plus UNARY_ANSWER_OVERHEAD (per item, for a batch).
 */
function answerAtMostTwiceInput(request: unknown, bytesIn: number): number {
  const items = (request as { requests?: unknown[] }).requests;
  return 2 * bytesIn + UNARY_ANSWER_OVERHEAD * (Array.isArray(items) ? Math.max(items.length, 1) : 1);
}

function auditItem(deps: HandlerDeps, access: CallAccess, rpc: string): OnItem {
  const who = auditPrincipal(access);
  let internalLogged = false;
  return (item, outcome, durationMs) => {
    const entry = { rpc, ...who, bytesIn: payloadBytes(item), durationMs: +durationMs.toFixed(3) };
    if ('response' in outcome) deps.audit({ ...entry, ...keyOf(item, outcome.response), bytesOut: payloadBytes(outcome.response), outcome: 'OK' });
    else {
      // As a unary call's: the cause the client is not told, once per batch (its items tend to fail
      // alike); a shortage of descriptors or memory is counted per item (its warning is throttled).
      if (outcome.error.code !== Status.INTERNAL) logForOperator(deps, rpc, outcome.error);
      else if (!internalLogged) {
        internalLogged = true;
        logForOperator(deps, rpc, outcome.error);
      }
      deps.audit({ ...entry, ...keyOf(item), ...auditKeyOf(outcome.error), bytesOut: 0, outcome: statusName(outcome.error.code), reason: outcome.error.reasonName });
    }
  };
}

