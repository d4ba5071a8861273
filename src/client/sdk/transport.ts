/**
 * The grpc-js plumbing under RingfenceClient: one channel to the daemon's Unix socket, typed unary
 * calls built from protobuf-es descriptors, and stream calls wired to AbortSignals and deadlines.
 */
import * as grpc from '@grpc/grpc-js';
import { existsSync } from 'node:fs';
import {
  create,
  type DescMessage,
  type DescMethodBiDiStreaming,
  type DescMethodClientStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import { methodDefinition, type MethodDefinition } from '../../rpc/service-definition.js';
import { callDeadline, checkTimeout, onAbort, wireDeadline, type CallOptions } from './call-options.js';
import { setTimeoutAt } from '../../rpc/long-timeout.js';
import { isServiceError, RingfenceError, toRingfenceError } from './errors.js';
import { ConnectionWatch } from './connection-watch.js';

export const MiB = 1024 * 1024;

/** Defaults sized for the daemon's limits: 1 MiB payloads, 4 MiB + 64 KiB requests. Receive: the
 * largest message a daemon may be configured to send (maxMessageBytes, at most 64 MiB), so no valid
 * answer is refused here: 16 MiB refused GenerateRandom of the 16 MiB a daemon may allow (review by
 * helper-129). */
const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_send_message_length': 4 * MiB + 64 * 1024,
  'grpc.max_receive_message_length': 64 * MiB,
  // A local socket: after a daemon restart, reconnect within a second. grpc-js's defaults (1 s,
  // growing 1.6x to 120 s) are for remote servers; calls fail at once meanwhile ("not running"),
  // so a client kept failing for seconds (43 s after a 60 s outage) against a daemon already serving.
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 1000,
};

/**
 * A stream the server refused (HTTP/2 REFUSED_STREAM: it did no work, RFC 9113 section 8.7) is sent
 * again. The daemon refuses streams that cross its idle or age GOAWAY. grpc-js replays them itself,
 * but only while the request fits its per-call retry buffer (1 MiB in grpc-js 1.14). Raising it would
 * also keep every streamed message in it until the call commits, which defeats the streams' bounded
 * buffering. So unary calls, whose request is one message already held here, replay it themselves.
 */
export const MAX_REFUSED_RETRIES = 2;
export const isRefusedStream = (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE && err.details === 'Stream refused by server';
/** grpc-js's answer to a call still waiting for a connection when the channel closes: it never ran. */
const isClosedBeforeStart = (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE && err.details === 'Channel closed before call started';

/** The request as its bytes: serialized once, before the call returns (see Transport#unary). */
const sameBytes = (bytes: Buffer) => bytes;

const definitions = new WeakMap<object, MethodDefinition>();
function definitionOf(method: Parameters<typeof methodDefinition>[0]): MethodDefinition {
  let def = definitions.get(method);
  if (!def) definitions.set(method, (def = methodDefinition(method)));
  return def;
}

/** A started stream call plus what its owner needs to turn its failure into a RingfenceError. */
export interface StreamCall<C> {
  call: C;
  rpc: string;
  toError(err: unknown): RingfenceError;
  /** Drop the AbortSignal listener once the call is over. */
  release(): void;
  /** Whether it failed having sent nothing (refused by the daemon, or never started: see #channel). */
  unsent(err: unknown): boolean;
}

/**
 * The smallest receive limit a client may set: the daemon packs Session answers into messages of up
 * to 60 KiB (its own maxMessageBytes is at least 64 KiB), and one message over the client's limit
 * makes grpc-js cancel the stream with every operation on it (review by helper-133).
 */
export const MIN_RECEIVE_MESSAGE_BYTES = 64 * 1024;

export class Transport {
  private current: grpc.Client;
  private path: string;
  private readonly options: grpc.ChannelOptions;
  /** The largest message this client sends (grpc.max_send_message_length; -1 is no limit). */
  readonly maxSendMessageBytes: number;
  /** Which of the channel's connections is current (a Session moves off one that went away). */
  readonly connection: ConnectionWatch;
  private closed = false;

  /**
   * `candidates`: the sockets the path was chosen among (clientSocketCandidates), for a client given
   * none: when the chosen one has gone, calls move to one that exists (see #channel). Empty or one
   * path: the path stays.
   */
  constructor(
    socketPath: string,
    readonly defaultTimeoutMs: number | undefined,
    grpcOptions: grpc.ChannelOptions = {},
    private readonly candidates: readonly string[] = [],
    private readonly exists: (path: string) => boolean = existsSync,
  ) {
    checkTimeout('defaultTimeoutMs', defaultTimeoutMs);
    const options = { ...DEFAULT_CHANNEL_OPTIONS, ...grpcOptions };
    const maxSend = Number(options['grpc.max_send_message_length']);
    this.maxSendMessageBytes = maxSend >= 0 ? maxSend : Infinity;
    const maxReceive = Number(options['grpc.max_receive_message_length']);
    if (maxReceive >= 0 && maxReceive < MIN_RECEIVE_MESSAGE_BYTES) {
      throw new RangeError(`grpc.max_receive_message_length must be at least ${MIN_RECEIVE_MESSAGE_BYTES} (or -1), got ${maxReceive}: the daemon packs Session answers into messages of up to 60 KiB`);
    }
    this.options = options;
    this.path = socketPath;
    this.current = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), options);
    this.connection = new ConnectionWatch(this.current.getChannel());
  }

  /** The socket calls go to now. */
  get socketPath(): string {
    return this.path;
  }

  get client(): grpc.Client {
    return this.current;
  }

  close(): void {
    this.closed = true;
    this.current.close();
  }

  /**
   * The channel a new call goes on. A client given no socket chose among the candidates when it was
   * made; one that chose the user's own socket because neither existed (a service started before the
   * system daemon, or during a socket restart) kept it for good and never found the system daemon
   * (review by helper-211). So while the channel is not connected (never on a working connection's
   * calls), a chosen socket that is gone gives way to the first candidate that exists; streams on
   * the old channel run on (its close() is graceful), and calls still waiting for it to connect fail
   * "Channel closed before call started", having sent nothing (unsent(), and unary calls go again).
   */
  private channel(): grpc.Client {
    if (this.candidates.length < 2 || this.closed) return this.current;
    if (this.current.getChannel().getConnectivityState(false) === grpc.connectivityState.READY || this.exists(this.path)) return this.current;
    const next = this.candidates.find((path) => path !== this.path && this.exists(path));
    if (next === undefined) return this.current;
    const old = this.current;
    this.path = next;
    this.current = new grpc.Client(`unix:${next}`, grpc.credentials.createInsecure(), this.options);
    this.connection.moveTo(this.current.getChannel());
    old.close();
    return this.current;
  }

  /** A call that waited on a channel this transport has since moved off (see #channel): it was not sent. */
  private movedUnder(err: unknown, client: grpc.Client): boolean {
    return !this.closed && client !== this.current && isServiceError(err) && isClosedBeforeStart(err);
  }

  /** After close(), grpc-js throws a plain Error ("Channel has been shut down"); callers get this instead. */
  private refuseIfClosed(rpc: string): void {
    if (this.closed) throw closedError(rpc);
  }

  /**
   * Whether a call failed, unsent, because the client was closed under it: refused by the daemon
   * and not sent again (found by review), or made before close() while the channel still waited for
   * its first connection (grpc-js's UNAVAILABLE "Channel closed before call started", though the
   * daemon may well be reachable; review by helper-144). Such a call fails as calls after close() do.
   */
  private closedUnder(err: unknown): boolean {
    return this.closed && isServiceError(err) && (isRefusedStream(err) || isClosedBeforeStart(err));
  }

  unary<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, init: MessageInitShape<I>, opts: CallOptions = {}): Promise<MessageShape<O>> {
    const def = definitionOf(method);
    const rpc = def.path.slice(1);
    const { signal } = opts;
    if (this.closed) return Promise.reject(closedError(rpc));
    if (signal?.aborted) return Promise.reject(toRingfenceError(undefined, { rpc, socketPath: this.socketPath, aborted: true, abortReason: signal.reason }));
    const request = create(method.input, init);
    // One deadline for every attempt.
    let deadline: { wire: Date | number; local?: Date };
    try {
      deadline = wireDeadline(callDeadline(opts, this.defaultTimeoutMs));
    } catch (err) {
      return Promise.reject(err);
    }
    // Serialized here, once: every attempt sends these bytes. Re-encoding `request` for a replay
    // read the caller's buffers after the call was made, and a caller that wiped its key material
    // (as importKey asks) had zeros imported (review by helper-144). grpc-js copies them into its
    // own framed message, so they are never changed.
    let bytes: Buffer;
    try {
      bytes = def.requestSerialize(request);
    } catch (err) {
      // As grpc-js reported it when it serialized.
      return Promise.reject(new RingfenceError({ code: grpc.status.INTERNAL, message: `Request message serialization failure: ${err instanceof Error ? err.message : String(err)}`, rpc, cause: err }));
    }
    const attempt = (refusalsLeft: number): Promise<MessageShape<O>> =>
      new Promise((resolve, reject) => {
        let release = () => {};
        let stopTimer = () => {};
        let timedOut = false;
        const client = this.channel();
        const socketPath = this.path;
        const call = client.makeUnaryRequest(def.path, sameBytes, def.responseDeserialize, bytes, new grpc.Metadata(), { deadline: deadline.wire }, (err, response) => {
          release();
          stopTimer();
          if (err && timedOut) reject(new RingfenceError({ code: grpc.status.DEADLINE_EXCEEDED, message: 'deadline exceeded', rpc }));
          // Not retried after close(): grpc-js would throw a plain Error on the shut-down channel.
          else if (err && this.closedUnder(err)) reject(closedError(rpc));
          else if (err && refusalsLeft > 0 && !signal?.aborted && (isRefusedStream(err) || this.movedUnder(err, client))) resolve(attempt(refusalsLeft - 1));
          else if (err && this.movedUnder(err, client)) reject(movedError(rpc, socketPath, this.path, err));
          else if (err || !response) reject(toRingfenceError(err, { rpc, socketPath, aborted: signal?.aborted, abortReason: signal?.reason }));
          else resolve(response as MessageShape<O>);
        });
        release = onAbort(signal, () => call.cancel());
        if (deadline.local) stopTimer = setTimeoutAt(() => ((timedOut = true), call.cancel()), deadline.local.getTime());
      });
    return attempt(MAX_REFUSED_RETRIES);
  }

  /** Streams have no default timeout (a 20 GiB stream may run for minutes): only what opts say. */
  bidi<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    opts: CallOptions = {},
  ): StreamCall<grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>>> {
    const def = definitionOf(method);
    this.refuseIfClosed(def.path.slice(1));
    const deadline = wireDeadline(callDeadline(opts));
    const client = this.channel();
    const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, new grpc.Metadata(), {
      deadline: deadline.wire,
    }) as unknown as grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>>;
    return this.wire(call, client, def.path.slice(1), opts.signal, deadline.local);
  }

  clientStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodClientStreaming<I, O>,
    opts: CallOptions,
    callback: (err: RingfenceError | undefined, response: MessageShape<O> | undefined) => void,
  ): StreamCall<grpc.ClientWritableStream<MessageShape<I>>> {
    const def = definitionOf(method);
    this.refuseIfClosed(def.path.slice(1));
    // Refused as unary calls are: no call for the daemon to see, none for grpc-js to hold (a
    // client stream cancelled before it started kept the process alive; review by helper-213).
    if (opts.signal?.aborted) throw toRingfenceError(undefined, { rpc: def.path.slice(1), socketPath: this.socketPath, aborted: true, abortReason: opts.signal.reason });
    let wired: StreamCall<grpc.ClientWritableStream<MessageShape<I>>> | undefined;
    const deadline = wireDeadline(callDeadline(opts));
    const client = this.channel();
    const socketPath = this.path;
    const call = client.makeClientStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      new grpc.Metadata(),
      { deadline: deadline.wire },
      (err, response) => {
        wired?.release();
        if (err || !response) callback(wired?.toError(err) ?? toRingfenceError(err, { socketPath }), undefined);
        else callback(undefined, response as MessageShape<O>);
      },
    ) as unknown as grpc.ClientWritableStream<MessageShape<I>>;
    wired = this.wire(call, client, def.path.slice(1), opts.signal, deadline.local);
    return wired;
  }

  /** `localDeadline`: one the daemon could not be sent (wireDeadline), kept here by cancelling. */
  private wire<C extends { cancel(): void }>(call: C, client: grpc.Client, rpc: string, signal: AbortSignal | undefined, localDeadline?: Date): StreamCall<C> {
    const socketPath = this.path;
    const unlisten = onAbort(signal, () => call.cancel());
    let timedOut = false;
    const stopTimer = localDeadline ? setTimeoutAt(() => ((timedOut = true), call.cancel()), localDeadline.getTime()) : () => {};
    return {
      call,
      rpc,
      release: () => {
        unlisten();
        stopTimer();
      },
      unsent: (err) => isServiceError(err) && (isRefusedStream(err) || this.movedUnder(err, client)),
      toError: (err) =>
        timedOut
          ? new RingfenceError({ code: grpc.status.DEADLINE_EXCEEDED, message: 'deadline exceeded', rpc })
          : this.closedUnder(err)
            ? closedError(rpc)
            : this.movedUnder(err, client)
              ? movedError(rpc, socketPath, this.path, err)
              : toRingfenceError(err, { rpc, socketPath, aborted: signal?.aborted, abortReason: signal?.reason }),
    };
  }
}

function movedError(rpc: string, from: string, to: string, cause: unknown): RingfenceError {
  return new RingfenceError({ code: grpc.status.UNAVAILABLE, message: `the call waited to connect to ${from}, whose socket is gone; it was not sent: send it again (this client now uses ${to})`, rpc, unreachable: true, cause });
}

function closedError(rpc: string): RingfenceError {
  return new RingfenceError({ code: grpc.status.CANCELLED, message: 'the client is closed', rpc });
}
