/**
 * The daemon's keys: lifecycle (create, import, rotate, update, disable, enable, scheduled deletion),
 * persistence, and resolving a key for a cryptographic operation. Every change is persisted before
 * it takes effect in memory, so what a client saw acknowledged survives kill -9; a failed write
 * changes nothing. Changes are serialized by one lock; the encryption hot path only takes it when a
 * new block of encryptions must be reserved.
 *
 * This file holds the lifecycle and the public API; the rest is in small parts it makes and wires
 * together: the keys in memory (key-index.ts), the state file's writes (key-writes.ts), loading the
 * state at start (key-loading.ts), the checks of a new key or version (key-policy.ts), resolving
 * and counting for operations (key-use.ts) and the scheduled work (key-due-work.ts). Those that
 * change keys are handed this manager's one lock and its writes: every change goes through them.
 */
import { randomBytes } from 'node:crypto';
import type { AeadSuite, MacSuite } from '../../capabilities/suites.js';
import type { AlgStatus } from '../../capabilities/probe.js';
import { ApiError, ErrorReason, Status, invalidField } from '../api/errors.js';
import type { MaterialFingerprints } from './fingerprints.js';
import { checkMaterial, originMismatch, pendingDeletion } from './key-errors.js';
import type { KeyCounts } from './key-caps.js';
import type { DueWork, PostponementStep } from './due-work-scheduler.js';
import { KeyDueWork } from './key-due-work.js';
import { KeyIndex } from './key-index.js';
import { loadKeys } from './key-loading.js';
import { KeyPolicy, type KeyPolicyLimits } from './key-policy.js';
import type { RetryDelays } from './key-retries.js';
import { KeyUse, type ResolvedVersion } from './key-use.js';
import { KeyWrites } from './key-writes.js';
import { Mutex } from './mutex.js';
import { keySuiteRefusal } from './suite-choice.js';
import type { KeyMaterial } from './material.js';
import { type KeyLogLevel, type KeyRecord, type PersistedState, type Purpose, type VersionRecord, boundText, suiteOf } from './model.js';

export type { KeyPolicyLimits } from './key-policy.js';
export type { ResolvedVersion } from './key-use.js';

export interface KeyManagerDeps {
  material: KeyMaterial;
  /** Imported material already held, so the same bytes are not imported twice (fingerprints.ts). */
  fingerprints: MaterialFingerprints;
  /** `postponingMs`: how much clock gain this write postpones deletions by (recorded only after it). */
  persist: (state: PersistedState, meta?: { postponingMs?: number }) => Promise<void>;
  /** How the kernel treats a suite for this daemon (from the capability probe). */
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: KeyLogLevel) => void;
  now?: () => number;
  /** What the scheduler's next run will postpone deletions by, as of the wall-clock reading `wall` (due-work-scheduler.ts pendingPostponementMs); default 0. */
  pendingClockPostponementMs?: (wall: number) => number;
  /** How a key's failed scheduled work is retried (key-retries.ts); default 1 s doubling to 5 min. */
  retryDelays?: RetryDelays;
  /** uids held to the daemon-wide caps only, not to a caller's (root and the daemon's own). */
  uncappedCallers?: ReadonlySet<number>;
}

/** A new version made but not yet saved (KeyManager.makeVersion). */
interface MadeVersion {
  record: KeyRecord;
  /** The record with the new version. */
  next: KeyRecord;
  version: number;
  serials: number[];
  /** Whom the version is charged to (versionMaker). */
  maker: number | undefined;
  fingerprints?: string[];
  why: string;
}

const MAX_DELETION_WAIT_MS = 365 * 86_400_000;
export const DEFAULT_DELETION_WAIT_MS = 7 * 86_400_000;

export class KeyManager {
  /** The keys in memory: records, kernel serials, unloadable versions, encryption counts. */
  private readonly index: KeyIndex;
  private readonly policy: KeyPolicy;
  private readonly use: KeyUse;
  private readonly due: KeyDueWork;
  private readonly lock = new Mutex();
  /** The state file's writes: every change goes through them, persisted before it takes effect. */
  private readonly writes: KeyWrites;
  private readonly now: () => number;

  constructor(private readonly deps: KeyManagerDeps) {
    this.now = deps.now ?? Date.now;
    this.index = new KeyIndex(deps);
    this.writes = new KeyWrites(this.index, deps, () => this.now());
    this.policy = new KeyPolicy(this.index, deps);
    this.use = new KeyUse(this.index, deps, {
      lock: this.lock,
      deletionPassed: (record) => this.deletionPassed(record),
      replace: (next, touch) => this.writes.replace(next, touch),
      rotateLocked: (record, material, why) => this.rotateLocked(record, material, why),
    });
    this.due = new KeyDueWork(this.index, deps, {
      now: () => this.now(),
      lock: this.lock,
      persistWith: (change, meta) => this.writes.persistWith(change, meta),
      rotateManyLocked: (records, why) => this.rotateManyLocked(records, why),
    });
  }

  /** Loads every persisted key version into the kernel; checks the master key first (key-loading.ts). */
  open(state: PersistedState): Promise<void> {
    return loadKeys(state, this.deps, { index: this.index, policy: this.policy, writes: this.writes, close: () => this.close() });
  }

  get size(): number {
    return this.index.size;
  }

  /** The counts the key caps check (countKeys), daemon-wide and `uid`'s, whether or not the caps hold it. */
  keyCounts(uid: number | undefined): KeyCounts {
    return this.index.keyCounts(uid);
  }

  // ---- queries (key-index.ts) ----

  get(name: string): KeyRecord {
    return this.index.get(name);
  }

  /** Keys named after `after`, in name order, at most `limit`; only those `visible` lets through (KeyIndex.list). */
  list(after: string, limit: number, visible: (name: string) => boolean = () => true): { keys: KeyRecord[]; more: boolean } {
    return this.index.list(after, limit, visible);
  }

  /** The name of the key with this id (from a ciphertext), if it exists: access is checked by name before anything else. */
  nameOfId(keyId: Buffer): string | undefined {
    return this.index.nameOfId(keyId);
  }

  encryptionCount(record: KeyRecord, version: number): number {
    return this.index.encryptionCount(record, version);
  }

  encryptionLimit(record: KeyRecord): number {
    return this.use.encryptionLimit(record);
  }

  // ---- lifecycle ----

  /** `creatorUid`: the caller's uid, recorded in the key and held to the per-caller caps. */
  async create(req: { name: string; purpose?: Purpose; suite?: string; rotationPeriodMs?: number | null; deletionProtection?: boolean; creatorUid?: number }): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const suite = this.policy.chooseSuite(req.name, req.purpose, req.suite);
      const rotationPeriodMs = this.policy.checkRotationPeriod(req.rotationPeriodMs ?? null);
      this.policy.checkRoom(req.name, req.creatorUid);
      const id = this.newId();
      const { serials, blobs } = this.deps.material.generate(id, 1, suite);
      return this.addRecord(this.newRecord(id, req.name, suite, 'generated', rotationPeriodMs, req.deletionProtection ?? false, blobs, req.creatorUid), serials);
    });
  }

  async import(req: { name: string; purpose?: Purpose; suite?: string; material: Buffer; deletionProtection?: boolean; creatorUid?: number }): Promise<KeyRecord> {
    try {
      return await this.lock.run(async () => {
        const suite = this.policy.chooseSuite(req.name, req.purpose, req.suite, req.material.length);
        checkMaterial(suite, req.material);
        this.policy.checkCanSeal(req.name);
        this.policy.checkRoom(req.name, req.creatorUid);
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
        next.rotationPeriodMs = this.policy.checkRotationPeriod(req.rotationPeriodMs);
      }
      if (req.deletionProtection !== undefined) next.deletionProtection = req.deletionProtection;
      // Nothing to change (no field set, or each set to its current value): no write, update_time kept.
      if (next.minDecryptionVersion === record.minDecryptionVersion && next.rotationPeriodMs === record.rotationPeriodMs && next.deletionProtection === record.deletionProtection) {
        return record;
      }
      return this.writes.replace(next);
    });
  }

  async setEnabled(name: string, enabled: boolean): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.changeable(name);
      const state = enabled ? 'enabled' : 'disabled';
      if (record.state === state) return record;
      return this.writes.replace({ ...structuredClone(record), state });
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
        throw invalidField('waiting_period', `the deletion waiting period must be between ${boundText(min)} and 365d`);
      }
      return this.writes.replace({ ...structuredClone(record), state: 'pending_deletion', deletionTime: this.now() + wait });
    });
  }

  async cancelDeletion(name: string): Promise<KeyRecord> {
    return this.lock.run(async () => {
      const record = this.index.get(name);
      if (record.state !== 'pending_deletion') {
        throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_NOT_PENDING_DELETION, `key "${name}" is not scheduled for deletion`, { key_name: name });
      }
      // Due is due (found by review): the scheduler's next pass may be a second away, or longer
      // after a failure or at start, and must not be a window in which the key can be brought back.
      // Left to the scheduler to carry out, and judged as its next run will: after postponing
      // deletions by a forward step of the clock it has not yet postponed them by (found by review).
      // One reading of the wall clock for both (found by review): a step between two would count half.
      if (this.deletionPassed(record)) {
        throw pendingDeletion(record, 'its waiting period has passed, so the deletion can no longer be cancelled; the daemon destroys the key at its next pass');
      }
      return this.writes.replace({ ...structuredClone(record), state: 'disabled', deletionTime: null });
    });
  }

  // ---- due work (key-due-work.ts) ----

  /** Postpones every pending deletion by a forward step of the wall clock (KeyDueWork.postponeDeletions). */
  postponeDeletions(stepMs: number, stepNow?: PostponementStep): Promise<string[]> {
    return this.due.postponeDeletions(stepMs, stepNow);
  }

  /** This manager's scheduled work, as the due-work scheduler runs it (daemon.ts). */
  dueWork(): DueWork {
    return { runDueWork: () => this.runDueWork(), nextDueTime: () => this.nextDueTime(), clockSteppedForward: (step, stepNow) => this.postponeDeletions(step, stepNow) };
  }

  /** Destroys keys whose deletion time has passed, and rotates keys that are due (KeyDueWork.runDueWork). */
  runDueWork(): Promise<{ deleted: string[]; rotated: string[] }> {
    return this.due.runDueWork();
  }

  /** When the key's rotation period has it rotated, or null (KeyDueWork.scheduledRotationTime). GetKey shows this time. */
  scheduledRotationTime(record: KeyRecord): number | null {
    return this.due.scheduledRotationTime(record);
  }

  /** The earliest time runDueWork has something to do, for the scheduler (KeyDueWork.nextDueTime). */
  nextDueTime(): number | null {
    return this.due.nextDueTime();
  }

  // ---- resolving keys for operations (key-use.ts) ----

  /** The primary version of an enabled AEAD key, with `n` encryptions counted (KeyUse.forEncrypt). */
  forEncrypt(name: string, n = 1): Promise<ResolvedVersion<AeadSuite>> {
    return this.use.forEncrypt(name, n);
  }

  /** Counts `n` more encryptions on a version resolved earlier, a stream's (KeyUse.countEncryptions). */
  countEncryptions(r: ResolvedVersion<AeadSuite>, n: number): Promise<void> {
    return this.use.countEncryptions(r, n);
  }

  /** What countEncryptions checks before it counts `n`, and a seal once the kernel answered (KeyUse.checkStreamVersion). */
  checkStreamVersion(r: ResolvedVersion<AeadSuite>, n = 0, subject: 'stream' | 'request' = 'stream'): KeyRecord {
    return this.use.checkStreamVersion(r, n, subject);
  }

  /** A version of an AEAD key that may decrypt (found by the id in a ciphertext). */
  forDecrypt(keyId: Buffer, version: number, suiteName: string): ResolvedVersion<AeadSuite> {
    return this.use.forDecrypt(keyId, version, suiteName);
  }

  forMac(name: string): ResolvedVersion<MacSuite> {
    return this.use.forMac(name);
  }

  /** A MAC key's version resolved before the kernel ran, checked again once it answered (as checkStreamVersion for a seal). */
  checkMacVersion(r: ResolvedVersion<MacSuite>): void {
    this.use.checkMacVersion(r);
  }

  forVerify(name: string, version: number | undefined): ResolvedVersion<MacSuite> {
    return this.use.forVerify(name, version);
  }

  // ---- internals ----

  /** A key that may change (not pending deletion). */
  private changeable(name: string): KeyRecord {
    const record = this.index.get(name);
    if (record.state === 'pending_deletion') {
      // Once its time has passed the cancel is refused too: not advised (found by review).
      throw pendingDeletion(record, this.deletionPassed(record) ? 'its waiting period has passed, so the deletion can no longer be cancelled; the daemon destroys the key at its next pass' : 'cancel the deletion first');
    }
    return record;
  }

  /**
   * Whether a pending deletion's time has passed, judged as the scheduler's next run will: after
   * postponing by a forward step of the clock it has not yet postponed deletions by. One reading of
   * the wall clock for both: a step between two would count half.
   */
  private deletionPassed(record: KeyRecord): boolean {
    const now = this.now();
    return record.deletionTime !== null && record.deletionTime + (this.deps.pendingClockPostponementMs?.(now) ?? 0) <= now;
  }

  /**
   * `callerUid`: who asked for the rotation (RotateKey); the new version is charged to it. Without
   * one (on schedule, at the encryption limit) it is charged to the key's creator, if recorded: a
   * key's owner pays for its own schedule.
   */
  private async rotateLocked(record: KeyRecord, material: Buffer | undefined, why: string, callerUid?: number): Promise<KeyRecord> {
    const made = await this.makeVersion(record, material, why, callerUid);
    await this.saveVersions([made]);
    return made.next;
  }

  /**
   * Rotates each of `records` on schedule (KeyDueWork), all in one state write: a write per key
   * rewrote the whole file each time, so a thousand keys due at once took a thousand writes of the
   * whole file (review by helper-190). A key whose new version cannot be made (a cap, the kernel
   * key quota) is left out and returned as failed; a failed write fails them all and changes
   * nothing, in memory, on disk or in the kernel. Under the lock.
   */
  private async rotateManyLocked(records: readonly KeyRecord[], why: string): Promise<{ rotated: KeyRecord[]; failed: { record: KeyRecord; err: unknown }[] }> {
    const made: MadeVersion[] = [];
    const failed: { record: KeyRecord; err: unknown }[] = [];
    for (const record of records) {
      try {
        // The versions made before it count toward the caps, though not yet indexed.
        made.push(await this.makeVersion(record, undefined, why, undefined, made.map((m) => m.maker)));
      } catch (err) {
        failed.push({ record, err });
      }
    }
    if (made.length === 0) return { rotated: [], failed };
    try {
      await this.saveVersions(made);
    } catch (err) {
      return { rotated: [], failed: [...failed, ...made.map((m) => ({ record: m.record, err }))] };
    }
    return { rotated: made.map((m) => m.next), failed };
  }

  /**
   * A new version of the key: its kernel keys and wrapped blobs, and the record with it, neither
   * saved nor indexed (saveVersions). `unsaved`: the makers of other versions made for the same
   * save, counted toward the caps (KeyPolicy.checkRoom).
   */
  private async makeVersion(record: KeyRecord, material: Buffer | undefined, why: string, callerUid?: number, unsaved: readonly (number | undefined)[] = []): Promise<MadeVersion> {
    // CreateKey refuses the suite on this kernel; a rotation would make a version nobody could use here.
    const refusal = keySuiteRefusal(this.deps.suiteStatus, record, 'rotate');
    if (refusal) throw refusal;
    const maker = callerUid ?? record.creatorUid;
    this.policy.checkRoom(record.name, maker, record, callerUid === undefined, unsaved);
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
      this.policy.checkCanSeal(record.name);
      const fingerprints = await this.deps.fingerprints.refuseReused(material, suite.keyBytes, record);
      made = { ...(await this.deps.material.import(record.id, version, suite, material)), fingerprints };
    }
    const now = this.now();
    const next = structuredClone(record);
    next.versions.push({ version, createTime: now, blobs: made.blobs, encryptionsReserved: 0, ...(maker !== undefined ? { creatorUid: maker } : {}) });
    next.rotateTime = now;
    next.updateTime = now;
    return { record, next, version, serials: made.serials, maker, why, ...(made.fingerprints ? { fingerprints: made.fingerprints } : {}) };
  }

  /**
   * Persists the new versions in one write, then makes them usable. A failed write destroys their
   * kernel keys (none was used: nothing may encrypt under a version before it is saved) and
   * changes nothing in memory.
   */
  private async saveVersions(made: readonly MadeVersion[]): Promise<void> {
    try {
      await this.writes.persistWith({ put: made.map((m) => m.next) });
    } catch (err) {
      for (const m of made) this.deps.material.destroy(m.serials);
      throw err;
    }
    for (const { record, next, version, serials, fingerprints, why } of made) {
      // All at once, with no await in between: nobody may see the new version before its kernel keys
      // and its count are there (forEncrypt's fast path would resolve it without serials).
      this.index.addVersion(next, serials);
      if (fingerprints) this.deps.fingerprints.add(fingerprints, { keyId: record.id, version });
      this.deps.log('key rotated', { key_name: record.name, version, reason: why }, 'event');
      this.policy.warnIfAtVersionCap(next);
    }
  }

  private newId(): string {
    let id: string;
    do id = randomBytes(16).toString('hex');
    while (this.index.hasId(id));
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
      await this.writes.persistWith({ put: record });
    } catch (err) {
      this.deps.material.destroy(serials);
      throw err;
    }
    this.index.index(record, [serials], [0]);
    this.deps.log('key created', { key_name: record.name, keyId: record.id, suite: record.suite, origin: record.origin }, 'event');
    return record;
  }

  /** Destroys every kernel key this manager loaded (daemon shutdown). */
  close(): void {
    this.writes.close();
    this.index.clear();
    this.deps.fingerprints.close();
  }
}
