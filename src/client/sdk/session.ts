/**
 * Pipelining over CryptoService.Session: many small operations multiplexed on one bidi stream,
 * matched to their responses by id (the daemon answers in any order). At most maxInFlight are sent
 * and unanswered at a time; later calls wait in a FIFO queue, and sending also waits while the
 * grpc-js call reports write backpressure, so nothing is buffered without bound below the queue.
 *
 * Operations queued in the same turn of the event loop go out packed in one message (the first at
 * the top level, the others in `more`; session.proto, "Packing"), up to PACK_OPS operations and
 * PACK_BYTES (60 KiB, which fits any daemon's max_message_bytes). An operation larger than that
 * goes as a unary call of its own RPC: a daemon's max_message_bytes may be below what this client
 * sends, and a message over it fails the whole stream with every operation on it (found by review,
 * helper-110). So does a GenerateRandom asking for more than PACK_BYTES (its answer would be that
 * large). The daemon packs its answers the same way.
 *
 * If the stream fails, the operations it carried reject with its error and the next call opens a
 * new stream; if the daemon refused it unread (REFUSED_STREAM), they go again on a new stream.
 * After an idle period the stream is half-closed (so an idle session never keeps the process
 * alive); it reopens on demand. A half-closed stream the daemon does not end within
 * CLOSE_WAIT_MS (stopped, stuck, faulty) is cancelled. close() is final.
 *
 * A slot whose caller gave up (deadline, abort) is held until the daemon answers, and a faulty or
 * hung daemon may never answer: with every slot taken and work queued, a stream holding such slots
 * takes no more operations ("draining"); it is cancelled, and its slots given back, as soon as no
 * operation on it is awaited, so none fails or is sent twice for it. The queue goes on a fresh
 * stream as slots come free, so the draining and the fresh stream together keep maxInFlight.
 *
 * When the stream's connection goes away (the daemon's connectionMaxAge GOAWAY), the stream takes no
 * more operations ("retiring") and is half-closed: the daemon answers what it has and ends it, while
 * new operations go on a fresh stream, on a new connection. A stream that never went idle otherwise
 * stayed on the old connection until grpc-js cut it after the grace period, failing every operation
 * in flight (found by review, helper-110).
 */
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type * as pb from '../../gen/ringfence/v1/crypto_pb.js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { SessionRequestSchema, type SessionRequest, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { callDeadline, checkSignal, onAbort, type CallOptions } from './call-options.js';
import { itemStatusError, RingfenceError, toRingfenceError } from './errors.js';
import * as req from './requests.js';
import { MAX_REFUSED_RETRIES, type StreamCall, type Transport } from './transport.js';
import { ID_BYTES, packedBytes, PACK_BYTES, PACK_OPS, takeBatch, type SessionCounts } from './session-packing.js';
import { setTimeoutAt } from '../../rpc/long-timeout.js';
import { encodedSize } from '../../rpc/binary-encode.js';

type OpCase = Exclude<SessionRequest['op']['case'], undefined>;
type OpResult<K extends OpCase> = Extract<SessionResponse['result'], { case: K }>['value'];
type OpInit<K extends OpCase> = Extract<NonNullable<MessageInitShape<typeof SessionRequestSchema>['op']>, { case: K }>['value'];

const RPC = 'ringfence.v1.CryptoService/Session';
/** The message of each operation case. */
/** How long a half-closed stream, with nothing on it awaited, waits for the daemon to end it before it is cancelled. */
const CLOSE_WAIT_MS = 2000;

const OP_SCHEMAS = Object.fromEntries(SessionRequestSchema.oneofs[0]!.fields.map((f) => [f.localName, f.message!])) as Record<OpCase, DescMessage>;

export interface SessionOptions {
  /**
   * Operations sent on the stream and not yet answered, at most; default 256 (the daemon allows
   * 1024). Operations over 60 KiB, and GenerateRandom of more than 60 KiB, go as unary calls,
   * which this does not limit.
   */
  maxInFlight?: number;
  /** Half-close the stream after this long without operations; default 2000 ms (0 to 2^31-1). */
  idleTimeoutMs?: number;
  /** Aborting fails every queued and pending operation with CANCELLED and closes the session. */
  signal?: AbortSignal;
}

interface Op {
  kind: OpCase;
  request: SessionRequest;
  /** Its message was encoded (grpc-js's write callback). */
  written?: boolean;
  bytes: number;
  settled: boolean;
  settle(value: unknown, error?: RingfenceError): void;
  /** The stream it was sent on. */
  sentOn?: Stream;
  /** Streams it was sent on that the daemon refused unread (REFUSED_STREAM). */
  refusals?: number;
}

const dropPayload = (op: Op) => {
  op.request.op = { case: undefined };
};

interface Stream {
  rpc: StreamCall<grpc.ClientDuplexStream<SessionRequest, SessionResponse>>;
  /** Sent, unanswered operations by id (including ones that timed out locally meanwhile). */
  pending: Map<bigint, Op>;
  /** How many of those settled locally (deadline, abort): their callers no longer await them. */
  abandoned: number;
  /** Set while grpc-js's write() said to wait for 'drain'. */
  blocked?: { wait: Promise<void>; release(): void; pumpScheduled: boolean };
  over: boolean;
  /** The channel's connection epoch when it was opened (connection-watch.ts). */
  epoch: number;
  done: Promise<void>;
  markDone(): void;
}

export class RingfenceSession {
  readonly maxInFlight: number;
  private readonly idleTimeoutMs: number;
  private readonly signal: AbortSignal | undefined;
  private stream: Stream | undefined;
  /** A former stream that takes no more operations and is cancelled once none on it is awaited (at most one). */
  private draining: Stream | undefined;
  /** Half-closed streams the daemon has not ended yet (each is cancelled after CLOSE_WAIT_MS). */
  private readonly ending = new Set<Stream>();
  /** Former streams on a connection that went away, half-closed with operations still awaited. */
  private readonly retiring = new Set<Stream>();
  /** Stops listening for the channel's connection changes. */
  private unwatch: (() => void) | undefined;
  private readonly queue: Op[] = [];
  private inFlight = 0;
  private unsettled = 0;
  private nextId = 1n;
  private pumping = false;
  private pumpScheduled: NodeJS.Immediate | undefined;
  /** Messages and operations sent and received so far (all streams of this session). */
  readonly counts: SessionCounts = { messagesSent: 0, operationsSent: 0, messagesReceived: 0, answersReceived: 0 };
  private closing = false;
  private closed: Promise<void> | undefined;
  private finishClose: (() => void) | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Drops the listener on the session's signal: a long-lived signal must not keep a closed session alive. */
  private releaseSignal: () => void = () => {};

  constructor(
    private readonly transport: Transport,
    opts: SessionOptions = {},
    private readonly onClosed: () => void = () => {},
  ) {
    this.maxInFlight = opts.maxInFlight ?? 256;
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, got ${opts.maxInFlight}`);
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 2000;
    // setTimeout fires at once (after a warning) beyond 2^31-1 ms, or for NaN: a stream reopened per operation.
    if (!Number.isInteger(this.idleTimeoutMs) || this.idleTimeoutMs < 0 || this.idleTimeoutMs > 2 ** 31 - 1) throw new RangeError(`idleTimeoutMs must be an integer from 0 to ${2 ** 31 - 1}, got ${opts.idleTimeoutMs}`);
    checkSignal(opts.signal); // before it is listened to
    this.signal = opts.signal;
    this.releaseSignal = onAbort(this.signal, () => this.abort());
  }

  /** Operations sent and not yet answered. */
  get outstanding(): number {
    return this.inFlight;
  }

  async encrypt(keyName: string, plaintext: req.Data, opts?: req.EncryptOptions & CallOptions): Promise<pb.EncryptResponse> {
    return this.run('encrypt', req.encryptRequest(keyName, plaintext, opts), opts);
  }
  async decrypt(ciphertext: req.CiphertextInput, opts?: req.DecryptOptions & CallOptions): Promise<pb.DecryptResponse> {
    return this.run('decrypt', req.decryptRequest(ciphertext, opts), opts);
  }
  async reEncrypt(ciphertext: req.CiphertextInput, opts?: req.ReEncryptOptions & CallOptions): Promise<pb.ReEncryptResponse> {
    return this.run('reEncrypt', req.reEncryptRequest(ciphertext, opts), opts);
  }
  async generateDataKey(keyName: string, opts?: req.GenerateDataKeyOptions & CallOptions): Promise<pb.GenerateDataKeyResponse> {
    return this.run('generateDataKey', req.generateDataKeyRequest(keyName, opts), opts);
  }
  async computeMac(keyName: string, data: req.Data, opts?: CallOptions): Promise<pb.ComputeMacResponse> {
    return this.run('computeMac', req.computeMacRequest(keyName, data), opts);
  }
  async verifyMac(keyName: string, data: req.Data, mac: Uint8Array, opts?: req.VerifyMacOptions & CallOptions): Promise<pb.VerifyMacResponse> {
    return this.run('verifyMac', req.verifyMacRequest(keyName, data, mac, opts), opts);
  }
  async hash(data: req.Data, algorithm?: req.HashAlgorithmInput, opts?: CallOptions): Promise<pb.HashResponse> {
    return this.run('hash', req.hashRequest(data, algorithm), opts);
  }
  async generateRandom(lengthBytes: number, opts?: CallOptions): Promise<pb.GenerateRandomResponse> {
    return this.run('generateRandom', req.generateRandomRequest(lengthBytes), opts);
  }

  /** Stops taking operations, waits for those already made to settle, then ends the stream. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closing = true;
      this.closed = new Promise<void>((resolve) => (this.finishClose = resolve)).then(() => {
        this.onClosed();
      });
      if (this.unsettled === 0) this.endAfterClose();
    }
    return this.closed;
  }

  /** close(), for `await using session = client.session()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private run<K extends OpCase>(kind: K, init: OpInit<K>, opts: CallOptions = {}): Promise<OpResult<K>> {
    if (this.closing) return Promise.reject(new RingfenceError({ code: grpc.status.CANCELLED, message: 'the session is closed', rpc: RPC }));
    if (opts.signal?.aborted) return Promise.reject(this.abortError(opts.signal));
    // The SessionRequest as create() makes it, without its generic init walk (a few % of the SDK's CPU per operation).
    const value = create(OP_SCHEMAS[kind], init as never) as unknown as Record<string, unknown>;
    // Encoded when its packed message is written, a turn later: the caller's bytes are copied now,
    // as a unary call encodes them at once (found by review: a caller that wiped its plaintext
    // after the call, as the SDK suggests, had zeros encrypted).
    for (const [k, v] of Object.entries(value)) if (v instanceof Uint8Array && v.length > 0) value[k] = new Uint8Array(v); // a copy (Buffer's slice() is a view)
    const request: SessionRequest = { $typeName: SessionRequestSchema.typeName, id: 0n, op: { case: kind, value } as unknown as SessionRequest['op'], more: [] };
    // An operation that cannot be encoded, or is larger than a message this client sends, would fail
    // the write and grpc-js would cancel the stream with every operation on it: refuse it alone.
    let size: number;
    try {
      size = encodedSize(SessionRequestSchema, request);
    } catch (err) {
      return Promise.reject(new RingfenceError({ code: grpc.status.INVALID_ARGUMENT, message: `the ${kind} operation cannot be encoded: ${(err as Error).message}`, rpc: RPC }));
    }
    // With the id it gets when sent (a tag and a varint: 11 bytes at most), alone in its message.
    if (size + ID_BYTES > this.transport.maxSendMessageBytes) {
      return Promise.reject(
        new RingfenceError({
          code: grpc.status.RESOURCE_EXHAUSTED,
          reason: ErrorReason.PAYLOAD_TOO_LARGE,
          message: `the ${kind} operation needs ${size + ID_BYTES} bytes with its id, more than the ${this.transport.maxSendMessageBytes}-byte messages this client sends; send large data with hashStream or encryptStream / decryptStream`,
          metadata: { field: kind, actual_bytes: String(size + ID_BYTES), limit_bytes: String(this.transport.maxSendMessageBytes) },
          rpc: RPC,
        }),
      );
    }
    let deadline: Date | undefined;
    try {
      deadline = callDeadline(opts, this.transport.defaultTimeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    // Random data is as long as asked, however small the request: a packed answer too large for this
    // client would make grpc-js cancel the stream with every operation on it (review by helper-129).
    const answer = kind === 'generateRandom' ? Number(value.lengthBytes) || 0 : 0;
    if (Math.max(size, answer) + ID_BYTES > PACK_BYTES) return this.runUnary(kind, value, opts);
    clearTimeout(this.idleTimer);
    this.unsettled++;
    return new Promise<OpResult<K>>((resolve, reject) => {
      let cancelTimer = () => {};
      let release = () => {};
      const op: Op = {
        kind,
        request,
        bytes: packedBytes(size),
        settled: false,
        settle: (value, error) => {
          if (op.settled) return;
          op.settled = true;
          cancelTimer();
          release();
          // Its copy of the caller's data is not needed any more (found by review, helper-110: an
          // operation given up on kept it, plaintext perhaps, until the daemon answered, and its
          // error kept it too). A message handed to grpc-js may wait unencoded in its write buffer:
          // cleared once written, or it would reach the daemon as an empty operation (helper-111).
          if (!op.sentOn || op.written) dropPayload(op);
          if (error) reject(error);
          else (resolve as (v: unknown) => void)(value); // the response case matched `kind`
          // Given up on while sent: its slot may be what keeps queued work or a draining stream waiting.
          if (error && op.sentOn?.pending.get(op.request.id) === op) {
            op.sentOn.abandoned++;
            this.schedulePump();
          }
          if (--this.unsettled === 0) {
            if (this.closing) this.endAfterClose();
            // The last one may have settled unsent (deadline, abort): no answer will arm the idle timer.
            else if (this.stream) this.maybeIdle(this.stream);
          }
        },
      };
      // Local deadlines and aborts settle the caller's promise at once; an operation already sent
      // keeps its slot until the daemon answers it or its stream is dropped (reclaim), so
      // maxInFlight stays true on the wire.
      if (deadline) {
        const expire = () => op.settle(undefined, new RingfenceError({ code: grpc.status.DEADLINE_EXCEEDED, message: 'deadline exceeded', rpc: RPC }));
        cancelTimer = setTimeoutAt(expire, deadline.getTime());
      }
      const { signal } = opts;
      release = onAbort(signal, () => op.settle(undefined, this.abortError(signal)));
      this.queue.push(op);
      // On the next turn, so that every operation queued in this one can share a message.
      this.schedulePump();
    });
  }

  /** One operation too large to share a message, as its unary RPC; close() waits for it too. */
  private runUnary<K extends OpCase>(kind: K, value: Record<string, unknown>, opts: CallOptions): Promise<OpResult<K>> {
    this.unsettled++;
    // Either signal aborts it. Not AbortSignal.any: on Node 20 each call leaves an entry on the
    // session's long-lived signal (review by helper-111).
    const both = new AbortController();
    const unlink = [this.signal, opts.signal].map((signal) => onAbort(signal, () => both.abort(signal?.reason)));
    const signal = this.signal || opts.signal ? both.signal : undefined;
    const method = CryptoService.method[kind] as unknown as Parameters<Transport['unary']>[0];
    return (this.transport.unary(method, value as never, { ...opts, signal }) as Promise<OpResult<K>>).finally(() => {
      for (const release of unlink) release();
      if (--this.unsettled === 0) {
        if (this.closing) this.endAfterClose();
        else if (this.stream) this.maybeIdle(this.stream);
      }
    });
  }

  private schedulePump(): void {
    this.pumpScheduled ??= setImmediate(() => {
      this.pumpScheduled = undefined;
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        // Operations settled while queued (deadline, abort) are dropped here: no stream is opened for them.
        while (this.queue[0]?.settled) this.queue.shift();
        // A draining stream goes once nothing on it is awaited, queue or not.
        if (this.draining && this.draining.abandoned === this.draining.pending.size) this.discard(this.draining);
        for (const s of this.retiring) if (s.abandoned === s.pending.size) this.discard(s);
        if (this.queue.length === 0) break;
        if (this.inFlight >= this.maxInFlight && !this.reclaim()) break;
        let stream: Stream;
        try {
          stream = this.stream ?? this.open();
        } catch (err) {
          // No stream can be opened (the client is closed): every queued operation fails with that.
          const e = toRingfenceError(err, { rpc: RPC, socketPath: this.transport.socketPath });
          for (const op of this.queue.splice(0)) op.settle(undefined, e);
          return;
        }
        if (stream.blocked) {
          if (!stream.blocked.pumpScheduled) void stream.blocked.wait.then(() => this.pump());
          stream.blocked.pumpScheduled = true;
          return;
        }
        // Packed messages stay within what this client sends, even with a small grpc.max_send_message_length.
        const batch = takeBatch(this.queue, this.maxInFlight - this.inFlight, PACK_OPS, Math.min(PACK_BYTES, this.transport.maxSendMessageBytes - 64));
        if (batch.length === 0) continue;
        for (const op of batch) {
          const id = this.nextId++;
          op.request.id = id;
          op.sentOn = stream;
          stream.pending.set(id, op);
        }
        this.inFlight += batch.length;
        const [first, ...rest] = batch;
        const message = first!.request;
        message.more = rest.map((op) => op.request);
        this.counts.messagesSent++;
        this.counts.operationsSent += batch.length;
        const written = () => {
          for (const op of batch) {
            if (op.sentOn !== stream) continue; // queued again since (a refused stream): not this write's
            op.written = true;
            if (op.settled) dropPayload(op);
          }
        };
        if (!stream.rpc.call.write(message, written)) this.block(stream);
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Every slot is taken and work is queued: the current stream stops taking operations if some of
   * its slots are held by operations given up on (their answers may never come). Returns whether
   * slots came free: when nothing on it is awaited it is cancelled at once; otherwise it drains
   * (pump() cancels it once nothing on it is awaited), unless another stream already does.
   */
  private reclaim(): boolean {
    const stream = this.stream;
    if (!stream || stream.abandoned === 0) return false; // every slot awaited: the queue waits, as maxInFlight means
    if (stream.abandoned === stream.pending.size) {
      this.discard(stream);
      return true;
    }
    if (this.draining) return false;
    this.draining = stream;
    this.stream = undefined;
    return false;
  }

  /** Drops a stream none of whose operations is awaited, giving back the slots they held. */
  private discard(stream: Stream): void {
    this.retiring.delete(stream);
    // Nothing unanswered: half-closed, as an idle stream is, so the daemon ends it normally.
    if (stream.pending.size === 0) return this.halfClose(stream);
    this.onStreamEnd(stream, new RingfenceError({ code: grpc.status.CANCELLED, message: 'the session stream was cancelled', rpc: RPC }));
    stream.rpc.call.cancel();
  }

  /**
   * Half-closes a stream with nothing unanswered, so the daemon ends it normally, and cancels it if
   * the daemon has not within CLOSE_WAIT_MS (found by review: it stayed open, a stream on the
   * daemon and a connection kept, until the client itself was closed).
   */
  private halfClose(stream: Stream): void {
    if (this.stream === stream) this.stream = undefined;
    if (this.draining === stream) this.draining = undefined;
    if (stream.over || this.ending.has(stream)) return;
    this.ending.add(stream);
    stream.rpc.call.end();
    const giveUp = setTimeout(() => stream.rpc.call.cancel(), CLOSE_WAIT_MS);
    giveUp.unref();
    void stream.done.then(() => {
      clearTimeout(giveUp);
      this.ending.delete(stream);
    });
  }

  private block(stream: Stream): void {
    let release = () => {};
    const wait = new Promise<void>((resolve) => (release = resolve));
    const drained = () => {
      stream.blocked = undefined;
      release();
    };
    stream.rpc.call.once('drain', drained);
    stream.blocked = { wait, release: drained, pumpScheduled: false };
  }

  private open(): Stream {
    const rpc = this.transport.bidi(CryptoService.method.session, { signal: this.signal });
    let markDone = () => {};
    const done = new Promise<void>((resolve) => (markDone = resolve));
    const stream: Stream = { rpc, pending: new Map(), abandoned: 0, over: false, epoch: this.transport.connection.epoch, done, markDone };
    rpc.call.on('data', (res: SessionResponse) => this.onResponse(stream, res));
    rpc.call.on('error', (err: unknown) => this.onStreamEnd(stream, rpc.toError(err), rpc.unsent(err)));
    rpc.call.on('end', () => this.onStreamEnd(stream, undefined));
    this.stream = stream;
    this.unwatch ??= this.transport.connection.onLost(() => this.connectionLost());
    return stream;
  }

  /** The channel left the connection the current stream is on: it retires, and the queue goes on a fresh one. */
  private connectionLost(): void {
    const stream = this.stream;
    if (!stream || stream.epoch === this.transport.connection.epoch) return;
    this.stream = undefined;
    if (stream.abandoned === stream.pending.size) return this.discard(stream);
    this.retiring.add(stream);
    void stream.done.then(() => this.retiring.delete(stream));
    // The daemon answers the operations it read, then ends the stream (or grpc-js cuts it at max age + grace).
    stream.rpc.call.end();
    this.schedulePump();
  }

  private onResponse(stream: Stream, res: SessionResponse): void {
    this.counts.messagesReceived++;
    this.answer(stream, res);
    for (const more of res.more) this.answer(stream, more);
    this.pump();
    this.maybeIdle(stream);
  }

  private answer(stream: Stream, res: SessionResponse): void {
    this.counts.answersReceived++;
    const op = stream.pending.get(res.id);
    if (!op) return; // not an id in flight on this stream: nothing waits for it
    stream.pending.delete(res.id);
    if (op.settled) stream.abandoned--;
    this.inFlight--;
    const { result } = res;
    if (result.case === 'error') op.settle(undefined, itemStatusError(result.value, RPC));
    else if (result.case === op.kind) op.settle(result.value);
    else op.settle(undefined, new RingfenceError({ code: grpc.status.INTERNAL, message: `the daemon answered a ${op.kind} operation with ${result.case ?? 'no result'}`, rpc: RPC }));
  }

  /** `refused`: the stream was refused by the daemon (REFUSED_STREAM) or never started (transport.ts, unsent), having sent nothing. */
  private onStreamEnd(stream: Stream, error: RingfenceError | undefined, refused = false): void {
    if (stream.over) return;
    stream.over = true;
    stream.rpc.release();
    if (this.stream === stream) this.stream = undefined;
    if (this.draining === stream) this.draining = undefined;
    stream.blocked?.release();
    const err = error ?? new RingfenceError({ code: grpc.status.INTERNAL, message: 'the session stream ended with operations unanswered', rpc: RPC });
    const orphans = [...stream.pending.values()];
    stream.pending.clear();
    stream.abandoned = 0;
    this.inFlight -= orphans.length;
    // A refused stream did none of its operations (RFC 9113 section 8.7; the daemon refuses streams
    // that cross its idle or age GOAWAY): those still awaited go again first, on a fresh stream, as a
    // unary call does (transport.ts). grpc-js replays a refused stream itself only while what was
    // written on it fits its 1 MiB retry buffer; past that they failed UNAVAILABLE as if they may
    // have run (review by helper-191).
    const again: Op[] = [];
    const failed: Op[] = [];
    const retry = refused && !this.signal?.aborted;
    for (const op of orphans) (retry && !op.settled && (op.refusals = (op.refusals ?? 0) + 1) <= MAX_REFUSED_RETRIES ? again : failed).push(op);
    for (const op of again) {
      op.sentOn = undefined;
      op.written = undefined;
      op.request.more = [];
    }
    this.queue.unshift(...again);
    for (const op of failed) op.settle(undefined, err);
    stream.markDone();
    this.pump(); // queued operations go out on a new stream
  }

  private maybeIdle(stream: Stream): void {
    if (this.unsettled > 0 || this.closing || this.stream !== stream) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.unsettled > 0 || this.stream !== stream) return;
      // Operations still unanswered were given up on, and their answers may never come.
      this.discard(stream);
    }, this.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private endAfterClose(): void {
    clearTimeout(this.idleTimer);
    this.releaseSignal();
    this.unwatch?.();
    if (this.draining) this.discard(this.draining); // nothing is awaited any longer
    for (const s of this.retiring) this.discard(s);
    // Operations left unanswered were given up on (deadline, abort): the stream is cancelled, not
    // waited for. Otherwise it is half-closed, and cancelled if the daemon does not end it.
    if (this.stream) this.discard(this.stream);
    // close() settles once every stream of the session is over, half-closed ones included.
    void Promise.all([...this.ending].map((s) => s.done)).then(() => this.finishClose?.());
  }

  private abort(): void {
    this.releaseSignal();
    this.unwatch?.();
    if (!this.closing) this.onClosed();
    this.closing = true;
    const err = this.abortError(this.signal);
    for (const op of this.queue.splice(0)) op.settle(undefined, err);
    this.stream?.rpc.call.cancel();
    this.draining?.rpc.call.cancel();
    // Half-closed streams (this.ending) are cancelled by the transport: each call watches the signal.
  }

  private abortError(signal: AbortSignal | undefined): RingfenceError {
    return toRingfenceError(undefined, { rpc: RPC, socketPath: this.transport.socketPath, aborted: true, abortReason: signal?.reason });
  }
}
