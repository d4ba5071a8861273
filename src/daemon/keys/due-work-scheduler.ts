/**
 * Runs the key manager's due work (scheduled rotations and deletions, also those that came due while
 * the daemon was down): once at start, then whenever something is due, checking at least every
 * `maxSleepMs` (the clock may jump). A failure (a full disk, the kernel's key quota) is logged and
 * retried with a backoff: it must neither stop the daemon from serving the other keys nor turn into a
 * loop that logs every few milliseconds while the work stays due.
 */
export interface DueWork {
  runDueWork(): Promise<unknown>;
  /** The earliest time (ms since the epoch) there is something to do, or null. */
  nextDueTime(): number | null;
}

export interface SchedulerOptions {
  onError: (err: unknown, retryInMs: number) => void;
  maxSleepMs?: number;
  firstRetryMs?: number;
  maxRetryMs?: number;
  now?: () => number;
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
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let retryMs = 0;

  const run = async () => {
    try {
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
