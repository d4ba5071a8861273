// Host tests: everything that runs on the developer's or CI machine directly.
// *.kernel.test.ts need AF_ALG (absent on the host kernel) and run in test/vm's guests instead.
import { defineConfig } from "vitest/config";
import HostTallyReporter from "./test/host/tally-reporter.js";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "native-ffi/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/*.kernel.test.ts", "**/node_modules/**"],
    // The host tally: a full run fails on a skipped or todo test, as test/vm/tally.ts does for the
    // kernel runs (which use vitest.kernel.config.ts and their own reporters, not these).
    reporters: ["default", new HostTallyReporter()],
  },
});
