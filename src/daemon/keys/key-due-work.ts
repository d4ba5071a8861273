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
import { type KeyLogLevel, type KeyRecord, MAX_TIME_MS, nextRotationTime } from './model.js';

/**
 * Keys whose scheduled work (a deletion, a rotation, a rotation period rebased after the clock
 * stepped back) is saved in one state write, at most: each write is of the whole file, so a write
 * per key made a pass over n due keys cost n whole-file writes (1000 keys, 20-40 s, while start-up
 * waits for the first pass: reviews by helper-190 and helper-196). In groups, not the whole pass at
 * once, so that the lock is released between them for callers waiting on it.
 */
export const KEYS_PER_SAVE = 64;
/** A rotation recorded at most this far ahead of the clock is left alone: such a step back delays one rotation by as much. */
const CLOCK_BACK_TOLERANCE_MS = 60_000;
const rotationBase = (r: KeyRecord) => r.rotateTime ?? r.createTime;
const dueWorkKind = (r: KeyRecord): DueWorkKind => (r.state === 'pending_deletion' ? 'deletion' : 'rotation');

/** The key manager's settings KeyDueWork reads (KeyManagerDeps). */
export interface KeyDueWorkDeps {
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: KeyLogLevel) => void;
  /** How a key's failed scheduled work is retried (key-retries.ts); default 1 s doubling to 5 min. */
  retryDelays?: RetryDelays;
}

/** What KeyDueWork needs of the key manager: its clock, its lock, and the changes it makes under it. */
export interface KeyDueWorkHost {
  now: () => number;
  lock: Mutex;
  /** Writes the state with this change (KeyWrites.persistWith). Under the lock. */
  persistWith(change: { put?: KeyRecord | KeyRecord[]; remove?: KeyRecord | KeyRecord[] }, meta?: { postponingMs?: number }): Promise<void>;
  /** Rotates the keys in one state write; those that could not be are returned as failed (KeyManager.rotateManyLocked). Under the lock. */
  rotateManyLocked(records: readonly KeyRecord[], why: string): Promise<{ rotated: KeyRecord[]; failed: { record: KeyRecord; err: unknown }[] }>;
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
   * The work is saved KEYS_PER_SAVE keys at a time: deletions first (they free the kernel key quota
   * and the caps the rotations need), then rotation periods rebased after a step back of the clock,
   * then rotations. A key whose work fails (a full disk, the kernel key quota) is put off on its own
   * backoff, and the run goes on with the others; the failures are then reported together as
   * DueWorkFailed.
   */
  async runDueWork(): Promise<{ deleted: string[]; rotated: string[] }> {
    const deleted: string[] = [];
    const rotated: string[] = [];
    const failed: { name: string; err: unknown; retryInMs: number; at: number }[] = [];
    const now = this.now();
    const records = [...this.index.named()];
    // Reported in the keys' order, though the work is done by kind.
    const order = new Map(records.map((r, i) => [r.id, i]));
    const fail = (record: KeyRecord, kind: DueWorkKind, err: unknown) => {
      // From the failure, not the pass's start: a slow failing write must not leave its retry already past.
      failed.push({ name: record.name, err, retryInMs: this.retries.failed(record.id, kind, this.now()), at: order.get(record.id)! });
    };
    const due: Record<'deletion' | 'rebase' | 'rotation', KeyRecord[]> = { deletion: [], rebase: [], rotation: [] };
    for (const record of records) {
      const kind = dueWorkKind(record);
      if (this.retries.retryTime(record.id, kind, now) !== null) continue;
      let work: ReturnType<KeyDueWork['dueWorkOf']>;
      try {
        work = this.dueWorkOf(record, now);
      } catch (err) {
        fail(record, kind, err);
        continue;
      }
      if (work) due[work].push(record);
      else this.retries.succeeded(record.id);
    }
    // Each group is re-checked under the lock and saved in one write; a failed write fails its keys only.
    const inGroups = async (keys: KeyRecord[], kind: DueWorkKind, run: (group: KeyRecord[]) => Promise<{ record: KeyRecord; err: unknown }[]>) => {
      for (let i = 0; i < keys.length; i += KEYS_PER_SAVE) {
        const group = keys.slice(i, i + KEYS_PER_SAVE);
        let groupFailed: { record: KeyRecord; err: unknown }[];
        try {
          groupFailed = await run(group);
        } catch (err) {
          groupFailed = group.map((record) => ({ record, err }));
        }
        const failedIds = new Set(groupFailed.map((f) => f.record.id));
        for (const record of group) if (!failedIds.has(record.id)) this.retries.succeeded(record.id);
        for (const f of groupFailed) fail(f.record, kind, f.err);
      }
    };
    await inGroups(due.deletion, 'deletion', (group) => this.destroyStillDue(group, now, deleted));
    await inGroups(due.rebase, 'rotation', async (group) => (await this.rebaseRotations(group), []));
    await inGroups(due.rotation, 'rotation', async (group) => {
      const result = await this.rotateStillDue(group, now);
      for (const record of result.rotated) rotated.push(record.name);
      return result.failed;
    });
    if (failed.length > 0) throw new DueWorkFailed(failed.sort((a, b) => a.at - b.at));
    return { deleted, rotated };
  }

  /**
   * What the key looks due for as the pass starts, if anything; each group re-checks it under the
   * lock (the key may have changed or gone meanwhile). 'rebase': its rotation period counts from a
   * time the clock has stepped back from (rebaseRotations).
   */
  private dueWorkOf(record: KeyRecord, now: number): 'deletion' | 'rebase' | 'rotation' | undefined {
    if (record.state === 'pending_deletion') return record.deletionTime !== null && record.deletionTime <= now ? 'deletion' : undefined;
    const due = this.scheduledRotationTime(record);
    if (due === null) return undefined;
    if (rotationBase(record) > now + CLOCK_BACK_TOLERANCE_MS) return 'rebase';
    return due <= now ? 'rotation' : undefined;
  }

  /**
   * Removes those of `records` whose deletion is still due, re-checked under the lock (a deletion
   * cancelled while they waited is left alone), from the state in one write, then from the kernel:
   * a crash in between leaves their kernel keys only to the keyring, which goes with the process.
   * A failed write deletes none of them. Returns the keys it could not finish.
   */
  private async destroyStillDue(records: readonly KeyRecord[], now: number, deleted: string[]): Promise<{ record: KeyRecord; err: unknown }[]> {
    return this.host.lock.run(async () => {
      // The pass's own reading, or an earlier one: a deletion rescheduled while the pass ran must not
      // fall due by a forward clock step the scheduler has not yet postponed deletions by.
      const at = Math.min(now, this.now());
      const stillDue: KeyRecord[] = [];
      for (const record of records) {
        const current = this.index.withId(record.id);
        if (current?.state === 'pending_deletion' && current.deletionTime !== null && current.deletionTime <= at) stillDue.push(current);
      }
      if (stillDue.length === 0) return [];
      await this.host.persistWith({ remove: stillDue });
      const failed: { record: KeyRecord; err: unknown }[] = [];
      for (const record of stillDue) {
        try {
          this.index.unindex(record);
        } catch (err) {
          // Gone from the state already: the retry finds what is left of it in memory.
          failed.push({ record, err });
          continue;
        }
        deleted.push(record.name);
        this.deps.log('key deleted after its waiting period', { key_name: record.name, keyId: record.id }, 'event');
      }
      return failed;
    });
  }

  /**
   * Rotates those of `records` still due, re-checked under the lock (a key rotated by hand, or
   * scheduled for deletion, while it waited is left alone), in one state write.
   */
  private async rotateStillDue(records: readonly KeyRecord[], now: number): Promise<{ rotated: KeyRecord[]; failed: { record: KeyRecord; err: unknown }[] }> {
    return this.host.lock.run(async () => {
      const stillDue: KeyRecord[] = [];
      for (const record of records) {
        const current = this.index.withId(record.id);
        if (!current || current.state === 'pending_deletion') continue;
        const at = nextRotationTime(current, this.deps.limits.minRotationPeriodMs);
        if (at === null || at > Math.min(now, this.now())) continue;
        stillDue.push(current);
      }
      return stillDue.length === 0 ? { rotated: [], failed: [] } : this.host.rotateManyLocked(stillDue, 'rotation period');
    });
  }

  /**
   * The keys' last rotation (or creation) is recorded later than now: the wall clock was ahead then
   * and has stepped back. Counted from that time, their next rotation would wait for as long as the
   * clock was ahead (found by review: a year ahead, a daily key went a year unrotated). The time is
   * set to now, which no recorded time should pass, so the period counts from the corrected clock.
   * Those still ahead, re-checked under the lock, in one state write; a failed write changes none.
   */
  private async rebaseRotations(records: readonly KeyRecord[]): Promise<void> {
    await this.host.lock.run(async () => {
      // A fresh reading: a rotation made while this pass ran is no step back.
      const now = this.now();
      const next: { record: KeyRecord; field: 'rotateTime' | 'createTime'; recorded: number }[] = [];
      for (const record of records) {
        const current = this.index.withId(record.id);
        if (!current || current.state === 'pending_deletion' || nextRotationTime(current) === null || rotationBase(current) <= now + CLOCK_BACK_TOLERANCE_MS) continue;
        const field = current.rotateTime !== null ? 'rotateTime' : 'createTime';
        next.push({ record: { ...structuredClone(current), [field]: now, updateTime: now }, field, recorded: rotationBase(current) });
      }
      if (next.length === 0) return;
      await this.host.persistWith({ put: next.map((n) => n.record) });
      for (const { record, field, recorded } of next) {
        this.index.put(record);
        this.deps.log('the wall clock is behind the key\'s last rotation (it stepped back): its rotation period now counts from the present', { key_name: record.name, keyId: record.id, field, recorded: new Date(recorded).toISOString() }, 'warn');
      }
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
