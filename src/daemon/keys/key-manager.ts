/**
 * The daemon's keys: lifecycle (create, import, rotate, update, disable, enable, scheduled deletion),
 * persistence, and resolving a key for a cryptographic operation. Every change is persisted before
 * it takes effect in memory, so what a client saw acknowledged survives kill -9; a failed write
 * changes nothing. Changes are serialized by one lock; the encryption hot path only takes it when a
 * new block of encryptions must be reserved.
 */
import { randomBytes } from 'node:crypto';
import type { AeadSuite, MacSuite } from '../../capabilities/suites.js';
import type { AlgStatus } from '../../capabilities/probe.js';
import { ApiError, ErrorReason, Status, invalidField, keyNotFound, shuttingDown } from '../api/errors.js';
import { KeystoreError } from '../keystore/errors.js';
import type { MaterialFingerprints } from './fingerprints.js';
import { checkMaterial, limitReached, originMismatch, pendingDeletion } from './key-errors.js';
import { atVersionCap, capRefusal, countKeys, isCapRefusal, type KeyCounts } from './key-caps.js';
import { DueWorkFailed, type DueWork, type PostponementStep } from './due-work-scheduler.js';
import { KeyRetries, type DueWorkKind, type RetryDelays } from './key-retries.js';
import { Mutex } from './mutex.js';
import { chooseSuite, keySuiteRefusal } from './suite-choice.js';
import { WRAP_SUITES, type KeyMaterial } from './material.js';
import { type KeyRecord, type PersistedState, type Purpose, type VersionRecord, isValidKeyName, KEY_NAME_RULE, MAX_ROTATION_PERIOD_MS, MAX_TIME_MS, nextRotationTime, primaryVersion, suiteOf } from './model.js';

export interface KeyPolicyLimits {
  minRotationPeriodMs: number;
  minDeletionWaitingPeriodMs: number;
  /** Encryptions per version; the suite's limit unless lowered (tests lower it to see rotation). */
  encryptionLimit?: number;
  /** Encryptions reserved per state write on the hot path. */
  reservationBlock?: number;
  /**
   * Encryptions of a generated key's version kept for the streams still running on it: new
   * operations move to a new version this many before the limit. Default: limit / 256 (2^24 at the largest limit, 2^32).
   */
  streamHeadroom?: number;
  /** Caps on keys and key versions (config.ts Limits, key-caps.ts); unset, no cap. */
  maxKeys?: number;
  maxKeysPerCaller?: number;
  maxVersionsPerKey?: number;
  maxKeyVersions?: number;
  maxKeyVersionsPerCaller?: number;
}

export interface KeyManagerDeps {
  material: KeyMaterial;
  /** Imported material already held, so the same bytes are not imported twice (fingerprints.ts). */
  fingerprints: MaterialFingerprints;
  /** `postponingMs`: how much clock gain this write postpones deletions by (recorded only after it). */
  persist: (state: PersistedState, meta?: { postponingMs?: number }) => Promise<void>;
  /** How the kernel treats a suite for this daemon (from the capability probe). */
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn') => void;
  now?: () => number;
  /** What the scheduler's next run will postpone deletions by, as of the wall-clock reading `wall` (due-work-scheduler.ts pendingPostponementMs); default 0. */
  pendingClockPostponementMs?: (wall: number) => number;
  /** How a key's failed scheduled work is retried (key-retries.ts); default 1 s doubling to 5 min. */
  retryDelays?: RetryDelays;
  /** uids held to the daemon-wide caps only, not to a caller's (root and the daemon's own). */
  uncappedCallers?: ReadonlySet<number>;
}

/** A key version resolved for one operation: everything the crypto layer needs. */
export interface ResolvedVersion<S extends AeadSuite | MacSuite = AeadSuite | MacSuite> {
  key: KeyRecord;
  version: number;
  suite: S;
  serials: readonly number[];
}

const MAX_DELETION_WAIT_MS = 365 * 86_400_000;
export const DEFAULT_DELETION_WAIT_MS = 7 * 86_400_000;
/** A rotation recorded at most this far ahead of the clock is left alone: such a step back delays one rotation by as much. */
const CLOCK_BACK_TOLERANCE_MS = 60_000;
const rotationBase = (r: KeyRecord) => r.rotateTime ?? r.createTime;
const dueWorkKind = (r: KeyRecord): DueWorkKind => (r.state === 'pending_deletion' ? 'deletion' : 'rotation');

export class KeyManager {
  private readonly byName = new Map<string, KeyRecord>();
  /** byName's keys in order, for list(); undefined after a key was added or removed. */
  private sortedNames: string[] | undefined;
  private readonly byId = new Map<string, KeyRecord>();
  /** Kernel serials per key id, per version (index = version - 1). */
  private readonly serials = new Map<string, number[][]>();
  /**
   * Versions this kernel could not load ("id:version" -> why): imported material sealed with a
   * suite it refuses. The key stays listed, and its other versions usable; using it says why not.
   */
  private readonly unloadable = new Map<string, string>();
  /** Encryptions made per key id, per version (in memory; persisted as reservations). */
  private readonly counts = new Map<string, number[]>();
  private readonly lock = new Mutex();
  /** Keys whose scheduled work failed, and when it is tried again. */
  private readonly retries: KeyRetries;
  private masterCheck: string | null = null;
  /** Set by close(): nothing is written or indexed after it. */
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly deps: KeyManagerDeps) {
    this.now = deps.now ?? Date.now;
    this.retries = new KeyRetries(deps.retryDelays);
  }

  /** Loads every persisted key version into the kernel; checks the master key first. */
  async open(state: PersistedState): Promise<void> {
    const { material } = this.deps;
    // The check is sealed by an AF_ALG AEAD: a kernel that allows no sealing suite can neither open
    // nor make one (the check stays as it is). Generated keys prove the master key anyway: the
    // kernel verifies each blob's HMAC when it loads it (MASTER_KEY_MISMATCH below).
    // Whether this master key is known to be the one the state was saved with: its check opened, or
    // a version loaded (the kernel verifies each blob). Once it is, a blob that does not open is the
    // state's fault, not the master key's (review by helper-91).
    let provenBy: 'its check' | 'other keys' | undefined;
    if (state.masterCheck && material.canSeal) {
      if (await material.verifyMasterCheck(state.masterCheck)) provenBy = 'its check';
      // Kept as it is (not sealed again: that would bless a master key nobody verified).
      else this.deps.log('the master-key check is sealed with a suite this kernel refuses; the master key is not checked up front (generated keys are still verified as they load)', { suite: state.masterCheck.split(':')[1] });
    }
    this.masterCheck = state.masterCheck ?? null;
    this.deps.fingerprints.start(material.canSeal, this.deps.suiteStatus('hmac-sha256') === 'available', this.deps.log);
    const { fingerprints } = this.deps;
    try {
      for (const record of state.keys) {
        const versions: number[][] = [];
        try {
          for (const v of record.versions) {
            try {
              const restored = await material.restore(record.id, v.version, record.origin, v.blobs, (part) => fingerprints.of(part));
              versions.push(restored.serials);
              provenBy ??= 'other keys';
              fingerprints.noteRestored(restored.fingerprints, { keyId: record.id, version: v.version }, (id) => (id === record.id ? record.name : this.byId.get(id)?.name), this.deps.log);
            } catch (err) {
              // A kernel that refuses the seal's suite (a move to af_alg_restrict=1) cannot bring
              // this version back; nothing about it is wrong, so it must not keep the daemon down.
              if (!(err instanceof KeystoreError && err.code === 'KEY_TYPE_UNSUPPORTED' && record.origin === 'imported')) throw err;
              versions.push([]);
              this.unloadable.set(`${record.id}:${v.version}`, err.message);
              this.deps.log(`key "${record.name}" version ${v.version} cannot be loaded on this kernel and is unusable here: ${err.message}`, { key: record.name, version: v.version }, 'warn');
            }
          }
        } catch (err) {
          for (const s of versions) material.destroy(s);
          if (err instanceof KeystoreError && err.code === 'MASTER_KEY_MISMATCH' && provenBy) {
            throw new KeystoreError('INVALID_KEY', `key "${record.name}" version ${versions.length + 1} does not open, though this master key opened ${provenBy} in the same state: its blob in the state file is corrupted or was edited; restore the state file from a backup (the master key is the right one)`, err);
          }
          if (err instanceof KeystoreError) throw new KeystoreError(err.code, `key "${record.name}" version ${versions.length + 1}: ${err.message}`, err);
          throw err;
        }
        // A period saved when the minimum was lower (it is checked on create and update only) counts
        // as today's minimum (nextRotationTime), or the key would rotate on every scheduler tick. The
        // record keeps the client's period: written back raised, it outlived the raise of the minimum,
        // and an UpdateKey to the raised value was taken as no change, never written (helper-112).
        const minPeriod = this.deps.limits.minRotationPeriodMs;
        if (record.rotationPeriodMs !== null && record.rotationPeriodMs < minPeriod) this.deps.log(`key "${record.name}" has a rotation period below minRotationPeriod; it rotates every ${minPeriod} ms while that minimum stands`, { key_name: record.name, rotationPeriodMs: record.rotationPeriodMs, minRotationPeriodMs: minPeriod }, 'warn');
        this.index(record, versions, record.versions.map((v) => v.encryptionsReserved));
        const refusal = keySuiteRefusal(this.deps.suiteStatus, record, 'rotate');
        if (refusal) this.deps.log(`${refusal.message}; it is not rotated on schedule`, { key_name: record.name, suite: record.suite }, 'warn');
        else this.warnIfAtVersionCap(record);
      }
      // Made only for a master key that opened something, or for a state with no keys: sealed under
      // a key nobody verified (every version unloadable here), it would bless that key (helper-91).
      if (!state.masterCheck && material.canSeal && (provenBy !== undefined || state.keys.length === 0)) this.masterCheck = await material.masterCheck();
      // Best effort: the check only tests the master key early, every later save carries it, and a
      // full disk must not keep keys that all loaded from being served (found by review).
      if (!state.masterCheck && this.masterCheck) {
        await this.persistWith().catch((err: unknown) =>
          this.deps.log(`could not save the master-key check (${(err as Error)?.message}); the next state write saves it`, { code: (err as NodeJS.ErrnoException)?.code }, 'warn'),
        );
      }
    } catch (err) {
      this.close(); // the keys loaded so far: nothing stays in the kernel for a daemon that did not start
      throw err;
    }
    this.deps.log('keys loaded into the kernel', { keys: state.keys.length, versions: state.keys.reduce((n, k) => n + k.versions.length, 0) });
    this.warnIfAtDaemonCaps();
  }

  /**
   * Says at start-up when the state already holds as many keys or versions as the daemon-wide caps
   * allow (a state from before the caps, or caps lowered): the daemon serves it, but refuses new
   * keys, or every rotation, scheduled and at the encryption limit included, until keys are deleted.
   */
  private warnIfAtDaemonCaps(): void {
    const { maxKeys, maxKeyVersions } = this.deps.limits;
    const { keys, versions } = this.keyCounts(undefined);
    if (maxKeys !== undefined && keys >= maxKeys) {
      this.deps.log(`the state holds ${keys} keys, at or above limits.maxKeys (${maxKeys}): CreateKey and ImportKey are refused until keys are deleted or the limit is raised`, { keys, maxKeys }, 'warn');
    }
    if (maxKeyVersions !== undefined && versions >= maxKeyVersions) {
      this.deps.log(`the state's keys have ${versions} versions, at or above limits.maxKeyVersions (${maxKeyVersions}): every rotation is refused (scheduled ones, and a generated key's at its encryption limit, which then refuses encryption), and so are new keys, until keys are deleted or the limit is raised with the kernel key quota`, { versions, maxKeyVersions }, 'warn');
    }
  }

  get size(): number {
    return this.byName.size;
  }

  /** The counts the key caps check (countKeys), daemon-wide and `uid`'s, whether or not the caps hold it. */
  keyCounts(uid: number | undefined): KeyCounts {
    return countKeys(this.byId.values(), uid);
  }

  // ---- queries ----

  get(name: string): KeyRecord {
    const record = this.byName.get(name);
    if (!record) throw keyNotFound(name);
    return record;
  }

  /** Keys in ascending order of name, after `after`. */
  /**
   * Keys named after `after`, in name order, at most `limit`; only those `visible` lets through.
   * The sorted names are kept between calls (a page costs a binary search and its own keys, not a
   * sort of every key), and made again after a key is added or removed.
   */
  list(after: string, limit: number, visible: (name: string) => boolean = () => true): { keys: KeyRecord[]; more: boolean } {
    const names = (this.sortedNames ??= [...this.byName.keys()].sort());
    let lo = 0;
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (names[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    const keys: KeyRecord[] = [];
    for (let i = lo; i < names.length; i++) {
      if (!visible(names[i]!)) continue;
      if (keys.length === limit) return { keys, more: true };
      keys.push(this.byName.get(names[i]!)!);
    }
    return { keys, more: false };
  }

  private setByName(record: KeyRecord): void {
    if (!this.byName.has(record.name)) this.sortedNames = undefined;
    this.byName.set(record.name, record);
  }

  encryptionCount(record: KeyRecord, version: number): number {
    return this.counts.get(record.id)?.[version - 1] ?? 0;
  }

  encryptionLimit(record: KeyRecord): number {
    const suite = suiteOf(record);
    if (suite.kind !== 'aead') return 0;
    return Math.min(suite.invocationLimit, this.deps.limits.encryptionLimit ?? Infinity);
  }

  // ---- lifecycle ----

  /** `creatorUid`: the caller's uid, recorded in the key and held to the per-caller caps. */
  async create(req: { name: string; purpose?: Purpose; suite?: string; rotationPeriodMs?: number | null; deletionProtection?: boolean; creatorUid?: number }): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const suite = this.chooseSuite(req.name, req.purpose, req.suite);
      const rotationPeriodMs = this.checkRotationPeriod(req.rotationPeriodMs ?? null);
      this.checkRoom(req.name, req.creatorUid);
      const id = this.newId();
      const { serials, blobs } = this.deps.material.generate(id, 1, suite);
      return this.addRecord(this.newRecord(id, req.name, suite, 'generated', rotationPeriodMs, req.deletionProtection ?? false, blobs, req.creatorUid), serials);
    });
  }

  async import(req: { name: string; purpose?: Purpose; suite?: string; material: Buffer; deletionProtection?: boolean; creatorUid?: number }): Promise<KeyRecord> {
    try {
      return await this.lock.run(async () => {
        const suite = this.chooseSuite(req.name, req.purpose, req.suite, req.material.length);
        checkMaterial(suite, req.material);
        this.checkCanSeal(req.name);
        this.checkRoom(req.name, req.creatorUid);
        const fingerprints = await this.deps.fingerprints.refuseReused(req.material, suite.keyBytes);
        const id = this.newId();
        const { serials, blobs } = await this.deps.material.import(id, 1, suite, req.material);
        const record = await this.addRecord(this.newRecord(id, req.name, suite, 'imported', null, req.deletionProtection ?? false, blobs, req.creatorUid), serials);
        this.deps.fingerprints.add(fingerprints, { keyId: id, version: 1 });
        return record;
      });
    } finally {
      req.material.fill(0);
    }
  }

  /**
   * `callerUid`: the uid of the caller asking (RotateKey), recorded on the new version and held to
   * its own per-caller cap, not the key creator's. Without one the version is the key creator's, as
   * a scheduled rotation's.
   */
  async rotate(name: string, material?: Buffer, callerUid?: number): Promise<KeyRecord> {
    try {
      return await this.lock.run(() => this.rotateLocked(this.changeable(name), material, 'requested', callerUid));
    } finally {
      material?.fill(0);
    }
  }

  async update(name: string, req: { minDecryptionVersion?: number; rotationPeriodMs?: number | null; deletionProtection?: boolean }): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.changeable(name);
      const next = structuredClone(record);
      if (req.minDecryptionVersion !== undefined) {
        if (!Number.isInteger(req.minDecryptionVersion) || req.minDecryptionVersion < 1 || req.minDecryptionVersion > record.versions.length) {
          throw invalidField('min_decryption_version', `min_decryption_version must be 1..${record.versions.length} (the primary version) for key "${name}"`);
        }
        next.minDecryptionVersion = req.minDecryptionVersion;
      }
      if (req.rotationPeriodMs !== undefined) {
        if (record.origin !== 'generated' && req.rotationPeriodMs) {
          throw originMismatch(record, `key "${name}" is imported: only generated keys rotate automatically (rotate it with new material instead)`);
        }
        // A period the scheduler would not act on (review by helper-90).
        const refusal = req.rotationPeriodMs ? keySuiteRefusal(this.deps.suiteStatus, record, 'rotate') : undefined;
        if (refusal) throw refusal;
        next.rotationPeriodMs = this.checkRotationPeriod(req.rotationPeriodMs);
      }
      if (req.deletionProtection !== undefined) next.deletionProtection = req.deletionProtection;
      // Nothing to change (no field set, or each set to its current value): no write, update_time kept.
      if (next.minDecryptionVersion === record.minDecryptionVersion && next.rotationPeriodMs === record.rotationPeriodMs && next.deletionProtection === record.deletionProtection) {
        return record;
      }
      return this.replace(next);
    });
  }

  async setEnabled(name: string, enabled: boolean): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.changeable(name);
      const state = enabled ? 'enabled' : 'disabled';
      if (record.state === state) return record;
      return this.replace({ ...structuredClone(record), state });
    });
  }

  async scheduleDeletion(name: string, waitingPeriodMs: number | undefined): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.changeable(name);
      if (record.deletionProtection) {
        throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.DELETION_PROTECTED, `key "${name}" has deletion protection; turn it off with UpdateKey first`, { key_name: name });
      }
      const min = this.deps.limits.minDeletionWaitingPeriodMs;
      // Unset: 7 days, or the operator's minimum when that is longer (a plain delete then still works).
      const wait = waitingPeriodMs ?? Math.max(DEFAULT_DELETION_WAIT_MS, min);
      if (!Number.isFinite(wait) || wait < min || wait > MAX_DELETION_WAIT_MS) {
        throw invalidField('waiting_period', `the deletion waiting period must be between ${min / 1000} s and 365 days`);
      }
      return this.replace({ ...structuredClone(record), state: 'pending_deletion', deletionTime: this.now() + wait });
    });
  }

  async cancelDeletion(name: string): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.get(name);
      if (record.state !== 'pending_deletion') {
        throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_NOT_PENDING_DELETION, `key "${name}" is not scheduled for deletion`, { key_name: name });
      }
      // Due is due (found by review): the scheduler's next pass may be a second away, or longer
      // after a failure or at start, and must not be a window in which the key can be brought back.
      // Left to the scheduler to carry out, and judged as its next run will: after postponing
      // deletions by a forward step of the clock it has not yet postponed them by (found by review).
      // One reading of the wall clock for both (found by review): a step between two would count half.
      const now = this.now();
      if (record.deletionTime !== null && record.deletionTime + (this.deps.pendingClockPostponementMs?.(now) ?? 0) <= now) {
        throw pendingDeletion(record, 'its waiting period has passed, so the deletion can no longer be cancelled; the daemon destroys the key at its next pass');
      }
      return this.replace({ ...structuredClone(record), state: 'disabled', deletionTime: null });
    });
  }

  /**
   * The wall clock stepped forward by `stepMs` while the daemon ran (due-work-scheduler.ts): every
   * pending deletion moves that much later, so that it still waits its whole period in real time.
   * All in one state write: a crash cannot leave some postponed and others not. Returns the keys
   * postponed. With the scheduler's `stepNow`, the step is read and recorded under the lock (found
   * by review): a cancel waiting on it judges deletions as the scheduler's next run will.
   */
  async postponeDeletions(stepMs: number, stepNow?: PostponementStep): Promise<string[]> {
    return this.lock.run(async () => {
      const stepRead = stepNow ? stepNow.current() : stepMs;
      // Whole milliseconds, as every time in the state (the step comes from performance.now()).
      const step = Math.ceil(stepRead);
      const next = !(step > 0)
        ? []
        : [...this.byName.values()]
            .filter((r) => r.state === 'pending_deletion' && r.deletionTime !== null)
            .map((r) => ({ ...structuredClone(r), deletionTime: Math.min(r.deletionTime! + step, MAX_TIME_MS), updateTime: this.now() }));
      if (next.length === 0) {
        stepNow?.recordPostponed(Math.max(stepRead, 0));
        return [];
      }
      // The clock anchor written with it must not count this step as still to postpone (found by
      // review: every restart postponed the deletions again).
      await this.persistWith({ put: next }, { postponingMs: Math.max(stepRead, 0) });
      for (const record of next) {
        this.setByName(record);
        this.byId.set(record.id, record);
        this.deps.log('the wall clock stepped forward: key deletion postponed by the step', { key_name: record.name, keyId: record.id, stepMs: step, deletionTime: new Date(record.deletionTime!).toISOString() }, 'warn');
      }
      // Under the lock: a cancel waiting on it would otherwise add the step again (found by review).
      stepNow?.recordPostponed(stepRead);
      return next.map((r) => r.name);
    });
  }

  /** This manager's scheduled work, as the due-work scheduler runs it (daemon.ts). */
  dueWork(): DueWork {
    return { runDueWork: () => this.runDueWork(), nextDueTime: () => this.nextDueTime(), clockSteppedForward: (step, stepNow) => this.postponeDeletions(step, stepNow) };
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
    for (const record of [...this.byName.values()]) {
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
    await this.persistWith({ remove: record });
    this.unindex(record);
    this.deps.log('key deleted after its waiting period', { key_name: record.name, keyId: record.id });
  }

  /** The due work of one key, re-checked under the lock (the key may have changed or gone meanwhile). */
  private async dueWorkFor(record: KeyRecord, now: number, deleted: string[], rotated: string[]): Promise<void> {
    if (record.state === 'pending_deletion' && record.deletionTime !== null && record.deletionTime <= now) {
      await this.lock.run(async () => {
        const current = this.byId.get(record.id);
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
    await this.lock.run(async () => {
      const current = this.byId.get(record.id);
      if (!current || current.state === 'pending_deletion') return;
      const stillDue = nextRotationTime(current, this.deps.limits.minRotationPeriodMs);
      if (stillDue === null || stillDue > Math.min(now, this.now())) return;
      await this.rotateLocked(current, undefined, 'rotation period');
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
    await this.lock.run(async () => {
      const current = this.byId.get(record.id);
      // A fresh reading: a rotation made while this pass ran is no step back.
      const now = this.now();
      if (!current || nextRotationTime(current) === null || rotationBase(current) <= now + CLOCK_BACK_TOLERANCE_MS) return;
      const field = current.rotateTime !== null ? 'rotateTime' : 'createTime';
      const recorded = rotationBase(current);
      await this.replace({ ...structuredClone(current), [field]: now });
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
    for (const r of this.byName.values()) {
      const due = r.state === 'pending_deletion' ? r.deletionTime : r.state === 'enabled' || r.state === 'disabled' ? this.scheduledRotationTime(r) : null;
      if (due === null) continue;
      // Counted, or the scheduler would run again at once for work that is put off (and spin).
      const t = Math.max(due, this.retries.retryTime(r.id, dueWorkKind(r), now) ?? due);
      if (next === null || t < next) next = t;
    }
    return next;
  }

  // ---- resolving keys for operations ----

  /**
   * The primary version of an enabled AEAD key, with `n` encryptions counted. The count never passes
   * what the state file has reserved: a new block is persisted first when needed (under the lock),
   * and a generated key is rotated first when its primary version would pass its encryption limit.
   */
  async forEncrypt(name: string, n = 1): Promise<ResolvedVersion<AeadSuite>> {
    const record = this.usable(name, 'aead');
    this.serialsOf(record, record.versions.length); // nothing is counted for a version this kernel could not load
    this.checkSuiteUsable(record);
    // Fast path: within the persisted reservation, counted at once (no await between check and count).
    if (this.tryCount(record, record.versions.length, n, this.newWorkLimit(record))) return this.resolved(record, record.versions.length);
    return this.lock.run(async () => {
      // Re-resolved each round: a rotation or another caller may have changed the key meanwhile.
      for (;;) {
        const current = this.usable(name, 'aead');
        const v = current.versions.length;
        const limit = this.encryptionLimit(current);
        const count = this.encryptionCount(current, v);
        if (count + n > this.newWorkLimit(current)) {
          if (current.origin !== 'generated') throw limitReached(current, v, limit, 'rotate it with new material');
          // Not even a fresh version could take them (a rotation would not help: refuse, never loop).
          if (n > this.newWorkLimit(current)) {
            throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED, `key "${name}" cannot count ${n} encryptions at once: a new version takes at most ${this.newWorkLimit(current)}`, { key_name: name, key_version: String(v), encryption_limit: String(limit) });
          }
          try {
            await this.rotateLocked(current, undefined, 'encryption limit');
          } catch (err) {
            // At a cap on versions: refused, never counted past the limit (the nonces' bound).
            if (!isCapRefusal(err)) throw err;
            throw limitReached(current, v, limit, `it cannot rotate: ${err.message}`, '', { limit: err.metadata.limit!, limit_value: err.metadata.limit_value! });
          }
          continue;
        }
        if (this.tryCount(current, v, n, this.newWorkLimit(current))) return this.resolved(current, v);
        await this.reserve(current, v, count + n);
      }
    });
  }

  /**
   * Counts `n` more encryptions on a version resolved earlier (a stream keeps its version to the
   * end): no rotation mid-stream, so at the limit it fails with ENCRYPTION_LIMIT_REACHED. A key
   * disabled or scheduled for deletion meanwhile stops the stream as it would any new operation, and
   * so does a min_decryption_version raised past the stream's version (nothing could decrypt it).
   */
  async countEncryptions(r: ResolvedVersion<AeadSuite>, n: number): Promise<void> {
    const check = () => this.checkStreamVersion(r, n);
    if (this.tryCount(check(), r.version, n)) return;
    await this.lock.run(async () => {
      for (;;) {
        const current = check();
        if (this.tryCount(current, r.version, n)) return;
        await this.reserve(current, r.version, this.encryptionCount(current, r.version) + n);
      }
    });
  }

  /**
   * What countEncryptions checks before it counts `n` (0: only that the stream's version may still
   * seal, for a chunk counted in advance when the stream began). With n = 0 also what a seal checks
   * once the kernel has answered (`subject` 'request'): a key disabled, scheduled for deletion or
   * given a higher min_decryption_version while it sealed was acknowledged first, so the ciphertext
   * is refused rather than answered (review by helper-149: nothing could decrypt it).
   */
  checkStreamVersion(r: ResolvedVersion<AeadSuite>, n = 0, subject: 'stream' | 'request' = 'stream'): KeyRecord {
    const current = this.byId.get(r.key.id);
    if (!current) throw keyNotFound(r.key.name);
    this.usable(current.name, 'aead');
    if (r.version < current.minDecryptionVersion) {
      const what = subject === 'stream' ? 'what this stream would seal; start a new stream' : 'what this request sealed (it was raised meanwhile); send it again';
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED, `key "${current.name}" version ${r.version} is now below its min_decryption_version ${current.minDecryptionVersion}, so nothing could decrypt ${what} (it will use version ${current.versions.length})`, {
        key_name: current.name,
        key_version: String(r.version),
        min_decryption_version: String(current.minDecryptionVersion),
      });
    }
    const limit = this.encryptionLimit(current);
    if (this.encryptionCount(current, r.version) + n > limit) {
      throw limitReached(current, r.version, limit, 'start a new stream (it will use the rotated version)', 'mid-stream');
    }
    return current;
  }

  /**
   * How far a new operation (or a new stream) may count on a version: a generated key moves to a
   * new version `streamHeadroom` before the limit, so that streams running on the old one can end
   * (they count up to the limit itself, countEncryptions). An imported key cannot move: its limit.
   */
  private newWorkLimit(record: KeyRecord): number {
    const limit = this.encryptionLimit(record);
    if (record.origin !== 'generated') return limit;
    // At most 2^24: no limit is above 2^32 (the suites' and encryptionsPerVersion's).
    const headroom = this.deps.limits.streamHeadroom ?? Math.floor(limit / 256);
    return Math.max(1, limit - headroom);
  }

  /** Counts `n` encryptions of version `v` if `cap` (default: the limit) and the persisted reservation allow them. */
  private tryCount(record: KeyRecord, v: number, n: number, cap = this.encryptionLimit(record)): boolean {
    const counts = this.counts.get(record.id);
    const reserved = record.versions[v - 1]?.encryptionsReserved;
    if (!counts || reserved === undefined || counts[v - 1]! + n > Math.min(reserved, cap)) return false;
    counts[v - 1]! += n;
    return true;
  }

  /** Persists a reservation of at least `upTo` encryptions (plus a block, up to the limit) for version `v`. Under the lock. */
  private async reserve(record: KeyRecord, v: number, upTo: number): Promise<void> {
    const next = structuredClone(record);
    next.versions[v - 1]!.encryptionsReserved = Math.min(this.encryptionLimit(record), upTo + (this.deps.limits.reservationBlock ?? 4096));
    await this.replace(next, false);
  }

  private resolved(record: KeyRecord, v: number): ResolvedVersion<AeadSuite> {
    return { key: record, version: v, suite: suiteOf(record) as AeadSuite, serials: this.serialsOf(record, v) };
  }

  /** The name of the key with this id (from a ciphertext), if it exists: access is checked by name before anything else. */
  nameOfId(keyId: Buffer): string | undefined {
    return this.byId.get(keyId.toString('hex'))?.name;
  }

  /** A version of an AEAD key that may decrypt (found by the id in a ciphertext). */
  forDecrypt(keyId: Buffer, version: number, suiteName: string): ResolvedVersion<AeadSuite> {
    const record = this.byId.get(keyId.toString('hex'));
    if (!record) {
      throw new ApiError(Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, 'the key that made this ciphertext does not exist in this daemon (deleted, or another daemon\'s)', { key_id: keyId.toString('hex') });
    }
    // Encrypt never names a MAC key: the header was altered (the suite check below would say so too).
    if (record.purpose !== 'aead') {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, `the ciphertext names key "${record.name}", a MAC key: it was not made by Encrypt, or its header was altered`, { key_name: record.name, detail: 'names a MAC key' });
    }
    this.usable(record.name, 'aead');
    if (record.suite !== suiteName) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, `the ciphertext claims suite ${suiteName}, but key "${record.name}" is ${record.suite}`, { key_name: record.name, detail: 'suite differs from the key\'s' });
    }
    const resolved = this.checkVersion(record, version);
    this.checkSuiteUsable(record);
    return { ...resolved, suite: suiteOf(record) as AeadSuite };
  }

  forMac(name: string): ResolvedVersion<MacSuite> {
    const record = this.usable(name, 'mac');
    const v = record.versions.length;
    const serials = this.serialsOf(record, v);
    this.checkSuiteUsable(record);
    return { key: record, version: v, suite: suiteOf(record) as MacSuite, serials };
  }

  /** A MAC key's version resolved before the kernel ran, checked again once it answered (as checkStreamVersion for a seal). */
  checkMacVersion(r: ResolvedVersion<MacSuite>): void {
    const current = this.byId.get(r.key.id);
    if (!current) throw keyNotFound(r.key.name);
    this.checkVersion(this.usable(current.name, 'mac'), r.version);
  }

  forVerify(name: string, version: number | undefined): ResolvedVersion<MacSuite> {
    const record = this.usable(name, 'mac');
    const resolved = this.checkVersion(record, version || record.versions.length);
    this.checkSuiteUsable(record);
    return { ...resolved, suite: suiteOf(record) as MacSuite };
  }

  /** A key of a suite this kernel refuses or lacks is refused with the key named, before the engine (after serialsOf: a version that did not load says why). */
  private checkSuiteUsable(record: KeyRecord): void {
    const refusal = keySuiteRefusal(this.deps.suiteStatus, record, 'use');
    if (refusal) throw refusal;
  }

  // ---- internals ----

  private checkVersion(record: KeyRecord, version: number): Omit<ResolvedVersion, 'suite'> {
    if (!Number.isInteger(version) || version < 1 || version > record.versions.length) {
      throw new ApiError(Status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND, `key "${record.name}" has no version ${version}`, { key_name: record.name, key_version: String(version) });
    }
    if (version < record.minDecryptionVersion) {
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED, `key "${record.name}" version ${version} is below its min_decryption_version ${record.minDecryptionVersion}`, {
        key_name: record.name,
        key_version: String(version),
        min_decryption_version: String(record.minDecryptionVersion),
      });
    }
    return { key: record, version, serials: this.serialsOf(record, version) };
  }

  /** An enabled key of the purpose, else the error that says why not. */
  private usable(name: string, purpose: Purpose): KeyRecord {
    const record = this.get(name);
    if (record.state === 'pending_deletion') throw pendingDeletion(record, 'cancel the deletion to use it');
    if (record.state === 'disabled') throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED, `key "${name}" is disabled; enable it to use it`, { key_name: name });
    if (record.purpose !== purpose) {
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH, `key "${name}" is a ${record.purpose.toUpperCase()} key; this operation needs ${purpose === 'aead' ? 'an AEAD' : 'a MAC'} key`, { key_name: name, purpose: record.purpose.toUpperCase() });
    }
    return record;
  }

  /** A key that may change (not pending deletion). */
  private changeable(name: string): KeyRecord {
    const record = this.get(name);
    if (record.state === 'pending_deletion') throw pendingDeletion(record, 'cancel the deletion first');
    return record;
  }

  /**
   * `callerUid`: who asked for the rotation (RotateKey); the new version is charged to it. Without
   * one (on schedule, at the encryption limit) it is charged to the key's creator, if recorded: a
   * key's owner pays for its own schedule.
   */
  private async rotateLocked(record: KeyRecord, material: Buffer | undefined, why: string, callerUid?: number): Promise<KeyRecord> {
    // CreateKey refuses the suite on this kernel; a rotation would make a version nobody could use here.
    const refusal = keySuiteRefusal(this.deps.suiteStatus, record, 'rotate');
    if (refusal) throw refusal;
    const maker = callerUid ?? record.creatorUid;
    this.checkRoom(record.name, maker, record, callerUid === undefined);
    const suite = suiteOf(record);
    const version = record.versions.length + 1;
    let made: { serials: number[]; blobs: string[]; fingerprints?: string[] };
    if (record.origin === 'generated') {
      if (material?.length) {
        throw originMismatch(record, `key "${record.name}" is generated in the kernel: rotate it without material`);
      }
      made = this.deps.material.generate(record.id, version, suite);
    } else {
      if (!material?.length) {
        throw originMismatch(record, `key "${record.name}" is imported: rotating it needs new material`);
      }
      checkMaterial(suite, material);
      this.checkCanSeal(record.name);
      const fingerprints = await this.deps.fingerprints.refuseReused(material, suite.keyBytes, record);
      made = { ...(await this.deps.material.import(record.id, version, suite, material)), fingerprints };
    }
    const now = this.now();
    const next = structuredClone(record);
    next.versions.push({ version, createTime: now, blobs: made.blobs, encryptionsReserved: 0, ...(maker !== undefined ? { creatorUid: maker } : {}) });
    next.rotateTime = now;
    next.updateTime = now;
    try {
      await this.persistWith({ put: next });
    } catch (err) {
      this.deps.material.destroy(made.serials);
      throw err;
    }
    // All at once, with no await in between: nobody may see the new version before its kernel keys
    // and its count are there (forEncrypt's fast path would resolve it without serials).
    this.serials.get(record.id)!.push(made.serials);
    this.counts.get(record.id)!.push(0);
    this.setByName(next);
    this.byId.set(next.id, next);
    if (made.fingerprints) this.deps.fingerprints.add(made.fingerprints, { keyId: record.id, version });
    this.deps.log('key rotated', { key_name: record.name, version, reason: why });
    this.warnIfAtVersionCap(next);
    return next;
  }

  /**
   * Refuses (KEY_LIMIT_REACHED) a new key named `name` of `creatorUid`, or with `rotating` a new
   * version of that key made by `creatorUid` (`forCreator`: charged to the key's creator, no caller
   * having asked), where it would pass a cap on keys or versions. Counted over every key, those
   * scheduled for deletion included: they hold their kernel keys until deleted. A caller's versions
   * are those it made (versionMaker), on whoever's keys.
   */
  private checkRoom(name: string, creatorUid: number | undefined, rotating?: KeyRecord, forCreator = false): void {
    const caller = creatorUid !== undefined && !this.deps.uncappedCallers?.has(creatorUid) ? creatorUid : undefined;
    const refusal = capRefusal(this.deps.limits, { name, uid: caller, rotating, forCreator }, countKeys(this.byId.values(), caller));
    if (refusal) throw refusal;
  }

  /** Says once, when a key with a rotation period reaches maxVersionsPerKey, that it no longer rotates on schedule. */
  private warnIfAtVersionCap(record: KeyRecord): void {
    if (nextRotationTime(record) === null || !atVersionCap(record, this.deps.limits)) return;
    this.deps.log(`key "${record.name}" has ${record.versions.length} versions, its limit (maxVersionsPerKey ${this.deps.limits.maxVersionsPerKey}): it is no longer rotated on schedule; create a new key and move to it, or raise limits.maxVersionsPerKey in the daemon's config`, { key_name: record.name, versions: record.versions.length, maxVersionsPerKey: this.deps.limits.maxVersionsPerKey }, 'warn');
  }

  private chooseSuite(name: string, purpose: Purpose | undefined, suiteName: string | undefined, materialBytes?: number): AeadSuite | MacSuite {
    if (!isValidKeyName(name)) throw invalidField('name', `key names are ${KEY_NAME_RULE}`);
    if (this.byName.has(name)) throw new ApiError(Status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS, `key "${name}" already exists`, { key_name: name });
    return chooseSuite(this.deps.suiteStatus, purpose, suiteName, materialBytes);
  }

  /** Imported material is persisted sealed under the master key, which needs a sealing suite. */
  private checkCanSeal(name: string): void {
    if (this.deps.material.canSeal) return;
    const names = WRAP_SUITES.map((s) => s.name).join(', ');
    throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `cannot import key material for "${name}": it is kept sealed under the master key with one of ${names}, and this kernel allows none of them; see \`ringfence doctor\``, {
      key_name: name,
      suite: WRAP_SUITES.map((s) => s.name).join(','),
    });
  }

  private checkRotationPeriod(ms: number | null): number | null {
    if (ms === null || ms === 0) return null;
    const min = this.deps.limits.minRotationPeriodMs;
    if (!Number.isFinite(ms) || ms < min || ms > MAX_ROTATION_PERIOD_MS) {
      throw invalidField('rotation_period', `the rotation period must be between ${min / 1000} s and 100 years`);
    }
    return ms;
  }

  private newId(): string {
    let id: string;
    do id = randomBytes(16).toString('hex');
    while (this.byId.has(id));
    return id;
  }

  private newRecord(id: string, name: string, suite: AeadSuite | MacSuite, origin: 'generated' | 'imported', rotationPeriodMs: number | null, deletionProtection: boolean, blobs: string[], creatorUid: number | undefined): KeyRecord {
    const now = this.now();
    const version: VersionRecord = { version: 1, createTime: now, blobs, encryptionsReserved: 0 };
    return {
      id, name, purpose: suite.kind === 'aead' ? 'aead' : 'mac', suite: suite.name, origin, state: 'enabled', minDecryptionVersion: 1, rotationPeriodMs,
      deletionProtection, createTime: now, rotateTime: null, updateTime: now, deletionTime: null, versions: [version],
      ...(creatorUid !== undefined ? { creatorUid } : {}),
    };
  }

  private async addRecord(record: KeyRecord, serials: number[]): Promise<KeyRecord> {
    try {
      await this.persistWith({ put: record });
    } catch (err) {
      this.deps.material.destroy(serials);
      throw err;
    }
    this.index(record, [serials], [0]);
    this.deps.log('key created', { key_name: record.name, keyId: record.id, suite: record.suite, origin: record.origin });
    return record;
  }

  /** Persists `next` in place of the record with its id, then swaps it in. */
  private async replace(next: KeyRecord, touch = true): Promise<KeyRecord> {
    if (touch) next.updateTime = this.now();
    await this.persistWith({ put: next });
    this.setByName(next);
    this.byId.set(next.id, next);
    return next;
  }

  private async persistWith(change: { put?: KeyRecord | KeyRecord[]; remove?: KeyRecord } = {}, meta?: { postponingMs?: number }): Promise<void> {
    // After close() the maps are empty: a document built from them would hold no other key.
    if (this.closed) throw shuttingDown();
    const puts = change.put === undefined ? [] : Array.isArray(change.put) ? change.put : [change.put];
    const replaced = new Set([change.remove?.id, ...puts.map((r) => r.id)]);
    const keys = [...this.byId.values()].filter((r) => !replaced.has(r.id));
    keys.push(...puts);
    keys.sort((a, b) => (a.name < b.name ? -1 : 1));
    await this.deps.persist({ format: 1, masterCheck: this.masterCheck, keys }, meta);
    // close() ran while this was written (a stop cut the call off, or the scheduler's run): the
    // change is on disk, but nothing may be put back into a closed manager (review by helper-149:
    // the next write then held only the keys put back). Callers destroy kernel keys they made.
    if (this.closed) throw shuttingDown();
  }

  /** The kernel serials of a version, or FAILED_PRECONDITION when this kernel could not load it. */
  private serialsOf(record: KeyRecord, version: number): number[] {
    const why = this.unloadable.get(`${record.id}:${version}`);
    if (why !== undefined) {
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_RESTRICTED_BY_KERNEL, `key "${record.name}" version ${version} is not loaded on this kernel: ${why}`, {
        key_name: record.name,
        key_version: String(version),
      });
    }
    return this.serials.get(record.id)![version - 1]!;
  }

  private index(record: KeyRecord, serials: number[][], counts: number[]): void {
    this.setByName(record);
    this.byId.set(record.id, record);
    this.serials.set(record.id, serials);
    this.counts.set(record.id, counts);
  }

  private unindex(record: KeyRecord): void {
    for (const s of this.serials.get(record.id) ?? []) this.deps.material.destroy(s);
    this.byName.delete(record.name);
    this.sortedNames = undefined;
    this.byId.delete(record.id);
    this.serials.delete(record.id);
    this.counts.delete(record.id);
    for (const v of record.versions) this.unloadable.delete(`${record.id}:${v.version}`);
    this.deps.fingerprints.removeKey(record.id);
  }

  /** Destroys every kernel key this manager loaded (daemon shutdown). */
  close(): void {
    this.closed = true;
    for (const record of [...this.byId.values()]) this.unindex(record);
    this.deps.fingerprints.close();
  }
}
