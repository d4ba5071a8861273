// Tests that need AF_ALG and a stock Debian kernel (*.kernel.test.ts). They run only inside the
// qemu guests of test/vm: `npm run test:kernel` boots each kernel of the matrix and runs them.
// In the guest the project directory is read-only, so nothing may be written next to it.
import { tmpdir } from "node:os";
import path from "node:path";
import { defineConfig } from "vitest/config";

if (process.env.RINGFENCE_IN_VM !== "1") {
  throw new Error(
    "vitest.kernel.config.ts: kernel tests run only inside the test VM (RINGFENCE_IN_VM is not set). " +
      "Use `npm run test:kernel` (all kernels) or `npm run test:kernel -- --kernel lts`.",
  );
}

export default defineConfig({
  // Vite/vitest caches (results.json for test ordering) default to node_modules/.vite.
  cacheDir: path.join(tmpdir(), "ringfence-vitest-cache"),
  test: {
    include: ["**/*.kernel.test.ts"],
    exclude: ["**/node_modules/**"],
    // Under TCG everything is 20-50x slower than native.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
