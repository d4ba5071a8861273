/**
 * The caps on keys and key versions (config.ts Limits maxKeys, maxKeysPerCaller, maxVersionsPerKey,
 * maxKeyVersions, maxKeyVersionsPerCaller). Every version is a kernel key (two for encrypt-then-MAC)
 * charged to the daemon's uid: without them one caller allowed to create or rotate could use up
 * that uid's kernel key quota, and every other caller's CreateKey, RotateKey and scheduled rotation
 * would fail (found by review). A key scheduled for deletion counts until it is deleted.
 */
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { type KeyRecord, versionMaker } from './model.js';

export interface KeyCaps {
  maxKeys?: number;
  maxKeysPerCaller?: number;
  maxVersionsPerKey?: number;
  maxKeyVersions?: number;
  maxKeyVersionsPerCaller?: number;
}

/**
 * What the daemon holds now: in all, and the caller's: the keys it created (creatorUid) and the
 * versions it made (model.ts versionMaker: version 1 of each key it created, and the versions its
 * RotateKey calls made, on any key).
 */
export interface KeyCounts {
  keys: number;
  versions: number;
  callerKeys: number;
  callerVersions: number;
}

/**
 * The counts the caps are checked against (and GetStatus reports), over every key, those scheduled
 * for deletion included. `uid` undefined: no caller, its counts 0.
 */
export function countKeys(records: Iterable<KeyRecord>, uid: number | undefined): KeyCounts {
  const n = { keys: 0, versions: 0, callerKeys: 0, callerVersions: 0 };
  for (const r of records) {
    n.keys++;
    n.versions += r.versions.length;
    if (uid === undefined) continue;
    if (r.creatorUid === uid) n.callerKeys++;
    for (const v of r.versions) if (versionMaker(r, v) === uid) n.callerVersions++;
  }
  return n;
}

/**
 * `counts` with versions made but not yet saved or indexed added (`makers`: whom each is charged
 * to): the scheduled rotations of one save (key-manager.ts rotateManyLocked). Without them each
 * rotation of the batch would be checked against the counts from before the batch, and the batch
 * could pass maxKeyVersions or maxKeyVersionsPerCaller.
 */
export function withUnsavedVersions(counts: KeyCounts, uid: number | undefined, makers: readonly (number | undefined)[]): KeyCounts {
  if (makers.length === 0) return counts;
  const callerVersions = uid === undefined ? 0 : makers.filter((m) => m === uid).length;
  return { ...counts, versions: counts.versions + makers.length, callerVersions: counts.callerVersions + callerVersions };
}

/** Whether the key has as many versions as a key may have: it can rotate no more. */
export function atVersionCap(record: KeyRecord, caps: KeyCaps): boolean {
  return caps.maxVersionsPerKey !== undefined && record.versions.length >= caps.maxVersionsPerKey;
}

const DELETE = 'keys scheduled for deletion count until they are deleted';

/**
 * The refusal of a new key named `name` (or with `rotating`, a new version of that key) that would
 * pass a cap, or undefined. `uid`: the uid the new key or version is charged to, if held to the
 * per-caller caps. `forCreator`: a rotation charged to the key's creator because no caller asked
 * for it (on schedule, at the encryption limit): its refusal may reach another caller (Encrypt's
 * ENCRYPTION_LIMIT_REACHED quotes it), so its message names neither the creator's uid nor its counts.
 */
export function capRefusal(caps: KeyCaps, want: { name: string; uid: number | undefined; rotating?: KeyRecord | undefined; forCreator?: boolean }, n: KeyCounts): ApiError | undefined {
  const { name, uid, rotating, forCreator } = want;
  const refuse = (limit: string, value: number, message: string) =>
    new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.KEY_LIMIT_REACHED, message, {
      limit,
      limit_value: String(value),
      key_name: name,
      ...(uid !== undefined && limit.endsWith('_per_caller') ? { uid: String(uid) } : {}),
    });
  const raise = (setting: keyof KeyCaps) => `or have the operator raise limits.${setting} in the daemon's config`;
  const { maxKeys, maxKeysPerCaller, maxVersionsPerKey, maxKeyVersions, maxKeyVersionsPerCaller } = caps;
  if (rotating) {
    if (maxVersionsPerKey !== undefined && rotating.versions.length >= maxVersionsPerKey) {
      return refuse('versions_per_key', maxVersionsPerKey, `key "${name}" has ${rotating.versions.length} versions, its limit (maxVersionsPerKey ${maxVersionsPerKey}), and versions are never removed: create a new key and move to it, ${raise('maxVersionsPerKey')}`);
    }
  } else {
    if (uid !== undefined && maxKeysPerCaller !== undefined && n.callerKeys >= maxKeysPerCaller) {
      return refuse('keys_per_caller', maxKeysPerCaller, `uid ${uid} already created ${n.callerKeys} keys, its limit (maxKeysPerCaller ${maxKeysPerCaller}; ${DELETE}): delete keys it no longer needs, ${raise('maxKeysPerCaller')}`);
    }
    if (maxKeys !== undefined && n.keys >= maxKeys) {
      return refuse('keys', maxKeys, `the daemon already holds ${n.keys} keys, its limit (maxKeys ${maxKeys}; ${DELETE}): delete keys that are no longer needed, ${raise('maxKeys')}`);
    }
  }
  if (uid !== undefined && maxKeyVersionsPerCaller !== undefined && n.callerVersions >= maxKeyVersionsPerCaller) {
    const mine = 'the first versions of the keys it created and the versions it rotated in, on any key';
    return refuse('key_versions_per_caller', maxKeyVersionsPerCaller, forCreator
      ? `the creator of key "${name}" already made as many key versions as it may (maxKeyVersionsPerCaller ${maxKeyVersionsPerCaller}; ${DELETE}): it should delete keys it no longer needs, ${raise('maxKeyVersionsPerCaller')}`
      : `uid ${uid} already made ${n.callerVersions} key versions (${mine}), its limit (maxKeyVersionsPerCaller ${maxKeyVersionsPerCaller}; ${DELETE}): delete keys it no longer needs, ${raise('maxKeyVersionsPerCaller')}`);
  }
  if (maxKeyVersions !== undefined && n.versions >= maxKeyVersions) {
    return refuse('key_versions', maxKeyVersions, `the daemon's keys already have ${n.versions} versions together, its limit (maxKeyVersions ${maxKeyVersions}; each is a kernel key; ${DELETE}): delete keys that are no longer needed, ${raise('maxKeyVersions')} (and the kernel key quota with it, see deploy/sysctl.d)`);
  }
  return undefined;
}

/** A refusal of capRefusal's, with its metadata. */
export function isCapRefusal(err: unknown): err is ApiError {
  return err instanceof ApiError && err.reason === ErrorReason.KEY_LIMIT_REACHED;
}
