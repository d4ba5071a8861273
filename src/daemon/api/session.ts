/**
 * CryptoService.Session: many small operations on one bidi stream, each answered (in any order) by
 * the same function its unary RPC uses, several per message both ways (session-packing.ts). Flow
 * control both ways: operations start while fewer than max_session_in_flight run and the
 * operations started and not yet flushed to the connection hold less than maxSessionBufferedBytes
 * (their payloads plus their answers); the others of a message wait their turn, and the stream
 * reads no further message while any wait or grpc-js holds responses the client is not taking. So
 * a session's memory stays below about maxSessionBufferedBytes + one message, however fast the
 * client sends or slowly it reads. The bytes also count against the daemon-wide maxBufferedBytes
 * (memory-budget.ts): at that bound operations wait to start, as at the session's own.
 */
import type * as grpc from '@grpc/grpc-js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { performance } from 'node:perf_hooks';
import type { SessionResponseSchema, SessionRequest, SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { AnswerPacker, answerBytes, unpack, type SessionItem } from './session-packing.js';
import { detachBytes, heldBytes } from './session-input.js';
import type { OpContext } from '../ops/context.js';
import { encrypt } from '../ops/encrypt.js';
import { decrypt } from '../ops/decrypt.js';
import { reEncrypt } from '../ops/reencrypt.js';
import { generateDataKey, MAX_DATA_KEY_BYTES } from '../ops/generate-data-key.js';
import { computeMac, verifyMac } from '../ops/mac.js';
import { hash } from '../ops/hash.js';
import { generateRandom } from '../ops/random.js';
import { cutOff, invalidField, shuttingDown, toApiError, type ApiError } from './errors.js';
import { keyOf, payloadBytes } from './audit.js';
import { UndecodableRequest, undecodable } from './decode.js';
import { goneMessage, statusSent } from './call-end.js';
import { auditKeyOf, auditPrincipal, callContext, callerKey, limitReadAhead, logForOperator, statusName, whenGone, type HandlerDeps } from './handler.js';

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

/** Room for what an answer adds to its input: a ciphertext's header and tag (68 bytes at most), a digest or MAC (64). */
export const ANSWER_ALLOWANCE = 256;

/**
 * What an operation holds while it runs: its request's payload, and room for the largest answer
 * it can make (random data is as long as asked; a data key and its ciphertext twice its length;
 * other answers at most their input plus ANSWER_ALLOWANCE). Corrected to the answer's wire size
 * (answerBytes) once known, so never less than it (flow.test.ts checks each kind): the budget's bounds hold
 * for what operations hold once they have answered, not only when they start. Never zero.
 */
export function reservedBytes(op: SessionRequest['op'], maxPayloadBytes: number, input = payloadBytes(op.value)): number {
  if (op.case === 'generateRandom') return input + Math.min(Math.max(op.value.lengthBytes, 0), maxPayloadBytes) + ANSWER_ALLOWANCE;
  if (op.case === 'generateDataKey') return input + 2 * Math.min(op.value.lengthBytes || 32, MAX_DATA_KEY_BYTES) + ANSWER_ALLOWANCE;
  return 2 * input + ANSWER_ALLOWANCE;
}

export function sessionHandler(daemonCtx: OpContext, deps: HandlerDeps): grpc.handleBidiStreamingCall<SessionRequest, SessionResponse> {
  return (call) => {
    // One principal per call; each operation checks its own access (a denied one is that item's error).
    const access = deps.access.forCall(call);
    const who = auditPrincipal(access);
    const ctx = callContext(daemonCtx, access);
    const max = ctx.limits.maxSessionInFlight;
    const maxBytes = ctx.limits.maxSessionBufferedBytes;
    limitReadAhead(call);
    // This session's part of the daemon-wide bound (memory-budget.ts), next to its own maxBytes.
    const share = ctx.budget.share(callerKey(access));
    let budgetWait: (() => void) | undefined;
    // Operations read and not yet started (the rest of a message beyond the limits).
    const waiting: SessionItem[] = [];
    let inFlight = 0;
    // Bytes of operations started and not yet flushed (reservedBytes, then request + answer).
    let held = 0;
    let readEnded = false;
    // The daemon is stopping (drain.ts): nothing more is read; what was read runs and is answered.
    let draining = false;
    let waitingDrain = false;
    let paused = false;
    let closed = false;
    // Every operation answered and the stream ended (maybeEnd), as opposed to stopped.
    let answered = false;
    // Released once grpc-js has handed a message to the connection (HTTP/2 flow control holds it
    // back while the client does not read), not when it is merely queued.
    const answers = new AnswerPacker((message, written) => {
      if (!call.write(message, written)) waitingDrain = true;
    });

    const flow = () => {
      if (closed) return; // a stopped session reads nothing more (resuming it would read and drop)
      while (waiting.length > 0 && inFlight < max && held < maxBytes && share.mayStart && !closed) start(waiting.shift()!);
      // Held back by the daemon-wide bound or the caller's part alone: go on when bytes go back.
      if (waiting.length > 0 && !share.mayStart && !closed && !budgetWait) {
        budgetWait = share.whenMayStart(() => {
          budgetWait = undefined;
          flow();
        });
      }
      const shouldPause = draining || waiting.length > 0 || inFlight >= max || held >= maxBytes || waitingDrain;
      if (shouldPause && !paused) call.pause();
      else if (!shouldPause && paused) call.resume();
      paused = shouldPause;
    };
    const maybeEnd = () => {
      if (readEnded && inFlight === 0 && waiting.length === 0 && !closed) {
        answers.flush();
        closed = true;
        answered = true;
        call.end();
      } else if (draining && inFlight === 0 && waiting.length === 0 && !closed) fail(shuttingDown());
    };
    call.on('drain', () => {
      waitingDrain = false;
      flow();
    });
    const stop = () => {
      closed = true;
      waiting.length = 0;
      answers.discard();
      budgetWait?.();
      budgetWait = undefined;
      // Reads nothing more (found by review: a session refused as a whole read and dropped on).
      if (!paused) call.pause();
      paused = true;
    };
    const began = performance.now();
    // How the session ended before its operations did (they are audited so: their answers are dropped).
    let endedAs: string | undefined;
    // What the client was told then (whenGone's `told`), for the operations that finish after.
    let endedTold: Promise<string> | undefined;
    // Operations already running finish (each is bounded); nothing more is read, started or answered.
    // Destroyed, as streams are: a client that neither reads nor cancels would otherwise keep a
    // session past its deadline (grpc-js cannot send the status while the client does not read).
    const dispose = whenGone(call, (why, told) => {
      // Ended (maybeEnd) and its OK status sent: grpc-js reports that too as a cancel, often before the
      // call's 'close' (review by helper-174: most sessions that ended normally were audited CANCELLED).
      if (answered && statusSent(call) === 0) return;
      // A stream refused as a whole (fail) is audited already: grpc-js reports the status it sent as a cancel.
      if (endedAs === undefined) {
        endedAs = why;
        endedTold = told;
        const durationMs = +(performance.now() - began).toFixed(3);
        void told.then((outcome) => deps.audit({ rpc: 'CryptoService/Session', ...who, bytesIn: 0, bytesOut: 0, outcome, durationMs }));
      }
      stop();
      call.destroy(new Error(goneMessage(why, 'session')));
    });
    call.on('error', stop);
    call.on('close', () => {
      dispose();
      budgetWait?.();
      budgetWait = undefined;
      // Whatever is still counted (an answer whose write callback never came) goes back.
      share.close();
    });
    call.on('end', () => {
      readEnded = true;
      maybeEnd();
    });
    // The whole stream fails: a message without ids to answer, or over the operations limit.
    const fail = (e: ApiError) => {
      // grpc-js reports every status it sends as a cancel (notifyOnCancel): whenGone then audits
      // nothing more (endedAs is set), but it still ends the session at its deadline, as the
      // status waits behind the answers written while a client does not read (found by review).
      endedAs = statusName(e.code);
      // Answers already audited OK go out before the status (found by review: they were dropped).
      answers.flush();
      stop();
      call.emit('error', e.toServiceError());
      deps.audit({ rpc: 'CryptoService/Session', ...who, bytesIn: 0, bytesOut: 0, outcome: statusName(e.code), reason: e.reasonName, durationMs: +(performance.now() - began).toFixed(3) });
    };
    call.on('data', (req: SessionRequest | UndecodableRequest) => {
      if (closed) return;
      // Without an id it cannot be one item's error: the whole stream ends, as grpc-js would end it.
      if (req instanceof UndecodableRequest) return fail(undecodable(req));
      const items = unpack(req, ctx.limits.maxBatchItems);
      if (!Array.isArray(items)) return fail(items);
      // Each operation then holds only its own bytes, which it counts (session-input.ts).
      for (const item of items) detachBytes(item.op.value);
      waiting.push(...items);
      flow();
    });
    // Registered last: a session opened while the daemon already stops ends at once.
    const undrain = ctx.drain?.onStart(() => {
      draining = true;
      flow();
      maybeEnd();
    });
    if (undrain) call.on('close', undrain);
    // Still open when the drain period ends (an operation stuck behind a busy key): ended then, as
    // above, before the connection is closed; operations finishing after are audited so (endedAs).
    const uncut = ctx.drain?.onCutOff(() => {
      if (!closed) fail(cutOff('its operations not answered were not done: send them again to the restarted daemon'));
    });
    if (uncut) call.on('close', uncut);

    function start(item: SessionItem): void {
      const { id, op } = item;
      inFlight++;
      // The audit line's payload size; what the operation holds also counts its text (a key name).
      const bytesIn = payloadBytes(op.value);
      const input = heldBytes(op.value);
      let cost = reservedBytes(op, ctx.limits.maxPayloadBytes, input);
      held += cost;
      share.take(cost);
      const release = () => {
        held -= cost;
        share.give(cost);
        cost = 0;
        flow();
      };
      const begin = performance.now();
      const rpc = `Session/${op.case ?? 'none'}`;
      (item.refused ? Promise.reject(item.refused) : run(ctx, op))
        .then(
          (result) => {
            // Done after the session ended: the client never gets the answer.
            const line = { rpc, ...who, ...keyOf(op.value, result?.value), bytesIn, bytesOut: endedAs ? 0 : payloadBytes(result?.value), durationMs: +(performance.now() - begin).toFixed(3) };
            if (endedAs === undefined) deps.audit({ ...line, outcome: 'OK' });
            else void (endedTold ?? Promise.resolve(endedAs)).then((outcome) => deps.audit({ ...line, outcome }));
            return result;
          },
          (err: unknown): Result => {
            const e = toApiError(err, rpc);
            logForOperator(deps, rpc, e);
            deps.audit({ rpc, ...who, ...keyOf(op.value), ...auditKeyOf(e), bytesIn, bytesOut: 0, outcome: statusName(e.code), reason: e.reasonName, durationMs: +(performance.now() - begin).toFixed(3) });
            return { case: 'error', value: e.toItemStatus() };
          },
        )
        .then((result) => {
          if (closed) return release();
          // The answer at its wire size: an error answer has no bytes fields, but it is not free (found
          // by review: counted as 0, answers of failed empty operations piled up unflushed uncounted).
          const answer = answerBytes(result?.value);
          const actual = input + answer;
          held += actual - cost;
          if (actual > cost) share.take(actual - cost);
          else share.give(cost - actual);
          cost = actual;
          answers.add(id, result, answer, release);
        })
        .catch((err: unknown) => {
          release();
          deps.log.error({ rpc, err }, 'failed to answer a session operation');
        })
        .finally(() => {
          inFlight--;
          flow();
          maybeEnd();
        });
    }
  };
}
