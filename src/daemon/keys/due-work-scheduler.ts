/**
 * Runs the key manager's due work (scheduled rotations and deletions, also those that came due while
 * the daemon was down): once at start, then whenever something is due, checking at least every
 * `maxSleepMs` (the clock may jump). A failure (a full disk, the kernel's key quota) is logged and
 * retried with a backoff: it must neither stop the daemon from serving the other keys nor turn into a
 * loop that logs every few milliseconds while the work stays due. The work backs off per key
 * (DueWorkFailed, key-retries.ts): one key's failure must not hold up the others' deletions and
 * rotations; the scheduler backs off as a whole only when the run itself fails.
 *
 * Due times are wall-clock times (they must survive restarts), so a forward step of the clock would
 * bring deletions due early, and a deletion cannot be undone. Whatever of the wall clock's gain on
 * the monotonic one (wall-clock-gain.ts) deletions have not yet been postponed by is postponed
 * before any due work runs, once it passes the tolerance: small steps add up, and each deletion
 * still waits its period of real time, less at most the tolerance. A step while the daemon is
 * down cannot be told from the downtime itself.
 */
import { WallClockGain } from './wall-clock-gain.js';

export interface DueWork {
  /**
   * Reads the wall clock once, before its first await, and works from that reading. Rejects with
   * DueWorkFailed when only some of the work failed: the rest is done, and what failed is put off
   * (nextDueTime counts its retry time).
   */
  runDueWork(): Promise<unknown>;
  /** The earliest time (ms since the epoch) there is something to do, or to try again, or null. */
  nextDueTime(): number | null;
  /**
   * The wall clock stepped forward by `stepMs`: postpone what must not come due early. Work that
   * others wait on while it postpones uses `step`: it re-reads the step there (the clock may have
   * stepped again meanwhile) and records what it postponed by in the same critical section, so that
   * nothing waiting on it sees the deletions postponed and the step still pending. If it records
   * nothing, `stepMs` is recorded afterwards.
   */
  clockSteppedForward?(stepMs: number, step: PostponementStep): Promise<unknown>;
}

export interface SchedulerOptions {
  onError: (err: unknown, retryInMs: number) => void;
  maxSleepMs?: number;
  firstRetryMs?: number;
  maxRetryMs?: number;
  now?: () => number;
  /** The clock steps are measured on; share it with whatever schedules deletions (default: one on `now`). */
  clock?: WallClockGain;
  /** How far the wall clock may gain before deletions are postponed (default 1 s): also how early one may come. */
  clockStepToleranceMs?: number;
  /** Told of each forward step deletions are postponed by, as the postponement is recorded. */
  onClockStep?: (stepMs: number) => void;
}

export interface DueWorkScheduler {
  /** Settles once the first run (at start) has finished, successfully or not. */
  readonly started: Promise<void>;
  stop(): void;
}

/** The step as it stands now, and its record once postponed (clockSteppedForward). */
export interface PostponementStep {
  current(): number;
  recordPostponed(ms: number): void;
}

/** Some of a run's work failed and is put off, each part until its own retry time; the rest was done. */
export class DueWorkFailed extends AggregateError {
  /** The soonest any of the failed work is tried again. */
  readonly retryInMs: number;

  constructor(failures: readonly { name: string; err: unknown; retryInMs: number }[]) {
    const what = failures.map((f) => `"${f.name}": ${(f.err as Error)?.message ?? String(f.err)} (retry in ${f.retryInMs} ms)`).join('; ');
    super(failures.map((f) => f.err), `scheduled work failed for ${failures.length} key${failures.length === 1 ? '' : 's'}: ${what}`);
    this.name = 'DueWorkFailed';
    this.retryInMs = Math.min(...failures.map((f) => f.retryInMs));
  }
}

/** How far the wall clock may gain before deletions are postponed, by default: also how early one may come. */
export const CLOCK_STEP_TOLERANCE_MS = 1000;

/**
 * What the scheduler's next run postpones deletions by: the clock's gain not yet postponed, once
 * past the tolerance; as of the wall-clock reading `wall` if given (one reading for a whole judgment).
 */
export function pendingPostponementMs(clock: WallClockGain, toleranceMs = CLOCK_STEP_TOLERANCE_MS, wall?: number): number {
  const gain = clock.unpostponed(wall);
  return gain > toleranceMs ? gain : 0;
}

export function startDueWorkScheduler(work: DueWork, opts: SchedulerOptions): DueWorkScheduler {
  const maxSleep = opts.maxSleepMs ?? 1000;
  const firstRetry = opts.firstRetryMs ?? 1000;
  const maxRetry = opts.maxRetryMs ?? 5 * 60_000;
  const now = opts.now ?? Date.now;
  const clock = opts.clock ?? new WallClockGain(now);
  const tolerance = opts.clockStepToleranceMs ?? CLOCK_STEP_TOLERANCE_MS;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let retryMs = 0;

  const run = async () => {
    try {
      if (work.clockSteppedForward) {
        // Until the step is all postponed: the clock may step again while a postponement is saved.
        for (let step = pendingPostponementMs(clock, tolerance), tries = 0; step > 0; step = pendingPostponementMs(clock, tolerance)) {
          if (++tries > 3) throw new Error('the wall clock keeps stepping forward; scheduled key work waits for it to settle');
          let recorded = false;
          // Told as it is recorded: the work may have read a different step under its lock (found by review).
          const recordPostponed = (ms: number) => {
            if (recorded) return;
            recorded = true;
            if (ms > 0) opts.onClockStep?.(ms);
            clock.postponed(ms);
          };
          // If this fails, nothing runs and the next run sees the same step again.
          await work.clockSteppedForward(step, { current: () => pendingPostponementMs(clock, tolerance), recordPostponed });
          recordPostponed(step);
        }
      }
      // No await since the last check: runDueWork reads the clock before its first await, so no
      // step can come in between.
      await work.runDueWork();
      retryMs = 0;
    } catch (err) {
      if (err instanceof DueWorkFailed) {
        // Put off by the work itself, key by key (nextDueTime says when): the others run on time.
        retryMs = 0;
        opts.onError(err, err.retryInMs);
        return;
      }
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
