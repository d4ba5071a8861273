/**
 * When each key's failed scheduled work (a rotation or deletion that could not be written, the
 * kernel's key quota) is tried again: a backoff per key, so one key's failure neither holds up the
 * other keys' work nor turns into a loop that logs every few milliseconds while it stays due.
 * Kept in memory only: a restart tries everything again at once. A retry is for one kind of work:
 * a key whose rotation kept failing and is then scheduled for deletion gets its deletion done when
 * due, not after the rotation's backoff (found by review).
 *
 * Times are wall-clock readings (the key manager's clock), and the wall clock may step back: a retry
 * further away than its own delay is taken as due, so a step back never holds a key's work up by more.
 */
export interface RetryDelays {
  firstMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY_DELAYS: RetryDelays = { firstMs: 1000, maxMs: 5 * 60_000 };

export type DueWorkKind = 'rotation' | 'deletion';

export class KeyRetries {
  private readonly byId = new Map<string, { kind: DueWorkKind; at: number; delayMs: number }>();

  constructor(private readonly delays: RetryDelays = DEFAULT_RETRY_DELAYS) {}

  /** The key's work failed at `now`: returns how long it now waits (doubling from firstMs up to maxMs). */
  failed(id: string, kind: DueWorkKind, now: number): number {
    const last = this.byId.get(id);
    const delayMs = last?.kind !== kind ? this.delays.firstMs : Math.min(last.delayMs * 2, this.delays.maxMs);
    this.byId.set(id, { kind, at: now + delayMs, delayMs });
    return delayMs;
  }

  /** The key's work succeeded, or it had none: its next failure starts the backoff afresh. */
  succeeded(id: string): void {
    this.byId.delete(id);
  }

  /** When the key's work of this kind may be tried again, or null if it is not waiting. */
  retryTime(id: string, kind: DueWorkKind, now: number): number | null {
    const retry = this.byId.get(id);
    if (!retry || retry.kind !== kind || retry.at <= now || retry.at - now > retry.delayMs) return null;
    return retry.at;
  }
}
