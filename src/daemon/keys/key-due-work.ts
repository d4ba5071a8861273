/**
 * The key manager's scheduled work, as the due-work scheduler (due-work-scheduler.ts) runs it:
 * destroying keys whose deletion is due, rotating keys whose rotation period has passed, postponing
 * deletions when the wall clock steps forward, and when the next of these is due. Each change runs
 * under the key manager's lock (key-manager.ts), re-checked there, and is persisted before it
 * takes effect, through the key manager's writes.
 */
import type { AlgStatus } from '../../capabilities/probe.js';
import { atVersionCap } from './key-caps.js';
import { DueWorkFailed, type PostponementStep } from './due-work-scheduler.js';
import type { KeyIndex } from './key-index.js';
import type { KeyPolicyLimits } from './key-policy.js';
import { KeyRetries, type DueWorkKind, type RetryDelays } from './key-retries.js';
import type { Mutex } from './mutex.js';
import { keySuiteRefusal } from './suite-choice.js';
import { type KeyRecord, MAX_TIME_MS, nextRotationTime } from './model.js';

/** A rotation recorded at most this far ahead of the clock is left alone: such a step back delays one rotation by as much. */
const CLOCK_BACK_TOLERANCE_MS = 60_000;
const rotationBase = (r: KeyRecord) => r.rotateTime ?? r.createTime;
const dueWorkKind = (r: KeyRecord): DueWorkKind => (r.state === 'pending_deletion' ? 'deletion' : 'rotation');

/** The key manager's settings KeyDueWork reads (KeyManagerDeps). */
export interface KeyDueWorkDeps {
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn') => void;
  /** How a key's failed scheduled work is retried (key-retries.ts); default 1 s doubling to 5 min. */
  retryDelays?: RetryDelays;
}

/** What KeyDueWork needs of the key manager: its clock, its lock, and the changes it makes under it. */
export interface KeyDueWorkHost {
  now: () => number;
  lock: Mutex;
  /** Writes the state with this change (KeyWrites.persistWith). Under the lock. */
  persistWith(change: { put?: KeyRecord | KeyRecord[]; remove?: KeyRecord }, meta?: { postponingMs?: number }): Promise<void>;
  /** Persists `next` in place of the record with its id, then swaps it in (KeyWrites.replace). Under the lock. */
  replace(next: KeyRecord): Promise<KeyRecord>;
  /** Rotates the key (KeyManager.rotateLocked). Under the lock. */
  rotateLocked(record: KeyRecord, material: Buffer | undefined, why: string): Promise<KeyRecord>;
}

export class KeyDueWork {
  /** Keys whose scheduled work failed, and when it is tried again. */
  private readonly retries: KeyRetries;

  constructor(
    private readonly index: KeyIndex,
    private readonly deps: KeyDueWorkDeps,
    private readonly host: KeyDueWorkHost,
  ) {
    this.retries = new KeyRetries(deps.retryDelays);
  }

  private now(): number {
    return this.host.now();
  }

  /**
   * The wall clock stepped forward by `stepMs` while the daemon ran (due-work-scheduler.ts): every
   * pending deletion moves that much later, so that it still waits its whole period in real time.
   * All in one state write: a crash cannot leave some postponed and others not. Returns the keys
   * postponed. With the scheduler's `stepNow`, the step is read and recorded under the lock (found
   * by review): a cancel waiting on it judges deletions as the scheduler's next run will.
   */
  async postponeDeletions(stepMs: number, stepNow?: PostponementStep): Promise<string[]> {
    return this.host.lock.run(async () => {
      const stepRead = stepNow ? stepNow.current() : stepMs;
      // Whole milliseconds, as every time in the state (the step comes from performance.now()).
      const step = Math.ceil(stepRead);
      const next = !(step > 0)
        ? []
        : [...this.index.named()]
            .filter((r) => r.state === 'pending_deletion' && r.deletionTime !== null)
            .map((r) => ({ ...structuredClone(r), deletionTime: Math.min(r.deletionTime! + step, MAX_TIME_MS), updateTime: this.now() }));
      if (next.length === 0) {
        stepNow?.recordPostponed(Math.max(stepRead, 0));
        return [];
      }
      // The clock anchor written with it must not count this step as still to postpone (found by
      // review: every restart postponed the deletions again).
      await this.host.persistWith({ put: next }, { postponingMs: Math.max(stepRead, 0) });
      for (const record of next) {
        this.index.put(record);
        this.deps.log('the wall clock stepped forward: key deletion postponed by the step', { key_name: record.name, keyId: record.id, stepMs: step, deletionTime: new Date(record.deletionTime!).toISOString() }, 'warn');
      }
      // Under the lock: a cancel waiting on it would otherwise add the step again (found by review).
      stepNow?.recordPostponed(stepRead);
      return next.map((r) => r.name);
    });
  }

  /**
   * Destroys keys whose deletion time has passed, and rotates keys that are due. Returns what it did.
   * A key whose work fails (a full disk, the kernel key quota) is put off on its own backoff, and the
   * run goes on with the others: a deletion further down may be what frees the quota. The failures
   * are then reported together as DueWorkFailed.
   */
  async runDueWork(): Promise<{ deleted: string[]; rotated: string[] }> {
    const deleted: string[] = [];
    const rotated: string[] = [];
    const failed: { name: string; err: unknown; retryInMs: number }[] = [];
    const now = this.now();
    for (const record of [...this.index.named()]) {
      const kind = dueWorkKind(record);
      if (this.retries.retryTime(record.id, kind, now) !== null) continue;
      try {
        await this.dueWorkFor(record, now, deleted, rotated);
        this.retries.succeeded(record.id);
      } catch (err) {
        // From the failure, not the pass's start: a slow failing write must not leave its retry already past.
        failed.push({ name: record.name, err, retryInMs: this.retries.failed(record.id, kind, this.now()) });
      }
    }
    if (failed.length > 0) throw new DueWorkFailed(failed);
    return { deleted, rotated };
  }

  /** Removes a key whose deletion is due from the state, then from the kernel (under the lock). */
  private async destroyLocked(record: KeyRecord): Promise<void> {
    await this.host.persistWith({ remove: record });
    this.index.unindex(record);
    this.deps.log('key deleted after its waiting period', { key_name: record.name, keyId: record.id });
  }

  /** The due work of one key, re-checked under the lock (the key may have changed or gone meanwhile). */
  private async dueWorkFor(record: KeyRecord, now: number, deleted: string[], rotated: string[]): Promise<void> {
    if (record.state === 'pending_deletion' && record.deletionTime !== null && record.deletionTime <= now) {
      await this.host.lock.run(async () => {
        const current = this.index.withId(record.id);
        // The pass's own reading, or an earlier one: a deletion rescheduled while the pass ran must not
        // fall due by a forward clock step the scheduler has not yet postponed deletions by.
        if (current?.state !== 'pending_deletion' || current.deletionTime === null || current.deletionTime > Math.min(now, this.now())) return;
        await this.destroyLocked(current);
        deleted.push(current.name);
      });
      return;
    }
    const due = this.scheduledRotationTime(record);
    if (due === null || record.state === 'pending_deletion') return;
    if (rotationBase(record) > now + CLOCK_BACK_TOLERANCE_MS) return this.rebaseRotation(record);
    if (due > now) return;
    await this.host.lock.run(async () => {
      const current = this.index.withId(record.id);
      if (!current || current.state === 'pending_deletion') return;
      const stillDue = nextRotationTime(current, this.deps.limits.minRotationPeriodMs);
      if (stillDue === null || stillDue > Math.min(now, this.now())) return;
      await this.host.rotateLocked(current, undefined, 'rotation period');
      rotated.push(current.name);
    });
  }

  /**
   * The key's last rotation (or creation) is recorded later than now: the wall clock was ahead then
   * and has stepped back. Counted from that time, its next rotation would wait for as long as the
   * clock was ahead (found by review: a year ahead, a daily key went a year unrotated). The time is
   * set to now, which no recorded time should pass, so the period counts from the corrected clock.
   */
  private async rebaseRotation(record: KeyRecord): Promise<void> {
    await this.host.lock.run(async () => {
      const current = this.index.withId(record.id);
      // A fresh reading: a rotation made while this pass ran is no step back.
      const now = this.now();
      if (!current || nextRotationTime(current) === null || rotationBase(current) <= now + CLOCK_BACK_TOLERANCE_MS) return;
      const field = current.rotateTime !== null ? 'rotateTime' : 'createTime';
      const recorded = rotationBase(current);
      await this.host.replace({ ...structuredClone(current), [field]: now });
      this.deps.log('the wall clock is behind the key\'s last rotation (it stepped back): its rotation period now counts from the present', { key_name: current.name, keyId: current.id, field, recorded: new Date(recorded).toISOString() }, 'warn');
    });
  }

  /**
   * When the key's rotation period has it rotated, or null: also for a key of a suite this kernel
   * refuses (rotateLocked would refuse it every time; open() said so once) and for a key pending
   * deletion (never rotated; review by helper-112). GetKey shows this time.
   */
  scheduledRotationTime(record: KeyRecord): number | null {
    if (record.state === 'pending_deletion' || keySuiteRefusal(this.deps.suiteStatus, record, 'rotate')) return null;
    // Never again (versions are never removed): the scheduler would retry it for ever (warnIfAtVersionCap says so).
    if (atVersionCap(record, this.deps.limits)) return null;
    return nextRotationTime(record, this.deps.limits.minRotationPeriodMs);
  }

  /** The earliest time runDueWork has something to do, for the scheduler: a key whose work failed, at its retry time. */
  nextDueTime(): number | null {
    let next: number | null = null;
    const now = this.now();
    for (const r of this.index.named()) {
      const due = r.state === 'pending_deletion' ? r.deletionTime : r.state === 'enabled' || r.state === 'disabled' ? this.scheduledRotationTime(r) : null;
      if (due === null) continue;
      // Counted, or the scheduler would run again at once for work that is put off (and spin).
      const t = Math.max(due, this.retries.retryTime(r.id, dueWorkKind(r), now) ?? due);
      if (next === null || t < next) next = t;
    }
    return next;
  }
}
