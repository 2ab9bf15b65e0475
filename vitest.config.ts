import { defineConfig } from "vitest/config";

// Whether this run is CI's (.ci/run sets CI=true): read before `env` below hides it from Ink.
const inCi = ["1", "true"].includes((process.env.CI ?? "").toLowerCase());

export default defineConfig({
  test: {
    include: ["src/**/*.test.{ts,tsx}", "test/**/*.test.{ts,tsx}", "native/scripts/**/*.test.ts", "native/tests/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The native engine is heavy: fewer workers than the two cores avoids thrashing.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
    // Ink renders only its last frame when it believes it runs in CI; the TUI tests read the frames a terminal shows.
    // CI: "0" turns that off for Ink, but "0" is a truthy string: tests that ask "is this CI?" read KVZAP_CI instead.
    env: { CI: "0", CONTINUOUS_INTEGRATION: "0", KVZAP_CI: inCi ? "1" : "0" },
  },
});
