/**
 * Calls of one kind that each caller (uid) may have open at once, for calls that hold a scarce
 * daemon-wide resource for their whole life: a HashStream holds a kernel socket, and the daemon
 * opens at most 256, so without this one caller's idle streams could take them all
 * (Limits.maxHashStreamsPerCaller).
 */
import { ApiError, ErrorReason, Status } from './errors.js';

export class CallerSlots {
  private readonly open = new Map<string, number>();

  /**
   * `what` names the calls in errors ("HashStream calls"), `limitName` is the error metadata's
   * `limit`, `setting` the config key an operator would raise.
   */
  constructor(
    readonly perCaller: number,
    private readonly what: string,
    private readonly limitName: string,
    private readonly setting: string,
  ) {}

  /** Takes a slot for `caller`, or throws RESOURCE_EXHAUSTED (DAEMON_BUSY). Returns its release (idempotent). */
  acquire(caller: string): () => void {
    const n = this.open.get(caller) ?? 0;
    if (n >= this.perCaller) {
      const who = caller ? caller.replace(':', ' ') : 'this caller';
      throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, `${who} already has ${n} ${this.what} open, its limit (${this.setting}); finish one or retry later`, { limit: this.limitName });
    }
    this.open.set(caller, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(caller) ?? 1) - 1;
      if (left > 0) this.open.set(caller, left);
      else this.open.delete(caller);
    };
  }

  heldBy(caller: string): number {
    return this.open.get(caller) ?? 0;
  }

  /** Slots held by all callers. */
  get total(): number {
    let n = 0;
    for (const v of this.open.values()) n += v;
    return n;
  }
}
