// Host tests: everything that runs on the developer's or CI machine directly.
// *.kernel.test.ts need AF_ALG (absent on the host kernel) and run in test/vm's guests instead.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "native-ffi/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/*.kernel.test.ts", "**/node_modules/**"],
  },
});
