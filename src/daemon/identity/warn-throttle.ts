/**
 * Counts refusals (connections closed at accept) and warns about them at most once per interval, so
 * that a flood of clients cannot flood the log; each warning says how many were refused since the
 * last one and in all.
 */
export interface RefusalCounter {
  /** One more refusal; `fields` describe the latest (they go into the warning, if one is due). */
  count(fields?: Record<string, unknown>): void;
  readonly total: number;
}

export function throttledRefusals(intervalMs: number, warn: (fields: Record<string, unknown>) => void, now: () => number = Date.now): RefusalCounter {
  let total = 0;
  let since = 0;
  let last = -Infinity;
  return {
    count(fields = {}) {
      total++;
      since++;
      const t = now();
      if (t - last < intervalMs) return;
      warn({ ...fields, closed: since, closedTotal: total });
      last = t;
      since = 0;
    },
    get total() {
      return total;
    },
  };
}
