/**
 * KeyManager: scheduled work (rotations and deletions that fall due) and deletions postponed when the wall clock steps forward.
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiError, ErrorReason, Status } from '../api/errors.js';
import { KeyManager } from './key-manager.js';
import { DueWorkFailed } from './due-work-scheduler.js';
import { KEYS_PER_SAVE } from './key-due-work.js';
import { MAX_TIME_MS } from './model.js';
import { DAY, HOUR, SECOND, T0, alive, desc, disposeWorlds, enospc, expectApi, idBuf, serialsOf, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager.runDueWork', () => {
  it('after the wall clock ran ahead and stepped back, a rotation period counts from the corrected clock, not from the future (found by review)', async () => {
    const w = await world();
    await w.km.create({ name: 'k', rotationPeriodMs: DAY });
    w.clock = T0 + 365 * DAY; // the clock runs a year ahead: k rotates, recorded a year ahead
    expect((await w.km.runDueWork()).rotated).toEqual(['k']);
    expect(w.fileKey('k')!.rotateTime).toBe(T0 + 365 * DAY);
    w.clock = T0 + 10 * DAY; // set right
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(w.fileKey('k')!.rotateTime).toBe(T0 + 10 * DAY);
    expect(w.km.get('k').versions).toHaveLength(2);
    await w.restart();
    expect(w.km.nextDueTime()).toBe(T0 + 11 * DAY);
    w.clock = T0 + 11 * DAY;
    expect((await w.km.runDueWork()).rotated).toEqual(['k']);
    expect(w.km.get('k').versions).toHaveLength(3);
  });

  it('a key created while the clock was ahead and never rotated counts its period from the corrected clock; a step back within a minute changes nothing', async () => {
    const w = await world();
    w.clock = T0 + 30 * DAY;
    await w.km.create({ name: 'early', rotationPeriodMs: DAY });
    const before = structuredClone(w.fileKey('early'));
    w.clock -= 30_000; // 30 s back: left alone (no write)
    await w.km.runDueWork();
    expect(w.fileKey('early')).toEqual(before);
    w.clock = T0; // a month back
    await w.km.runDueWork();
    expect(w.fileKey('early')).toMatchObject({ createTime: T0, rotateTime: null });
    expect(w.km.get('early').versions).toHaveLength(1);
    w.clock = T0 + DAY;
    expect((await w.km.runDueWork()).rotated).toEqual(['early']);
  });

  it('a deletion rescheduled while a pass runs is not destroyed by a forward clock step within that pass (found by review)', async () => {
    const w = await world();
    // A full group of deletions ahead of b's: b's group re-checks it once the first group is saved.
    const first: string[] = [];
    for (let i = 0; i < KEYS_PER_SAVE; i++) first.push((await w.km.create({ name: `a${String(i).padStart(3, '0')}` })).name);
    await w.km.create({ name: 'b' });
    for (const name of [...first, 'b']) await w.km.scheduleDeletion(name, DAY);
    w.clock += DAY + SECOND; // all due
    let release!: () => void;
    let holding = true;
    w.delay = () => (holding ? new Promise<void>((r) => (release = r)) : Promise.resolve());
    const pass = w.km.runDueWork(); // reads the clock once; the first group's deletion waits in persist
    await new Promise((r) => setTimeout(r, 20));
    holding = false;
    // b's owner cancels and reschedules with a day's wait, queued behind the first group's deletion...
    // (The clock a little back first: a deletion already due can no longer be cancelled.)
    w.clock -= 2 * SECOND;
    const cancel = w.km.cancelDeletion('b');
    const reschedule = w.km.scheduleDeletion('b', DAY);
    // ...and the wall clock steps two days forward right after that is saved, before the scheduler
    // has seen the step (it postpones deletions at the start of its next pass).
    w.afterSave = (doc) => {
      const b = doc.keys.find((k) => k.name === 'b');
      if (b?.state === 'pending_deletion' && b.deletionTime === w.clock + DAY) w.clock += 2 * DAY;
    };
    release();
    await cancel;
    await reschedule;
    expect((await pass).deleted).toEqual(first);
    expect(w.file().keys.map((k) => [k.name, k.state])).toEqual([['b', 'pending_deletion']]);
  });

  it('deletes a key once its deletion time has passed, never before: from the state file and from the kernel', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k', suite: 'aes-256-ctr-hmac-sha256' });
    await w.km.rotate('k');
    const other = await w.km.create({ name: 'other' });
    const serials = [...serialsOf(w, w.km.get('k'), 1), ...serialsOf(w, w.km.get('k'), 2)];
    expect(serials).toHaveLength(4);
    await w.km.scheduleDeletion('k', DAY);
    const due = T0 + DAY;
    expect(w.km.nextDueTime()).toBe(due);

    w.clock = due - 1;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(w.fileKey('k')).toBeDefined();
    expect(serials.every(alive)).toBe(true);

    w.clock = due;
    expect(await w.km.runDueWork()).toEqual({ deleted: ['k'], rotated: [] });
    expect(w.file().keys.map((k) => k.name)).toEqual(['other']);
    expect(serials.some(alive)).toBe(false);
    expect([...w.kernelKeys().keys()]).toEqual([desc(other.id, 1, 0)]);
    await expectApi(() => w.km.get('k'), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    await expectApi(() => w.km.forDecrypt(idBuf(r), 1, r.suite), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    expect(w.km.nextDueTime()).toBeNull();
    // The name may be used again, by a new key with a new id.
    const again = await w.km.create({ name: 'k' });
    expect(again.id).not.toBe(r.id);
    await expectApi(() => w.km.forDecrypt(idBuf(r), 1, r.suite), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
    // And a restart does not bring the deleted key back.
    await w.restart();
    expect(w.km.get('k').id).toBe(again.id);
    expect(w.km.size).toBe(2);
  });

  it('honours deletion times across restarts: not before the time, and at the first run after it', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k' });
    await w.km.scheduleDeletion('k', 2 * DAY);
    w.clock = T0 + DAY;
    await w.restart();
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(w.km.get('k')).toMatchObject({ state: 'pending_deletion', deletionTime: T0 + 2 * DAY });
    w.crash();
    w.clock = T0 + 30 * DAY; // the daemon was down when the time passed
    await w.boot();
    const serial = w.kernelKeys().get(desc(r.id, 1, 0))!;
    expect(alive(serial)).toBe(true);
    expect(w.km.nextDueTime()).toBe(T0 + 2 * DAY);
    expect(await w.km.runDueWork()).toEqual({ deleted: ['k'], rotated: [] });
    expect(w.file().keys).toEqual([]);
    expect(alive(serial)).toBe(false);
  });

  it('rotates keys whose rotation period has passed (also disabled ones, not those pending deletion), from the last rotation', async () => {
    const w = await world();
    const r = await w.km.create({ name: 'k', rotationPeriodMs: 2 * HOUR });
    await w.km.create({ name: 'off', rotationPeriodMs: 2 * HOUR });
    await w.km.setEnabled('off', false);
    await w.km.create({ name: 'pend', rotationPeriodMs: 2 * HOUR });
    await w.km.scheduleDeletion('pend', 30 * DAY);
    await w.km.create({ name: 'never' });
    expect(w.km.nextDueTime()).toBe(T0 + 2 * HOUR);

    w.clock = T0 + 2 * HOUR - 1;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    w.clock = T0 + 2 * HOUR + 5;
    const done = await w.km.runDueWork();
    expect(done.rotated.sort()).toEqual(['k', 'off']);
    expect(w.fileKey('k')).toMatchObject({ rotateTime: T0 + 2 * HOUR + 5, versions: [{ version: 1 }, { version: 2, createTime: T0 + 2 * HOUR + 5 }] });
    expect(w.fileKey('off')!.state).toBe('disabled');
    expect(w.fileKey('pend')!.versions).toHaveLength(1);
    expect(w.fileKey('never')!.versions).toHaveLength(1);
    expect(w.kernelKeys().has(desc(r.id, 2, 0))).toBe(true);
    expect(w.km.nextDueTime()).toBe(T0 + 4 * HOUR + 5);
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });

    // Due while the daemon was down: one rotation at the first run, then due a period later.
    w.crash();
    w.clock = T0 + 100 * HOUR;
    await w.boot();
    expect((await w.km.runDueWork()).rotated.sort()).toEqual(['k', 'off']);
    expect(w.fileKey('k')!.versions).toHaveLength(3);
    expect(w.km.nextDueTime()).toBe(T0 + 102 * HOUR);
  });

  it('one key\'s failure does not hold up the others', async () => {
    const w = await world();
    await w.km.create({ name: 'a', rotationPeriodMs: HOUR });
    const z = await w.km.create({ name: 'z' });
    await w.km.scheduleDeletion('z', DAY);
    w.clock = T0 + DAY;
    // The rotation of "a" (first in order) cannot be written; the deletion of "z" can.
    w.failWith = (doc) => (doc.keys.find((k) => k.name === 'a')?.versions.length === 2 ? enospc() : undefined);
    await expect(w.km.runDueWork()).rejects.toSatisfy((e: unknown) => e instanceof DueWorkFailed && e.retryInMs === SECOND && (e.errors[0] as NodeJS.ErrnoException).code === 'ENOSPC');
    expect(w.file().keys.map((k) => k.name)).toEqual(['a']);
    expect(w.kernelKeys().has(desc(z.id, 1, 0))).toBe(false);
    expect(w.km.get('a').versions).toHaveLength(1);
    expect(w.kernelKeys().size).toBe(1);
    w.failWith = undefined;
    w.clock += SECOND; // its retry
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: ['a'] });
  });

  it('a key whose work keeps failing waits its own backoff; the others\' work due meanwhile is done on time (found by review)', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, minDeletionWaitingPeriodMs: SECOND }));
    await w.km.create({ name: 'a', rotationPeriodMs: HOUR });
    const z = await w.km.create({ name: 'z' });
    const start = (w.clock = T0 + HOUR);
    w.failWith = (doc) => (doc.keys.find((k) => k.name === 'a')?.versions.length === 2 ? enospc() : undefined);
    const failure = async (retryInMs: number) => expect(w.km.runDueWork()).rejects.toSatisfy((e: unknown) => e instanceof DueWorkFailed && e.retryInMs === retryInMs && /^scheduled work failed for 1 key: "a": ENOSPC/.test(e.message));
    await failure(SECOND);
    expect(w.km.nextDueTime()).toBe(start + SECOND); // its retry, not its rotation time, already past: the scheduler would spin
    w.clock = start + SECOND / 2;
    await w.km.scheduleDeletion('z', 4.5 * SECOND); // due at start + 5 s
    const calls = w.persistCalls;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] }); // "a" waits
    expect(w.persistCalls).toBe(calls);
    w.clock = start + SECOND;
    await failure(2 * SECOND);
    w.clock = start + 3 * SECOND;
    await failure(4 * SECOND);
    expect(w.km.nextDueTime()).toBe(start + 5 * SECOND); // the deletion of "z", before the retry of "a"
    w.clock = start + 5 * SECOND;
    expect(await w.km.runDueWork()).toEqual({ deleted: ['z'], rotated: [] });
    expect(w.kernelKeys().has(desc(z.id, 1, 0))).toBe(false);
    expect(w.km.nextDueTime()).toBe(start + 7 * SECOND);
    w.clock = start + 7 * SECOND;
    await failure(8 * SECOND);
    w.failWith = undefined;
    w.clock = start + 15 * SECOND;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: ['a'] });
    expect(w.km.nextDueTime()).toBe(w.clock + HOUR);
    expect(w.file().keys.map((k) => k.name)).toEqual(['a']);
    // The backoff is over: a later failure starts it afresh.
    w.failWith = (doc) => (doc.keys.find((k) => k.name === 'a')?.versions.length === 3 ? enospc() : undefined);
    w.clock += HOUR;
    await failure(SECOND);
  });

  it('a deletion is not held up by the key\'s failed rotations, and a retry counts from the failure, not the pass\'s start (found by review)', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, minDeletionWaitingPeriodMs: SECOND }));
    const a = await w.km.create({ name: 'a', rotationPeriodMs: HOUR });
    w.clock = T0 + HOUR;
    w.failWith = (doc) => (doc.keys.find((k) => k.name === 'a')?.versions.length === 2 ? enospc() : undefined);
    // Each failing write takes 1.5 s: the retry must still be a second after it, not already past.
    w.delay = async () => void (w.clock += 1500);
    for (let delay = SECOND; ; delay *= 2) {
      await expect(w.km.runDueWork()).rejects.toSatisfy((e: unknown) => e instanceof DueWorkFailed && e.retryInMs === delay);
      expect(w.km.nextDueTime()).toBe(w.clock + delay);
      if (delay === 64 * SECOND) break;
      w.clock += delay;
    }
    w.delay = undefined;
    // The rotation waits 64 s now; the key is scheduled for deletion, due in 1 s (to free the quota, say).
    await w.km.scheduleDeletion('a', SECOND);
    expect(w.km.nextDueTime()).toBe(w.clock + SECOND);
    w.clock += SECOND;
    expect(await w.km.runDueWork()).toEqual({ deleted: ['a'], rotated: [] });
    expect(w.kernelKeys().has(desc(a.id, 1, 0))).toBe(false);
  });

  it('re-checks a due rotation under the lock: a key rotated by hand while the scheduler waited is not rotated again (found by review: untested)', async () => {
    const w = await world();
    await w.km.create({ name: 'rot', rotationPeriodMs: HOUR });
    w.clock = T0 + HOUR; // due
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    w.delay = () => gate;
    const slow = w.km.create({ name: 'slow' }); // holds the lock
    const byHand = w.km.rotate('rot');
    const run = w.km.runDueWork();
    await new Promise((resolve) => setTimeout(resolve, 10));
    w.delay = undefined;
    release();
    await Promise.all([slow, byHand]);
    expect(await run).toEqual({ deleted: [], rotated: [] });
    expect(w.fileKey('rot')!.versions.map((v) => v.version)).toEqual([1, 2]);
  });

  it('re-checks each key under the lock: a deletion cancelled, or a key scheduled for deletion, while it waited is left alone', async () => {
    const w = await world();
    await w.km.create({ name: 'del' });
    await w.km.scheduleDeletion('del', DAY);
    await w.km.create({ name: 'rot', rotationPeriodMs: HOUR });
    // Hold the lock with a slow write, queue the changes, then the scheduler's run behind them.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    w.delay = () => gate;
    const slow = w.km.create({ name: 'slow' });
    const cancel = w.km.cancelDeletion('del');
    const schedule = w.km.scheduleDeletion('rot', DAY);
    // The run reads the clock once, as it starts: "del" is due for it...
    w.clock = T0 + DAY;
    const run = w.km.runDueWork();
    // ...but not yet for the cancel (a deletion already due can no longer be cancelled); once the
    // cancel is saved the clock moves on, so only the re-check of the key's state spares it.
    w.clock = T0 + DAY - 1;
    w.afterSave = (doc) => {
      if (doc.keys.find((k) => k.name === 'del')?.state === 'disabled') w.clock = T0 + DAY + 1;
    };
    await new Promise((resolve) => setTimeout(resolve, 10));
    w.delay = undefined;
    release();
    await Promise.all([slow, cancel, schedule]);
    expect(await run).toEqual({ deleted: [], rotated: [] });
    expect(w.fileKey('del')).toMatchObject({ state: 'disabled', deletionTime: null });
    expect(w.fileKey('rot')).toMatchObject({ state: 'pending_deletion', versions: [{ version: 1 }] });
    expect(w.kernelKeys().size).toBe(3);

    // Two runs at once (the scheduler and start-up): each key is deleted once, the other run finds it gone.
    await w.km.scheduleDeletion('del', DAY);
    w.clock += DAY; // "rot" (scheduled above) is due too
    const runs = await Promise.all([w.km.runDueWork(), w.km.runDueWork()]);
    expect(runs.flatMap((r) => r.deleted).sort()).toEqual(['del', 'rot']);
    expect(w.file().keys.map((k) => k.name)).toEqual(['slow']);
    expect(w.kernelKeys().size).toBe(1);
  });

  it('saves the rotations due in one pass KEYS_PER_SAVE at a time, not each in its own write of the whole file (review by helper-190)', async () => {
    const w = await world();
    const n = 2 * KEYS_PER_SAVE + 5;
    const keys = [];
    for (let i = 0; i < n; i++) keys.push(await w.km.create({ name: `k${String(i).padStart(3, '0')}`, rotationPeriodMs: DAY }));
    w.clock += DAY; // all due at once, as after a daemon was down
    const writes = w.persistCalls;
    const done = await w.km.runDueWork();
    expect(w.persistCalls - writes).toBe(3); // was one write per key: n writes of the whole file
    expect(done.rotated).toEqual(keys.map((k) => k.name));
    expect(w.file().keys.map((k) => k.versions.map((v) => v.version))).toEqual(keys.map(() => [1, 2]));
    const kernel = w.kernelKeys();
    expect(keys.every((k) => kernel.has(desc(k.id, 2, 0)))).toBe(true);
    await w.restart();
    expect(keys.every((k) => w.km.get(k.name).versions.length === 2)).toBe(true);
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    // Hundreds of keys, each made with a state write: slow on a loaded machine, not a timing claim.
  }, 60_000);

  it('saves the deletions due in one pass KEYS_PER_SAVE at a time, not each in its own write of the whole file (review by helper-196)', async () => {
    const w = await world();
    const n = 2 * KEYS_PER_SAVE + 5;
    const keys = [];
    for (let i = 0; i < n; i++) {
      keys.push(await w.km.create({ name: `k${String(i).padStart(3, '0')}` }));
      await w.km.scheduleDeletion(keys[i]!.name, DAY);
    }
    const kept = await w.km.create({ name: 'kept' });
    w.clock += DAY; // all due at once, as after a daemon was down
    const writes = w.persistCalls;
    const done = await w.km.runDueWork();
    expect(w.persistCalls - writes).toBe(3); // was one write per key: n writes of the whole file
    expect(done).toEqual({ deleted: keys.map((k) => k.name), rotated: [] });
    // Each write holds the keys deleted so far, and none deleted yet: a group at a time, in order.
    expect(w.persisted.slice(-3).map((doc) => doc.keys.length - 1)).toEqual([n - KEYS_PER_SAVE, n - 2 * KEYS_PER_SAVE, 0]);
    expect(w.file().keys.map((k) => k.name)).toEqual(['kept']);
    expect([...w.kernelKeys().keys()]).toEqual([desc(kept.id, 1, 0)]);
    // A line per key, as before.
    expect(w.logs.filter((l) => l.msg === 'key deleted after its waiting period').map((l) => l.fields)).toEqual(keys.map((k) => ({ key_name: k.name, keyId: k.id })));
    await w.restart();
    expect(w.km.size).toBe(1);
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    // Hundreds of keys, each made with a state write: slow on a loaded machine, not a timing claim.
  }, 60_000);

  it('a group of deletions whose write fails deletes none of its keys: memory, disk and kernel agree, none can be cancelled, and each retries on its own backoff', async () => {
    const w = await world();
    const keys = [];
    for (const name of ['a', 'b', 'c']) {
      keys.push(await w.km.create({ name }));
      await w.km.scheduleDeletion(name, DAY);
    }
    w.clock += DAY;
    const before = w.fileText();
    w.failWith = (doc) => (doc.keys.length < 3 ? enospc() : undefined);
    await expect(w.km.runDueWork()).rejects.toSatisfy(
      (e: unknown) => e instanceof DueWorkFailed && e.retryInMs === SECOND && e.errors.length === 3 && /^scheduled work failed for 3 keys: "a": ENOSPC.*"b": ENOSPC.*"c": ENOSPC/.test(e.message),
    );
    expect(w.fileText()).toBe(before);
    expect(keys.every((k) => w.kernelKeys().has(desc(k.id, 1, 0)))).toBe(true);
    expect(['a', 'b', 'c'].map((name) => w.km.get(name).state)).toEqual(['pending_deletion', 'pending_deletion', 'pending_deletion']);
    await expectApi(() => w.km.cancelDeletion('b'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    expect(w.logs.some((l) => l.msg === 'key deleted after its waiting period')).toBe(false);
    w.failWith = undefined;
    expect(w.km.nextDueTime()).toBe(w.clock + SECOND);
    w.clock += SECOND;
    expect(await w.km.runDueWork()).toEqual({ deleted: ['a', 'b', 'c'], rotated: [] });
    expect(w.file().keys).toEqual([]);
    expect(w.kernelKeys().size).toBe(0);
  });

  it('a cancel acknowledged while a group of deletions waited for the lock is kept: the others of the group are deleted in one write', async () => {
    const w = await world();
    await w.km.create({ name: 'a' });
    const x = await w.km.create({ name: 'x' });
    await w.km.create({ name: 'c' });
    for (const name of ['a', 'x', 'c']) await w.km.scheduleDeletion(name, DAY);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    w.delay = () => gate;
    const slow = w.km.create({ name: 'slow' }); // holds the lock
    const cancel = w.km.cancelDeletion('x');
    w.clock = T0 + DAY; // due for the run, which reads the clock as it starts...
    const run = w.km.runDueWork();
    // ...not yet for the cancel; once it is saved the clock moves on: only the re-check spares x.
    w.clock = T0 + DAY - 1;
    w.afterSave = (doc) => {
      if (doc.keys.find((k) => k.name === 'x')?.state === 'disabled') w.clock = T0 + DAY + 1;
    };
    await new Promise((resolve) => setTimeout(resolve, 10));
    w.delay = undefined;
    const writes = w.persistCalls;
    release();
    await slow;
    expect(await cancel).toMatchObject({ name: 'x', state: 'disabled', deletionTime: null });
    expect(await run).toEqual({ deleted: ['a', 'c'], rotated: [] });
    expect(w.persistCalls - writes).toBe(2); // the cancel's, then the group's
    expect(w.file().keys.map((k) => [k.name, k.state])).toEqual([['slow', 'enabled'], ['x', 'disabled']]);
    expect([...w.kernelKeys().keys()].sort()).toEqual([desc(x.id, 1, 0), desc(w.km.get('slow').id, 1, 0)].sort());
  });

  it('sets the rotation periods the clock stepped back from to the present KEYS_PER_SAVE keys at a time, not each in its own write (review by helper-196)', async () => {
    const w = await world();
    const n = KEYS_PER_SAVE + 3;
    w.clock = T0 + 30 * DAY; // the clock runs a month ahead
    const keys = [];
    for (let i = 0; i < n; i++) keys.push(await w.km.create({ name: `k${String(i).padStart(3, '0')}`, rotationPeriodMs: DAY }));
    await w.km.rotate('k000'); // recorded in rotateTime, the others in createTime
    w.clock = T0; // set right
    const writes = w.persistCalls;
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(w.persistCalls - writes).toBe(2); // was one write per key
    expect(w.file().keys.map((k) => k.rotateTime ?? k.createTime)).toEqual(keys.map(() => T0));
    expect(w.logs.filter((l) => l.level === 'warn' && /stepped back/.test(l.msg)).map((l) => [l.fields!.key_name, l.fields!.field])).toEqual(
      keys.map((k, i) => [k.name, i === 0 ? 'rotateTime' : 'createTime']),
    );
    expect(w.km.nextDueTime()).toBe(T0 + DAY);
    // Hundreds of keys, each made with a state write: slow on a loaded machine, not a timing claim.
  }, 60_000);

  it('a group of rotations whose write fails rotates none of its keys: memory, disk and kernel agree, and each key retries on its own backoff', async () => {
    const w = await world();
    for (const name of ['a', 'b', 'c']) await w.km.create({ name, rotationPeriodMs: HOUR });
    w.clock += HOUR;
    const before = w.fileText();
    w.failWith = (doc) => (doc.keys.some((k) => k.versions.length === 2) ? enospc() : undefined);
    await expect(w.km.runDueWork()).rejects.toSatisfy(
      (e: unknown) => e instanceof DueWorkFailed && e.retryInMs === SECOND && e.errors.length === 3 && /^scheduled work failed for 3 keys: "a": ENOSPC.*"b": ENOSPC.*"c": ENOSPC/.test(e.message),
    );
    expect(w.fileText()).toBe(before);
    expect(['a', 'b', 'c'].map((name) => w.km.get(name).versions.length)).toEqual([1, 1, 1]);
    // The versions made for the write are gone from the kernel: only each key's version 1 is left.
    expect([...w.kernelKeys().keys()].map((d) => d.split(':')[2])).toEqual(['1', '1', '1']);
    expect((await w.km.forEncrypt('a')).version).toBe(1);
    w.failWith = undefined;
    expect(w.km.nextDueTime()).toBe(w.clock + SECOND);
    w.clock += SECOND;
    expect((await w.km.runDueWork()).rotated).toEqual(['a', 'b', 'c']);
    expect(w.file().keys.map((k) => k.versions.length)).toEqual([2, 2, 2]);
  });

  it('the caps count the versions a group of rotations makes before it is saved: the group stops at maxKeyVersions and maxKeyVersionsPerCaller', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, maxKeyVersions: 7, maxKeyVersionsPerCaller: 2 }));
    await w.km.create({ name: 'a', rotationPeriodMs: HOUR, creatorUid: 1001 });
    await w.km.create({ name: 'b', rotationPeriodMs: HOUR, creatorUid: 1002 });
    await w.km.create({ name: 'c', rotationPeriodMs: HOUR, creatorUid: 1002 }); // uid 1002 at its share
    await w.km.create({ name: 'd', rotationPeriodMs: HOUR });
    await w.km.create({ name: 'e', rotationPeriodMs: HOUR });
    w.clock += HOUR;
    const err = await w.km.runDueWork().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DueWorkFailed);
    const failed = (err as DueWorkFailed).errors as ApiError[];
    expect(failed.map((e) => [ErrorReason[e.reason], e.metadata.limit, e.metadata.key_name])).toEqual([
      ['KEY_LIMIT_REACHED', 'key_versions_per_caller', 'b'],
      ['KEY_LIMIT_REACHED', 'key_versions_per_caller', 'c'],
      ['KEY_LIMIT_REACHED', 'key_versions', 'e'],
    ]);
    // a (uid 1001's second version) and d (nobody's) were rotated, in one write: a third would pass the cap of 7.
    expect(w.file().keys.map((k) => [k.name, k.versions.length])).toEqual([['a', 2], ['b', 1], ['c', 1], ['d', 2], ['e', 1]]);
    expect(w.km.keyCounts(undefined).versions).toBe(7);
    expect(w.kernelKeys().size).toBe(7);
  });
});

describe('KeyManager.postponeDeletions (the wall clock stepped forward)', () => {
  it('never postpones past the latest time a Date holds (beyond it every error naming the time threw, and due work stopped: found by review)', async () => {
    const w = await world();
    await w.km.create({ name: 'doomed' });
    await w.km.scheduleDeletion('doomed', DAY);
    expect(await w.km.postponeDeletions(MAX_TIME_MS)).toEqual(['doomed']);
    expect(w.km.get('doomed').deletionTime).toBe(MAX_TIME_MS);
    await expectApi(() => w.km.forEncrypt('doomed'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
    await w.restart(); // and the state file still loads
    expect(w.km.get('doomed').deletionTime).toBe(MAX_TIME_MS);
  });

  it('moves every pending deletion later by the step, persisted; other keys are untouched; the deletion then waits', async () => {
    const w = await world();
    await w.km.create({ name: 'doomed' });
    await w.km.create({ name: 'kept' });
    await w.km.scheduleDeletion('doomed', DAY);
    const due = w.km.get('doomed').deletionTime!;
    const keptBefore = structuredClone(w.km.get('kept'));
    expect(await w.km.postponeDeletions(2 * DAY)).toEqual(['doomed']);
    expect(w.km.get('doomed').deletionTime).toBe(due + 2 * DAY);
    expect(w.fileKey('doomed')).toMatchObject({ state: 'pending_deletion', deletionTime: due + 2 * DAY });
    expect(w.km.get('kept')).toEqual(keptBefore);
    // The step itself (the clock now reads 2 days later) brings nothing due; a day more of real time does.
    w.clock += 2 * DAY;
    expect((await w.km.runDueWork()).deleted).toEqual([]);
    w.clock += DAY;
    expect((await w.km.runDueWork()).deleted).toEqual(['doomed']);
    expect(await w.km.postponeDeletions(0)).toEqual([]);
    // A step measured against performance.now() is fractional; times stay whole milliseconds.
    await w.km.create({ name: 'later' });
    await w.km.scheduleDeletion('later', DAY);
    await w.km.postponeDeletions(1234.25);
    expect(w.km.get('later').deletionTime).toBe(w.clock + DAY + 1235);
    await w.restart();
    expect(w.km.get('later').deletionTime).toBe(w.clock + DAY + 1235);
  });
  it('postpones every pending deletion in one state write: a failed write postpones none (found by review)', async () => {
    const w = await world();
    for (const name of ['a', 'b', 'c']) {
      await w.km.create({ name });
      await w.km.scheduleDeletion(name, DAY);
    }
    const due = w.km.get('a').deletionTime!;
    const writes = w.persistCalls;
    w.failWith = () => Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    await expect(w.km.postponeDeletions(HOUR)).rejects.toThrow('no space');
    expect(['a', 'b', 'c'].map((n) => [w.km.get(n).deletionTime, w.fileKey(n)!.deletionTime])).toEqual([
      [due, due],
      [due, due],
      [due, due],
    ]);
    // A disk that takes one more write and then fails: the one write it takes postpones all three.
    let writesLeft = 1;
    w.failWith = () => (writesLeft-- > 0 ? undefined : Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
    expect(await w.km.postponeDeletions(HOUR)).toEqual(['a', 'b', 'c']);
    expect(w.persistCalls - writes).toBe(2); // the failed write and one more
    expect(['a', 'b', 'c'].map((n) => w.fileKey(n)!.deletionTime)).toEqual([due + HOUR, due + HOUR, due + HOUR]);
    w.failWith = undefined;
    await w.restart();
    expect(['a', 'b', 'c'].map((n) => w.km.get(n).deletionTime)).toEqual([due + HOUR, due + HOUR, due + HOUR]);
  });
});
