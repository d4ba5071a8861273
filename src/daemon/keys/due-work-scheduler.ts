/**
 * Runs the key manager's due work (scheduled rotations and deletions, also those that came due while
 * the daemon was down): once at start, then whenever something is due, checking at least every
 * `maxSleepMs` (the clock may jump). A failure (a full disk, the kernel's key quota) is logged and
 * retried with a backoff: it must neither stop the daemon from serving the other keys nor turn into a
 * loop that logs every few milliseconds while the work stays due.
 *
 * Due times are wall-clock times (they must survive restarts), so a forward step of the clock would
 * bring deletions due early, and a deletion cannot be undone. While the daemon runs, a step shows
 * as the wall clock advancing more than the monotonic one between two runs; deletions are then
 * postponed by the step before any due work runs, so each still waits its period of real time.
 * A step while the daemon is down cannot be told from the downtime itself.
 */
import { performance } from 'node:perf_hooks';

export interface DueWork {
  runDueWork(): Promise<unknown>;
  /** The earliest time (ms since the epoch) there is something to do, or null. */
  nextDueTime(): number | null;
  /** The wall clock stepped forward by `stepMs`: postpone what must not come due early. */
  clockSteppedForward?(stepMs: number): Promise<unknown>;
}

export interface SchedulerOptions {
  onError: (err: unknown, retryInMs: number) => void;
  maxSleepMs?: number;
  firstRetryMs?: number;
  maxRetryMs?: number;
  now?: () => number;
  /** Milliseconds on a clock that never steps (default performance.now: CLOCK_MONOTONIC). */
  monotonic?: () => number;
  /** Forward steps up to this much are ignored (NTP's small corrections): default 1 minute. */
  clockStepToleranceMs?: number;
  /** Told of each forward step before deletions are postponed by it. */
  onClockStep?: (stepMs: number) => void;
}

export interface DueWorkScheduler {
  /** Settles once the first run (at start) has finished, successfully or not. */
  readonly started: Promise<void>;
  stop(): void;
}

export function startDueWorkScheduler(work: DueWork, opts: SchedulerOptions): DueWorkScheduler {
  const maxSleep = opts.maxSleepMs ?? 1000;
  const firstRetry = opts.firstRetryMs ?? 1000;
  const maxRetry = opts.maxRetryMs ?? 5 * 60_000;
  const now = opts.now ?? Date.now;
  const monotonic = opts.monotonic ?? (() => performance.now());
  const tolerance = opts.clockStepToleranceMs ?? 60_000;
  // Both clocks at the last run whose clock check succeeded.
  let last: { wall: number; mono: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let retryMs = 0;

  const run = async () => {
    try {
      const clocks = { wall: now(), mono: monotonic() };
      const step = last ? clocks.wall - last.wall - (clocks.mono - last.mono) : 0;
      if (step > tolerance && work.clockSteppedForward) {
        opts.onClockStep?.(step);
        // If this fails, nothing runs and the next run sees the same step again.
        await work.clockSteppedForward(step);
      }
      last = clocks;
      await work.runDueWork();
      retryMs = 0;
    } catch (err) {
      retryMs = retryMs === 0 ? firstRetry : Math.min(retryMs * 2, maxRetry);
      opts.onError(err, retryMs);
    }
  };
  const schedule = () => {
    if (stopped) return;
    const next = work.nextDueTime();
    const untilDue = next === null ? maxSleep : Math.min(Math.max(next - now(), 0), maxSleep);
    // After a failure the work is still due: wait out the backoff, not just the next tick.
    const wait = Math.max(untilDue, retryMs);
    timer = setTimeout(() => void run().finally(schedule), wait + 5);
    timer.unref();
  };
  const started = run().finally(schedule);
  return {
    started,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
