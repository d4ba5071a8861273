/**
 * The daemon's stop, as calls see it. Unary calls and streams end by themselves; a Session a busy
 * client keeps using never would, so the drain would only end by cutting it off (its operations
 * then CANCELLED, the daemon's drain period spent). Sessions listen here instead: they read nothing
 * more, finish what they have read, and end with UNAVAILABLE / SHUTTING_DOWN, which tells the client
 * that every operation not answered was not done, and can be sent again to the restarted daemon.
 * A unary call still waiting for room in the buffer budget (handler.ts unary) would end only as its
 * client's other calls do: it ends the same way at once, its operation not done.
 *
 * When the drain period ends with calls still open (a long EncryptStream, a HashStream its client
 * keeps open, an operation stuck behind a busy key), each handler answers its own call
 * UNAVAILABLE / SHUTTING_DOWN (`cutOff`), saying what of it was not done, and audits it so; only
 * then are the connections closed (drainServer). Closed at once, a client read the reset as
 * CANCELLED, which retry policies take for the caller having given up (found by review).
 */
import type * as grpc from '@grpc/grpc-js';

/** How long the stop waits for calls in progress before answering them UNAVAILABLE. */
export const DRAIN_MS = 10_000;
/**
 * How long the answers of calls cut off have to reach their clients before the connections are
 * closed (the stop cannot wait on a client that does not read).
 */
export const CUT_OFF_GRACE_MS = 1000;

export class Drain {
  private started = false;
  private ended = false;
  private readonly listeners = new Set<() => void>();
  private readonly cutOffListeners = new Set<() => void>();

  get draining(): boolean {
    return this.started;
  }

  /** Calls `fn` once when the drain starts (at once if it has); returns the un-registration. */
  onStart(fn: () => void): () => void {
    return once(this.started, this.listeners, fn);
  }

  /**
   * Calls `fn` once when the drain period ends with the call still open (at once if it has): the
   * call is then answered UNAVAILABLE / SHUTTING_DOWN. Returns the un-registration, for a call that
   * answered by itself.
   */
  onCutOff(fn: () => void): () => void {
    return once(this.ended, this.cutOffListeners, fn);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    fire(this.listeners);
  }

  /** The drain period is over: every call still registered is answered so. */
  cutOff(): void {
    this.start();
    if (this.ended) return;
    this.ended = true;
    fire(this.cutOffListeners);
  }
}

function once(already: boolean, listeners: Set<() => void>, fn: () => void): () => void {
  if (already) {
    fn();
    return () => {};
  }
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function fire(listeners: Set<() => void>): void {
  const fns = [...listeners];
  listeners.clear();
  for (const fn of fns) fn();
}

export interface DrainTimes {
  /** The drain period (default DRAIN_MS). */
  drainMs?: number;
  /** After the cut-off, before the connections are closed (default CUT_OFF_GRACE_MS). */
  graceMs?: number;
  /** Told when the drain period ended with calls still open. */
  onCutOff?: () => void;
}

/**
 * The server's stop: calls in progress run on (the drain: `drain` starts, grpc-js sends GOAWAY on
 * every connection, so that a stream opened on one from now on is refused unprocessed), for at
 * most `drainMs`; the calls still open then are answered UNAVAILABLE / SHUTTING_DOWN by their
 * handlers (`drain.cutOff()`), and after `graceMs` more the connections still open are closed.
 * Resolves once every connection is closed.
 */
export function drainServer(server: Pick<grpc.Server, 'tryShutdown' | 'forceShutdown'>, drain: Drain, times: DrainTimes = {}): Promise<void> {
  drain.start();
  return new Promise<void>((resolve) => {
    let force: NodeJS.Timeout | undefined;
    const cut = setTimeout(() => {
      times.onCutOff?.();
      drain.cutOff();
      force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, times.graceMs ?? CUT_OFF_GRACE_MS);
    }, times.drainMs ?? DRAIN_MS);
    server.tryShutdown(() => {
      clearTimeout(cut);
      clearTimeout(force);
      resolve();
    });
  });
}
