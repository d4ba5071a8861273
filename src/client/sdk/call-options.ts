/** Per-call options every SDK method takes last: cancellation and deadlines. */

export interface CallOptions {
  /** Aborting cancels the RPC (the daemon sees the cancellation); the call rejects with CANCELLED. */
  signal?: AbortSignal;
  /**
   * Fail with DEADLINE_EXCEEDED after this many milliseconds. Overrides the client's
   * defaultTimeoutMs; 0 or Infinity means no timeout. With `deadline` too, the earlier one wins.
   */
  timeoutMs?: number;
  /** Fail with DEADLINE_EXCEEDED at this time. */
  deadline?: Date;
}

/** The grpc deadline for a call, or undefined for none. */
export function callDeadline(opts: CallOptions | undefined, defaultTimeoutMs?: number): Date | undefined {
  // A NaN or negative one would silently mean "no timeout at all" (found by review).
  if (opts?.timeoutMs !== undefined && !(opts.timeoutMs >= 0)) throw new RangeError(`timeoutMs must be 0 (none) or a positive number of milliseconds, got ${opts.timeoutMs}`);
  if (opts?.deadline !== undefined && Number.isNaN(opts.deadline.getTime())) throw new RangeError('deadline is an invalid Date');
  let at = opts?.deadline?.getTime() ?? Infinity;
  // An explicit deadline replaces the default timeout rather than racing it.
  const timeout = opts?.timeoutMs ?? (opts?.deadline ? undefined : defaultTimeoutMs);
  if (timeout !== undefined && timeout > 0 && Number.isFinite(timeout)) at = Math.min(at, Date.now() + timeout);
  return Number.isFinite(at) ? new Date(at) : undefined;
}

/**
 * One 'abort' listener per signal, whatever the number of calls waiting on it: a signal shared by
 * more than 10 calls in flight otherwise printed Node's MaxListenersExceededWarning ("possible
 * memory leak"), though every listener was released.
 */
const waitingOn = new WeakMap<AbortSignal, { fns: Set<() => void>; fire: () => void }>();

/** Runs `fn` once when `signal` aborts (at once if it already has); returns the un-registration. */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    queueMicrotask(fn);
    return () => {};
  }
  let entry = waitingOn.get(signal);
  if (!entry) {
    const fns = new Set<() => void>();
    const fire = () => {
      waitingOn.delete(signal);
      for (const f of [...fns]) {
        try {
          f();
        } catch (err) {
          queueMicrotask(() => {
            throw err; // reported as a listener's own throw would be, and the others still run
          });
        }
      }
    };
    entry = { fns, fire };
    waitingOn.set(signal, entry);
    signal.addEventListener('abort', fire, { once: true });
  }
  const { fns, fire } = entry;
  // Each registration its own: un-registering one leaves another of the same function.
  const once = () => fn();
  fns.add(once);
  return () => {
    fns.delete(once);
    if (fns.size === 0 && waitingOn.get(signal) === entry) {
      signal.removeEventListener('abort', fire);
      waitingOn.delete(signal);
    }
  };
}
