// A full kernel run in parts: each kernel's suite runs as three guests, queued longest first, so
// the two host cores finish together. As one guest per kernel, restricted (48 min in the clean-clone
// CI run of 2026-12-07) outlasted lts (39 min) by 9 min of one idle core, and ran within 27 min of
// its 75-min hang guard; CI itself took 74 of its 90 min that day.
import { existsSync } from "node:fs";
import path from "node:path";
import type { KernelName } from "./kernels.js";

export interface Shard {
  name: string;
  /** The files it runs; none for the shard that runs every file the others do not. */
  files: readonly string[];
  /**
   * Seconds it took in a clean-clone CI run (qemu64; d925cb5 on a slow host, 2026-12-07): the queue's
   * order. In that order the two cores end within 150 s of each other; in the order of the figures
   * before (the 1 GiB stream since made "stream" longer, lazy packages "daemons" shorter) 370 s,
   * and the matrix ~110 s longer.
   */
  seconds: Record<KernelName, number>;
}

export const SHARDS: readonly Shard[] = [
  { name: "stream", files: ["test/e2e/streams.kernel.test.ts"], seconds: { lts: 952, restricted: 1639 } },
  {
    name: "daemons",
    files: ["test/e2e/faults.kernel.test.ts", "test/e2e/hostile.kernel.test.ts", "test/e2e/cli.kernel.test.ts", "test/e2e/readme.kernel.test.ts"],
    seconds: { lts: 1087, restricted: 1283 },
  },
  { name: "rest", files: [], seconds: { lts: 1174, restricted: 1245 } },
];

export interface Job {
  kernel: KernelName;
  /** Undefined: every kernel test file in one guest (a filtered run). */
  shard?: Shard;
  /** vitest arguments that select the shard's files. */
  args: string[];
}

/** The vitest arguments that pick a shard's files: its own, or every file but the other shards'. */
export function shardArgs(shard: Shard, shards: readonly Shard[] = SHARDS): string[] {
  if (shard.files.length > 0) return [...shard.files];
  return shards.flatMap((s) => s.files).flatMap((f) => ["--exclude", f]);
}

/**
 * The guests to run: with vitest arguments (a filtered run) one per kernel, as asked; else every
 * shard of every kernel, longest first (measured seconds), which is how the workers take them.
 */
export function planJobs(kernels: readonly KernelName[], vitestArgs: readonly string[], shards: readonly Shard[] = SHARDS): Job[] {
  if (vitestArgs.length > 0) return kernels.map((kernel) => ({ kernel, args: [...vitestArgs] }));
  const jobs = kernels.flatMap((kernel) => shards.map((shard) => ({ kernel, shard, args: shardArgs(shard, shards) })));
  return jobs.sort((a, b) => b.shard.seconds[b.kernel] - a.shard.seconds[a.kernel]);
}

/** Files named by a shard that do not exist: checked before any guest boots (a renamed test would
 * fail its shard's guest only after a boot, "no tests ran"). */
export function missingShardFiles(root: string, shards: readonly Shard[] = SHARDS): string[] {
  return shards.flatMap((s) => s.files).filter((f) => !existsSync(path.join(root, f)));
}
