/**
 * What the daemon persists about its keys (state.json, via StateStore): metadata and, per version,
 * what brings the kernel keys back after a restart. Never key material: generated versions keep the
 * kernel's wrapped `encrypted`-key blob, imported versions their material sealed under the master key
 * inside the kernel (see material.ts). Times are milliseconds since the epoch.
 */
import type { ClockAnchor } from './wall-clock-gain.js';
import { aeadSuite, macSuite, type AeadSuite, type MacSuite } from '../../capabilities/suites.js';

export type Purpose = 'aead' | 'mac';
export type Origin = 'generated' | 'imported';
export type KeyStateName = 'enabled' | 'disabled' | 'pending_deletion';

export interface VersionRecord {
  version: number;
  createTime: number;
  /** One per kernel key of the suite (encrypt-then-MAC has two). */
  blobs: string[];
  /**
   * Encryptions reserved for this version, persisted before any of them is used: after a crash the
   * count resumes from here, so it may overcount by at most one reservation block, never undercount.
   */
  encryptionsReserved: number;
  /**
   * The uid that made this version, charged for it under Limits.maxKeyVersionsPerCaller: the caller
   * of the RotateKey that made it; for a rotation made without a caller (on schedule, at the
   * encryption limit) the key's creatorUid. Absent from version 1 (made with the key) and from
   * versions saved before it was recorded: those are the key's creator's (see versionMaker).
   */
  creatorUid?: number;
}

export interface KeyRecord {
  /** 32 lowercase hex digits; the 16-byte id every ciphertext embeds. */
  id: string;
  name: string;
  purpose: Purpose;
  suite: string;
  origin: Origin;
  state: KeyStateName;
  minDecryptionVersion: number;
  rotationPeriodMs: number | null;
  deletionProtection: boolean;
  createTime: number;
  rotateTime: number | null;
  updateTime: number;
  deletionTime: number | null;
  versions: VersionRecord[];
  /**
   * The uid (SO_PEERCRED) that created or imported the key, for the per-caller caps on keys and
   * versions (Limits.maxKeysPerCaller, maxKeyVersionsPerCaller). Absent from keys saved before it
   * was recorded (state files stay format 1 and load as they were), and from keys made without a
   * caller: those count toward no caller's caps, only the daemon's.
   */
  creatorUid?: number;
}

export interface PersistedState {
  format: 1;
  /** A random value sealed under the master key: opening it at start-up proves the master key matches. */
  masterCheck: string | null;
  keys: KeyRecord[];
  /** The clocks as of this write (wall-clock-gain.ts), where the kernel gives a boot id. */
  clock?: ClockAnchor;
}

export const EMPTY_STATE: PersistedState = { format: 1, masterCheck: null, keys: [] };

export function suiteOf(record: Pick<KeyRecord, 'suite' | 'purpose'>): AeadSuite | MacSuite {
  const suite = record.purpose === 'aead' ? aeadSuite(record.suite) : macSuite(record.suite);
  if (!suite) throw new Error(`unknown ${record.purpose} suite "${record.suite}" in the state file`);
  return suite;
}

/**
 * Who a version is charged to under the per-caller caps: the uid recorded on it, else the key's
 * creator (version 1, made with the key; versions rotated before makers were recorded, which were
 * charged to the key's creator then too), else nobody (the daemon-wide caps only).
 */
export function versionMaker(record: Pick<KeyRecord, 'creatorUid'>, version: Pick<VersionRecord, 'creatorUid'>): number | undefined {
  return version.creatorUid ?? record.creatorUid;
}

export function primaryVersion(record: KeyRecord): VersionRecord {
  return record.versions[record.versions.length - 1]!;
}

/**
 * The time the next time-based rotation is due, or null. A period below `minPeriodMs` (saved when
 * the minimum was lower) counts as the minimum, which the record itself keeps unchanged.
 */
export function nextRotationTime(record: KeyRecord, minPeriodMs = 0): number | null {
  if (record.rotationPeriodMs === null || record.origin !== 'generated') return null;
  return (record.rotateTime ?? record.createTime) + Math.max(record.rotationPeriodMs, minPeriodMs);
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** NAME in words, for errors (which never quote a name that breaks it: it may hold control characters). */
export const KEY_NAME_RULE = '1 to 64 characters from [A-Za-z0-9._-], starting with a letter or digit';
export function isValidKeyName(name: string): boolean {
  return NAME.test(name);
}

/** A value from the state file fit to quote in an error: short identifiers only, never anything blob-like. */
function quote(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (typeof value === 'string' && /^[A-Za-z0-9._-]{0,40}$/.test(value)) return JSON.stringify(value);
  return `a ${Array.isArray(value) ? 'array' : typeof value} value`;
}

/** The latest time a Date holds (and so toISOString and a protobuf Timestamp): times beyond it are refused on load. */
export const MAX_TIME_MS = 8.64e15;
/** The largest uid: uid_t is 32 bits, and (uid_t)-1 means "none". */
const MAX_UID = 0xffff_fffe;
const isUid = (u: unknown): boolean => Number.isInteger(u) && (u as number) >= 0 && (u as number) <= MAX_UID;
export const MAX_ROTATION_PERIOD_MS = 3_155_760_000_000; // 100 years

/** A bound in messages: the largest unit that divides it ("1d", "1h", "90s", "1500ms"), as configured. */
export function boundText(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const isTime = (t: unknown): t is number => typeof t === 'number' && Number.isFinite(t) && Math.abs(t) <= MAX_TIME_MS;
const isObject = (o: unknown): o is Record<string, unknown> => typeof o === 'object' && o !== null && !Array.isArray(o);

/**
 * The state from what StateStore.load() read: undefined (no file yet) is the empty state; anything
 * else is validated, so a file holding `null` is refused like any other non-object.
 */
export function loadedState(loaded: unknown, file: string): PersistedState {
  return validateState(loaded === undefined ? EMPTY_STATE : loaded, file);
}

/** Checks a parsed state.json; throws naming the first problem (never echoing blobs). */
export function validateState(doc: unknown, file: string): PersistedState {
  const fail = (what: string): never => {
    throw new Error(`${file}: ${what}; the file was left untouched — restore it from a backup or move it away to start empty`);
  };
  if (!isObject(doc)) return fail('not a JSON object');
  const d = doc;
  if (d.format !== 1) fail(`unsupported format ${quote(d.format)} (this daemon reads format 1)`);
  if (d.masterCheck !== null && typeof d.masterCheck !== 'string') fail('masterCheck is not a string');
  if (!Array.isArray(d.keys)) fail('keys is not an array');
  if (d.clock !== undefined) {
    const c = d.clock;
    const within = (v: unknown, min: number) => typeof v === 'number' && v >= min && v <= MAX_TIME_MS;
    if (!isObject(c) || typeof c.bootId !== 'string' || !within(c.wallMs, -MAX_TIME_MS) || !within(c.monoMs, 0) || !within(c.unpostponedMs, 0)) fail('clock is not { bootId, wallMs, monoMs, unpostponedMs } within ±8.64e15 ms');
  }
  const names = new Set<string>();
  const ids = new Set<string>();
  for (const [i, k] of (d.keys as unknown[]).entries()) {
    const at = `keys[${i}]`;
    if (!isObject(k)) return fail(`${at} is not an object`);
    const r = k as unknown as KeyRecord;
    if (typeof r.name !== 'string' || !isValidKeyName(r.name)) fail(`${at}.name is not a valid key name`);
    if (names.has(r.name)) fail(`${at}.name "${r.name}" is repeated`);
    if (typeof r.id !== 'string' || !/^[0-9a-f]{32}$/.test(r.id)) fail(`${at}.id is not 32 lowercase hex digits`);
    if (ids.has(r.id)) fail(`${at}.id is repeated`);
    names.add(r.name);
    ids.add(r.id);
    if (r.purpose !== 'aead' && r.purpose !== 'mac') fail(`${at}.purpose ${quote(r.purpose)} is neither "aead" nor "mac"`);
    let suite: AeadSuite | MacSuite;
    try {
      suite = suiteOf(r);
    } catch {
      return fail(`${at}.suite ${quote(r.suite)} is not a ${r.purpose} suite`);
    }
    if (r.origin !== 'generated' && r.origin !== 'imported') fail(`${at}.origin ${quote(r.origin)} is neither "generated" nor "imported"`);
    if (!['enabled', 'disabled', 'pending_deletion'].includes(r.state)) fail(`${at}.state ${quote(r.state)} is invalid`);
    if (typeof r.deletionProtection !== 'boolean') fail(`${at}.deletionProtection is not a boolean`);
    if (!isTime(r.createTime)) fail(`${at}.createTime is not a time (ms since the epoch, within ±8.64e15)`);
    if (!isTime(r.updateTime)) fail(`${at}.updateTime is not a time (ms since the epoch, within ±8.64e15)`);
    if (r.rotateTime !== null && !isTime(r.rotateTime)) fail(`${at}.rotateTime is neither null nor a time (ms since the epoch, within ±8.64e15)`);
    if (r.deletionTime !== null && !isTime(r.deletionTime)) fail(`${at}.deletionTime is neither null nor a time (ms since the epoch, within ±8.64e15)`);
    if (r.rotationPeriodMs !== null && !(isTime(r.rotationPeriodMs) && r.rotationPeriodMs > 0 && r.rotationPeriodMs <= MAX_ROTATION_PERIOD_MS)) fail(`${at}.rotationPeriodMs is neither null nor a positive number up to 100 years`);
    if (!Array.isArray(r.versions) || r.versions.length === 0) fail(`${at}.versions is not a non-empty array`);
    for (const [j, v] of (r.versions as unknown[]).entries()) {
      const vat = `${at}.versions[${j}]`;
      if (!isObject(v)) return fail(`${vat} is not an object`);
      if (v.version !== j + 1) fail(`${vat}.version is not ${j + 1}`);
      if (!isTime(v.createTime)) fail(`${vat}.createTime is not a time (ms since the epoch, within ±8.64e15)`);
      if (!Array.isArray(v.blobs) || !v.blobs.every((b) => typeof b === 'string' && b.length > 0)) fail(`${vat}.blobs is not an array of non-empty strings`);
      if ((v.blobs as unknown[]).length !== suite.keyBytes.length) fail(`${vat}.blobs has ${(v.blobs as unknown[]).length} entries, but suite ${suite.name} needs ${suite.keyBytes.length}`);
      if (!Number.isSafeInteger(v.encryptionsReserved) || (v.encryptionsReserved as number) < 0) fail(`${vat}.encryptionsReserved is not a non-negative integer`);
      if (v.creatorUid !== undefined && !isUid(v.creatorUid)) fail(`${vat}.creatorUid is not a uid (an integer from 0 to ${MAX_UID})`);
    }
    if (!Number.isInteger(r.minDecryptionVersion) || r.minDecryptionVersion < 1 || r.minDecryptionVersion > r.versions.length) {
      fail(`${at}.minDecryptionVersion ${quote(r.minDecryptionVersion)} is not between 1 and ${r.versions.length} (the primary version)`);
    }
    if (r.creatorUid !== undefined && !isUid(r.creatorUid)) fail(`${at}.creatorUid is not a uid (an integer from 0 to ${MAX_UID})`);
    if (r.state === 'pending_deletion' && r.deletionTime === null) fail(`${at} is pending deletion without a deletionTime`);
  }
  return d as unknown as PersistedState;
}

/** A key manager line's level; 'event': a key created, rotated or destroyed, written at every log level (daemon-logger.ts). */
export type KeyLogLevel = 'info' | 'warn' | 'event';
