/**
 * Loading the state into the kernel when the daemon starts (KeyManager.open): the master-key check,
 * every key version restored from its blob (or recorded as unloadable on this kernel), and the
 * warnings about what the state holds (rotation periods below the minimum, keys at a cap).
 */
import type { AlgStatus } from '../../capabilities/probe.js';
import { KeystoreError } from '../keystore/errors.js';
import type { MaterialFingerprints } from './fingerprints.js';
import type { KeyIndex } from './key-index.js';
import type { KeyPolicy, KeyPolicyLimits } from './key-policy.js';
import type { KeyWrites } from './key-writes.js';
import type { KeyMaterial } from './material.js';
import type { KeyLogLevel, PersistedState } from './model.js';
import { keySuiteRefusal } from './suite-choice.js';

/** The key manager's settings loadKeys reads (KeyManagerDeps). */
export interface KeyLoadingDeps {
  material: KeyMaterial;
  fingerprints: MaterialFingerprints;
  suiteStatus: (suite: string) => AlgStatus;
  limits: KeyPolicyLimits;
  log: (msg: string, fields?: Record<string, unknown>, level?: KeyLogLevel) => void;
}

/** The key manager's parts loadKeys fills in, and its close() for a start that fails. */
export interface KeyLoadingParts {
  index: KeyIndex;
  policy: KeyPolicy;
  writes: KeyWrites;
  close: () => void;
}

/** Loads every persisted key version into the kernel; checks the master key first. */
export async function loadKeys(state: PersistedState, deps: KeyLoadingDeps, parts: KeyLoadingParts): Promise<void> {
  const { index, policy, writes, close } = parts;
  const { material } = deps;
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
    else deps.log('the master-key check is sealed with a suite this kernel refuses; the master key is not checked up front (generated keys are still verified as they load)', { suite: state.masterCheck.split(':')[1] });
  }
  writes.masterCheck = state.masterCheck ?? null;
  deps.fingerprints.start(material.canSeal, deps.suiteStatus('hmac-sha256') === 'available', deps.log);
  const { fingerprints } = deps;
  try {
    for (const record of state.keys) {
      const versions: number[][] = [];
      try {
        for (const v of record.versions) {
          try {
            const restored = await material.restore(record.id, v.version, record.origin, v.blobs, (part) => fingerprints.of(part));
            versions.push(restored.serials);
            provenBy ??= 'other keys';
            fingerprints.noteRestored(restored.fingerprints, { keyId: record.id, version: v.version }, (id) => (id === record.id ? record.name : index.withId(id)?.name), deps.log);
          } catch (err) {
            // A kernel that refuses the seal's suite (a move to af_alg_restrict=1) cannot bring
            // this version back; nothing about it is wrong, so it must not keep the daemon down.
            if (!(err instanceof KeystoreError && err.code === 'KEY_TYPE_UNSUPPORTED' && record.origin === 'imported')) throw err;
            versions.push([]);
            index.markUnloadable(record.id, v.version, err.message);
            deps.log(`key "${record.name}" version ${v.version} cannot be loaded on this kernel and is unusable here: ${err.message}`, { key: record.name, version: v.version }, 'warn');
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
      const minPeriod = deps.limits.minRotationPeriodMs;
      if (record.rotationPeriodMs !== null && record.rotationPeriodMs < minPeriod) deps.log(`key "${record.name}" has a rotation period below minRotationPeriod; it rotates every ${minPeriod} ms while that minimum stands`, { key_name: record.name, rotationPeriodMs: record.rotationPeriodMs, minRotationPeriodMs: minPeriod }, 'warn');
      index.index(record, versions, record.versions.map((v) => v.encryptionsReserved));
      const refusal = keySuiteRefusal(deps.suiteStatus, record, 'rotate');
      if (refusal) deps.log(`${refusal.message}; it is not rotated on schedule`, { key_name: record.name, suite: record.suite }, 'warn');
      else policy.warnIfAtVersionCap(record);
    }
    // Made only for a master key that opened something, or for a state with no keys: sealed under
    // a key nobody verified (every version unloadable here), it would bless that key (helper-91).
    if (!state.masterCheck && material.canSeal && (provenBy !== undefined || state.keys.length === 0)) writes.masterCheck = await material.masterCheck();
    // Best effort: the check only tests the master key early, every later save carries it, and a
    // full disk must not keep keys that all loaded from being served (found by review).
    if (!state.masterCheck && writes.masterCheck) {
      await writes.persistWith().catch((err: unknown) =>
        deps.log(`could not save the master-key check (${(err as Error)?.message}); the next state write saves it`, { code: (err as NodeJS.ErrnoException)?.code }, 'warn'),
      );
    }
  } catch (err) {
    close(); // the keys loaded so far: nothing stays in the kernel for a daemon that did not start
    throw err;
  }
  deps.log('keys loaded into the kernel', { keys: state.keys.length, versions: state.keys.reduce((n, k) => n + k.versions.length, 0) });
  policy.warnIfAtDaemonCaps();
}
