/**
 * `npm run bench:cluster`: cluster mode on this machine, in one run — retains/s through the batch route on a
 * 1-runner and a 3-runner cluster (beside the single-node service as the baseline), the p50/p99 of one retain routed
 * to a remote owner (and to a local one), and the failover time after a SIGKILL.
 *
 * A throwaway Postgres (test/support/pgCluster.ts), one database per cluster; runners are `node dist/bin.js` (built first)
 * with CLUSTER_RUNNER_ADDRESS and DATABASE_URL, dry-run engine, size threshold 10^9 (no compile runs: the rows
 * measure routing and counting). On a 2-core machine the 3-runner row measures the routing overhead of three
 * processes sharing the cores, not scaling. Throughput rows are measured in alternating slices. "node CPU" is the
 * user + system time of the row's service processes (from /proc) over the requests they answered. Writes
 * bench/results/cluster.json.
 *
 * Options: `--duration <s>` (default 10), `--connections <n>` (default 15), `--kills <n>` (default 3), `--profile <dir>`
 * (every node runs with `--cpu-prof` and writes `<dir>/<setup>-<n>.cpuprofile` when it stops: `single`, `one`, `three`).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { partitionOf, PARTITIONS } from "../src/internal/cluster/protocol.js"
import { ensureBuilt, root } from "../test/support/build.js"
import { startPgCluster } from "../test/support/pgCluster.js"
import {
  batchBody,
  cpuMillis,
  createDatabase,
  loadBatch,
  type Node,
  owners,
  type Run,
  settled,
  spawnNode,
  startRunner,
  stop
} from "./clusterNodes.js"
import { numberOption, option } from "./options.js"

const DURATION = numberOption("duration", 10)
const CONNECTIONS = numberOption("connections", 15)
const KILLS = numberOption("kills", 3)
const PROFILE = option("profile")
const WARMUP = 2
const SLICES = 5
const BATCH_ITEMS = 1000
const LATENCY_REQUESTS = 1000

let profiled = 0

/** With `--profile`: the node's CPU profile, written when it stops, named after its setup. */
const profileArgs = (setup: string): Array<string> =>
  PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`, `--cpu-prof-name=${setup}-${profiled++}.cpuprofile`]

/** The cluster's shard of a partition entity: @effect/cluster's string hash of the entity id, as Sharding computes it. */
const shardOfPartition = (partition: number): number => {
  const id = String(partition)
  let h = 5381, i = id.length
  while (i) h = (h * 33) ^ id.charCodeAt(--i)
  h = (h & 0xbfffffff) | ((h >>> 1) & 0x40000000)
  return Math.abs(h % PARTITIONS) + 1
}

const ownerOfBank = (map: Map<number, string>, bankId: string) => map.get(shardOfPartition(partitionOf(bankId)))

const combine = (runs: ReadonlyArray<Run>): Run => ({
  requests: runs.reduce((sum, run) => sum + run.requests, 0),
  seconds: runs.reduce((sum, run) => sum + run.seconds, 0),
  p50: Math.max(...runs.map((run) => run.p50)),
  p99: Math.max(...runs.map((run) => run.p99)),
  failed: runs.reduce((sum, run) => sum + run.failed, 0)
})

const retainsCounted = async (bases: ReadonlyArray<string>): Promise<number> => {
  let total = 0
  for (const base of bases) {
    const text = await (await fetch(`${base}/metrics`)).text()
    const line = text.split("\n").find((line) => line.startsWith("compile_trigger_retains_total "))
    total += Number(line?.split(" ")[1] ?? NaN)
  }
  return total
}

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/** One retain at a time through `base`, for each bank in turn: p50 and p99 in ms. */
const singleRetains = async (base: string, bankIds: ReadonlyArray<string>) => {
  const times: Array<number> = []
  for (let n = 0; n < LATENCY_REQUESTS; n++) {
    const started = performance.now()
    const response = await fetch(`${base}/v1/banks/${bankIds[n % bankIds.length]}/retain`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}"
    })
    await response.arrayBuffer()
    if (response.status !== 202) throw new Error(`retain answered ${response.status}`)
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
}

/** SIGKILL `victim`; the time until a bank of every one of its partitions answers through `via`. */
const failover = async (database: string, victim: Node, via: string) => {
  const map = owners(database)
  const banks: Array<string> = []
  for (let n = 0; banks.length < PARTITIONS * 4 && n < 100_000; n++) {
    if (ownerOfBank(map, `fo-${n}`) === victim.runner) banks.push(`fo-${n}`)
  }
  await stop(victim.child, "SIGKILL")
  const killedAt = Date.now()
  const pending = new Set(banks)
  while (pending.size > 0 && Date.now() - killedAt < 60_000) {
    await Promise.all(Array.from(pending, async (bankId) => {
      try {
        const response = await fetch(`${via}/v1/banks/${bankId}/retain`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
          signal: AbortSignal.timeout(500)
        })
        if (response.status === 202) pending.delete(bankId)
      } catch {
        // not yet
      }
    }))
  }
  return { ms: Date.now() - killedAt, banks: banks.length, unanswered: pending.size }
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

/** `f`, and the CPU time the nodes used meanwhile (ms). */
const withCpu = async <A>(nodes: ReadonlyArray<Node>, f: () => Promise<A>): Promise<[A, number]> => {
  const before = cpuMillis(nodes)
  const result = await f()
  return [result, cpuMillis(nodes) - before]
}

const main = async () => {
  ensureBuilt()
  const pg = await startPgCluster()
  if (pg === undefined) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql")
  const dataDir = mkdtempSync(join(tmpdir(), "bench-cluster-"))
  const nodes: Array<Node> = []
  try {
    console.log(
      `bench:cluster — autocannon, ${CONNECTIONS} connections, ${DURATION} s per row in ${SLICES} alternating slices; ` +
        `batch of ${BATCH_ITEMS} items over ${BATCH_ITEMS} banks`
    )
    const single = await spawnNode({ DATA_DIR: dataDir }, { nodeArgs: profileArgs("single") })
    nodes.push(single)
    const db1 = createDatabase(pg.url, "bench_one")
    const one = await startRunner(db1, { nodeArgs: profileArgs("one") })
    nodes.push(one)
    await settled(db1, 1)
    const db3 = createDatabase(pg.url, "bench_three")
    const three = await Promise.all([0, 1, 2].map(() => startRunner(db3, { nodeArgs: profileArgs("three") })))
    nodes.push(...three)
    await settled(db3, 3)

    const body = batchBody(BATCH_ITEMS)
    const rows = [
      { name: "single node (SQLite, no cluster)", nodes: [single] },
      { name: "cluster, 1 runner", nodes: [one] },
      { name: "cluster, 3 runners (load spread over the 3 HTTP ports)", nodes: three }
    ].map((row) => ({ ...row, bases: row.nodes.map((node) => node.base) }))
    for (const row of rows) await loadBatch(row.bases, body, WARMUP, CONNECTIONS)
    const slices: Array<Array<Run>> = rows.map(() => [])
    const counted = rows.map(() => 0)
    const cpu = rows.map(() => 0)
    for (let slice = 0; slice < SLICES; slice++) {
      for (let r = 0; r < rows.length; r++) {
        const before = await retainsCounted(rows[r]!.bases)
        const [run, used] = await withCpu(rows[r]!.nodes, () => loadBatch(rows[r]!.bases, body, DURATION / SLICES, CONNECTIONS))
        slices[r]!.push(run)
        cpu[r]! += used
        counted[r]! += (await retainsCounted(rows[r]!.bases)) - before
      }
    }
    const runs = slices.map(combine)

    // One retain at a time from the first runner, to banks whose partition another runner owns, and to its own.
    const map = owners(db3)
    const remote: Array<string> = []
    const local: Array<string> = []
    for (let n = 0; remote.length < 200 || local.length < 200; n++) {
      const bankId = `lat-${n}`
      ;(ownerOfBank(map, bankId) === three[0]!.runner ? local : remote).push(bankId)
    }
    await singleRetains(three[0]!.base, remote.slice(0, 100)) // warm-up
    const [remoteLatency, remoteCpu] = await withCpu(three, () => singleRetains(three[0]!.base, remote))
    const [localLatency, localCpu] = await withCpu(three, () => singleRetains(three[0]!.base, local))
    const [singleLatency, singleCpu] = await withCpu([single], () => singleRetains(single.base, local))

    // SIGKILL the last runner, measure, start it again (same address) and let the cluster settle; KILLS times.
    const failovers: Array<{ ms: number; banks: number; unanswered: number }> = []
    for (let k = 0; k < KILLS; k++) {
      const victim = three[2]!
      failovers.push(await failover(db3, victim, three[0]!.base))
      const port = Number(victim.runner.split(":")[1])
      three[2] = await startRunner(db3, { runnerPort: port, nodeArgs: profileArgs("three") })
      nodes.push(three[2])
      await settled(db3, 3)
    }

    const perSecond = (r: number) => counted[r]! / runs[r]!.seconds
    console.log("")
    console.log(
      "| setup | requests/s | retains/s counted | vs single node (same run) | node CPU per request | latency p50 / p99 (batch) |"
    )
    console.log("|---|---|---|---|---|---|")
    runs.forEach((run, r) => {
      console.log(
        `| ${rows[r]!.name} | ${fmt(run.requests / run.seconds)} | ${fmt(perSecond(r))} | ${
          (perSecond(r) / perSecond(0) * 100).toFixed(0)
        } % | ${(cpu[r]! / run.requests).toFixed(2)} ms | ${run.p50} / ${run.p99} ms |`
      )
    })
    console.log("")
    console.log(
      `3 runners vs 1 runner (same run): ${(perSecond(2) / perSecond(1) * 100).toFixed(0)} %` +
        (cpus().length < 6
          ? ` — on ${cpus().length} cores three runner processes share the cores: this measures what routing costs, not scaling`
          : "")
    )
    console.log("")
    console.log("| one retain (`POST /v1/banks/{id}/retain`, one at a time) | p50 | p99 | node CPU per retain |")
    console.log("|---|---|---|---|")
    const latencyRow = (name: string, latency: { p50: number; p99: number }, used: number) =>
      console.log(
        `| ${name} | ${latency.p50.toFixed(2)} ms | ${latency.p99.toFixed(2)} ms | ${
          (used / LATENCY_REQUESTS).toFixed(2)
        } ms |`
      )
    latencyRow("single node", singleLatency, singleCpu)
    latencyRow("cluster, owner is the runner asked", localLatency, localCpu)
    latencyRow("cluster, owner is another runner", remoteLatency, remoteCpu)
    console.log("")
    console.log(
      `failover after SIGKILL (time until a retain for every partition of the killed runner is answered 202 by another ` +
        `runner): ${failovers.map((f) => `${(f.ms / 1000).toFixed(1)} s`).join(", ")}` +
        (failovers.some((f) => f.unanswered > 0) ? " (SOME BANKS NEVER ANSWERED)" : "")
    )
    const failed = runs.reduce((sum, run) => sum + run.failed, 0)
    if (failed > 0) console.log(`\nWARNING: ${failed} requests failed or were not 2xx`)

    mkdirSync(join(root, "bench/results"), { recursive: true })
    writeFileSync(
      join(root, "bench/results/cluster.json"),
      JSON.stringify(
        {
          date: new Date().toISOString(),
          connections: CONNECTIONS,
          duration: DURATION,
          throughput: runs.map((run, r) => ({
            name: rows[r]!.name,
            ...run,
            retainsPerSecond: perSecond(r),
            cpuMillisPerRequest: cpu[r]! / run.requests
          })),
          latency: {
            single: { ...singleLatency, cpuMillis: singleCpu / LATENCY_REQUESTS },
            local: { ...localLatency, cpuMillis: localCpu / LATENCY_REQUESTS },
            remote: { ...remoteLatency, cpuMillis: remoteCpu / LATENCY_REQUESTS }
          },
          failovers
        },
        null,
        2
      )
    )
  } finally {
    await Promise.all(nodes.map((node) => stop(node.child)))
    pg.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
