// The matrix's own argument handling, run on the host (no kernel is selected, so no guest starts).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const matrix = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), ["test/vm/kernel-matrix.ts", ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env }, timeout: 60_000 });

describe("kernel-matrix: selecting no kernel fails (found by review: it printed '0 passed, 0 failed' and exited 0)", () => {
  for (const [label, args, env] of [
    ["RINGFENCE_KERNELS=''", [], { RINGFENCE_KERNELS: "" }],
    ["--kernel ,", ["--kernel", ","], {}],
    ["a trailing --kernel", ["--kernel"], {}],
  ] as const) {
    it(label, () => {
      const r = matrix([...args], env);
      expect(r.status, r.stdout + r.stderr).not.toBe(0);
      expect(r.stdout.trim().split("\n").at(-1)).toBe("0 passed, 1 failed");
    }, 60_000);
  }
});
