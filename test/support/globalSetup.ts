/**
 * Starts the throwaway PostgreSQL cluster the store tests use (in CI a missing server is an error, never a skip), and
 * makes sure dist/ is up to date for the tests that run the built package.
 */
import type { TestProject } from "vitest/node"
import { ensureBuilt } from "./build.js"
import { startPgCluster } from "./pgCluster.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** postgres://… of the throwaway cluster; "" when there is none (outside CI only). */
    pgUrl: string
  }
}

export default async function setup(project: TestProject) {
  ensureBuilt()
  const cluster = await startPgCluster()
  if (cluster === undefined) {
    if (process.env.CI) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: .ci/run installs them")
    console.warn("PostgreSQL is not installed: the Postgres store tests are skipped here (CI installs it)")
    project.provide("pgUrl", "")
    return
  }
  project.provide("pgUrl", cluster.url)
  return cluster.stop
}
