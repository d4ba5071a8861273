/**
 * What the daemon persists about its keys (state.json, via StateStore): metadata and, per version,
 * what brings the kernel keys back after a restart. Never key material: generated versions keep the
 * kernel's wrapped `encrypted`-key blob, imported versions their material sealed under the master key
 * inside the kernel (see material.ts). Times are milliseconds since the epoch.
 */
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
}

export interface PersistedState {
  format: 1;
  /** A random value sealed under the master key: opening it at start-up proves the master key matches. */
  masterCheck: string | null;
  keys: KeyRecord[];
}

export const EMPTY_STATE: PersistedState = { format: 1, masterCheck: null, keys: [] };

export function suiteOf(record: Pick<KeyRecord, 'suite' | 'purpose'>): AeadSuite | MacSuite {
  const suite = record.purpose === 'aead' ? aeadSuite(record.suite) : macSuite(record.suite);
  if (!suite) throw new Error(`unknown ${record.purpose} suite "${record.suite}" in the state file`);
  return suite;
}

export function primaryVersion(record: KeyRecord): VersionRecord {
  return record.versions[record.versions.length - 1]!;
}

/** The time the next time-based rotation is due, or null. */
export function nextRotationTime(record: KeyRecord): number | null {
  if (record.rotationPeriodMs === null || record.origin !== 'generated') return null;
  return (record.rotateTime ?? record.createTime) + record.rotationPeriodMs;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export function isValidKeyName(name: string): boolean {
  return NAME.test(name);
}

/** Checks a parsed state.json; throws naming the first problem (never echoing blobs). */
export function validateState(doc: unknown, file: string): PersistedState {
  const fail = (what: string): never => {
    throw new Error(`${file}: ${what}; the file was left untouched — restore it from a backup or move it away to start empty`);
  };
  if (typeof doc !== 'object' || doc === null) fail('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== 1) fail(`unsupported format ${JSON.stringify(d.format)} (this daemon reads format 1)`);
  if (d.masterCheck !== null && typeof d.masterCheck !== 'string') fail('masterCheck is not a string');
  if (!Array.isArray(d.keys)) fail('keys is not an array');
  const names = new Set<string>();
  const ids = new Set<string>();
  for (const [i, k] of (d.keys as unknown[]).entries()) {
    const r = k as KeyRecord;
    const at = `keys[${i}]`;
    if (typeof r !== 'object' || r === null) fail(`${at} is not an object`);
    if (typeof r.name !== 'string' || !isValidKeyName(r.name) || names.has(r.name)) fail(`${at}.name is invalid or repeated`);
    if (typeof r.id !== 'string' || !/^[0-9a-f]{32}$/.test(r.id) || ids.has(r.id)) fail(`${at}.id is invalid or repeated`);
    names.add(r.name);
    ids.add(r.id);
    if (r.purpose !== 'aead' && r.purpose !== 'mac') fail(`${at}.purpose is invalid`);
    try {
      suiteOf(r);
    } catch {
      fail(`${at}.suite "${String(r.suite)}" is not a ${r.purpose} suite`);
    }
    if (r.origin !== 'generated' && r.origin !== 'imported') fail(`${at}.origin is invalid`);
    if (!['enabled', 'disabled', 'pending_deletion'].includes(r.state)) fail(`${at}.state is invalid`);
    if (!Array.isArray(r.versions) || r.versions.length === 0) fail(`${at}.versions is empty`);
    for (const [j, v] of r.versions.entries()) {
      if (v.version !== j + 1) fail(`${at}.versions[${j}].version is not ${j + 1}`);
      if (!Array.isArray(v.blobs) || v.blobs.length !== suiteOf(r).keyBytes.length || !v.blobs.every((b) => typeof b === 'string')) fail(`${at}.versions[${j}].blobs is invalid`);
      if (!Number.isSafeInteger(v.encryptionsReserved) || v.encryptionsReserved < 0) fail(`${at}.versions[${j}].encryptionsReserved is invalid`);
    }
    if (!Number.isInteger(r.minDecryptionVersion) || r.minDecryptionVersion < 1 || r.minDecryptionVersion > r.versions.length) fail(`${at}.minDecryptionVersion is out of range`);
    if (r.state === 'pending_deletion' && typeof r.deletionTime !== 'number') fail(`${at} is pending deletion without a deletionTime`);
  }
  return d as unknown as PersistedState;
}
