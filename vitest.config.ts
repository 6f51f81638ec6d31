import { defineConfig } from "vitest/config"

// The tiers of test/ (one folder per layer of src/internal/, helpers in test/support/):
//   unit    core/, runtime/, http/, cluster/, tuner/: in-process only — no Postgres, Chromium, dist/ or packing, so no
//           global setup (`npm run test:unit`, `npx vitest run --project unit`)
//   suite   store/ (SQLite and a throwaway Postgres) and e2e/ (the package as built: processes, Chromium, the tarball)
//   fuzz    e2e/fuzz.test.ts: after the suite, alone (it saturates both cores; beside other files it either starved
//           or, niced, was starved — past its timeout on a slow CI machine)
//   cluster the live cluster files of e2e/: after the rest, alone
// `npm test` (and `npx vitest run`) runs all four. The tiers' `sequence.groupOrder` stays in single digits: vitest
// 3 sorts the orders as text (10 would run before 2).
const unit = ["core", "runtime", "http", "cluster", "tuner"].map((tier) => `test/${tier}/**/*.test.ts`)
const fuzz = ["test/e2e/fuzz.test.ts"]
const liveCluster = [
  "test/e2e/cluster.test.ts",
  "test/e2e/clusterStore.test.ts",
  "test/e2e/clusterFaults.test.ts",
  "test/e2e/clusterWorkloadLog.test.ts"
]
// Starts a throwaway Postgres and builds dist/ when a source is newer; per project, so the unit tier starts neither.
const withPostgres = ["test/support/globalSetup.ts"]
// Only builds dist/ (for the fuzz, which needs no Postgres).
const built = ["test/support/builtSetup.ts"]

export default defineConfig({
  test: {
    // Each file builds its own layers; a 2-core CI box runs two files at a time.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: unit
        }
      },
      {
        extends: true,
        test: {
          name: "suite",
          include: ["test/**/*.test.ts"],
          exclude: [...unit, ...fuzz, ...liveCluster],
          globalSetup: withPostgres
        }
      },
      {
        extends: true,
        test: {
          name: "fuzz",
          include: fuzz,
          globalSetup: built,
          sequence: { groupOrder: 1 }
        }
      },
      {
        // Three runner processes and Postgres: run after the rest, alone, so their lock deadlines are not starved;
        // one file at a time (one fork), never two clusters at once.
        extends: true,
        test: {
          name: "cluster",
          include: liveCluster,
          globalSetup: withPostgres,
          sequence: { groupOrder: 2 },
          poolOptions: { forks: { singleFork: true } }
        }
      }
    ]
  }
})
