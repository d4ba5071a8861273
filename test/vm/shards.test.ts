// The kernel suite's shards, on the host: every kernel test file runs in exactly one shard's guest.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { missingShardFiles, planJobs, SHARDS, shardArgs } from "./shards.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

/** The kernel test files vitest would run in a guest given these arguments (vitest's own selection). */
function listed(args: string[]): string[] {
  const r = spawnSync(path.join(ROOT, "node_modules/.bin/vitest"), ["list", "--config", "vitest.kernel.config.ts", "--filesOnly", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, RINGFENCE_IN_VM: "1" },
    timeout: 120_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").map((l) => l.trim()).filter((l) => l.endsWith(".kernel.test.ts")).sort();
}

describe("kernel shards", () => {
  it("split the kernel test files so that each runs in exactly one shard", () => {
    expect(missingShardFiles(ROOT)).toEqual([]);
    const all = listed([]);
    expect(all.length).toBeGreaterThan(10);
    const perShard = SHARDS.map((s) => listed(shardArgs(s)));
    for (const files of perShard) expect(files.length).toBeGreaterThan(0);
    expect(perShard.flat().sort()).toEqual(all); // none twice, none left out
    expect(perShard.find((_, i) => SHARDS[i]!.name === "stream")).toEqual(["test/e2e/streams.kernel.test.ts"]);
  }, 300_000);

  it("a full run queues every shard of every kernel, longest first; a filtered run one guest per kernel", () => {
    const full = planJobs(["lts", "restricted"], []);
    expect(full).toHaveLength(2 * SHARDS.length);
    for (const k of ["lts", "restricted"] as const) expect(full.filter((j) => j.kernel === k).map((j) => j.shard!.name).sort()).toEqual(SHARDS.map((s) => s.name).sort());
    const seconds = full.map((j) => j.shard!.seconds[j.kernel]);
    expect(seconds).toEqual([...seconds].sort((a, b) => b - a));
    expect(full[0]).toMatchObject({ kernel: "restricted", shard: { name: "stream" } });
    expect(planJobs(["restricted"], ["test/e2e/keys.kernel.test.ts"])).toEqual([{ kernel: "restricted", args: ["test/e2e/keys.kernel.test.ts"] }]);
  });

  it("the longest-first queue on two cores ends within 10 % of an even split of the measured seconds", () => {
    const ends = [0, 0];
    for (const j of planJobs(["lts", "restricted"], [])) {
      const free = ends[0]! <= ends[1]! ? 0 : 1;
      ends[free]! += j.shard!.seconds[j.kernel];
    }
    const sum = SHARDS.reduce((a, s) => a + s.seconds.lts + s.seconds.restricted, 0);
    expect(Math.max(...ends)).toBeLessThan(1.1 * (sum / 2));
  });
});
