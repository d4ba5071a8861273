/**
 * Calls of one kind that each caller (uid) may have open at once, and optionally all callers
 * together. For calls that hold a scarce daemon resource for their whole life: a HashStream holds a
 * kernel socket, and the daemon opens at most 256, so without this one caller's idle streams could
 * take them all (Limits.maxHashStreamsPerCaller); any call may hold a request message grpc-js reads
 * before its handler runs (Limits.maxCallsPerCaller, maxCalls; api/call-limit.ts).
 */
import { ApiError, ErrorReason, Status } from './errors.js';

/** A daemon-wide cap on the slots of all callers together. */
export interface WholeLimit {
  limit: number;
  /** The error metadata's `limit`. */
  limitName: string;
  /** The config key an operator would raise. */
  setting: string;
}

export class CallerSlots {
  private readonly open = new Map<string, number>();
  private held = 0;

  /**
   * `what` names the calls in errors ("HashStream calls"), `limitName` is the error metadata's
   * `limit`, `setting` the config key an operator would raise.
   */
  constructor(
    readonly perCaller: number,
    private readonly what: string,
    private readonly limitName: string,
    private readonly setting: string,
    private readonly whole?: WholeLimit,
  ) {}

  /** Takes a slot for `caller`, or throws RESOURCE_EXHAUSTED (DAEMON_BUSY). Returns its release (idempotent). */
  acquire(caller: string): () => void {
    const n = this.open.get(caller) ?? 0;
    // The caller's own limit first: when both are reached, that is the one it can do something about.
    if (n >= this.perCaller) {
      const who = caller ? caller.replace(':', ' ') : 'this caller';
      throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, `${who} already has ${n} ${this.what} open, its limit (${this.setting}); finish one or retry later`, { limit: this.limitName });
    }
    if (this.whole && this.held >= this.whole.limit) {
      throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, `the daemon already has ${this.held} ${this.what} open, its limit (${this.whole.setting}); retry later`, { limit: this.whole.limitName });
    }
    this.open.set(caller, n + 1);
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
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
    return this.held;
  }
}
