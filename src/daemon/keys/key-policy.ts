/**
 * The key manager's policy checks of a new key or version (key-manager.ts): its name and suite,
 * its rotation period, the caps on keys and versions (key-caps.ts), whether imported material can
 * be sealed; and the warnings when a key or the daemon is at a cap. They refuse or warn only: the
 * key manager makes the change.
 */
import type { AeadSuite, MacSuite } from '../../capabilities/suites.js';
import type { AlgStatus } from '../../capabilities/probe.js';
import { ApiError, ErrorReason, Status, invalidField } from '../api/errors.js';
import { atVersionCap, capRefusal, withUnsavedVersions } from './key-caps.js';
import type { KeyIndex } from './key-index.js';
import { chooseSuite } from './suite-choice.js';
import { WRAP_SUITES, type KeyMaterial } from './material.js';
import { type KeyLogLevel, type KeyRecord, type Purpose, boundText, isValidKeyName, KEY_NAME_RULE, MAX_ROTATION_PERIOD_MS, nextRotationTime } from './model.js';

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

/** The key manager's settings KeyPolicy reads (KeyManagerDeps). */
export interface KeyPolicyDeps {
  material: KeyMaterial;
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: KeyLogLevel) => void;
  uncappedCallers?: ReadonlySet<number>;
}

export class KeyPolicy {
  constructor(
    private readonly index: KeyIndex,
    private readonly deps: KeyPolicyDeps,
  ) {}

  /**
   * Says at start-up when the state already holds as many keys or versions as the daemon-wide caps
   * allow (a state from before the caps, or caps lowered): the daemon serves it, but refuses new
   * keys, or every rotation, scheduled and at the encryption limit included, until keys are deleted.
   */
  warnIfAtDaemonCaps(): void {
    const { maxKeys, maxKeyVersions } = this.deps.limits;
    const { keys, versions } = this.index.keyCounts(undefined);
    if (maxKeys !== undefined && keys >= maxKeys) {
      this.deps.log(`the state holds ${keys} keys, at or above limits.maxKeys (${maxKeys}): CreateKey and ImportKey are refused until keys are deleted or the limit is raised`, { keys, maxKeys }, 'warn');
    }
    if (maxKeyVersions !== undefined && versions >= maxKeyVersions) {
      this.deps.log(`the state's keys have ${versions} versions, at or above limits.maxKeyVersions (${maxKeyVersions}): every rotation is refused (scheduled ones, and a generated key's at its encryption limit, which then refuses encryption), and so are new keys, until keys are deleted or the limit is raised with the kernel key quota`, { versions, maxKeyVersions }, 'warn');
    }
  }

  /**
   * Refuses (KEY_LIMIT_REACHED) a new key named `name` of `creatorUid`, or with `rotating` a new
   * version of that key made by `creatorUid` (`forCreator`: charged to the key's creator, no caller
   * having asked), where it would pass a cap on keys or versions. Counted over every key, those
   * scheduled for deletion included: they hold their kernel keys until deleted. A caller's versions
   * are those it made (versionMaker), on whoever's keys. `unsaved`: the makers of versions made
   * for the same save and not yet indexed (withUnsavedVersions), counted as held.
   */
  checkRoom(name: string, creatorUid: number | undefined, rotating?: KeyRecord, forCreator = false, unsaved: readonly (number | undefined)[] = []): void {
    const caller = creatorUid !== undefined && !this.deps.uncappedCallers?.has(creatorUid) ? creatorUid : undefined;
    const refusal = capRefusal(this.deps.limits, { name, uid: caller, rotating, forCreator }, withUnsavedVersions(this.index.keyCounts(caller), caller, unsaved));
    if (refusal) throw refusal;
  }

  /** Says once, when a key with a rotation period reaches maxVersionsPerKey, that it no longer rotates on schedule. */
  warnIfAtVersionCap(record: KeyRecord): void {
    if (nextRotationTime(record) === null || !atVersionCap(record, this.deps.limits)) return;
    this.deps.log(`key "${record.name}" has ${record.versions.length} versions, its limit (maxVersionsPerKey ${this.deps.limits.maxVersionsPerKey}): it is no longer rotated on schedule; create a new key and move to it, or raise limits.maxVersionsPerKey in the daemon's config`, { key_name: record.name, versions: record.versions.length, maxVersionsPerKey: this.deps.limits.maxVersionsPerKey }, 'warn');
  }

  chooseSuite(name: string, purpose: Purpose | undefined, suiteName: string | undefined, materialBytes?: number): AeadSuite | MacSuite {
    if (!isValidKeyName(name)) throw invalidField('name', `key names are ${KEY_NAME_RULE}`);
    if (this.index.has(name)) throw new ApiError(Status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS, `key "${name}" already exists`, { key_name: name });
    return chooseSuite(this.deps.suiteStatus, purpose, suiteName, materialBytes);
  }

  /** Imported material is persisted sealed under the master key, which needs a sealing suite. */
  checkCanSeal(name: string): void {
    if (this.deps.material.canSeal) return;
    const names = WRAP_SUITES.map((s) => s.name).join(', ');
    throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `cannot import key material for "${name}": it is kept sealed under the master key with one of ${names}, and this kernel allows none of them; see \`ringfence doctor\``, {
      key_name: name,
      suite: WRAP_SUITES.map((s) => s.name).join(','),
    });
  }

  checkRotationPeriod(ms: number | null): number | null {
    if (ms === null || ms === 0) return null;
    const min = this.deps.limits.minRotationPeriodMs;
    if (!Number.isFinite(ms) || ms < min || ms > MAX_ROTATION_PERIOD_MS) {
      throw invalidField('rotation_period', `the rotation period must be between ${boundText(min)} and 100 years`);
    }
    return ms;
  }
}
