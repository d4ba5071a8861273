/**
 * KeyManager.close() (daemon stop) while a locked section waits for its state write: the scheduler's
 * run, or a call cut off by the stop's forced shutdown. The write finished into a closed manager:
 * a rotation threw a TypeError, and an update put its key back, so the next queued write held that
 * key alone, every other dropped (review by helper-149; only the store's own close, a step later,
 * kept that document off disk).
 */
import { describe, expect, it } from 'vitest';
import { KeyManager } from './key-manager.js';
import { MaterialFingerprints } from './fingerprints.js';
import { EMPTY_STATE, type PersistedState } from './model.js';

function world() {
  let serial = 1;
  const docs: PersistedState[] = [];
  const destroyed: number[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const km = new KeyManager({
    material: {
      canSeal: false,
      generate: (_i: string, _v: number, s: { keyBytes: number[] }) => ({ serials: s.keyBytes.map(() => serial++), blobs: s.keyBytes.map(() => 'b') }),
      destroy: (s: number | number[]) => destroyed.push(...[s].flat()),
    } as never,
    fingerprints: new MaterialFingerprints({} as never, {} as never),
    persist: async (doc) => {
      docs.push(structuredClone(doc));
      if (hold) await new Promise<void>((r) => (release = r));
    },
    suiteStatus: () => 'available',
    limits: { minRotationPeriodMs: 1, minDeletionWaitingPeriodMs: 1 },
    log: () => {},
  });
  return { km, docs, destroyed, holdNext: () => (hold = true), release: () => release!() };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => 'answered',
    (e: { code?: number; reasonName?: string; constructor: { name: string } }) => `${e.constructor.name} ${e.code} ${e.reasonName}`,
  );

describe('KeyManager.close() while a state write is pending', () => {
  it('a rotation written meanwhile fails UNAVAILABLE SHUTTING_DOWN, and its new kernel keys are destroyed', async () => {
    const w = world();
    await w.km.open(EMPTY_STATE);
    await w.km.create({ name: 'a', suite: 'aes-256-gcm' });
    await w.km.create({ name: 'b', suite: 'aes-256-gcm' });
    w.holdNext();
    const rotating = w.km.rotate('a');
    await new Promise((r) => setTimeout(r, 5));
    const written = w.docs.length;
    w.km.close();
    const destroyedByClose = w.destroyed.length;
    w.release();
    expect(await failure(rotating)).toBe('ApiError 14 SHUTTING_DOWN');
    expect(w.destroyed.length).toBe(destroyedByClose + 1); // the new version's serial too
    expect(w.docs.length).toBe(written);
    expect(w.km.size).toBe(0);
  });

  it('an update written meanwhile puts nothing back, and the write queued behind it is never made', async () => {
    const w = world();
    await w.km.open(EMPTY_STATE);
    await w.km.create({ name: 'a', suite: 'aes-256-gcm' });
    await w.km.create({ name: 'b', suite: 'aes-256-gcm' });
    w.holdNext();
    const updating = w.km.update('a', { deletionProtection: true });
    const disabling = w.km.setEnabled('a', false); // queued on the lock behind it
    await new Promise((r) => setTimeout(r, 5));
    const written = w.docs.length;
    w.km.close();
    w.release();
    expect(await failure(updating)).toBe('ApiError 14 SHUTTING_DOWN');
    expect(await failure(disabling)).not.toBe('answered');
    expect(w.km.size).toBe(0);
    expect(w.docs.length).toBe(written); // before: one more document, holding key "a" alone
    expect(w.docs.at(-1)!.keys.map((k) => k.name)).toEqual(['a', 'b']);
  });
});
