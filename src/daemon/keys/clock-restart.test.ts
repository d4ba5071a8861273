/**
 * A forward step of the wall clock that the daemon saw but had not yet postponed deletions by (the
 * write failed and waits its retry, or the process died within the scheduler's tick) was forgotten
 * by a restart, which measured steps from its own start: a deletion 7 days out happened 1 real day
 * after it was scheduled (review by helper-101). Every state write now records the clocks
 * (ClockAnchor), and a restart in the same boot goes on from them, wired as daemon.ts does.
 * Fake timers: Date.now() is real elapsed time, CLOCK_MONOTONIC alike; `off` is the wall clock's step.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KeyManager } from './key-manager.js';
import { EMPTY_STATE, validateState, type PersistedState } from './model.js';
import { WallClockGain } from './wall-clock-gain.js';
import { pendingPostponementMs, startDueWorkScheduler } from './due-work-scheduler.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
beforeEach(() => vi.useFakeTimers({ now: 0 }));
afterEach(() => vi.useRealTimers());

function machine() {
  const m = {
    durable: structuredClone(EMPTY_STATE) as PersistedState,
    failWrites: false,
    off: 0,
    bootId: 'boot-1',
    destroyed: [] as string[],
    wall: () => T0 + Date.now() + m.off,
    mono: () => Date.now(),
    /** Starts a daemon on what is durable, as daemon.ts wires the clock and the writes. */
    async boot() {
      let serial = 1;
      const clock = WallClockGain.resumed(validateState(structuredClone(m.durable), 'state.json').clock, m.bootId, { wall: m.wall, monotonic: m.mono, systemMono: m.mono });
      const km = new KeyManager({
        material: { canSeal: false, generate: () => ({ serials: [serial++], blobs: ['b'] }), restore: async () => ({ serials: [serial++], fingerprints: [] }), destroy: () => {} } as never,
        fingerprints: { start: () => {}, noteRestored: () => {}, of: async () => undefined, removeKey: () => {}, close: () => {}, add: () => {} } as never,
        persist: async (s, meta) => {
          if (m.failWrites) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
          // Through JSON, as state.json holds it.
          m.durable = JSON.parse(JSON.stringify({ ...s, clock: clock.anchor(m.bootId, m.mono(), meta?.postponingMs) })) as PersistedState;
        },
        suiteStatus: () => 'available',
        limits: { minRotationPeriodMs: 3_600_000, minDeletionWaitingPeriodMs: DAY },
        log: (msg) => void (msg.startsWith('key deleted') && m.destroyed.push(`${msg} at real +${(Date.now() / DAY).toFixed(3)} d`)),
        now: () => clock.now(),
        pendingClockPostponementMs: (w) => pendingPostponementMs(clock, undefined, w),
      });
      await km.open(structuredClone(m.durable));
      const scheduler = startDueWorkScheduler(km.dueWork(), { onError: () => {}, clock, now: m.wall });
      await scheduler.started;
      return { km, scheduler };
    },
  };
  return m;
}

describe('a restart in the same boot keeps what the clock did', () => {
  it('a step seen but not yet postponed (the write failed) still postpones the deletion after a restart', { timeout: 30_000 }, async () => {
    const m = machine();
    let { km, scheduler } = await m.boot();
    await km.create({ name: 'k' });
    await km.scheduleDeletion('k', 7 * DAY); // due at real +7 d
    await vi.advanceTimersByTimeAsync(DAY);
    m.failWrites = true;
    m.off += 6 * DAY; // the wall clock steps 6 days forward
    await vi.advanceTimersByTimeAsync(3000); // seen; its postponement fails and waits
    expect(km.get('k').state).toBe('pending_deletion');
    scheduler.stop(); // restarted (or killed) before the retry
    m.failWrites = false;
    ({ km, scheduler } = await m.boot());
    await vi.advanceTimersByTimeAsync(2000);
    expect(m.destroyed).toEqual([]);
    expect(km.get('k').state).toBe('pending_deletion');
    expect(m.durable.keys[0]!.deletionTime).toBeGreaterThanOrEqual(T0 + 13 * DAY - 1000); // 7 real days on the stepped clock
    await vi.advanceTimersByTimeAsync(6 * DAY - 10_000);
    expect(m.destroyed).toEqual([]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(m.destroyed).toHaveLength(1); // and it does come, after its 7 real days
    scheduler.stop();
  });

  it('a step while the daemon was stopped is seen in the same boot, not after a reboot (documented)', { timeout: 30_000 }, async () => {
    for (const [bootAfter, postponed] of [['boot-1', true], ['boot-2', false]] as const) {
      vi.setSystemTime(0);
      const m = machine();
      let { km, scheduler } = await m.boot();
      await km.create({ name: 'k' });
      await km.scheduleDeletion('k', 7 * DAY);
      scheduler.stop();
      m.off += 3 * DAY; // while stopped
      m.bootId = bootAfter;
      ({ km, scheduler } = await m.boot());
      await vi.advanceTimersByTimeAsync(2000);
      scheduler.stop();
      expect(m.durable.keys[0]!.deletionTime, bootAfter).toBe(postponed ? T0 + 10 * DAY : T0 + 7 * DAY);
    }
  });

  it('a step postponed once is not postponed again by each restart (review by helper-103)', { timeout: 30_000 }, async () => {
    const m = machine();
    let { km, scheduler } = await m.boot();
    await km.create({ name: 'k' });
    await km.scheduleDeletion('k', 7 * DAY);
    await vi.advanceTimersByTimeAsync(60_000);
    m.off += 3 * DAY; // a step while running: postponed, in the same write as the anchor
    await vi.advanceTimersByTimeAsync(3000);
    const once = m.durable.keys[0]!.deletionTime!;
    expect(once).toBeGreaterThanOrEqual(T0 + 10 * DAY - 1000);
    for (let i = 0; i < 3; i++) {
      scheduler.stop();
      await vi.advanceTimersByTimeAsync(60_000); // stopped a minute, no step
      ({ km, scheduler } = await m.boot());
      await vi.advanceTimersByTimeAsync(2000);
      expect(m.durable.keys[0]!.deletionTime, `restart ${i + 1}`).toBeLessThan(once + 2000);
    }
    scheduler.stop();
  });

  it('a hand-edited anchor far out of range is refused; one within range that overflows the arithmetic carries nothing odd (review by helper-103)', { timeout: 30_000 }, async () => {
    const base = (extra: object) => ({ ...(structuredClone(EMPTY_STATE) as object), clock: { bootId: 'boot-1', wallMs: 0, monoMs: 0, unpostponedMs: 0, ...extra } });
    expect(() => validateState(base({ unpostponedMs: 1e308 }), 's')).toThrow(/clock is not/);
    expect(() => validateState(base({ wallMs: -1e308 }), 's')).toThrow(/clock is not/);
    // The largest values validation lets through: the tracker stays finite and still sees a later step.
    const m = machine();
    let { km, scheduler } = await m.boot();
    await km.create({ name: 'k' });
    scheduler.stop();
    m.durable = { ...m.durable, clock: { bootId: 'boot-1', wallMs: -8.64e15, monoMs: 0, unpostponedMs: 8.64e15 } };
    ({ km, scheduler } = await m.boot());
    await vi.advanceTimersByTimeAsync(2000);
    expect(Number.isFinite(m.durable.clock!.unpostponedMs)).toBe(true);
    await km.scheduleDeletion('k', 7 * DAY);
    const due = km.get('k').deletionTime!;
    m.off += 6 * DAY;
    await vi.advanceTimersByTimeAsync(3000);
    expect(km.get('k').deletionTime).toBeGreaterThanOrEqual(Math.min(due + 6 * DAY - 1000, 8.64e15));
    await vi.advanceTimersByTimeAsync(DAY + 10_000);
    expect(m.destroyed).toEqual([]);
    scheduler.stop();
  });

  it('the anchor is checked when the state is read', () => {
    const base = structuredClone(EMPTY_STATE) as unknown as Record<string, unknown>;
    expect(validateState({ ...base, clock: { bootId: 'b', wallMs: 1, monoMs: 2, unpostponedMs: 0 } }, 's').clock?.bootId).toBe('b');
    for (const clock of [null, { bootId: 'b', wallMs: 1, monoMs: 2 }, { bootId: 1, wallMs: 1, monoMs: 2, unpostponedMs: 0 }, { bootId: 'b', wallMs: 1, monoMs: 2, unpostponedMs: -1 }]) {
      expect(() => validateState({ ...base, clock }, 's')).toThrow(/clock is not/);
    }
  });
});
