/**
 * How a call ended, as far as the client is concerned. grpc-js reports every end of a call as
 * 'cancelled' (also after the daemon's own status went out), and a grpc-js client's cancel sends
 * END_STREAM and then, a moment later, RST_STREAM: a half-closed stream may yet be a cancel. Only
 * the HTTP/2 stream's close tells: its rstCode is NO_ERROR (0) when the daemon's status went out
 * first, anything else when the client (or its connection) reset the stream before.
 */
import type * as grpc from '@grpc/grpc-js';
import type { EventEmitter } from 'node:events';

/**
 * Why a call ended before its handler answered, as a gRPC status name: CANCELLED or
 * DEADLINE_EXCEEDED, or a status grpc-js sent itself (RESOURCE_EXHAUSTED for a message over
 * maxMessageBytes), which is what the client was told.
 */
export type GoneReason = string;

/** What a handler's destroy of a gone call says (never seen by the client, which is gone). */
export function goneMessage(why: GoneReason, what: string): string {
  if (why === 'CANCELLED') return `the client cancelled the ${what}`;
  if (why === 'DEADLINE_EXCEEDED') return 'the deadline passed';
  return `grpc-js ended the ${what} with ${why}`;
}

/**
 * How long a half-closed call's audit line waits for its stream to close: a grpc-js client's reset
 * follows its half-close within milliseconds, and a client that holds the connection without
 * reading must not hold the line back for as long as it likes.
 */
export const AUDIT_WAIT_MS = 1000;

const DEADLINE_SLACK_MS = 10;

/**
 * Why a call the client no longer waits for ended: its deadline passed, or it cancelled. A timer
 * (grpc-js's deadline timer among them) may fire a millisecond before Date.now() reaches the time it
 * was set for, so an end within DEADLINE_SLACK_MS of the deadline counts as the deadline.
 */
export function goneReason(call: { getDeadline(): grpc.Deadline }): GoneReason {
  const d = call.getDeadline();
  const deadline = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(deadline) && Date.now() >= deadline - DEADLINE_SLACK_MS ? 'DEADLINE_EXCEEDED' : 'CANCELLED';
}

interface Http2StreamLike extends EventEmitter {
  rstCode?: number;
  writableLength: number;
  closed: boolean;
  destroyed: boolean;
  writableEnded: boolean;
  sentHeaders?: Record<string, unknown>;
  sentTrailers?: Record<string, unknown>;
  close(code?: number): void;
  resume(): unknown;
}

/**
 * Runs `then(code)` with the status code grpc-js sent on a call's stream when it is not OK, else
 * `then(undefined)`. grpc-js sends one itself for a message over the size limit and reports the
 * call cancelled, as it reports every end; its trailers wait behind answers not yet flushed, so a
 * stream it has ended but not yet closed is waited for (at most AUDIT_WAIT_MS).
 */
export function afterStatusSent(call: object, then: (code: number | undefined) => void): void {
  const stream = http2StreamOf(call);
  const sent = () => {
    const code = statusSent(call);
    return code !== undefined && code !== 0 ? code : undefined;
  };
  // Sent already (trailers, or a headers-only answer), or not a stream grpc-js ended to send one.
  if (!stream || sent() !== undefined || !stream.writableEnded || stream.sentTrailers || stream.closed || stream.destroyed) return then(sent());
  const settle = () => {
    clearTimeout(bound);
    stream.off('close', settle);
    then(sent());
  };
  const bound = setTimeout(settle, AUDIT_WAIT_MS);
  stream.once('close', settle);
}

/** The status code grpc-js has sent on a call's stream (0 for OK), or undefined while it has sent none. */
export function statusSent(call: object): number | undefined {
  const stream = http2StreamOf(call);
  const code = Number(stream?.sentTrailers?.['grpc-status'] ?? stream?.sentHeaders?.['grpc-status']);
  return Number.isInteger(code) ? code : undefined;
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js keeps it private (call.call.stream, behind
 * any interceptors' nextCall); undefined when not found, and callers then behave as before.
 * whenHalfClosedEnds' tests fail if a grpc-js upgrade moves it.
 */
export function http2StreamOf(call: object): Http2StreamLike | undefined {
  let c: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && c && typeof c === 'object'; depth++) {
    const s = (c as { stream?: unknown }).stream;
    if (s && typeof s === 'object' && 'rstCode' in s && typeof (s as { once?: unknown }).once === 'function') return s as Http2StreamLike;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * Runs `ended(gone)` once a call the client half-closed is over: `gone` is undefined when the
 * daemon's status went out before the stream closed, else why the client did not get it. After
 * AUDIT_WAIT_MS without a close (a client that does not read), `gone` is undefined: as answered.
 * A call not half-closed, or whose stream cannot be found, runs `ended(undefined)` at once: once the
 * daemon's status is sent on a stream the client still has open, a reset no longer tells whether the
 * client got it (gRPC clients reset such a stream after reading the status too).
 */
export function whenHalfClosedEnds(call: { readableEnded: boolean; getDeadline(): grpc.Deadline }, ended: (gone: GoneReason | undefined) => void): void {
  const stream = call.readableEnded ? http2StreamOf(call) : undefined;
  if (!stream) return ended(undefined);
  let done = false;
  const settle = (waited: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(bound);
    stream.off('close', onClose);
    // Closed with answer bytes still unwritten: the connection went (a server-side session destroy
    // closes with NO_ERROR), and the client did not get the status either.
    ended(!waited && (stream.rstCode || stream.writableLength > 0) ? goneReason(call) : undefined);
  };
  const onClose = () => settle(false);
  const bound = setTimeout(() => settle(true), AUDIT_WAIT_MS);
  if (stream.closed || stream.destroyed) settle(false);
  else stream.once('close', onClose);
}
