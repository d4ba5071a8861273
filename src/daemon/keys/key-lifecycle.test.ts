/**
 * KeyManager: rotate, update, disable, enable, scheduled deletion and its cancel.
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { DEFAULT_DELETION_WAIT_MS, KeyManager } from './key-manager.js';
import { pendingPostponementMs, startDueWorkScheduler } from './due-work-scheduler.js';
import * as keyctl from '../../../native-ffi/keyctl.js';
import { WallClockGain } from './wall-clock-gain.js';
import { DAY, HOUR, SECOND, T0, World, YEARS_100, desc, disposeWorlds, expectApi, idBuf, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager: lifecycle', () => {
  it('rotates: a new primary version in the kernel, older versions kept; allowed while disabled', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    w.clock += HOUR;
    const r2 = await w.km.rotate('k');
    expect(r2).toMatchObject({ id: r.id, rotateTime: T0 + HOUR, updateTime: T0 + HOUR, createTime: T0 });
    expect(r2.versions.map((v) => [v.version, v.createTime])).toEqual([[1, T0], [2, T0 + HOUR]]);
    expect(w.fileKey('k')).toEqual(r2);
    expect((await w.km.forEncrypt('k')).version).toBe(2);
    expect([...w.kernelKeys().keys()].sort()).toEqual([desc(r.id, 1, 0), desc(r.id, 2, 0)]);
    await w.km.setEnabled('k', false);
    const r3 = await w.km.rotate('k');
    expect(r3.state).toBe('disabled');
    expect(r3.versions).toHaveLength(3);

    const material = Buffer.alloc(32, 7);
    const err = await expectApi(w.km.rotate('k', material), Status.FAILED_PRECONDITION, ErrorReason.KEY_ORIGIN_MISMATCH);
    expect(err.metadata).toEqual({ key_name: 'k', origin: 'GENERATED_IN_KERNEL' });
    expect(material.equals(Buffer.alloc(32))).toBe(true);
    await expectApi(w.km.rotate('nope'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    expect(w.fileKey('k')!.versions).toHaveLength(3);
  });

  it('updates min_decryption_version within 1..primary: older versions stop decrypting, and start again when lowered', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    await w.km.rotate('k');
    await w.km.rotate('k');
    for (const bad of [0, 4, -1, 1.5, Number.NaN]) {
      const err = await expectApi(w.km.update('k', { minDecryptionVersion: bad }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
      expect(err.metadata.field).toBe('min_decryption_version');
    }
    w.clock += 5 * SECOND;
    const u = await w.km.update('k', { minDecryptionVersion: 3 });
    expect(u).toMatchObject({ minDecryptionVersion: 3, updateTime: T0 + 5 * SECOND });
    expect(w.fileKey('k')!.minDecryptionVersion).toBe(3);
    for (const v of [1, 2]) {
      const err = await expectApi(() => w.km.forDecrypt(idBuf(r), v, r.suite), Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED);
      expect(err.metadata).toEqual({ key_name: 'k', key_version: String(v), min_decryption_version: '3' });
    }
    expect(w.km.forDecrypt(idBuf(r), 3, r.suite).version).toBe(3);
    // Disabled versions are kept in the kernel, not destroyed.
    expect(w.kernelKeys().size).toBe(3);
    await w.km.update('k', { minDecryptionVersion: 1 });
    const v1 = w.km.forDecrypt(idBuf(r), 1, r.suite);
    expect(keyctl.describeKey(v1.serials[0]!).description).toBe(desc(r.id, 1, 0));
  });

  it('updates the rotation period and deletion protection; an update that changes nothing writes nothing', async () => {
    const w = await world();
    await w.km.create({ name: 'k' });
    w.clock += 10 * SECOND;
    const u = await w.km.update('k', { rotationPeriodMs: 3 * HOUR });
    expect(u).toMatchObject({ rotationPeriodMs: 3 * HOUR, updateTime: T0 + 10 * SECOND });
    expect(w.km.nextDueTime()).toBe(T0 + 3 * HOUR); // from creation: never rotated
    await expectApi(w.km.update('k', { rotationPeriodMs: HOUR - 1 }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
    await expectApi(w.km.update('k', { rotationPeriodMs: YEARS_100 + 1 }), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
    w.clock += HOUR;
    await w.km.rotate('k');
    expect(w.km.nextDueTime()).toBe(w.clock + 3 * HOUR); // from the last rotation
    expect((await w.km.update('k', { rotationPeriodMs: null })).rotationPeriodMs).toBeNull();
    expect(w.km.nextDueTime()).toBeNull();
    expect((await w.km.update('k', { deletionProtection: true })).deletionProtection).toBe(true);
    expect(w.fileKey('k')).toMatchObject({ rotationPeriodMs: null, deletionProtection: true });

    const writes = w.persistCalls;
    const text = w.fileText();
    const before = w.km.get('k');
    w.clock += HOUR;
    expect(await w.km.update('k', {})).toBe(before);
    expect(await w.km.update('k', { deletionProtection: true, rotationPeriodMs: null, minDecryptionVersion: 1 })).toBe(before);
    expect(w.persistCalls).toBe(writes);
    expect(w.fileText()).toBe(text);
    await expectApi(w.km.update('nope', {}), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
  });

  it('disables and enables (idempotently): a disabled key refuses every operation, its metadata still changes', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    const m = await w.km.create({ name: 'm', purpose: 'mac' });
    w.clock += SECOND;
    expect((await w.km.setEnabled('k', false)).state).toBe('disabled');
    await w.km.setEnabled('m', false);
    expect(w.fileKey('k')!.state).toBe('disabled');
    const writes = w.persistCalls;
    w.clock += SECOND;
    const again = await w.km.setEnabled('k', false);
    expect(again.updateTime).toBe(T0 + SECOND);
    expect(w.persistCalls).toBe(writes);
    const err = await expectApi(w.km.forEncrypt('k'), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    expect(err.metadata).toEqual({ key_name: 'k' });
    await expectApi(() => w.km.forDecrypt(idBuf(r), 1, r.suite), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    await expectApi(() => w.km.forMac('m'), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    await expectApi(() => w.km.forVerify('m', 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    expect((await w.km.update('k', { deletionProtection: true })).state).toBe('disabled');
    expect((await w.km.setEnabled('k', true)).state).toBe('enabled');
    expect(w.fileKey('k')!.state).toBe('enabled');
    expect((await w.km.forEncrypt('k')).version).toBe(1);
    await expectApi(() => w.km.forVerify('m', undefined), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    expect(m.state).toBe('enabled'); // records are replaced, never mutated
  });

  it("an unset deletion waiting period is the operator's minimum when that is longer than 7 days", async () => {
    const w = await world((x) => (x.limits = { ...x.limits, minDeletionWaitingPeriodMs: 30 * DAY }));
    await w.km.create({ name: 'k' });
    await expectApi(w.km.scheduleDeletion('k', 7 * DAY), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
    expect(await w.km.scheduleDeletion('k', undefined)).toMatchObject({ state: 'pending_deletion', deletionTime: T0 + 30 * DAY });
  });

  it('schedules deletion after a waiting period within bounds; a key pending deletion refuses use and change until cancelled (then disabled)', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k', deletionProtection: true });
    const prot = await expectApi(w.km.scheduleDeletion('k', DAY), Status.FAILED_PRECONDITION, ErrorReason.DELETION_PROTECTED);
    expect(prot.metadata).toEqual({ key_name: 'k' });
    await w.km.update('k', { deletionProtection: false });
    for (const bad of [DAY - 1, 365 * DAY + 1, -DAY, Number.NaN]) {
      const err = await expectApi(w.km.scheduleDeletion('k', bad), Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD);
      expect(err.metadata.field).toBe('waiting_period');
      // In the units the CLI takes, not "86400 s".
      expect(err.message).toContain('must be between 1d and 365d');
    }
    expect(w.fileKey('k')!.state).toBe('enabled');
    w.clock += SECOND;
    const p = await w.km.scheduleDeletion('k', undefined);
    expect(DEFAULT_DELETION_WAIT_MS).toBe(7 * DAY);
    expect(p).toMatchObject({ state: 'pending_deletion', deletionTime: T0 + SECOND + 7 * DAY, updateTime: T0 + SECOND });
    expect(w.fileKey('k')).toMatchObject({ state: 'pending_deletion', deletionTime: T0 + SECOND + 7 * DAY });
    expect(w.km.nextDueTime()).toBe(T0 + SECOND + 7 * DAY);

    const when = new Date(T0 + SECOND + 7 * DAY).toISOString();
    const use = await expectApi(w.km.forEncrypt('k'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    expect(use.metadata).toEqual({ key_name: 'k', deletion_time: when });
    await expectApi(() => w.km.forDecrypt(idBuf(r), 1, r.suite), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    const text = w.fileText();
    for (const change of [
      () => w.km.rotate('k'),
      () => w.km.update('k', { deletionProtection: true }),
      () => w.km.update('k', {}),
      () => w.km.setEnabled('k', true),
      () => w.km.setEnabled('k', false),
      () => w.km.scheduleDeletion('k', DAY),
    ]) {
      await expectApi(change(), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    }
    expect(w.fileText()).toBe(text);
    // Still visible, and its material still in the kernel until the deletion time.
    expect(w.km.get('k').state).toBe('pending_deletion');
    expect(w.km.list('', 10).keys.map((k) => k.name)).toEqual(['k']);
    expect(w.kernelKeys().has(desc(r.id, 1, 0))).toBe(true);

    w.clock += HOUR;
    const c = await w.km.cancelDeletion('k');
    expect(c).toMatchObject({ state: 'disabled', deletionTime: null, updateTime: w.clock });
    expect(w.fileKey('k')).toMatchObject({ state: 'disabled', deletionTime: null });
    expect(w.km.nextDueTime()).toBeNull();
    const notPending = await expectApi(w.km.cancelDeletion('k'), Status.FAILED_PRECONDITION, ErrorReason.KEY_NOT_PENDING_DELETION);
    expect(notPending.metadata).toEqual({ key_name: 'k' });
    await expectApi(w.km.cancelDeletion('nope'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    // A disabled key may be scheduled again, for the longest period allowed.
    expect((await w.km.scheduleDeletion('k', 365 * DAY)).deletionTime).toBe(w.clock + 365 * DAY);
    expect((await w.km.cancelDeletion('k')).state).toBe('disabled');
    expect((await w.km.scheduleDeletion('k', DAY)).deletionTime).toBe(w.clock + DAY);
  });

  it('a deletion whose time has passed cannot be cancelled, though the scheduler has not run yet (found by review)', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    await w.km.scheduleDeletion('k', DAY);
    w.clock += DAY;
    const due = await expectApi(w.km.cancelDeletion('k'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    expect(due.message).toMatch(/can no longer be cancelled/);
    expect(w.km.get('k').state).toBe('pending_deletion');
    expect(w.fileKey('k')).toMatchObject({ state: 'pending_deletion' });
    // What refuses a change or a use meanwhile does not advise the cancel it would refuse.
    for (const refused of [() => w.km.rotate('k'), () => w.km.setEnabled('k', true), () => w.km.forEncrypt('k'), async () => w.km.forDecrypt(idBuf(r), 1, r.suite)]) {
      const err = await expectApi(refused, Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
      expect(err.message).not.toMatch(/cancel the deletion (first|to use it)/);
      expect(err.message).toMatch(/its waiting period has passed/);
    }
    // The scheduler's pass then destroys it, as it would have without the cancel.
    expect(await w.km.runDueWork()).toEqual({ deleted: ['k'], rotated: [] });
    expect(w.kernelKeys().has(desc(r.id, 1, 0))).toBe(false);
    // A millisecond before its time, the cancel still wins.
    await w.km.create({ name: 'k2' });
    await w.km.scheduleDeletion('k2', DAY);
    w.clock += DAY - 1;
    expect((await w.km.cancelDeletion('k2')).state).toBe('disabled');
  });

  describe('a cancel is judged as the scheduler\'s next run will judge the deletion (found by review)', () => {
    /** The world's wall clock against a monotonic one the test moves, as the daemon wires them. */
    function steppedClock(w: World) {
      let mono = 0;
      const clock = new WallClockGain(() => w.clock, () => mono);
      w.pendingPostponement = (wall) => pendingPostponementMs(clock, undefined, wall);
      return { clock, pass: (realMs: number, stepMs = 0) => ((mono += realMs), (w.clock += realMs + stepMs)) };
    }

    it('after a forward step beyond the tolerance, not yet postponed: as if postponed', async () => {
      const w = await world();
      const { pass } = steppedClock(w);
      await w.km.create({ name: 'k' });
      await w.km.scheduleDeletion('k', DAY);
      pass(DAY - 3 * SECOND, 5 * SECOND); // the wall clock says due; 3 s of real time are left
      expect((await w.km.cancelDeletion('k')).state).toBe('disabled');
    });

    it('judges by one reading of the wall clock: a step landing between two readings is not half-counted (found by review)', async () => {
      const w = await world();
      const { pass } = steppedClock(w);
      await w.km.create({ name: 'k' });
      await w.km.scheduleDeletion('k', DAY);
      pass(DAY - 3 * SECOND); // 3 s of real time are left
      // A 5 s forward step lands between the cancel's first and second reading of the wall clock.
      let wall = w.clock;
      let reads = 0;
      Object.defineProperty(w, 'clock', { configurable: true, get: () => (++reads === 2 ? (wall += 5 * SECOND) : wall), set: (v: number) => (wall = v) });
      expect((await w.km.cancelDeletion('k')).state).toBe('disabled');
      expect(reads).toBeGreaterThanOrEqual(2);
    });

    it('a step under the tolerance is not postponed by the scheduler, so not counted here either', async () => {
      const w = await world();
      const { pass } = steppedClock(w);
      await w.km.create({ name: 'k' });
      await w.km.scheduleDeletion('k', DAY);
      pass(DAY - 400, 900); // due by the wall clock, 500 ms ago; the scheduler would delete it
      await expectApi(w.km.cancelDeletion('k'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    });

    it('the scheduler\'s step is read again under the lock: a further step while it waits is postponed too, a step back undoes it (found by review)', async () => {
      for (const [further, moved] of [[3 * SECOND, 8 * SECOND], [-5 * SECOND, 0]] as const) {
        const w = await world();
        const { clock, pass } = steppedClock(w);
        await w.km.create({ name: 'k' });
        await w.km.scheduleDeletion('k', DAY);
        const before = w.km.get('k').deletionTime!;
        pass(HOUR, 5 * SECOND);
        // Another change holds the lock while the scheduler starts and waits on it; the clock moves meanwhile.
        let release!: () => void;
        w.delay = () => {
          w.delay = undefined;
          return new Promise<void>((r) => (release = r));
        };
        const holding = w.km.create({ name: 'other' });
        await new Promise((r) => setTimeout(r, 10));
        const told: number[] = [];
        const scheduler = startDueWorkScheduler(w.km.dueWork(), { clock, now: () => w.clock, maxSleepMs: 60_000, onError: (err) => told.push(-1, (err as Error).message.length), onClockStep: (ms) => told.push(ms) });
        await new Promise((r) => setTimeout(r, 10));
        pass(0, further);
        release();
        await holding;
        try {
          await scheduler.started;
        } finally {
          scheduler.stop();
        }
        expect(w.km.get('k').deletionTime! - before, `a further step of ${further} ms`).toBe(moved);
        expect(told).toEqual(moved > 0 ? [moved] : []);
        expect(pendingPostponementMs(clock)).toBe(0);
      }
    });

    it('a cancel that waited on the scheduler\'s postponement does not count the step again', async () => {
      const w = await world();
      const { clock, pass } = steppedClock(w);
      await w.km.create({ name: 'k' });
      await w.km.scheduleDeletion('k', DAY);
      pass(DAY + 3 * SECOND, 5 * SECOND); // due by 3 s of real time, also once postponed by the step
      let cancel: Promise<unknown> | undefined;
      // The postponement's save: a cancel queues behind it on the lock.
      w.delay = () => {
        w.delay = undefined;
        cancel = w.km.cancelDeletion('k').then(() => 'cancelled', (e: unknown) => e);
        return new Promise<void>((r) => setTimeout(r, 10));
      };
      const errors: unknown[] = [];
      const scheduler = startDueWorkScheduler(
        w.km.dueWork(), // as daemon.ts wires it
        { clock, now: () => w.clock, maxSleepMs: 60_000, onError: (err) => errors.push(err) },
      );
      try {
        await scheduler.started;
      } finally {
        scheduler.stop();
      }
      expect(errors).toEqual([]);
      expect(cancel).toBeDefined();
      const refused = await cancel;
      expect(refused).toBeInstanceOf(ApiError);
      expect((refused as ApiError).reason).toBe(ErrorReason.KEY_PENDING_DELETION);
      expect(w.km.list('', 10).keys.map((k) => k.name)).toEqual([]); // and the run deleted it
    });
  });

  it('resolves versions for decryption and verification as the ciphertext says, or says why not', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    await w.km.rotate('k');
    const m = await w.km.create({ name: 'm', suite: 'hmac-sha512' });
    await w.km.rotate('m');
    await w.km.rotate('m');

    const unknown = await expectApi(() => w.km.forDecrypt(randomBytes(16), 1, 'aes-256-gcm'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    expect(Object.keys(unknown.metadata)).toEqual(['key_id']);
    for (const v of [0, 3, -1, 1.5]) {
      const err = await expectApi(() => w.km.forDecrypt(idBuf(r), v, r.suite), Status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND);
      expect(err.metadata).toEqual({ key_name: 'k', key_version: String(v) });
    }
    await expectApi(() => w.km.forDecrypt(idBuf(r), 1, 'chacha20-poly1305'), Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED);
    for (const v of [1, 2]) {
      const got = w.km.forDecrypt(idBuf(r), v, 'aes-256-gcm');
      expect(got).toMatchObject({ version: v, suite: { name: 'aes-256-gcm' } });
      expect(keyctl.describeKey(got.serials[0]!).description).toBe(desc(r.id, v, 0));
    }

    expect(w.km.forVerify('m', undefined).version).toBe(3);
    expect(w.km.forVerify('m', 0).version).toBe(3);
    expect(keyctl.describeKey(w.km.forVerify('m', 2).serials[0]!).description).toBe(desc(m.id, 2, 0));
    expect(w.km.forMac('m').version).toBe(3);
    await expectApi(() => w.km.forVerify('m', 4), Status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND);
    await w.km.update('m', { minDecryptionVersion: 2 });
    await expectApi(() => w.km.forVerify('m', 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED);
    await expectApi(() => w.km.forMac('nope'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
  });

  it('lists keys in name order, a page at a time', async () => {
    const w = await world();
    for (const name of ['c', 'a', 'b', 'd']) await w.km.create({ name });
    expect(w.km.list('', 3)).toMatchObject({ more: true, keys: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] });
    expect(w.km.list('c', 3)).toMatchObject({ more: false, keys: [{ name: 'd' }] });
    expect(w.file().keys.map((k) => k.name)).toEqual(['a', 'b', 'c', 'd']);
  });
});
