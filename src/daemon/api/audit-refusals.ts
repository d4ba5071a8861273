/**
 * Audit lines of refused operations, at most PER_SECOND a second per caller (by uid; unidentified
 * callers count as one). A client can have itself refused as fast as it sends: one Session message
 * carries a thousand operations, and a review (helper-150) had the daemon write 38,000 lines a
 * second for a uid without access, which buried every other caller's lines (and journald, at its
 * default of 10,000 lines per 30 s per unit, then dropped all of the daemon's). Lines over the
 * budget are not lost without trace: they are counted by rpc, key, outcome and reason, and each such
 * group is written as one line with `suppressed: N` when the second is over. Operations that
 * succeeded are always written, one line each: each is work the daemon did for the caller.
 */
import type { Audit, AuditEntry } from './audit.js';

export const PER_SECOND = 100;

interface Group {
  entry: AuditEntry;
  suppressed: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
}

export interface RefusalBudget {
  audit: Audit;
  /** Writes the groups counted so far (at stop: none is left unwritten). */
  flush(): void;
}

export function refusalBudget(audit: Audit, now: () => number = Date.now, perSecond = PER_SECOND): RefusalBudget {
  const windows = new Map<string, { start: number; written: number }>();
  let groups = new Map<string, Group>();
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const due = groups;
    groups = new Map();
    const t = now();
    for (const [caller, w] of windows) if (t - w.start >= 1000) windows.delete(caller);
    for (const g of due.values()) {
      audit({ ...g.entry, bytesIn: g.bytesIn, bytesOut: g.bytesOut, durationMs: +g.durationMs.toFixed(3), suppressed: g.suppressed });
    }
  };

  const suppress = (entry: AuditEntry) => {
    // pid and exe differ from call to call of one caller; the group keeps the first's.
    const id = JSON.stringify([entry.principal?.uid, entry.rpc, entry.key, entry.version, entry.outcome, entry.reason]);
    const g = groups.get(id);
    if (g) {
      g.suppressed++;
      g.bytesIn += entry.bytesIn;
      g.bytesOut += entry.bytesOut;
      g.durationMs += entry.durationMs;
    } else {
      groups.set(id, { entry, suppressed: 1, bytesIn: entry.bytesIn, bytesOut: entry.bytesOut, durationMs: entry.durationMs });
    }
    // Written when the second is over, also if that caller sends nothing more.
    timer ??= setTimeout(flush, 1000).unref();
  };

  return {
    audit(entry) {
      if (entry.outcome === 'OK') return audit(entry);
      const caller = entry.principal === undefined ? 'unidentified' : String(entry.principal.uid);
      const t = now();
      let w = windows.get(caller);
      if (!w || t - w.start >= 1000) windows.set(caller, (w = { start: t, written: 0 }));
      if (w.written >= perSecond) return suppress(entry);
      w.written++;
      audit(entry);
    },
    flush,
  };
}
