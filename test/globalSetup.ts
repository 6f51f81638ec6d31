/**
 * Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the store tests, when the server binaries are installed
 * (`.ci/run` installs them from Debian's packages). In CI a missing server is an error, never a skip.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    /** postgres://… of the throwaway cluster; "" when there is none (outside CI only). */
    pgUrl: string
  }
}

const findBinDir = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "pg_ctl"))).sort((a, b) =>
    Number(b) - Number(a)
  )
  return versions.length > 0 ? join(root, versions[0]!, "bin") : undefined
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

export default async function setup(project: TestProject) {
  const bin = findBinDir()
  if (bin === undefined) {
    if (process.env.CI) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: .ci/run installs them")
    console.warn("PostgreSQL not installed: the Postgres store tests are skipped (CI installs it)")
    project.provide("pgUrl", "")
    return
  }
  const dir = mkdtempSync(join(tmpdir(), "ect-pg-"))
  const data = join(dir, "data")
  const port = await freePort()
  // initdb refuses to run as root: run the cluster as the postgres user then.
  const asRoot = process.getuid?.() === 0
  const run = (command: string, args: Array<string>) => {
    const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, command), ...args]] : [join(bin, command), args]
    const result = spawnSync(file, argv, { encoding: "utf8", timeout: 60_000 })
    if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.stdout}`)
  }
  if (asRoot) chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()))
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
  run("pg_ctl", [
    "-D", data, "-l", join(dir, "log"), "-w", "-t", "60",
    "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    "start"
  ])
  project.provide("pgUrl", `postgres://postgres@127.0.0.1:${port}/postgres`)
  return () => {
    try {
      run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
