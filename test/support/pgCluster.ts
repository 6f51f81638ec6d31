/**
 * A throwaway PostgreSQL cluster on 127.0.0.1 in a temporary directory, for tests and benchmarks. Uses the server
 * binaries of Debian's packages (`.ci/run` installs them when missing).
 */
import { execFile, execFileSync, spawnSync } from "node:child_process"
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
  const commandLine = (command: string, args: Array<string>): [string, Array<string>] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, command), ...args]] : [join(bin, command), args]
  const run = (command: string, args: Array<string>) => {
    const [file, argv] = commandLine(command, args)
    const result = spawnSync(file, argv, { encoding: "utf8", timeout: 60_000 })
    if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.stdout}`)
  }
  if (asRoot) {
    const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"]).toString())
    chownSync(dir, id("-u"), id("-g"))
  }
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
  const startArgs = [
    "-D", data, "-l", join(dir, "log"), "-w", "-t", "60",
    "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    "start"
  ]
  const runAsync = (command: string, args: Array<string>) =>
    new Promise<void>((resolve, reject) => {
      const [file, argv] = commandLine(command, args)
      execFile(file, argv, { timeout: 60_000 }, (error, stdout, stderr) =>
        error === null ? resolve() : reject(new Error(`${command} failed: ${stderr || stdout}`)))
    })
  run("pg_ctl", startArgs)
  // Stopping a stopped server is not an error here: the next start or the clean-up follows either way.
  const running = () => existsSync(join(data, "postmaster.pid"))
  const stopArgs = ["-D", data, "-m", "immediate", "-w", "stop"]
  const stopServer = () => {
    if (running()) run("pg_ctl", stopArgs)
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    // Asynchronous, so the test process (its load, its webhook receiver) goes on while Postgres stops and starts.
    restart: async (downMillis = 0) => {
      if (running()) await runAsync("pg_ctl", stopArgs)
      await new Promise((resolve) => setTimeout(resolve, downMillis))
      await runAsync("pg_ctl", startArgs)
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
