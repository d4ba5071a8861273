/**
 * Turns operations into grpc-js handlers. Every handler catches everything (grpc-js does not catch a
 * rejected async handler, and an uncaught rejection would kill the daemon), converts errors at this
 * boundary (toApiError), and writes one audit line per call.
 */
import * as grpc from '@grpc/grpc-js';
import { create, type DescMethod, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { performance } from 'node:perf_hooks';
import { cutOff, ErrorReason, shuttingDown, toApiError, type ApiError } from './errors.js';
import { throttledRefusals, type RefusalCounter } from '../identity/warn-throttle.js';
import { keyOf, payloadBytes, type Audit, type AuditEntry } from './audit.js';
import type { Logger } from 'pino';
import type { Access, CallAccess } from '../policy/access.js';
import type { OpContext } from '../ops/context.js';
import { decoded } from './decode.js';
import { setTimeoutAt } from '../../rpc/long-timeout.js';
import { afterStatusSent, goneMessage, goneReason, http2StreamOf, whenHalfClosedEnds, type GoneReason } from './call-end.js';
import type { MemoryBudget, Share } from './memory-budget.js';
import type { Drain } from './drain.js';

export interface HandlerDeps {
  audit: Audit;
  log: Logger;
  /** Who each call is and what it may do; every handler asks it (src/daemon/policy/access.ts). */
  access: Access;
  /** The daemon's stop: a call still open when its drain period ends is answered UNAVAILABLE (drain.ts). */
  drain?: Drain | undefined;
}

/** The audit line's fields of a call answered at the end of the drain period. */
export const CUT_OFF_OUTCOME = { outcome: 'UNAVAILABLE', reason: 'SHUTTING_DOWN' } as const;

/**
 * What a unary call answered at the end of the drain period (its work still running) tells its
 * client: a CryptoService or StatusService answer is simply lost; a KeyService change may have been
 * made (and saved) all the same.
 */
function unaryCutOff(method: DescMethod): ApiError {
  return cutOff(
    method.parent.typeName === 'ringfence.v1.KeyService'
      ? 'if it changed a key, the change may or may not have been made: look at the key (GetKey) before sending it again to the restarted daemon'
      : 'its operation was not answered: send it again to the restarted daemon',
  );
}

/**
 * The operation context of one call: the daemon's, with the caller's policy check, and the engine
 * making the call's requests as this caller's (a busy key serves its callers in turns).
 */
export function callContext(ctx: OpContext, access: CallAccess): OpContext {
  return { ...ctx, authorize: access.authorize, engine: ctx.engine.forCaller(callerKey(access)) };
}

/** The principal as audit lines carry it. */
export function auditPrincipal(access: CallAccess): Pick<AuditEntry, 'principal'> {
  return access.principal ? { principal: access.principal } : {};
}

/** Who counts against per-caller limits: the caller's uid ('' for a call without a principal). */
export function callerKey(access: Pick<CallAccess, 'principal'>): string {
  return access.principal ? `uid:${access.principal.uid}` : '';
}

/**
 * The messages of a call. A plain `for await` over a grpc-js call destroys the call when the loop
 * ends (Readable's default destroyOnReturn), which drops queued responses and the OK status.
 */
export async function* readAll<T>(call: NodeJS.ReadableStream & { iterator(options?: { destroyOnReturn?: boolean }): AsyncIterableIterator<unknown> }): AsyncIterable<T> {
  limitReadAhead(call);
  // A message that did not decode (decode.ts) ends the loop with INVALID_ARGUMENT.
  for await (const m of call.iterator({ destroyOnReturn: false })) yield decoded(m as T);
}

/**
 * Lets a call read at most one message ahead of its handler. grpc-js calls are object-mode
 * Readables with Node's default highWaterMark of 16, so a handler that is busy (or has paused the
 * call) would otherwise have up to 16 messages of up to maxMessageBytes each pulled into memory.
 * There is no public setter; _readableState.highWaterMark is what Readable reads on every pull.
 */
export function limitReadAhead(call: object): void {
  const state = (call as { _readableState?: { highWaterMark?: unknown } })._readableState;
  if (state && typeof state.highWaterMark === 'number') state.highWaterMark = 1;
}

/**
 * Makes call.write() report backpressure (false, then 'drain') once `messages` answers wait
 * unflushed, instead of the default 16: with chunks of up to maxStreamChunkBytes a stream to a
 * client that does not read then holds two chunks, not sixteen.
 */
export function limitWriteBehind(call: object, messages: number): void {
  const state = (call as { _writableState?: { highWaterMark?: unknown } })._writableState;
  if (state && typeof state.highWaterMark === 'number') state.highWaterMark = messages;
}

/**
 * Calls `gone` once when the call ends without the handler: cancelled by the client, or its
 * deadline passed. grpc-js answers DEADLINE_EXCEEDED itself, but emits 'cancelled' only once that
 * status is flushed, which a client that stopped reading never lets happen; the handler's own timer
 * makes sure a stream blocked on such a client is ended all the same. `why` is known at once (the
 * handler stops on it); `told` is the status the client was told, for the audit line, known once
 * grpc-js has sent its own (a message over the size limit). Returns a disposer.
 */
export function whenGone(call: { getDeadline(): grpc.Deadline; on(event: 'cancelled', listener: () => void): unknown }, gone: (why: GoneReason, told: Promise<GoneReason>) => void): () => void {
  const d = call.getDeadline();
  const deadline = d instanceof Date ? d.getTime() : d;
  let done = false;
  const fire = (why: GoneReason, told: Promise<GoneReason>) => {
    if (done) return;
    done = true;
    gone(why, told);
  };
  call.on('cancelled', () => {
    const why = goneReason(call);
    // A status grpc-js sent itself is what the client was told (review by helper-107: an oversize
    // Session message was audited CANCELLED while the client got RESOURCE_EXHAUSTED).
    const told = new Promise<GoneReason>((resolve) => afterStatusSent(call, (sent) => resolve(sent === undefined ? why : statusName(sent))));
    fire(why, told);
  });
  // setTimeoutAt: a deadline more than 24.8 days away would fire at once with a plain setTimeout.
  const cancelTimer = Number.isFinite(deadline) ? setTimeoutAt(() => fire('DEADLINE_EXCEEDED', Promise.resolve('DEADLINE_EXCEEDED')), deadline, true) : undefined;
  return () => {
    done = true;
    cancelTimer?.();
  };
}

/**
 * The key an error names, for the audit line: the one kept for the audit only (a denied decrypt: see
 * deniedByCiphertext), else the one its metadata names. A Decrypt request names no key, and a
 * ReEncrypt's names its destination: a refusal of the source key is about the source (review by
 * helper-134: the audit line named no key, or the destination, where a batch item named the source).
 */
export function auditKeyOf(e: ApiError): { key?: string; keyId?: string; version?: number } {
  // The version a ciphertext named, when the error is about its key (found by review: a failed
  // Decrypt's line had none, so failures against a retired version looked like the primary's).
  const version = e.auditVersion === undefined ? {} : { version: e.auditVersion };
  const name = e.auditKey ?? e.metadata.key_name;
  if (name) return { key: name, ...version };
  // A key known by id only (a ciphertext's key that does not exist here): not the request's key
  // name, which for a ReEncrypt is its destination (review by helper-136).
  const id = e.metadata.key_id;
  return id ? { key: undefined, keyId: id, ...version } : {};
}

/** The status name ("NOT_FOUND") of a code. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}

/**
 * Logs what the operator must see of a failed call: what an INTERNAL error hides from the client
 * (the cause chain; never payloads), and the daemon short of descriptors or kernel memory for its
 * AF_ALG sockets (review by helper-197), warned at most once per interval with a count: a shortage
 * refuses calls by the thousand; and so a key version whose kernel key the kernel refuses
 * (KERNEL_KEY_UNUSABLE), or the daemon's master key, which only the operator can bring back.
 */
export function logForOperator(deps: HandlerDeps, rpc: string, e: ApiError): void {
  if (e.code === grpc.status.INTERNAL) deps.log.error({ rpc, reason: e.reasonName, err: e.cause ?? e }, `internal error in ${rpc}`);
  else if (e.reason === ErrorReason.DAEMON_OUT_OF_RESOURCES) shortageWarning(deps.log).count({ rpc, errno: e.metadata.errno, call: e.metadata.call, detail: e.message });
  else if (e.reason === ErrorReason.KERNEL_KEY_UNUSABLE && e.metadata.kernel_key === 'master') masterKeyWarning(deps.log).count({ rpc, errno: e.metadata.errno });
  else if (e.reason === ErrorReason.KERNEL_KEY_UNUSABLE) kernelKeyWarning(deps.log, e.metadata.key_name ?? '', e.metadata.key_version ?? '').count({ rpc, key: e.metadata.key_name, version: Number(e.metadata.key_version), errno: e.metadata.errno, detail: e.message });
}

/** How often the shortage warning may come, as the listener's for connections refused at accept. */
export const SHORTAGE_WARN_INTERVAL_MS = 10_000;
const shortageWarnings = new WeakMap<Logger, RefusalCounter>();

function shortageWarning(log: Logger): RefusalCounter {
  let counter = shortageWarnings.get(log);
  if (!counter) {
    counter = throttledRefusals(SHORTAGE_WARN_INTERVAL_MS, ({ closed, closedTotal, ...fields }) =>
      log.warn({ ...fields, refused: closed, refusedTotal: closedTotal }, 'no file descriptor or kernel memory for an AF_ALG socket: refusing calls with RESOURCE_EXHAUSTED until there is; raise the daemon\'s LimitNOFILE= (EMFILE) or fs.file-max (ENFILE), or find what holds the memory'),
    );
    shortageWarnings.set(log, counter);
  }
  return counter;
}

/**
 * The warning for a key version whose kernel key the kernel refuses (KERNEL_KEY_UNUSABLE; review by
 * helper-207): the client's answer says so, the operator must hear it to act. Throttled per key
 * version, as the shortage warning, so that every such version is named within an interval
 * however many calls fail with another; versions are few (bounded by the key caps).
 */
const kernelKeyWarnings = new WeakMap<Logger, Map<string, RefusalCounter>>();

function kernelKeyWarning(log: Logger, name: string, version: string): RefusalCounter {
  let byVersion = kernelKeyWarnings.get(log);
  if (!byVersion) kernelKeyWarnings.set(log, (byVersion = new Map()));
  const id = `${name}\n${version}`;
  let counter = byVersion.get(id);
  if (!counter) {
    counter = throttledRefusals(SHORTAGE_WARN_INTERVAL_MS, ({ closed, closedTotal, ...fields }) =>
      log.warn(
        { ...fields, refused: closed, refusedTotal: closedTotal },
        `key "${name}" version ${version}: the kernel refuses the daemon its kernel key (${String(fields.errno)}), which ringfence did not remove or disable; calls that need it fail with FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE until ringfenced is restarted, which loads every key version into the kernel again from its state directory`,
      ),
    );
    byVersion.set(id, counter);
  }
  return counter;
}

/**
 * The warning for the daemon's master key refused by the kernel (KERNEL_KEY_UNUSABLE with
 * `kernel_key` "master"; review by helper-210): no key can be created, imported or rotated until
 * the operator restarts ringfenced. One counter: there is one master key.
 */
const masterKeyWarnings = new WeakMap<Logger, RefusalCounter>();

function masterKeyWarning(log: Logger): RefusalCounter {
  let counter = masterKeyWarnings.get(log);
  if (!counter) {
    counter = throttledRefusals(SHORTAGE_WARN_INTERVAL_MS, ({ closed, closedTotal, ...fields }) =>
      log.warn(
        { ...fields, refused: closed, refusedTotal: closedTotal },
        `the kernel refuses the daemon its master key (${String(fields.errno)}), which ringfence did not remove: creating, importing and rotating keys (scheduled rotations too) fail with FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE until ringfenced is restarted, which loads the master key into the kernel again from its credential or state directory (master.key); existing key versions keep serving`,
      ),
    );
    masterKeyWarnings.set(log, counter);
  }
  return counter;
}

/**
 * A unary call's part of the buffer budget (memory-budget.ts): `reserve` is what its work may
 * hold, request and answer (never zero, never less than what the answer adds). One object per
 * service, so that a call allocates nothing more for it than its Share.
 */
export interface UnaryBudget<I> {
  budget: MemoryBudget;
  reserve(request: I, bytesIn: number): number;
  /** The daemon's stop (drain.ts): a call still waiting for room then ends, its work not done. */
  drain?: Drain | undefined;
}

/** What a unary answer adds to its payload (field tags, lengths, a key name): counted with it. */
export const UNARY_ANSWER_OVERHEAD = 256;

/** Thrown by a wait for room that ended with the call (the client cancelled, its deadline passed). */
const ENDED_WHILE_WAITING = Symbol('ended while waiting for room');

/**
 * A unary call with `budget` takes its request and answer from the buffer budget: before its work
 * starts, waiting while its caller (or the daemon) has no room (a call holding nothing goes ahead
 * within the budget's exemptions; a wait the daemon's stop ends is answered UNAVAILABLE /
 * SHUTTING_DOWN); corrected to the answer once made; given back when grpc-js reports the call
 * over ('cancelled': its status went out, which waits behind an answer the client has not read, or
 * its stream closed), or at once after an error status.
 */
export function unary<I extends DescMessage, O extends DescMessage>(
  method: DescMethod & { input: I; output: O },
  deps: HandlerDeps,
  fn: (request: MessageShape<I>, access: CallAccess, call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>) => Promise<MessageInitShape<O>>,
  budget?: UnaryBudget<MessageShape<I>>,
): grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>> {
  const rpc = `${method.parent.name}/${method.name}`;
  return (call, callback) => {
    const start = performance.now();
    const request = call.request;
    const access = deps.access.forCall(call);
    const bytesIn = payloadBytes(request);
    const done = (entry: Partial<AuditEntry>) => deps.audit({ rpc, ...auditPrincipal(access), bytesIn, bytesOut: 0, outcome: 'OK', durationMs: +(performance.now() - start).toFixed(3), ...entry });
    const share = budget && heldUntilEnd(call, budget.budget.share(callerKey(access)));
    // Work still running when the drain period ends: answered UNAVAILABLE then, before the
    // connection is closed (a reset reads as CANCELLED); what the work makes after is dropped.
    let cut = false;
    const uncut = deps.drain?.onCutOff(() => {
      if (call.cancelled) return; // the client went: audited so when the work ends
      cut = true;
      const e = unaryCutOff(method);
      callback(e.toServiceError());
      done({ ...keyOf(request), ...CUT_OFF_OUTCOME, items: itemCount(request) });
    });
    // The work starts in this turn when the budget has room (no microtask hops before it: under
    // TCG each costs the daemon's one CPU measurably per call); only a call waiting for room waits.
    let work: Promise<MessageInitShape<O>>;
    try {
      const waiting = share && admit(share, budget.reserve(decoded(request), bytesIn), budget.drain);
      work = waiting ? waiting.then(() => fn(decoded(request), access, call)) : fn(decoded(request), access, call);
    } catch (err) {
      // A request that did not decode, or an fn that threw before its first await: answered below.
      work = Promise.reject(err);
    }
    work
      .then(
        (init) => {
          uncut?.();
          if (cut) return share?.close();
          const response = create(method.output, init) as MessageShape<O>;
          // The client cancelled (or its deadline passed) while the daemon worked: grpc-js drops the answer.
          if (call.cancelled) {
            share?.close();
            return done({ ...keyOf(request, response), outcome: goneReason(call), items: itemCount(request) });
          }
          const bytesOut = payloadBytes(response);
          // What the call holds until grpc-js has flushed the answer: its request and its answer
          // (a batch's per-item names and statuses in its overhead, as reserved; found by review).
          if (share) resize(share, bytesIn + bytesOut + UNARY_ANSWER_OVERHEAD * Math.max(itemCount(request) ?? 1, 1));
          callback(null, response);
          done({ ...keyOf(request, response), bytesOut, items: itemCount(request) });
        },
        (err: unknown) => {
          uncut?.();
          share?.close();
          if (cut) return;
          // It waited for room and the client went: the client's doing, audited as such; nothing to answer.
          if (err === ENDED_WHILE_WAITING) return done({ ...keyOf(request), outcome: goneReason(call), items: itemCount(request) });
          const e = toApiError(err, rpc);
          callback(e.toServiceError());
          logForOperator(deps, rpc, e);
          done({ ...keyOf(request), ...auditKeyOf(e), outcome: statusName(e.code), reason: e.reasonName, items: itemCount(request) });
        },
      )
      .catch((err: unknown) => deps.log.error({ rpc, err }, 'failed to answer a call'));
  };
}

/**
 * Closes `share` when grpc-js reports the call over: it emits 'cancelled' on every end of a unary
 * call (its status sent, which waits until the answer is flushed, or its stream closed), also when
 * the write callback never fires. A call already over closes it at once.
 */
function heldUntilEnd(call: { cancelled: boolean; on?(event: 'cancelled', listener: () => void): unknown }, share: Share): Share {
  if (call.cancelled) {
    share.close();
    return share;
  }
  // 'on', not 'once': grpc-js emits it once per call (notifyOnCancel), and once() allocates a wrapper.
  call.on?.('cancelled', () => share.close());
  // The HTTP/2 stream's close as well (as call-limit.ts counts calls): grpc-js reports a call over
  // once only, and a deadline that passes between the request message and its END_STREAM reports
  // it before the handler exists; grpc-js then still runs the handler on the half-close, with
  // call.cancelled false and no 'cancelled' to come.
  const stream = http2StreamOf(call);
  if (stream?.closed || stream?.destroyed) share.close();
  else stream?.once('close', () => share.close());
  return share;
}

/**
 * Takes `bytes` at once if the call may start; else waits for room (the slow path), and fails with
 * ENDED_WHILE_WAITING if the call ends first, or with SHUTTING_DOWN once the daemon's drain starts.
 */
function admit(share: Share, bytes: number, drain: Drain | undefined): void | Promise<void> {
  if (share.mayStart) return share.take(bytes);
  // close() (the call's end) ends the wait, and so does the drain: a waiting call has done nothing,
  // and would otherwise hold the stop until its client's other calls end or the drain period is over.
  const stop = new AbortController();
  const undrain = drain?.onStart(() => stop.abort(shuttingDown('the operation')));
  return share.reserve(bytes, stop.signal).then(undrain, (err: unknown) => {
    undrain?.();
    throw stop.signal.aborted ? err : ENDED_WHILE_WAITING;
  });
}

function resize(share: Share, bytes: number): void {
  if (bytes > share.held) share.take(bytes - share.held);
  else share.give(share.held - bytes);
}

function itemCount(request: unknown): number | undefined {
  const items = (request as { requests?: unknown[] }).requests;
  return Array.isArray(items) ? items.length : undefined;
}

/** A client-streaming RPC: `fn` consumes the messages; a cancelled call ends its iteration with an error. */
export function clientStreaming<I extends DescMessage, O extends DescMessage>(
  method: DescMethod & { input: I; output: O },
  deps: HandlerDeps,
  fn: (messages: AsyncIterable<MessageShape<I>>, access: CallAccess, call: grpc.ServerReadableStream<MessageShape<I>, MessageShape<O>>) => Promise<MessageInitShape<O>>,
): grpc.handleClientStreamingCall<MessageShape<I>, MessageShape<O>> {
  const rpc = `${method.parent.name}/${method.name}`;
  return (call, callback) => {
    const start = performance.now();
    const access = deps.access.forCall(call);
    let bytesIn = 0;
    // A vanished client (cancelled, or its deadline passed) must not leave the operation (and its
    // kernel op socket) waiting forever.
    let gone: Promise<GoneReason> | undefined;
    const dispose = whenGone(call, (why, told) => {
      gone = told;
      call.destroy(new Error(goneMessage(why, 'call')));
    });
    const auditGone = (why: GoneReason | Promise<GoneReason>) =>
      void Promise.resolve(why).then((outcome) => deps.audit({ rpc, ...auditPrincipal(access), bytesIn, bytesOut: 0, outcome, durationMs: +(performance.now() - start).toFixed(3) }));
    // Still open when the drain period ends (its client still sending, or idle): answered
    // UNAVAILABLE, nothing computed, and the loop ended; the client would read a reset as CANCELLED.
    let cut = false;
    const uncut = deps.drain?.onCutOff(() => {
      if (gone) return;
      cut = true;
      dispose();
      callback(cutOff('nothing was answered: send the whole stream again to the restarted daemon').toServiceError());
      deps.audit({ rpc, ...auditPrincipal(access), bytesIn, bytesOut: 0, ...CUT_OFF_OUTCOME, durationMs: +(performance.now() - start).toFixed(3) });
      call.destroy(new Error('the daemon stopped'));
    });
    async function* messages(): AsyncGenerator<MessageShape<I>> {
      for await (const m of readAll<MessageShape<I>>(call)) {
        bytesIn += payloadBytes(m);
        yield m;
      }
    }
    Promise.resolve()
      .then(() => fn(messages(), access, call))
      .then(
        (init) => {
          dispose();
          uncut?.();
          if (cut) return;
          // Done, but the deadline passed meanwhile: grpc-js has answered DEADLINE_EXCEEDED already.
          if (gone) return auditGone(gone);
          const response = create(method.output, init) as MessageShape<O>;
          callback(null, response);
          // A half-close may be the first half of a client's cancel: audited once the stream tells.
          whenHalfClosedEnds(call, (cancelled) => cancelled ? auditGone(cancelled) : deps.audit({ rpc, ...auditPrincipal(access), bytesIn, bytesOut: payloadBytes(response), outcome: 'OK', durationMs: +(performance.now() - start).toFixed(3) }));
        },
        (err: unknown) => {
          dispose();
          uncut?.();
          if (cut) return;
          const e = toApiError(err, rpc);
          // A call the client ended (cancel, deadline) is the client's doing, not an internal error: audited as such, not logged.
          if (gone) return auditGone(gone);
          callback(e.toServiceError());
          logForOperator(deps, rpc, e);
          whenHalfClosedEnds(call, (cancelled) => cancelled ? auditGone(cancelled) : deps.audit({ rpc, ...auditPrincipal(access), bytesIn, bytesOut: 0, outcome: statusName(e.code), reason: e.reasonName, durationMs: +(performance.now() - start).toFixed(3) }));
        },
      )
      .catch((err: unknown) => deps.log.error({ rpc, err }, 'failed to answer a call'));
  };
}
