import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    globalSetup: ["test/globalSetup.ts"],
    // Each file builds its own layers; a 2-core CI box runs two files at a time.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: ["test/**/*.test.ts"],
          exclude: ["test/e2e/cluster.test.ts", "test/e2e/clusterStore.test.ts"]
        }
      },
      {
        // Three runner processes and Postgres: run after the rest, alone, so their lock deadlines are not starved;
        // one file at a time (one fork), never two clusters at once.
        extends: true,
        test: {
          name: "cluster",
          include: ["test/e2e/cluster.test.ts", "test/e2e/clusterStore.test.ts"],
          sequence: { groupOrder: 1 },
          poolOptions: { forks: { singleFork: true } }
        }
      }
    ]
  }
})
