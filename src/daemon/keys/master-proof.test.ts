/**
 * What start-up concludes about the master key from the versions it loads (review by helper-91):
 * once the master key opened its check or any version, a blob that does not open is the state
 * file's fault, not the master key's (the daemon told the operator to replace a correct master
 * key); and a master-key check is made only for a master key that opened something, or for a
 * state with no keys (one made when every version was unloadable here blessed an unverified key).
 * Stand-ins for the kernel: the material's outcomes are set per version.
 */
import { describe, expect, it } from 'vitest';
import { KeystoreError } from '../keystore/errors.js';
import { KeyManager } from './key-manager.js';
import { EMPTY_STATE, type KeyRecord, type PersistedState } from './model.js';

type Outcome = 'loads' | 'mismatch' | 'unsupported';

function manager(outcomes: Record<string, Outcome>, opts: { canSeal?: boolean; checkOpens?: boolean } = {}) {
  const saved: PersistedState[] = [];
  let serial = 1;
  const material = {
    canSeal: opts.canSeal ?? true,
    restore: async (keyId: string, version: number) => {
      const outcome = outcomes[`${keyId}:${version}`] ?? 'loads';
      if (outcome === 'mismatch') throw new KeystoreError('MASTER_KEY_MISMATCH', 'the blob does not verify under the loaded master key (wrong master key, or the blob is corrupted)');
      if (outcome === 'unsupported') throw new KeystoreError('KEY_TYPE_UNSUPPORTED', 'sealed under the master key with aes-256-gcm, which this kernel refuses');
      return { serials: [serial++], fingerprints: [] };
    },
    masterCheck: async () => 'sealed:aes-256-ccm:check',
    verifyMasterCheck: async () => opts.checkOpens ?? true,
    destroy: () => {},
  };
  const fingerprints = { start: () => {}, noteRestored: () => {}, of: async () => undefined, removeKey: () => {}, close: () => {} };
  const km = new KeyManager({
    material: material as never,
    fingerprints: fingerprints as never,
    persist: async (s) => void saved.push(structuredClone(s)),
    suiteStatus: () => 'available',
    limits: { minRotationPeriodMs: 3_600_000, minDeletionWaitingPeriodMs: 86_400_000 },
    log: () => {},
  });
  return { km, saved };
}

const T = Date.UTC(2026, 0, 1);
const key = (id: string, name: string, origin: 'generated' | 'imported', versions = 1): KeyRecord => ({
  id,
  name,
  purpose: 'aead',
  suite: 'aes-256-ccm',
  origin,
  state: 'enabled',
  createTime: T,
  updateTime: T,
  rotateTime: null,
  rotationPeriodMs: null,
  deletionTime: null,
  deletionProtection: false,
  minDecryptionVersion: 1,
  versions: Array.from({ length: versions }, (_, i) => ({ version: i + 1, createTime: T, blobs: ['blob'], encryptionsReserved: 0 })),
});
const state = (keys: KeyRecord[], masterCheck: string | null = null): PersistedState => ({ format: 1, masterCheck, keys });
const A = 'aa'.repeat(16);
const B = 'bb'.repeat(16);
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as KeystoreError);

describe('a version that does not open at start-up', () => {
  it('after the master key opened another version: the state file is blamed (INVALID_KEY), not the master key', async () => {
    const { km } = manager({ [`${B}:1`]: 'mismatch' });
    const err = await failure(km.open(state([key(A, 'a', 'generated'), key(B, 'b', 'generated')])));
    expect(err?.code).toBe('INVALID_KEY');
    expect(err?.message).toMatch(/^key "b" version 1 does not open, though this master key opened other keys in the same state: its blob in the state file is corrupted or was edited; restore the state file from a backup \(the master key is the right one\)$/);
  });

  it('after the master key opened its check: the same, naming the check', async () => {
    const { km } = manager({ [`${A}:1`]: 'mismatch' });
    const err = await failure(km.open(state([key(A, 'a', 'generated')], 'sealed:aes-256-ccm:check')));
    expect([err?.code, err?.message]).toEqual(['INVALID_KEY', expect.stringContaining('opened its check in the same state')]);
  });

  it('says what proved the master key: other keys, when its check could not be tried here (review by helper-92)', async () => {
    const { km } = manager({ [`${B}:1`]: 'mismatch' }, { checkOpens: false });
    const err = await failure(km.open(state([key(A, 'a', 'generated'), key(B, 'b', 'generated')], 'sealed:aes-256-gcm:check')));
    expect([err?.code, err?.message]).toEqual(['INVALID_KEY', expect.stringContaining('though this master key opened other keys in the same state')]);
  });

  it('before anything opened: still MASTER_KEY_MISMATCH (a wrong master key fails at the first blob)', async () => {
    const { km } = manager({ [`${A}:1`]: 'mismatch' });
    const err = await failure(km.open(state([key(A, 'a', 'generated'), key(B, 'b', 'generated')])));
    expect([err?.code, err?.message]).toEqual(['MASTER_KEY_MISMATCH', expect.stringMatching(/^key "a" version 1: /)]);
    // A check that could not be tried (its suite refused here) proves nothing either.
    const unchecked = manager({ [`${A}:1`]: 'mismatch' }, { checkOpens: false });
    expect((await failure(unchecked.km.open(state([key(A, 'a', 'generated')], 'sealed:aes-256-gcm:check'))))?.code).toBe('MASTER_KEY_MISMATCH');
  });
});

describe('the master-key check made at start-up', () => {
  it('is not made when no version opened (all sealed with a suite this kernel refuses)', async () => {
    const { km, saved } = manager({ [`${A}:1`]: 'unsupported', [`${B}:1`]: 'unsupported' });
    await km.open(state([key(A, 'a', 'imported'), key(B, 'b', 'imported')]));
    expect(saved).toEqual([]);
    // Nor carried by a later save.
    await km.setEnabled('a', false);
    expect(saved.at(-1)!.masterCheck).toBeNull();
  });

  it('is made for a state with no keys, and once a version opened', async () => {
    const empty = manager({});
    await empty.km.open(EMPTY_STATE);
    expect(empty.saved.map((s) => s.masterCheck)).toEqual(['sealed:aes-256-ccm:check']);
    const some = manager({ [`${A}:1`]: 'unsupported' });
    await some.km.open(state([key(A, 'a', 'imported'), key(B, 'b', 'generated')]));
    expect(some.saved.map((s) => s.masterCheck)).toEqual(['sealed:aes-256-ccm:check']);
  });
});
