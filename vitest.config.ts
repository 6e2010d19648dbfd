import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The multi-process and crash tests start child processes; two cores suit two test files at once.
    maxWorkers: 2,
  },
});
