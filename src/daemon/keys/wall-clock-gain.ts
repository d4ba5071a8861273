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
import { performance } from 'node:perf_hooks';

export class WallClockGain {
  private readonly start: { wall: number; mono: number };
  private postponedMs = 0;

  constructor(
    private readonly wall: () => number = Date.now,
    private readonly monotonic: () => number = () => performance.now(),
  ) {
    this.start = { wall: wall(), mono: monotonic() };
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
