/**
 * Resolving a key version for one operation (encrypt, decrypt, MAC, verify), and counting a
 * version's encryptions against its limit (the nonces' bound): the count never passes what the
 * state file has reserved. The key manager (key-manager.ts) lends its lock, its persisted writes
 * and its rotation; the encryption hot path only takes the lock when a new block must be reserved.
 */
import type { AeadSuite, MacSuite } from '../../capabilities/suites.js';
import type { AlgStatus } from '../../capabilities/probe.js';
import { ApiError, ErrorReason, Status, keyNotFound } from '../api/errors.js';
import { isCapRefusal } from './key-caps.js';
import { limitReached, pendingDeletion } from './key-errors.js';
import type { KeyIndex } from './key-index.js';
import type { KeyPolicyLimits } from './key-policy.js';
import type { Mutex } from './mutex.js';
import { keySuiteRefusal } from './suite-choice.js';
import { type KeyRecord, type Purpose, suiteOf } from './model.js';

/** A key version resolved for one operation: everything the crypto layer needs. */
export interface ResolvedVersion<S extends AeadSuite | MacSuite = AeadSuite | MacSuite> {
  key: KeyRecord;
  version: number;
  suite: S;
  serials: readonly number[];
}

/** The key manager's settings KeyUse reads (KeyManagerDeps). */
export interface KeyUseDeps {
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
}

/** What KeyUse needs of the key manager: its lock, and the changes it makes under it. */
export interface KeyUseHost {
  lock: Mutex;
  /** Whether a pending deletion's time has passed, so that it can no longer be cancelled (KeyManager.cancelDeletion). */
  deletionPassed(record: KeyRecord): boolean;
  /** Persists `next` in place of the record with its id, then swaps it in (KeyWrites.replace). Under the lock. */
  replace(next: KeyRecord, touch: boolean): Promise<KeyRecord>;
  /** Rotates a generated key (KeyManager.rotateLocked). Under the lock. */
  rotateLocked(record: KeyRecord, material: Buffer | undefined, why: string): Promise<KeyRecord>;
}

export class KeyUse {
  constructor(
    private readonly index: KeyIndex,
    private readonly deps: KeyUseDeps,
    private readonly host: KeyUseHost,
  ) {}

  encryptionLimit(record: KeyRecord): number {
    const suite = suiteOf(record);
    if (suite.kind !== 'aead') return 0;
    return Math.min(suite.invocationLimit, this.deps.limits.encryptionLimit ?? Infinity);
  }

  /**
   * The primary version of an enabled AEAD key, with `n` encryptions counted. The count never passes
   * what the state file has reserved: a new block is persisted first when needed (under the lock),
   * and a generated key is rotated first when its primary version would pass its encryption limit.
   */
  async forEncrypt(name: string, n = 1): Promise<ResolvedVersion<AeadSuite>> {
    const record = this.usable(name, 'aead');
    this.index.serialsOf(record, record.versions.length); // nothing is counted for a version this kernel could not load
    this.checkSuiteUsable(record);
    // Fast path: within the persisted reservation, counted at once (no await between check and count).
    if (this.tryCount(record, record.versions.length, n, this.newWorkLimit(record))) return this.resolved(record, record.versions.length);
    return this.host.lock.run(async () => {
      // Re-resolved each round: a rotation or another caller may have changed the key meanwhile.
      for (;;) {
        const current = this.usable(name, 'aead');
        const v = current.versions.length;
        const limit = this.encryptionLimit(current);
        const count = this.index.encryptionCount(current, v);
        if (count + n > this.newWorkLimit(current)) {
          if (current.origin !== 'generated') throw limitReached(current, v, limit, 'rotate it with new material');
          // Not even a fresh version could take them (a rotation would not help: refuse, never loop).
          if (n > this.newWorkLimit(current)) {
            throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED, `key "${name}" cannot count ${n} encryptions at once: a new version takes at most ${this.newWorkLimit(current)}`, { key_name: name, key_version: String(v), encryption_limit: String(limit) });
          }
          try {
            await this.host.rotateLocked(current, undefined, 'encryption limit');
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
    await this.host.lock.run(async () => {
      for (;;) {
        const current = check();
        if (this.tryCount(current, r.version, n)) return;
        await this.reserve(current, r.version, this.index.encryptionCount(current, r.version) + n);
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
    const current = this.index.withId(r.key.id);
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
    if (this.index.encryptionCount(current, r.version) + n > limit) {
      // An imported key has no rotated version to move to: a new stream is refused too until it is rotated.
      const what = current.origin === 'generated' ? 'start a new stream (it will use the rotated version)' : 'rotate it with new material, then start a new stream';
      throw limitReached(current, r.version, limit, what, 'mid-stream');
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
    const counts = this.index.countsOf(record.id);
    const reserved = record.versions[v - 1]?.encryptionsReserved;
    if (!counts || reserved === undefined || counts[v - 1]! + n > Math.min(reserved, cap)) return false;
    counts[v - 1]! += n;
    return true;
  }

  /** Persists a reservation of at least `upTo` encryptions (plus a block, up to the limit) for version `v`. Under the lock. */
  private async reserve(record: KeyRecord, v: number, upTo: number): Promise<void> {
    const next = structuredClone(record);
    next.versions[v - 1]!.encryptionsReserved = Math.min(this.encryptionLimit(record), upTo + (this.deps.limits.reservationBlock ?? 4096));
    await this.host.replace(next, false);
  }

  private resolved(record: KeyRecord, v: number): ResolvedVersion<AeadSuite> {
    return { key: record, version: v, suite: suiteOf(record) as AeadSuite, serials: this.index.serialsOf(record, v) };
  }

  /** A version of an AEAD key that may decrypt (found by the id in a ciphertext). */
  forDecrypt(keyId: Buffer, version: number, suiteName: string): ResolvedVersion<AeadSuite> {
    const record = this.index.withId(keyId.toString('hex'));
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
    const serials = this.index.serialsOf(record, v);
    this.checkSuiteUsable(record);
    return { key: record, version: v, suite: suiteOf(record) as MacSuite, serials };
  }

  /** A MAC key's version resolved before the kernel ran, checked again once it answered (as checkStreamVersion for a seal). */
  checkMacVersion(r: ResolvedVersion<MacSuite>): void {
    const current = this.index.withId(r.key.id);
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
    return { key: record, version, serials: this.index.serialsOf(record, version) };
  }

  /** An enabled key of the purpose, else the error that says why not. */
  private usable(name: string, purpose: Purpose): KeyRecord {
    const record = this.index.get(name);
    if (record.state === 'pending_deletion') {
      throw pendingDeletion(record, this.host.deletionPassed(record) ? 'its waiting period has passed, so it can no longer be cancelled; the daemon destroys the key at its next pass' : 'cancel the deletion to use it');
    }
    if (record.state === 'disabled') throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED, `key "${name}" is disabled; enable it to use it`, { key_name: name });
    if (record.purpose !== purpose) {
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH, `key "${name}" is ${record.purpose === 'aead' ? 'an AEAD' : 'a MAC'} key; this operation needs ${purpose === 'aead' ? 'an AEAD' : 'a MAC'} key`, { key_name: name, purpose: record.purpose.toUpperCase() });
    }
    return record;
  }
}
