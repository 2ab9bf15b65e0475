import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.{ts,tsx}", "test/**/*.test.{ts,tsx}", "native/scripts/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The native engine is heavy: fewer workers than the two cores avoids thrashing.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
    // Ink renders only its last frame when it believes it runs in CI; the TUI tests read the frames a terminal shows.
    env: { CI: "0", CONTINUOUS_INTEGRATION: "0" },
  },
});
