// Host tests: everything that runs on the developer's or CI machine directly.
// *.kernel.test.ts need AF_ALG (absent on the host kernel) and run in test/vm's guests instead.
import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";
import HostTallyReporter from "./test/host/tally-reporter.js";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "native-ffi/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/*.kernel.test.ts", "**/node_modules/**"],
    // The host tally: a full run fails on a skipped or todo test, as test/vm/tally.ts does for the
    // kernel runs (which use vitest.kernel.config.ts and their own reporters, not these).
    reporters: ["default", new HostTallyReporter()],
    // One worker per core. vitest's default (cores - 1) leaves a 2-core CI machine's second core
    // idle: 2026-12-07, 2 cores, the whole host suite took 318 s with 1 worker and 178 s with 2
    // (nothing else runs during npm test's host phase; the kernel guests come after it).
    maxWorkers: availableParallelism(),
  },
});
