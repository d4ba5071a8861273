/** Per-call options every SDK method takes last: cancellation and deadlines. */
import { types } from 'node:util';

export interface CallOptions {
  /** Aborting cancels the RPC (the daemon sees the cancellation); the call rejects with CANCELLED.
   * An AbortSignal (`controller.signal`): anything else is a TypeError, before the RPC starts. */
  signal?: AbortSignal;
  /**
   * Fail with DEADLINE_EXCEEDED after this many milliseconds. Overrides the client's
   * defaultTimeoutMs; 0 or Infinity (or anything over ~317 years) means no timeout. With
   * `deadline` too, the earlier one wins.
   */
  timeoutMs?: number;
  /** Fail with DEADLINE_EXCEEDED at this time. */
  deadline?: Date;
}

/**
 * Deadlines this far away (about 317 years) are none: gRPC's timeout header holds at most 10^8
 * hours, grpc-js threw "Deadline is too far in the future" where no one could catch it (the call
 * never settled, or the process exited), and a Date past year 275760 is invalid (found by review).
 */
const FAR_FUTURE_MS = 1e13;

/**
 * The longest timeout sent to the daemon, a minute under 2^31 ms (24.8 days): grpc-js servers read
 * the timeout header into a 32-bit integer of ms, so a longer one wrapped and failed the call at
 * once (found by review). A later deadline is kept by the SDK itself (wireDeadline).
 */
export const MAX_WIRE_TIMEOUT_MS = 2 ** 31 - 1 - 60_000;

/**
 * The deadline to send (Infinity: none), and the one the SDK must enforce itself because the
 * daemon could not read it (undefined when the sent one does).
 */
export function wireDeadline(deadline: Date | undefined): { wire: Date | number; local?: Date } {
  if (!deadline) return { wire: Infinity };
  return deadline.getTime() - Date.now() > MAX_WIRE_TIMEOUT_MS ? { wire: Infinity, local: deadline } : { wire: deadline };
}

/** Throws a RangeError unless `ms` is 0 (no timeout) or a positive number of milliseconds (a TypeError if not a number). */
export function checkTimeout(field: string, ms: number | undefined): void {
  if (ms === undefined || ms === null) return;
  // A string (read from an environment variable, say) slipped through `>= 0` and then made
  // `now + ms` a string: the call silently had no timeout at all (review by helper-208).
  if (typeof ms !== 'number') throw new TypeError(`${field} must be a number of milliseconds, got ${Object.prototype.toString.call(ms)}`);
  // A NaN or negative one would silently mean "no timeout at all" (found by review).
  if (!(ms >= 0)) throw new RangeError(`${field} must be 0 (none) or a positive number of milliseconds, got ${ms}`);
}

/**
 * Throws a TypeError unless `signal` is an AbortSignal (or unset). Anything else (the
 * AbortController itself, a common slip) threw only once the RPC was under way: the caller got a
 * TypeError while the daemon did the operation (a key created or rotated), and a stream's RPC was
 * left open for good, holding the process alive (review by helper-208).
 */
export function checkSignal(signal: unknown): void {
  if (signal === undefined || signal === null) return;
  const s = signal as Partial<AbortSignal>;
  if (typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function' || typeof s.removeEventListener !== 'function') {
    throw new TypeError(`signal must be an AbortSignal (controller.signal, not the AbortController), got ${Object.prototype.toString.call(signal)}`);
  }
}

/** The grpc deadline for a call, or undefined for none. Checks the call's options first, signal included. */
export function callDeadline(opts: CallOptions | undefined, defaultTimeoutMs?: number): Date | undefined {
  checkSignal(opts?.signal);
  checkTimeout('timeoutMs', opts?.timeoutMs);
  const given: unknown = opts?.deadline;
  if (given !== undefined && given !== null && !types.isDate(given)) throw new TypeError(`deadline must be a Date, got ${Object.prototype.toString.call(given)}`);
  if (types.isDate(given) && Number.isNaN(given.getTime())) throw new RangeError('deadline is an invalid Date');
  let at = opts?.deadline?.getTime() ?? Infinity;
  // An explicit deadline replaces the default timeout rather than racing it.
  const timeout = opts?.timeoutMs ?? (opts?.deadline ? undefined : defaultTimeoutMs);
  const now = Date.now();
  if (timeout !== undefined && timeout > 0 && timeout < FAR_FUTURE_MS) at = Math.min(at, now + timeout);
  return at - now < FAR_FUTURE_MS ? new Date(at) : undefined;
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
