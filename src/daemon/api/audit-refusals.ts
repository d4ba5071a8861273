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
  /** Writes the groups counted so far, and every line as it comes from then on (the daemon's stop). */
  flush(): void;
}

export function refusalBudget(audit: Audit, now: () => number = Date.now, perSecond = PER_SECOND): RefusalBudget {
  const windows = new Map<string, { start: number; written: number }>();
  let groups = new Map<string, Group>();
  /** Groups each caller has until the next flush: the key is the client's text, so they are capped too. */
  let groupsOf = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const due = groups;
    groups = new Map();
    groupsOf = new Map();
    const t = now();
    for (const [caller, w] of windows) if (t - w.start >= 1000) windows.delete(caller);
    for (const g of due.values()) {
      audit({ ...g.entry, bytesIn: g.bytesIn, bytesOut: g.bytesOut, durationMs: +g.durationMs.toFixed(3), suppressed: g.suppressed });
    }
  };

  const suppress = (caller: string, entry: AuditEntry) => {
    // pid and exe differ from call to call of one caller; the group keeps the first's.
    // keyId too: refusals about different keys known by id only were one group, named by the first's.
    let id = JSON.stringify([caller, entry.rpc, entry.key, entry.keyId, entry.version, entry.outcome, entry.reason]);
    let g = groups.get(id);
    // A new key name per refusal made a group, and a line, each (review by helper-154): past
    // perSecond groups, a caller's refusals are counted without their key.
    if (!g && (groupsOf.get(caller) ?? 0) >= perSecond) {
      entry = { ...entry, key: undefined, version: undefined, keyId: undefined, manyKeys: true }; // keyId: a ciphertext's unknown key
      id = JSON.stringify([caller, entry.rpc, '*', entry.outcome, entry.reason]);
      g = groups.get(id);
    }
    if (g) {
      g.suppressed++;
      g.bytesIn += entry.bytesIn;
      g.bytesOut += entry.bytesOut;
      g.durationMs += entry.durationMs;
    } else {
      groups.set(id, { entry, suppressed: 1, bytesIn: entry.bytesIn, bytesOut: entry.bytesOut, durationMs: entry.durationMs });
      groupsOf.set(caller, (groupsOf.get(caller) ?? 0) + 1);
    }
    // Written when the second is over, also if that caller sends nothing more.
    timer ??= setTimeout(flush, 1000).unref();
  };

  return {
    audit(entry) {
      // After the stop's flush every line is written as it comes: a group made then would be lost
      // at exit (its timer does not hold the process; review by helper-154).
      if (entry.outcome === 'OK' || stopped) return audit(entry);
      const caller = entry.principal === undefined ? 'unidentified' : String(entry.principal.uid);
      const t = now();
      let w = windows.get(caller);
      if (!w || t - w.start >= 1000) windows.set(caller, (w = { start: t, written: 0 }));
      if (w.written >= perSecond) return suppress(caller, entry);
      w.written++;
      audit(entry);
    },
    flush: () => {
      stopped = true;
      flush();
    },
  };
}
