/**
 * How far the wall clock has gained on the monotonic clock since the daemon started, and how much
 * of that gain scheduled deletions were already postponed by (due-work-scheduler.ts).
 *
 * The gain is the sum of the wall clock's steps: NTP slews both clocks alike, and a suspend (which
 * stops CLOCK_MONOTONIC) counts as a step. A backward step lowers what counts as postponed, so the
 * forward step that undoes it postpones again: a deletion scheduled while the clock was behind
 * must not come early once it is set right. For that, every wall-clock reading the key manager
 * takes goes through now(), so no backward step between two scheduler runs goes unseen.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { MAX_TIME_MS } from './model.js';

/**
 * The clocks as of a state write (state.json's `clock`), so that a daemon restarted within the same
 * boot goes on from there: a step it had seen but not yet postponed deletions by, when a write
 * failed or it was killed within the scheduler's tick, was forgotten and let deletions come early
 * (found by review); a step while it was stopped is seen too. `monoMs` is CLOCK_MONOTONIC, which
 * every process of one boot shares; across a reboot nothing is carried.
 */
export interface ClockAnchor {
  bootId: string;
  wallMs: number;
  monoMs: number;
  unpostponedMs: number;
}

/** CLOCK_MONOTONIC in ms (process.hrtime), the same in every process of this boot. */
export const systemMonotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** This boot's id, or undefined where the kernel does not say (then nothing is anchored). */
export function readBootId(path = '/proc/sys/kernel/random/boot_id'): string | undefined {
  try {
    const id = readFileSync(path, 'utf8').trim();
    return id.length > 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

export class WallClockGain {
  private readonly start: { wall: number; mono: number };
  private postponedMs: number;

  /** `carriedMs`: gain not yet postponed that an earlier process of this boot left (resumed()). */
  constructor(
    private readonly wall: () => number = Date.now,
    private readonly monotonic: () => number = () => performance.now(),
    carriedMs = 0,
  ) {
    this.start = { wall: wall(), mono: monotonic() };
    // As if that much of the gain came before the start and none of it was postponed.
    this.postponedMs = -Math.max(0, carriedMs);
  }

  /**
   * A clock that goes on from `anchor` when it was written in this boot: what was not yet postponed
   * then, plus what the wall clock gained on CLOCK_MONOTONIC since (never less than nothing).
   */
  static resumed(anchor: ClockAnchor | undefined, bootId: string | undefined, clocks: { wall?: () => number; monotonic?: () => number; systemMono?: () => number } = {}): WallClockGain {
    const wall = clocks.wall ?? Date.now;
    let carried = 0;
    if (anchor && bootId !== undefined && anchor.bootId === bootId) {
      carried = anchor.unpostponedMs + (wall() - anchor.wallMs) - ((clocks.systemMono ?? systemMonotonicMs)() - anchor.monoMs);
      // A hand-edited anchor must not break the arithmetic (found by review: Infinity, then NaN, and no step seen again).
      if (!Number.isFinite(carried)) carried = 0;
      carried = Math.min(carried, MAX_TIME_MS);
    }
    return new WallClockGain(wall, clocks.monotonic, carried);
  }

  /**
   * What to record with a state write; `postponingMs` of the gain is postponed by that very write
   * (recorded with postponed() once it succeeds), so it is not counted as still to postpone.
   */
  anchor(bootId: string, systemMono = systemMonotonicMs(), postponingMs = 0): ClockAnchor {
    const wall = this.wall();
    return { bootId, wallMs: wall, monoMs: systemMono, unpostponedMs: Math.max(0, this.unpostponed(wall) - postponingMs) };
  }

  /** The wall clock (ms since the epoch), read so that a backward step is noted. */
  now(): number {
    const wall = this.wall();
    this.unpostponed(wall);
    return wall;
  }

  /** What of the gain deletions have not been postponed by yet (never negative: a backward step lowers what counts as postponed). */
  unpostponed(wall = this.wall()): number {
    const gain = wall - this.start.wall - (this.monotonic() - this.start.mono);
    this.postponedMs = Math.min(this.postponedMs, gain);
    return gain - this.postponedMs;
  }

  /** Deletions were postponed by `ms` more. */
  postponed(ms: number): void {
    this.postponedMs += ms;
  }
}
