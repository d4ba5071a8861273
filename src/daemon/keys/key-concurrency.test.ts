/**
 * KeyManager: concurrent callers, serialized by its lock.
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AeadSuite } from '../../capabilities/suites.js';
import { KeyManager, type ResolvedVersion } from './key-manager.js';
import * as keyctl from '../../../native-ffi/keyctl.js';
import { HOUR, desc, disposeWorlds, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager: concurrency', () => {
  it('200 concurrent encryptions and a rotation in the middle: counts add up, the disk never falls behind, no change is lost', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 7 }));
    await w.km.create({ name: 'k' });
    w.delay = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
    const reservedOnDisk = (v: number) => w.persisted.at(-1)!.keys.find((k) => k.name === 'k')!.versions[v - 1]?.encryptionsReserved ?? 0;
    const violations: string[] = [];
    const encrypt = () =>
      w.km.forEncrypt('k').then((r) => {
        // When an encryption is handed out, the disk already covers it.
        if (reservedOnDisk(r.version) < w.km.encryptionCount(r.key, r.version)) violations.push(`v${r.version}`);
        return r.version;
      });
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) ops.push(encrypt());
    ops.push(w.km.rotate('k'));
    for (let i = 0; i < 100; i++) ops.push(encrypt());
    const results = await Promise.all(ops);
    const versions = results.filter((x): x is number => typeof x === 'number');
    expect(versions).toHaveLength(200);
    expect(violations).toEqual([]);
    expect(w.maxInFlight).toBe(1); // every write under the one lock

    const k = w.km.get('k');
    expect(k.versions).toHaveLength(2);
    const c1 = w.km.encryptionCount(k, 1);
    const c2 = w.km.encryptionCount(k, 2);
    expect(c1 + c2).toBe(200);
    expect(versions.filter((v) => v === 1)).toHaveLength(c1);
    expect(versions.filter((v) => v === 2)).toHaveLength(c2);
    expect(c2).toBeGreaterThan(0);

    const disk = w.fileKey('k')!;
    expect(disk).toEqual(k);
    expect(disk.versions[0]!.encryptionsReserved).toBeGreaterThanOrEqual(c1);
    expect(disk.versions[1]!.encryptionsReserved).toBeGreaterThanOrEqual(c2);
    expect(disk.versions[1]!.encryptionsReserved).toBeLessThanOrEqual(c2 + 1 + 7);
    // No write ever undid an earlier one: versions and reservations only grow.
    for (let i = 1; i < w.persisted.length; i++) {
      const prev = w.persisted[i - 1]!.keys[0]!;
      const next = w.persisted[i]!.keys[0]!;
      expect(next.versions.length).toBeGreaterThanOrEqual(prev.versions.length);
      prev.versions.forEach((v, j) => expect(next.versions[j]!.encryptionsReserved).toBeGreaterThanOrEqual(v.encryptionsReserved));
    }
    // And a crash now resumes at or above what was handed out.
    await w.restart();
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBeGreaterThanOrEqual(c1);
    expect(w.km.encryptionCount(w.km.get('k'), 2)).toBeGreaterThanOrEqual(c2);
  });

  it('200 concurrent encryptions against a small limit rotate exactly when needed and never pass the limit', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 50, reservationBlock: 7 }));
    await w.km.create({ name: 'k' });
    w.delay = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
    const ops: Promise<number>[] = [];
    for (let i = 0; i < 200; i++) ops.push(w.km.forEncrypt('k').then((r) => r.version));
    const versions = await Promise.all(ops);
    const k = w.km.get('k');
    expect(k.versions).toHaveLength(4);
    for (const v of [1, 2, 3, 4]) {
      expect(w.km.encryptionCount(k, v)).toBe(50);
      expect(versions.filter((x) => x === v)).toHaveLength(50);
    }
    expect(w.fileKey('k')!.versions.map((v) => v.encryptionsReserved)).toEqual([50, 50, 50, 50]);
    expect(w.kernelKeys().size).toBe(4);
    expect(w.maxInFlight).toBe(1);
  });

  it('an encryption that runs while a rotation is being applied gets a complete version, counted', async () => {
    // Requests arrive between any two steps of the manager's async code. Poll, one microtask at a
    // time, from the moment the rotation is on disk: as soon as the key shows version 2, encrypt.
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 1000 }));
    const r = await w.km.create({ name: 'k' });
    await w.km.forEncrypt('k'); // version 1 has a reservation
    let during: Promise<ResolvedVersion<AeadSuite>> | undefined;
    w.afterSave = (doc) => {
      if (doc.keys[0]!.versions.length !== 2 || during) return;
      let polls = 0;
      const poll = () => {
        if (w.km.get('k').versions.length === 2) during = w.km.forEncrypt('k');
        else if (++polls < 100) queueMicrotask(poll);
      };
      queueMicrotask(poll);
    };
    const rotated = await w.km.rotate('k');
    expect(during).toBeDefined();
    const got = await during!;
    expect(got.version).toBe(2);
    expect(got.serials).toHaveLength(1);
    expect(keyctl.describeKey(got.serials[0]!).description).toBe(desc(r.id, 2, 0));
    expect(w.km.encryptionCount(rotated, 1)).toBe(1);
    expect(w.km.encryptionCount(rotated, 2)).toBe(1);
    expect(w.fileKey('k')!.versions[1]!.encryptionsReserved).toBeGreaterThanOrEqual(1);
    await w.km.forEncrypt('k');
    expect(w.km.encryptionCount(w.km.get('k'), 2)).toBe(2);
  });

  it('concurrent lifecycle changes and encryptions all land, on disk as in memory', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 3 }));
    await w.km.create({ name: 'k' });
    w.delay = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) ops.push(w.km.forEncrypt('k'));
    ops.push(w.km.rotate('k'), w.km.update('k', { deletionProtection: true }), w.km.create({ name: 'k2' }));
    for (let i = 0; i < 20; i++) ops.push(w.km.forEncrypt('k'));
    ops.push(w.km.rotate('k'), w.km.update('k', { minDecryptionVersion: 2, rotationPeriodMs: 5 * HOUR }), w.km.setEnabled('k2', false));
    for (let i = 0; i < 20; i++) ops.push(w.km.forEncrypt('k'));
    await Promise.all(ops);
    const k = w.km.get('k');
    expect(k).toMatchObject({ deletionProtection: true, minDecryptionVersion: 2, rotationPeriodMs: 5 * HOUR, state: 'enabled' });
    expect(k.versions).toHaveLength(3);
    expect([1, 2, 3].reduce((n, v) => n + w.km.encryptionCount(k, v), 0)).toBe(60);
    expect(w.file().keys).toEqual([k, w.km.get('k2')]);
    expect(w.km.get('k2').state).toBe('disabled');
    expect(w.maxInFlight).toBe(1);
  });
});
