/**
 * MaterialFingerprints under a real KeyManager, with stand-ins for the kernel (material sealed as
 * hex, node:crypto's HMAC for the kernel's): what holds when a state from before the reuse check
 * already holds some material twice. (Imports on a real kernel: test/e2e/import-material.kernel.test.ts.)
 */
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyManager } from './key-manager.js';
import { MaterialFingerprints } from './fingerprints.js';
import { EMPTY_STATE, type PersistedState } from './model.js';

function kernelStandIns() {
  const hmacKey = randomBytes(32);
  let serial = 100;
  const keystore = { importRaw: (_d: string, b: Buffer) => { b.fill(0); return serial++; }, destroy: () => {} };
  const engine = {
    digest: async (_alg: unknown, _s: number, n: number, data: Buffer[]) => createHmac('sha256', hmacKey).update(Buffer.concat(data)).digest().subarray(0, n),
    forgetKey: () => {},
  };
  const material = {
    canSeal: true,
    verifyMasterCheck: async () => true,
    masterCheck: async () => 'mc',
    import: async (_id: string, _v: number, suite: { keyBytes: number[] }, m: Buffer) => {
      let off = 0;
      const blobs = suite.keyBytes.map((b) => { const s = m.subarray(off, off + b).toString('hex'); off += b; return s; });
      return { serials: blobs.map(() => serial++), blobs };
    },
    restore: async (_id: string, _v: number, _o: string, blobs: string[], fp: (p: Buffer) => Promise<string | undefined>) => {
      const fingerprints: string[] = [];
      for (const b of blobs) { const f = await fp(Buffer.from(b, 'hex')); if (f) fingerprints.push(f); }
      return { serials: blobs.map(() => serial++), fingerprints };
    },
    generate: () => { throw new Error('no'); },
    destroy: () => {},
  };
  return { keystore, engine, material };
}

async function manager(state: PersistedState, clock: { t: number }, saved: { doc?: PersistedState }) {
  const d = kernelStandIns();
  const km = new KeyManager({
    material: d.material as never,
    fingerprints: new MaterialFingerprints(d.keystore as never, d.engine as never),
    persist: async (doc) => { saved.doc = structuredClone(doc); },
    suiteStatus: () => 'available',
    limits: { minRotationPeriodMs: 1, minDeletionWaitingPeriodMs: 1 },
    log: () => {},
    now: () => clock.t,
  });
  await km.open(state);
  return km;
}


/** A state where "a" and "twin" hold the same material `m` (written by an earlier version). */
async function twinState(m: Buffer, clock: { t: number }): Promise<PersistedState> {
  const saved: { doc?: PersistedState } = {};
  const first = await manager(EMPTY_STATE, clock, saved);
  await first.import({ name: 'a', suite: 'aes-256-gcm', material: Buffer.from(m) });
  const doc = structuredClone(saved.doc!);
  doc.keys.push({ ...structuredClone(doc.keys[0]!), id: 'f'.repeat(32), name: 'twin' });
  return doc;
}

describe('fingerprints of a state that already holds material twice', () => {
  it('deleting one of the two keys does not free the material the other still holds (found by review)', async () => {
    const clock = { t: 1_700_000_000_000 };
    const m = randomBytes(32);
    const km = await manager(await twinState(m, clock), clock, {});
    await expect(km.import({ name: 'probe', suite: 'aes-256-gcm', material: Buffer.from(m) })).rejects.toThrow(/already in use by another key/);
    await km.scheduleDeletion('twin', 1000);
    clock.t += 2000;
    expect((await km.runDueWork()).deleted).toEqual(['twin']);
    await expect(km.import({ name: 'c', suite: 'aes-256-gcm', material: Buffer.from(m) })).rejects.toThrow(/already in use by another key/);
    // Once neither holds it, it is free.
    await km.scheduleDeletion('a', 1000);
    clock.t += 2000;
    expect((await km.runDueWork()).deleted).toEqual(['a']);
    expect((await km.import({ name: 'c', suite: 'aes-256-gcm', material: Buffer.from(m) })).name).toBe('c');
  });

  it('a rotation to the shared material names the rotated key\'s own version, whichever key was loaded last', async () => {
    const clock = { t: 1_700_000_000_000 };
    const m = randomBytes(32);
    const km = await manager(await twinState(m, clock), clock, {});
    for (const name of ['a', 'twin']) await expect(km.rotate(name, Buffer.from(m))).rejects.toThrow(`already in use by version 1 of key "${name}"`);
  });
});
