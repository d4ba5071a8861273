/**
 * KeyManager: caps on keys and key versions, in all and per caller (key-caps.ts).
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { KeyManager } from './key-manager.js';
import { DAY, World, disposeWorlds, expectApi, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager: caps on keys and versions (found by review: one caller could use up the kernel key quota)', () => {
  /** Refused with nothing written and no kernel key left behind. */
  async function refusedCleanly(w: World, op: Promise<unknown>, reason = ErrorReason.KEY_LIMIT_REACHED): Promise<ApiError> {
    const [text, kernel] = [w.fileText(), w.kernelKeys().size];
    const err = await expectApi(op, Status.RESOURCE_EXHAUSTED, reason);
    expect(w.fileText()).toBe(text);
    expect(w.kernelKeys().size).toBe(kernel);
    return err;
  }

  it('maxKeys: CreateKey beyond it is refused, saying which limit and what to do; a key pending deletion counts until deleted', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeys: 2 }));
    await w.km.create({ name: 'a' });
    await w.km.create({ name: 'b', creatorUid: 1001 });
    const err = await refusedCleanly(w, w.km.create({ name: 'c', creatorUid: 1002 }));
    expect(err.metadata).toEqual({ limit: 'keys', limit_value: '2', key_name: 'c' });
    expect(err.message).toBe("the daemon already holds 2 keys, its limit (maxKeys 2; keys scheduled for deletion count until they are deleted): delete keys that are no longer needed, or have the operator raise limits.maxKeys in the daemon's config");
    await w.km.scheduleDeletion('a', DAY);
    await refusedCleanly(w, w.km.create({ name: 'c' }));
    w.clock += DAY;
    expect((await w.km.runDueWork()).deleted).toEqual(['a']);
    await w.km.create({ name: 'c' });
    expect(w.km.size).toBe(2);
  });

  it('maxKeysPerCaller: a caller is refused at its limit, others are not; administrators and keys of no recorded creator count toward no caller', async () => {
    const w = await world((x) => {
      x.limits = { ...x.limits, maxKeys: 9, maxKeysPerCaller: 2 };
      x.uncapped.add(0);
    });
    await w.km.create({ name: 'a1', creatorUid: 1001 });
    await w.km.create({ name: 'a2', creatorUid: 1001 });
    const err = await refusedCleanly(w, w.km.create({ name: 'a3', creatorUid: 1001 }));
    expect(err.metadata).toEqual({ limit: 'keys_per_caller', limit_value: '2', key_name: 'a3', uid: '1001' });
    expect(err.message).toMatch(/^uid 1001 already created 2 keys, its limit \(maxKeysPerCaller 2; keys scheduled for deletion count until they are deleted\): delete keys it no longer needs, or have the operator raise limits\.maxKeysPerCaller/);
    await w.km.create({ name: 'b1', creatorUid: 1002 });
    for (const name of ['r1', 'r2', 'r3']) await w.km.create({ name, creatorUid: 0 });
    for (const name of ['n1', 'n2', 'n3']) await w.km.create({ name });
    // Recorded in the state, and so still counted after a restart.
    expect(w.fileKey('a1')!.creatorUid).toBe(1001);
    expect(w.fileKey('n1')!.creatorUid).toBeUndefined();
    await w.restart();
    await refusedCleanly(w, w.km.create({ name: 'a3', creatorUid: 1001 }));
    // The daemon-wide cap holds everyone, administrators too.
    const full = await refusedCleanly(w, w.km.create({ name: 'r4', creatorUid: 0 }));
    expect(full.metadata.limit).toBe('keys');
  });

  it('maxVersionsPerKey: RotateKey beyond it is refused; the key stays usable', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxVersionsPerKey: 2 }));
    await w.km.create({ name: 'k', creatorUid: 1001 });
    await w.km.rotate('k');
    const err = await refusedCleanly(w, w.km.rotate('k'));
    expect(err.metadata).toEqual({ limit: 'versions_per_key', limit_value: '2', key_name: 'k' });
    expect(err.message).toBe("key \"k\" has 2 versions, its limit (maxVersionsPerKey 2), and versions are never removed: create a new key and move to it, or have the operator raise limits.maxVersionsPerKey in the daemon's config");
    expect((await w.km.forEncrypt('k')).version).toBe(2);
    expect(w.km.get('k').state).toBe('enabled');
  });

  it('maxKeyVersions and maxKeyVersionsPerCaller: rotations and new keys beyond them are refused', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeyVersions: 4, maxKeyVersionsPerCaller: 2 }));
    await w.km.create({ name: 'a', creatorUid: 1001 });
    await w.km.rotate('a');
    const mine = await refusedCleanly(w, w.km.rotate('a'));
    expect(mine.metadata).toEqual({ limit: 'key_versions_per_caller', limit_value: '2', key_name: 'a', uid: '1001' });
    // Rotated without a caller (as on schedule): charged to the key's creator, whose uid and counts the message keeps to itself.
    expect(mine.message).toMatch(/^the creator of key "a" already made as many key versions as it may \(maxKeyVersionsPerCaller 2;/);
    const mine2 = await refusedCleanly(w, w.km.create({ name: 'a2', creatorUid: 1001 }));
    expect(mine2.message).toMatch(/^uid 1001 already made 2 key versions \(the first versions of the keys it created and the versions it rotated in, on any key\), its limit \(maxKeyVersionsPerCaller 2;/);
    await w.km.create({ name: 'b', creatorUid: 1002 });
    await w.km.create({ name: 'c' });
    const all = await refusedCleanly(w, w.km.rotate('c'));
    expect(all.metadata).toEqual({ limit: 'key_versions', limit_value: '4', key_name: 'c' });
    expect(all.message).toMatch(/^the daemon's keys already have 4 versions together, its limit \(maxKeyVersions 4; each is a kernel key;/);
  });

  it("a tenant rotating an administrator's key is held to its own maxKeyVersionsPerCaller, and cannot fill maxKeyVersions for the others (found by review)", async () => {
    const w = await world((x) => {
      x.limits = { ...x.limits, maxKeyVersions: 8, maxKeyVersionsPerCaller: 2 };
      x.uncapped.add(0);
    });
    await w.km.create({ name: 'provisioned', creatorUid: 0 });
    await w.km.rotate('provisioned', undefined, 1001);
    await w.km.rotate('provisioned', undefined, 1001);
    const err = await refusedCleanly(w, w.km.rotate('provisioned', undefined, 1001));
    expect(err.metadata).toEqual({ limit: 'key_versions_per_caller', limit_value: '2', key_name: 'provisioned', uid: '1001' });
    // Its own versions, not the creator's: neither uid 0 nor the key's 3 versions are named.
    expect(err.message).toMatch(/^uid 1001 already made 2 key versions \(the first versions of the keys it created and the versions it rotated in, on any key\), its limit \(maxKeyVersionsPerCaller 2;/);
    expect(err.message).not.toMatch(/uid 0|\b3\b/);
    expect(w.fileKey('provisioned')!.versions.map((v) => v.creatorUid)).toEqual([undefined, 1001, 1001]);
    // Its share is spent on others' keys too: a key of its own is refused, while other tenants still have room.
    await refusedCleanly(w, w.km.create({ name: 'mine', creatorUid: 1001 }));
    await w.km.create({ name: 'other', creatorUid: 1002 });
    await w.km.rotate('other', undefined, 1002);
    // The administrator rotating its own key is held to the daemon-wide cap only.
    await w.km.rotate('provisioned', undefined, 0);
    expect(w.km.get('provisioned').versions.at(-1)!.creatorUid).toBe(0);
    // Still counted after a restart.
    await w.restart();
    await refusedCleanly(w, w.km.rotate('provisioned', undefined, 1001));
  });

  it("a rotation is charged to the caller who rotates, not to the key's creator", async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeyVersions: 20, maxKeyVersionsPerCaller: 2 }));
    await w.km.create({ name: 'a', creatorUid: 1001 });
    await w.km.rotate('a', undefined, 1002);
    expect(w.km.get('a').versions.map((v) => v.creatorUid)).toEqual([undefined, 1002]);
    // uid 1001 made one version (its key's first), so it has room for one more; uid 1002 made one too.
    await w.km.create({ name: 'a2', creatorUid: 1001 });
    await refusedCleanly(w, w.km.create({ name: 'a3', creatorUid: 1001 }));
    await w.km.rotate('a', undefined, 1002);
    const err = await refusedCleanly(w, w.km.rotate('a', undefined, 1002));
    expect(err.metadata.uid).toBe('1002');
    expect(err.message).toMatch(/^uid 1002 already made 2 key versions/);
    expect(err.message).not.toContain('1001');
    // uid 1001 is at its share, but a third caller may still rotate its key.
    await w.km.rotate('a', undefined, 1003);
    expect(w.fileKey('a')!.versions.map((v) => v.creatorUid)).toEqual([undefined, 1002, 1002, 1003]);
  });

  it("scheduled and encryption-limit rotations are charged to the key's creator, and say so without naming it", async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeyVersions: 20, maxKeyVersionsPerCaller: 2, encryptionLimit: 5, reservationBlock: 1 }));
    await w.km.create({ name: 'k', creatorUid: 1001, rotationPeriodMs: DAY });
    w.clock += DAY;
    expect((await w.km.runDueWork()).rotated).toEqual(['k']);
    expect(w.fileKey('k')!.versions.map((v) => v.creatorUid)).toEqual([undefined, 1001]);
    await refusedCleanly(w, w.km.create({ name: 'k2', creatorUid: 1001 }));
    await w.km.create({ name: 'n' }); // no creator: rotations on its schedule are charged to nobody
    for (let i = 0; i < 5; i++) await w.km.forEncrypt('n');
    expect((await w.km.forEncrypt('n')).version).toBe(2);
    expect(w.fileKey('n')!.versions.map((v) => v.creatorUid)).toEqual([undefined, undefined]);
    // At the creator's share, an encryption past the limit is refused without the creator's uid or counts.
    await w.km.update('k', { rotationPeriodMs: null });
    for (let i = 0; i < 5; i++) await w.km.forEncrypt('k');
    const err = await refusedCleanly(w, w.km.forEncrypt('k'), ErrorReason.ENCRYPTION_LIMIT_REACHED);
    expect(err.metadata).toMatchObject({ limit: 'key_versions_per_caller', limit_value: '2' });
    expect(err.message).toMatch(/it cannot rotate: the creator of key "k" already made as many key versions as it may \(maxKeyVersionsPerCaller 2;/);
    expect(err.message).not.toContain('1001');
  });

  it('a state file from before versions recorded their maker loads; its rotated versions stay the key creator\'s', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeyVersions: 20, maxKeyVersionsPerCaller: 3 }));
    await w.km.create({ name: 'old', creatorUid: 1001 });
    await w.km.rotate('old', undefined, 1002);
    await w.km.rotate('old', undefined, 1002);
    const doc = w.file();
    for (const k of doc.keys) for (const v of k.versions) delete v.creatorUid;
    w.crash();
    await w.store.save(doc);
    await w.boot();
    expect(w.km.get('old').versions).toHaveLength(3);
    // Unmarked, all three are uid 1001's (as before the upgrade): it is at its share, uid 1002 has made none.
    await refusedCleanly(w, w.km.create({ name: 'more', creatorUid: 1001 }));
    await w.km.rotate('old', undefined, 1002);
    await w.restart();
    expect(w.fileKey('old')!.versions.map((v) => v.creatorUid)).toEqual([undefined, undefined, undefined, 1002]);
    expect(w.km.get('old').versions.at(-1)!.creatorUid).toBe(1002);
  });

  it('a key rotated on schedule stops at maxVersionsPerKey: said once, no failure, no retry, and it stays usable', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxVersionsPerKey: 2 }));
    await w.km.create({ name: 'k', rotationPeriodMs: DAY });
    w.clock += DAY;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: ['k'] });
    const warned = w.logs.filter((l) => l.level === 'warn' && l.msg.includes('maxVersionsPerKey'));
    expect(warned.map((l) => l.msg)).toEqual([`key "k" has 2 versions, its limit (maxVersionsPerKey 2): it is no longer rotated on schedule; create a new key and move to it, or raise limits.maxVersionsPerKey in the daemon's config`]);
    expect(w.km.nextDueTime()).toBeNull();
    expect(w.km.scheduledRotationTime(w.km.get('k'))).toBeNull();
    w.clock += 10 * DAY;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(w.km.get('k').versions).toHaveLength(2);
    expect((await w.km.forEncrypt('k')).version).toBe(2);
    // Said again at start-up, where the key is loaded at its cap.
    w.logs = [];
    await w.restart();
    expect(w.logs.filter((l) => l.level === 'warn' && l.msg.includes('no longer rotated on schedule'))).toHaveLength(1);
    expect(w.km.nextDueTime()).toBeNull();
  });

  it('at its version cap, a key at its encryption limit refuses encryption (never counts past the limit) and says why', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 5, reservationBlock: 1, maxVersionsPerKey: 1 }));
    await w.km.create({ name: 'k' });
    for (let i = 0; i < 5; i++) expect((await w.km.forEncrypt('k')).version).toBe(1);
    const err = await refusedCleanly(w, w.km.forEncrypt('k'), ErrorReason.ENCRYPTION_LIMIT_REACHED);
    expect(err.metadata).toEqual({ key_name: 'k', key_version: '1', encryption_limit: '5', limit: 'versions_per_key', limit_value: '1' });
    expect(err.message).toMatch(/^key "k" version 1 reached its limit of 5 encryptions; it cannot rotate: key "k" has 1 versions, its limit \(maxVersionsPerKey 1\)/);
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(5);
    expect(w.km.get('k').versions).toHaveLength(1);
  });

  it('a state already at or above the daemon-wide caps (from before them, or caps lowered) loads and serves, and start-up says so', async () => {
    const w = await world();
    await w.km.create({ name: 'a', rotationPeriodMs: DAY });
    await w.km.create({ name: 'b' });
    await w.km.rotate('b');
    w.limits = { ...w.limits, maxKeys: 2, maxKeyVersions: 3 };
    w.logs = [];
    await w.restart();
    const warned = w.logs.filter((l) => l.level === 'warn').map((l) => l.msg);
    expect(warned).toEqual([
      'the state holds 2 keys, at or above limits.maxKeys (2): CreateKey and ImportKey are refused until keys are deleted or the limit is raised',
      expect.stringMatching(/^the state's keys have 3 versions, at or above limits\.maxKeyVersions \(3\): every rotation is refused \(scheduled ones/),
    ]);
    expect((await w.km.forEncrypt('b')).version).toBe(2);
    // What it warned of: the scheduled rotation is refused (and retried), not a crash or a loop.
    w.clock += DAY;
    await expect(w.km.runDueWork()).rejects.toThrow(/maxKeyVersions 3/);
    expect(w.km.nextDueTime()).toBeGreaterThan(w.clock);
  });
});
