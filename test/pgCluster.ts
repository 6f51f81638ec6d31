/**
 * A throwaway PostgreSQL cluster on 127.0.0.1 in a temporary directory, for tests and benchmarks. Uses the server
 * binaries of Debian's packages (`.ci/run` installs them when missing).
 */
import { execFileSync, spawnSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface PgCluster {
  readonly url: string
  readonly stop: () => void
  /** Stops the server at once (`-m immediate`: every session ends as in a crash), then starts it again on its port. */
  readonly restart: (downMillis?: number) => Promise<void>
  /** Stops the server at once and leaves it down (`restart` starts it again; `stop` still cleans up). */
  readonly stopServer: () => void
}

export const findPgBinDir = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((version) => existsSync(join(root, version, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a))
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

/** Starts a cluster, or returns undefined when the server binaries are not installed. */
export const startPgCluster = async (): Promise<PgCluster | undefined> => {
  const bin = findPgBinDir()
  if (bin === undefined) return undefined
  const dir = mkdtempSync(join(tmpdir(), "ect-pg-"))
  const data = join(dir, "data")
  const port = await freePort()
  // initdb refuses to run as root: then the cluster runs as the postgres user.
  const asRoot = process.getuid?.() === 0
  const run = (command: string, args: Array<string>) => {
    const [file, argv] = asRoot
      ? ["runuser", ["-u", "postgres", "--", join(bin, command), ...args]]
      : [join(bin, command), args]
    const result = spawnSync(file, argv, { encoding: "utf8", timeout: 60_000 })
    if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.stdout}`)
  }
  if (asRoot) {
    const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"]).toString())
    chownSync(dir, id("-u"), id("-g"))
  }
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
  const start = () =>
    run("pg_ctl", [
      "-D", data, "-l", join(dir, "log"), "-w", "-t", "60",
      "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      "start"
    ])
  start()
  // Stopping a stopped server is not an error here: the next start or the clean-up follows either way.
  const stopServer = () => {
    if (existsSync(join(data, "postmaster.pid"))) run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: async (downMillis = 0) => {
      stopServer()
      await new Promise((resolve) => setTimeout(resolve, downMillis))
      start()
    },
    stopServer,
    stop: () => {
      try {
        stopServer()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
}
