/**
 * KeyManager: creating keys, persistence before effect, resolving a ciphertext's key, opening and closing.
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorReason, Status } from '../api/errors.js';
import { isKeystoreError, KeystoreError } from '../keystore/errors.js';
import { KeyManager } from './key-manager.js';
import * as keyctl from '../../../native-ffi/keyctl.js';
import { MaterialFingerprints } from './fingerprints.js';
import { KeyMaterial } from './material.js';
import { loadedState, type PersistedState } from './model.js';
import { DAY, HOUR, PARTS, SECOND, T0, YEARS_100, alive, blobBytes, desc, describeCode, disposeWorlds, enospc, expectApi, idBuf, serialsOf, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager.create', () => {
  it('creates an enabled generated key, persists it, and holds it in the kernel as an encrypted key under the master key', async () => {
    const w = await world();
    w.clock = T0 + 5;
    const r = await w.km.create({ name: 'orders' });
    expect(r).toMatchObject({
      name: 'orders',
      purpose: 'aead',
      suite: 'aes-256-gcm',
      origin: 'generated',
      state: 'enabled',
      minDecryptionVersion: 1,
      rotationPeriodMs: null,
      deletionProtection: false,
      createTime: T0 + 5,
      updateTime: T0 + 5,
      rotateTime: null,
      deletionTime: null,
    });
    expect(r.id).toMatch(/^[0-9a-f]{32}$/);
    expect(r.versions).toEqual([{ version: 1, createTime: T0 + 5, blobs: [expect.any(String)], encryptionsReserved: 0 }]);
    // The file holds exactly what the manager returned.
    expect(w.file().keys).toEqual([r]);
    // The kernel: one encrypted key, described by key id/version/part, whose blob is the persisted one.
    const kernel = w.kernelKeys();
    expect([...kernel.keys()]).toEqual([desc(r.id, 1, 0)]);
    const serial = kernel.get(desc(r.id, 1, 0))!;
    expect(keyctl.describeKey(serial).type).toBe('encrypted');
    expect(keyctl.readKey(serial).toString('latin1')).toBe(w.file().keys[0]!.versions[0]!.blobs[0]);
    expect(blobBytes(r.versions[0]!.blobs[0]!)).toEqual({ master: w.masterName, bytes: 32 });
    expect(serialsOf(w, r, 1)).toEqual([serial]);
    expect(w.km.get('orders')).toBe(r);
    expect(w.km.size).toBe(1);
  });

  it('gives every suite one kernel key of the right length per suite key (encrypt-then-MAC: two distinct keys)', async () => {
    const w = await world();
    for (const suite of Object.keys(PARTS)) {
      const r = await w.km.create({ name: `k-${suite}`, suite });
      expect(r.purpose).toBe(suite.startsWith('hmac') ? 'mac' : 'aead'); // purpose follows the suite
      const persisted = w.fileKey(`k-${suite}`)!;
      expect(persisted.versions[0]!.blobs.map((b) => blobBytes(b).bytes)).toEqual(PARTS[suite]);
      const serials = serialsOf(w, r, 1);
      expect(serials).toHaveLength(PARTS[suite]!.length);
      expect(new Set(serials).size).toBe(serials.length);
      serials.forEach((s, part) => {
        expect(keyctl.describeKey(s)).toMatchObject({ type: 'encrypted', description: desc(r.id, 1, part) });
        expect(keyctl.readKey(s).toString('latin1')).toBe(persisted.versions[0]!.blobs[part]);
      });
    }
    // Encrypt-then-MAC's two keys are different material (different wrapped payloads).
    const etm = w.fileKey('k-aes-256-ctr-hmac-sha256')!.versions[0]!.blobs;
    expect(etm[0]!.split(' ')[3]).not.toBe(etm[1]!.split(' ')[3]);
    expect(w.kernelKeys().size).toBe(8);
  });

  it('validates names', async () => {
    const w = await world();
    for (const name of ['', '-lead', '.lead', '_lead', 'a b', 'a/b', 'a:b', 'ключ', 'x'.repeat(65)]) {
      const err = await expectApi(w.km.create({ name }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
      expect(err.metadata.field).toBe('name');
    }
    expect(w.fileText()).toBeUndefined();
    expect(w.kernelKeys().size).toBe(0);
    for (const name of ['a', '9', 'A.b_c-9', 'x'.repeat(64)]) await w.km.create({ name });
    expect(w.file().keys.map((k) => k.name).sort()).toEqual(['9', 'A.b_c-9', 'a', 'x'.repeat(64)].sort());
  });

  it('refuses a name in use (also by a key pending deletion) with ALREADY_EXISTS and changes nothing', async () => {
    const w = await world();
    const first = await w.km.create({ name: 'dup' });
    const before = w.fileText();
    const err = await expectApi(w.km.create({ name: 'dup', suite: 'hmac-sha256' }), Status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS);
    expect(err.metadata.key_name).toBe('dup');
    await w.km.scheduleDeletion('dup', undefined);
    const pending = w.fileText();
    expect(pending).not.toBe(before);
    await expectApi(w.km.create({ name: 'dup' }), Status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS);
    expect(w.fileText()).toBe(pending);
    expect(w.km.get('dup').id).toBe(first.id);
    expect([...w.kernelKeys().keys()]).toEqual([desc(first.id, 1, 0)]);
  });

  it('chooses the first available AEAD suite by default, and never silently replaces a suite asked for', async () => {
    const w = await world();
    expect((await w.km.create({ name: 'd1' })).suite).toBe('aes-256-gcm');
    expect((await w.km.create({ name: 'm1', purpose: 'mac' })).suite).toBe('hmac-sha256');

    w.status.set('aes-256-gcm', 'restricted');
    expect((await w.km.create({ name: 'd2' })).suite).toBe('chacha20-poly1305');
    w.status.set('chacha20-poly1305', 'missing');
    expect((await w.km.create({ name: 'd3', purpose: 'aead' })).suite).toBe('aes-256-ccm');

    const before = w.fileText();
    const kernelBefore = w.kernelKeys().size;
    const err = await expectApi(w.km.create({ name: 'g', suite: 'aes-256-gcm' }), Status.FAILED_PRECONDITION, ErrorReason.SUITE_RESTRICTED_BY_KERNEL);
    expect(err.message).toMatch(/refuses aes-256-gcm/);
    expect(err.message).toMatch(/af_alg_restrict/);
    expect(err.message).toMatch(/aes-256-ccm/); // says what it does allow
    expect(err.metadata).toEqual({ suite: 'aes-256-gcm', kernel_algorithm: 'gcm(aes)', allowed: 'aes-256-ccm,aes-256-ctr-hmac-sha256' });
    const missing = await expectApi(w.km.create({ name: 'c', suite: 'chacha20-poly1305' }), Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE);
    expect(missing.metadata).toMatchObject({ suite: 'chacha20-poly1305', kernel_algorithm: 'rfc7539(chacha20,poly1305)' });

    for (const s of ['aes-256-ccm', 'aes-256-ctr-hmac-sha256']) w.status.set(s, 'restricted');
    await expectApi(w.km.create({ name: 'none' }), Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE);
    expect(w.fileText()).toBe(before);
    expect(w.kernelKeys().size).toBe(kernelBefore);
  });

  it('refuses a suite that does not fit the purpose, and unknown suites', async () => {
    const w = await world();
    const a = await expectApi(w.km.create({ name: 'x', purpose: 'aead', suite: 'hmac-sha256' }), Status.INVALID_ARGUMENT, ErrorReason.SUITE_PURPOSE_MISMATCH);
    expect(a.metadata).toEqual({ suite: 'hmac-sha256', purpose: 'AEAD' });
    const m = await expectApi(w.km.create({ name: 'x', purpose: 'mac', suite: 'aes-256-gcm' }), Status.INVALID_ARGUMENT, ErrorReason.SUITE_PURPOSE_MISMATCH);
    expect(m.metadata).toEqual({ suite: 'aes-256-gcm', purpose: 'MAC' });
    const u = await expectApi(w.km.create({ name: 'x', suite: 'aes-128-gcm' }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
    expect(u.metadata.field).toBe('suite');
    expect(w.fileText()).toBeUndefined();
    expect(w.kernelKeys().size).toBe(0);
  });

  it('takes rotation periods from the minimum to 100 years; zero or unset means none', async () => {
    const w = await world();
    for (const bad of [HOUR - 1, YEARS_100 + 1, -HOUR, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = await expectApi(w.km.create({ name: 'r', rotationPeriodMs: bad }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
      expect(err.metadata.field).toBe('rotation_period');
      expect(err.message).toContain('must be between 1h and 100 years');
    }
    expect(w.fileText()).toBeUndefined();
    expect((await w.km.create({ name: 'min', rotationPeriodMs: HOUR })).rotationPeriodMs).toBe(HOUR);
    expect((await w.km.create({ name: 'max', rotationPeriodMs: YEARS_100 })).rotationPeriodMs).toBe(YEARS_100);
    expect((await w.km.create({ name: 'zero', rotationPeriodMs: 0 })).rotationPeriodMs).toBeNull();
    expect((await w.km.create({ name: 'unset' })).rotationPeriodMs).toBeNull();
    expect(w.km.nextDueTime()).toBe(T0 + HOUR);
    expect(w.fileKey('max')!.rotationPeriodMs).toBe(YEARS_100);
  });

  it('refuses imports without a suite to seal them under the master key (no AF_ALG here), wiping the material and changing nothing', async () => {
    const w = await world();
    const material = Buffer.alloc(32, 0xab);
    const err = await expectApi(w.km.import({ name: 'imp', material }), Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE);
    expect(err.message).toMatch(/sealed under the master key/);
    expect(material.equals(Buffer.alloc(32))).toBe(true);
    const short = Buffer.alloc(31, 0xcd);
    const bad = await expectApi(w.km.import({ name: 'imp', suite: 'aes-256-gcm', material: short }), Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID);
    expect(bad.metadata).toEqual({ field: 'material', suite: expect.any(String), expected_bytes: '32', actual_bytes: '31' });
    expect(short.equals(Buffer.alloc(31))).toBe(true);
    // Encrypt-then-MAC material whose cipher and MAC halves are equal (found by review).
    const twins = Buffer.concat([Buffer.alloc(32, 0x11), Buffer.alloc(32, 0x11)]);
    const same = await expectApi(w.km.import({ name: 'imp', suite: 'aes-256-ctr-hmac-sha256', material: twins }), Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID);
    expect(same.message).toMatch(/both halves are the same/);
    expect(same.metadata).toEqual({ field: 'material', suite: 'aes-256-ctr-hmac-sha256' }); // as errors.proto says (found by review)
    expect(twins.equals(Buffer.alloc(64))).toBe(true);
    expect(w.fileText()).toBeUndefined();
    expect(w.kernelKeys().size).toBe(0);
    expect(w.km.size).toBe(0);
  });
});

describe('KeyManager: persistence before effect', () => {
  it('a create whose write fails leaves nothing: no key in memory or on disk, its kernel keys destroyed', async () => {
    const w = await world();
    const kept = await w.km.create({ name: 'kept' });
    const before = w.fileText();
    w.failWith = () => enospc();
    for (const suite of ['aes-256-gcm', 'aes-256-ctr-hmac-sha256', 'hmac-sha512']) {
      await expect(w.km.create({ name: 'lost', suite })).rejects.toMatchObject({ code: 'ENOSPC' });
    }
    expect(w.km.size).toBe(1);
    await expectApi(() => w.km.get('lost'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    expect(w.fileText()).toBe(before);
    expect([...w.kernelKeys().keys()]).toEqual([desc(kept.id, 1, 0)]);
    w.failWith = undefined;
    await w.km.create({ name: 'lost' });
    expect(w.file().keys.map((k) => k.name)).toEqual(['kept', 'lost']);
  });

  it('a rotation whose write fails keeps the key as it was and destroys the new version\'s kernel keys', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k', suite: 'aes-256-ctr-hmac-sha256' });
    const before = w.fileText();
    w.clock += HOUR;
    w.failWith = () => enospc();
    await expect(w.km.rotate('k')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(w.km.get('k')).toBe(r);
    expect(w.fileText()).toBe(before);
    expect([...w.kernelKeys().keys()].sort()).toEqual([desc(r.id, 1, 0), desc(r.id, 1, 1)]);
    expect(serialsOf(w, r, 1).every(alive)).toBe(true);
    await expectApi(() => w.km.forDecrypt(idBuf(r), 2, r.suite), Status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND);
    w.failWith = undefined;
    const rotated = await w.km.rotate('k');
    expect(rotated.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(w.fileKey('k')!.versions).toHaveLength(2);
    expect(w.kernelKeys().size).toBe(4);
  });

  it('metadata changes whose write fails change nothing', async () => {
    const w = await world();
    await w.km.create({ name: 'k', rotationPeriodMs: HOUR });
    await w.km.rotate('k');
    await w.km.create({ name: 'p' });
    await w.km.scheduleDeletion('p', DAY);
    const before = w.fileText();
    const snapshot = structuredClone([w.km.get('k'), w.km.get('p')]);
    w.clock += 10 * SECOND;
    w.failWith = () => enospc();
    const attempts: (() => Promise<unknown>)[] = [
      () => w.km.update('k', { minDecryptionVersion: 2 }),
      () => w.km.update('k', { rotationPeriodMs: null }),
      () => w.km.update('k', { deletionProtection: true }),
      () => w.km.setEnabled('k', false),
      () => w.km.scheduleDeletion('k', DAY),
      () => w.km.cancelDeletion('p'),
    ];
    for (const attempt of attempts) await expect(attempt()).rejects.toMatchObject({ code: 'ENOSPC' });
    expect([w.km.get('k'), w.km.get('p')]).toEqual(snapshot);
    expect(w.fileText()).toBe(before);
    w.clock += 2 * DAY; // the deletion of "p" and the rotation of "k" are due, but cannot be written
    await expect(w.km.runDueWork()).rejects.toSatisfy(
      (err: unknown) => err instanceof AggregateError && err.errors.length === 2 && err.errors.every((e: NodeJS.ErrnoException) => e.code === 'ENOSPC') && /"k": ENOSPC.*"p": ENOSPC/.test(err.message),
    );
    expect([w.km.get('k'), w.km.get('p')]).toEqual(snapshot);
    expect(serialsOf(w, w.km.get('k'), 2).every(alive)).toBe(true);
    expect(w.kernelKeys().has(desc(w.km.get('p').id, 1, 0))).toBe(true);
    expect(w.fileText()).toBe(before);
  });

  it('an encryption whose reservation cannot be written is refused and not counted', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 2 }));
    const r = await w.km.create({ name: 'k' });
    for (let i = 0; i < 3; i++) await w.km.forEncrypt('k');
    expect(w.km.encryptionCount(r, 1)).toBe(3);
    expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBe(3);
    w.failWith = () => enospc();
    await expect(w.km.forEncrypt('k')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(3);
    w.failWith = undefined;
    await w.km.forEncrypt('k');
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(4);
    expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBeGreaterThanOrEqual(4);
  });

  it('a rotation period saved under a lower minimum counts as the minimum while it stands (found by review)', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, minRotationPeriodMs: 1 }));
    await w.km.create({ name: 'fast', rotationPeriodMs: 5 });
    w.limits = { ...w.limits, minRotationPeriodMs: HOUR };
    await w.restart();
    expect(w.km.nextDueTime()).toBe(w.km.get('fast').createTime + HOUR);
    expect(w.km.scheduledRotationTime(w.km.get('fast'))).toBe(w.km.get('fast').createTime + HOUR);
    w.clock += 60_000;
    await w.km.runDueWork();
    expect(w.km.get('fast').versions).toHaveLength(1);
    w.clock += HOUR;
    await w.km.runDueWork();
    expect(w.km.get('fast').versions).toHaveLength(2);
  });

  it("the client's period is kept, not the raised one: a later write does not save it, and the minimum lowered again gives it back (review by helper-112)", async () => {
    const w = await world();
    await w.km.create({ name: 'daily', rotationPeriodMs: DAY });
    w.limits = { ...w.limits, minRotationPeriodMs: 30 * DAY }; // raised for a while
    await w.restart();
    expect(w.km.get('daily').rotationPeriodMs).toBe(DAY);
    expect(w.km.scheduledRotationTime(w.km.get('daily'))).toBe(w.km.get('daily').createTime + 30 * DAY);
    await w.km.create({ name: 'other' }); // an unrelated write saves every key
    expect(w.fileKey('daily')!.rotationPeriodMs).toBe(DAY);
    w.limits = { ...w.limits, minRotationPeriodMs: HOUR };
    await w.restart();
    expect(w.km.get('daily').rotationPeriodMs).toBe(DAY);
    expect(w.km.scheduledRotationTime(w.km.get('daily'))).toBe(w.km.get('daily').createTime + DAY);
  });

  it('UpdateKey to the period a raised minimum imposes is a change, saved before it is acknowledged (review by helper-112)', async () => {
    const w = await world();
    await w.km.create({ name: 'k', rotationPeriodMs: DAY });
    w.limits = { ...w.limits, minRotationPeriodMs: 30 * DAY };
    await w.restart();
    const calls = w.persistCalls;
    expect((await w.km.update('k', { rotationPeriodMs: 30 * DAY })).rotationPeriodMs).toBe(30 * DAY);
    expect(w.persistCalls).toBe(calls + 1);
    expect(w.fileKey('k')!.rotationPeriodMs).toBe(30 * DAY);
  });

  it('a key pending deletion shows no next rotation (it is never rotated); cancelled, it does again (review by helper-112)', async () => {
    const w = await world();
    await w.km.create({ name: 'k', rotationPeriodMs: DAY });
    await w.km.scheduleDeletion('k', 7 * DAY);
    expect(w.km.scheduledRotationTime(w.km.get('k'))).toBeNull();
    await w.km.cancelDeletion('k');
    expect(w.km.scheduledRotationTime(w.km.get('k'))).toBe(w.km.get('k').createTime + DAY);
  });

  it('what a fresh daemon opens is what the old one acknowledged: ids, versions, states, times, settings, counts', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 5 }));
    await w.km.create({ name: 'a', rotationPeriodMs: 2 * HOUR, deletionProtection: true });
    w.clock += 1000;
    await w.km.create({ name: 'etm', suite: 'aes-256-ctr-hmac-sha256' });
    await w.km.create({ name: 'mac', suite: 'hmac-sha384' });
    await w.km.create({ name: 'off' });
    await w.km.create({ name: 'gone-later' });
    w.clock += HOUR;
    await w.km.rotate('etm');
    await w.km.rotate('etm');
    await w.km.update('etm', { minDecryptionVersion: 2 });
    await w.km.setEnabled('off', false);
    await w.km.scheduleDeletion('gone-later', 3 * DAY);
    for (let i = 0; i < 7; i++) await w.km.forEncrypt('a');
    for (let i = 0; i < 3; i++) await w.km.forEncrypt('etm');
    const before = w.km.list('', 100).keys.map((k) => structuredClone(k));
    const oldSerials = [...w.kernelKeys().values()];
    expect(oldSerials).toHaveLength(10); // a, mac, off, gone-later: 1 each; etm: 3 versions x 2

    await w.restart();
    const after = w.km.list('', 100).keys;
    expect(after).toEqual(before);
    expect(w.km.encryptionCount(w.km.get('a'), 1)).toBeGreaterThanOrEqual(7);
    expect(w.km.encryptionCount(w.km.get('etm'), 3)).toBeGreaterThanOrEqual(3);
    expect(w.km.encryptionCount(w.km.get('etm'), 1)).toBe(0);
    // Every version is back in the (new) kernel keyring under its description.
    const kernel = w.kernelKeys();
    const expected = after.flatMap((k) => k.versions.flatMap((v) => v.blobs.map((_, p) => desc(k.id, v.version, p))));
    expect([...kernel.keys()].sort()).toEqual(expected.sort());
    for (const k of after) for (const v of k.versions) v.blobs.forEach((blob, p) => expect(keyctl.readKey(kernel.get(desc(k.id, v.version, p))!).toString('latin1')).toBe(blob));
    // The old process's keys went with its keyring: gone, or at least no longer possessed by anyone
    // (the kernel collects unlinked keys lazily; meanwhile they grant nothing to non-possessors).
    for (const s of oldSerials) expect(['ENOKEY', 'EACCES']).toContain(describeCode(s));
    // And the reopened keys behave as before.
    await expectApi(() => w.km.forDecrypt(idBuf(w.km.get('etm')), 1, 'aes-256-ctr-hmac-sha256'), Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED);
    await expectApi(w.km.forEncrypt('off'), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    await expectApi(w.km.forEncrypt('gone-later'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    await expectApi(w.km.scheduleDeletion('a', DAY), Status.FAILED_PRECONDITION, ErrorReason.DELETION_PROTECTED);
    expect(w.km.nextDueTime()).toBe(T0 + 2 * HOUR);
  });
});

describe('KeyManager.forDecrypt', () => {
  it('a ciphertext claiming another suite than its key\'s is CIPHERTEXT_MALFORMED with a detail (found by review: metadata had the key name only)', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k', suite: 'aes-256-gcm' });
    const e = await expectApi(() => w.km.forDecrypt(idBuf(r), 1, 'aes-256-ccm'), Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED);
    expect(e.metadata).toEqual({ key_name: 'k', detail: "suite differs from the key's" });
  });
});

describe('KeyManager.open and close', () => {
  it('close() destroys every kernel key it loaded', async () => {
    const w = await world();
    await w.km.create({ name: 'a', suite: 'aes-256-ctr-hmac-sha256' });
    await w.km.rotate('a');
    await w.km.create({ name: 'm', suite: 'hmac-sha384' });
    const serials = [...w.kernelKeys().values()];
    expect(serials).toHaveLength(5);
    expect(serials.every(alive)).toBe(true);
    w.km.close();
    expect(serials.some(alive)).toBe(false);
    expect(w.kernelKeys().size).toBe(0);
    expect(w.km.size).toBe(0);
    expect(w.keystore.hasMasterKey).toBe(true); // the master key is the keystore's, not the manager's
    expect(w.file().keys.map((k) => k.name)).toEqual(['a', 'm']); // closing is not deleting
  });

  it('refuses to start with another master key (MASTER_KEY_MISMATCH) and leaves no key loaded', async () => {
    const w = await world();
    await w.km.create({ name: 'a' });
    await w.km.create({ name: 'b' });
    w.crash();
    await expect(w.boot({ master: randomBytes(32) })).rejects.toSatisfy(
      (err: unknown) => isKeystoreError(err, 'MASTER_KEY_MISMATCH') && /key "a" version 1/.test((err as Error).message) && !(err as Error).message.includes(w.file().keys[0]!.versions[0]!.blobs[0]!),
    );
    expect(w.kernelKeys().size).toBe(0);
    w.crash();
    await expect(w.boot({ masterName: `${w.masterName}-other` })).rejects.toSatisfy((err: unknown) => isKeystoreError(err, 'MASTER_KEY_MISMATCH'));
    w.crash();
    await w.boot();
    expect(w.km.size).toBe(2);
  });

  it('a state without a master-key check still starts on a full disk: the check is saved by the next write (found by review)', async () => {
    const w = await world();
    await w.km.create({ name: 'k' }); // saved without a check: the host cannot seal
    const state = loadedState(w.store.load(), w.store.statePath);
    expect(state.masterCheck).toBeFalsy();
    // A kernel that can seal now; every version restores; the disk is full.
    const material = {
      canSeal: true,
      masterCheck: async () => 'sealed:aes-256-ccm:AAAA',
      verifyMasterCheck: async () => true,
      restore: async (_id: string, _v: number, _o: string, blobs: unknown[]) => ({ serials: blobs.map(() => 7), fingerprints: [] }),
      destroy: () => {},
    } as unknown as KeyMaterial;
    const saved: PersistedState[] = [];
    let full = true;
    const warnings: string[] = [];
    const km = new KeyManager({
      material,
      fingerprints: new MaterialFingerprints(w.keystore, w.engine),
      persist: async (doc) => {
        if (full) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        saved.push(structuredClone(doc));
      },
      suiteStatus: () => 'available',
      limits: w.limits,
      log: (msg, _f, level) => void (level === 'warn' && warnings.push(msg)),
      now: () => w.clock,
    });
    await km.open(state);
    expect(km.size).toBe(1);
    expect(warnings.join('\n')).toMatch(/could not save the master-key check \(ENOSPC/);
    full = false;
    await km.update('k', { deletionProtection: true });
    expect(saved.at(-1)!.masterCheck).toBe('sealed:aes-256-ccm:AAAA');
    km.close();
  });

  it('a key that fails to load unloads the keys loaded before it; the master key that opened them is not blamed (review by helper-91)', async () => {
    const w = await world();
    const a = await w.km.create({ name: 'a' });
    await w.km.create({ name: 'b' });
    await w.km.rotate('b');
    w.crash();
    // Corrupt version 2 of "b" on disk (the last hex digit of its wrapped blob).
    const doc = w.file();
    const blob = doc.keys[1]!.versions[1]!.blobs[0]!;
    doc.keys[1]!.versions[1]!.blobs[0] = blob.slice(0, -1) + (blob.endsWith('0') ? '1' : '0');
    await w.store.save(doc);
    await expect(w.boot()).rejects.toSatisfy(
      (err: unknown) => err instanceof KeystoreError && err.code === 'INVALID_KEY' && /^key "b" version 2 does not open, though this master key opened other keys in the same state: .*restore the state file from a backup/.test(err.message),
    );
    // "a" and version 1 of "b" had loaded before version 2 failed: all unloaded again.
    expect(w.kernelKeys().has(desc(a.id, 1, 0))).toBe(false);
    expect(w.kernelKeys().size).toBe(0);
  });

  it('opens an empty state without a sealing suite and writes nothing', async () => {
    const w = await world();
    expect(w.km.size).toBe(0);
    expect(w.persistCalls).toBe(0);
    expect(w.fileText()).toBeUndefined();
    expect(w.km.nextDueTime()).toBeNull();
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
  });
});
