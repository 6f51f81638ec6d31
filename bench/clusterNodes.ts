/**
 * The live processes of the cluster benchmarks: a node (`node dist/bin.js` of a checkout) started on a free loopback
 * port and waited for, a cluster settled on its runners, the batch route loaded with autocannon, and the CPU time the
 * nodes used (from /proc).
 *
 * @internal
 */
import autocannon from "autocannon"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { PARTITIONS } from "../src/internal/cluster/protocol.js"
import { root } from "../test/support/build.js"
import { freePort } from "../test/support/harness.js"
import { findPgBinDir } from "../test/support/pgCluster.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface Node {
  readonly child: ChildProcess
  readonly base: string
  readonly runner: string
  readonly env: Record<string, string>
}

/**
 * Starts `node dist/bin.js` of `checkout` (this one by default) with `env` on a free port, dry-run engine and a size
 * threshold of 10^9 (no compile runs), and waits until it is ready. `nodeArgs` go before the script (`--cpu-prof`).
 */
export const spawnNode = async (
  env: Record<string, string>,
  options: { readonly checkout?: string; readonly nodeArgs?: ReadonlyArray<string> } = {}
): Promise<Node> => {
  const port = await freePort()
  const child = spawn(process.execPath, [...options.nodeArgs ?? [], "dist/bin.js"], {
    cwd: options.checkout ?? root,
    env: { ...process.env, LOG_LEVEL: "warn", COMPILE_SIZE_THRESHOLD: "1000000000", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "ignore", "inherit"]
  })
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`a node exited with ${child.exitCode}`)
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("a node did not start within 60 s")
    await sleep(100)
  }
  return { child, base, runner: env.CLUSTER_RUNNER_ADDRESS ?? "", env }
}

export const stop = (child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill(signal)
  })

export const psql = (url: string, query: string): string => {
  const result = spawnSync(join(findPgBinDir()!, "psql"), [url, "-Atc", query], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`psql failed: ${result.stderr}`)
  return result.stdout.trim()
}

/** Creates database `name` on the server of `serverUrl`: its URL. */
export const createDatabase = (serverUrl: string, name: string): string => {
  psql(serverUrl, `CREATE DATABASE ${name}`)
  return serverUrl.replace(/\/[^/]*$/, `/${name}`)
}

/** Shard → runner address, from the cluster's shard lock rows. */
export const owners = (database: string): Map<number, string> => {
  const rows = psql(
    database,
    "SELECT split_part(shard_id, ':', 2), address FROM cluster_locks WHERE acquired_at > now() - interval '5 seconds'"
  )
  const map = new Map<number, string>()
  for (const row of rows.split("\n").filter((row) => row !== "")) {
    const [shard, name] = row.split("|")
    map.set(Number(shard), name!.replace("effect-compile-trigger ", ""))
  }
  return map
}

/** Waits until `runners` distinct runners hold all the shards. */
export const settled = async (database: string, runners: number) => {
  const deadline = Date.now() + 60_000
  for (;;) {
    const map = owners(database)
    if (map.size === PARTITIONS && new Set(map.values()).size === runners) return map
    if (Date.now() > deadline) throw new Error(`the cluster did not settle on ${runners} runners`)
    await sleep(200)
  }
}

/** A runner of the cluster on `database`, on `runnerPort` (a free one by default), with `env` besides. */
export const startRunner = async (
  database: string,
  options: {
    readonly runnerPort?: number
    readonly checkout?: string
    readonly nodeArgs?: ReadonlyArray<string>
    readonly env?: Record<string, string>
  } = {}
) =>
  spawnNode(
    {
      ...options.env,
      DATABASE_URL: database,
      CLUSTER_RUNNER_ADDRESS: `127.0.0.1:${options.runnerPort ?? await freePort()}`
    },
    options
  )

export interface Run {
  readonly requests: number
  readonly seconds: number
  readonly p50: number
  readonly p99: number
  readonly failed: number
}

/** `POST /v1/retains` with `body` for `duration` s, `connections` spread over the nodes' HTTP ports. */
export const loadBatch = async (
  bases: ReadonlyArray<string>,
  body: string,
  duration: number,
  connections: number
): Promise<Run> => {
  const results = await Promise.all(bases.map((base) =>
    autocannon({
      url: base,
      connections: Math.max(1, Math.floor(connections / bases.length)),
      duration,
      requests: [{ method: "POST", path: "/v1/retains", body, headers: { "content-type": "application/json" } }]
    })
  ))
  return {
    requests: results.reduce((sum, r) => sum + r.requests.total, 0),
    seconds: Math.max(...results.map((r) => r.duration)),
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    failed: results.reduce((sum, r) => sum + r.non2xx + r.errors + r.timeouts, 0)
  }
}

/** A batch of `items` retains over as many banks, as a request body. */
export const batchBody = (items: number): string =>
  JSON.stringify(Array.from({ length: items }, (_, i) => ({ bankId: `bench-${i}`, count: 1 })))

/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ: 100 on Linux). */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100

/** CPU time (user + system, ms) the nodes' processes used so far; NaN where /proc is not available. */
export const cpuMillis = (nodes: ReadonlyArray<Node>): number =>
  nodes.reduce((sum, node) => {
    const stat = `/proc/${node.child.pid}/stat`
    if (!existsSync(stat)) return NaN
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(stat, "utf8").replace(/^.*\) /s, "").split(" ")
    return sum + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS * 1000
  }, 0)
