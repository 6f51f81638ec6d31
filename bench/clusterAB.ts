/**
 * Same-run A/B of the batch route on two setups side by side: each a single node or a cluster of N runners (one
 * database each on one throwaway Postgres), of this checkout or another one, with environment variables of its own.
 * The two are loaded in alternating slices (whatever the machine does meanwhile falls on both alike; the idle one
 * costs the other its cluster upkeep only), and the ratio of their requests/s is printed.
 *
 *   git worktree add --detach /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   (cd /tmp/base && npx tsc -p tsconfig.build.json)
 *   npm run -s bench:cluster-ab -- --a 3@/tmp/base --b 3 [--slices 10] [--slice 2] [--connections 15] [--items 1000]
 *
 * A setup is `<runners>[@<checkout>][:NAME=value,…]`: `0` is a single node (SQLite), `1` or more a cluster; `--a 1
 * --b 1:COMPILE_FLUSH_INTERVAL=60 seconds` compares one runner with two flush intervals. Each slice loads one setup
 * with `--connections` spread over its HTTP ports, `POST /v1/retains` with `--items` retains (default 1,000) over as
 * many banks, no compile runs (`--items 1` beside the default tells a request's cost from an item's); the order of
 * the two alternates slice by slice. Run it in both orders (swap `--a` and `--b`): on the shared 2-core machine the
 * same pair of builds read up to 15 % apart from one order to the other.
 *
 * @internal
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ensureBuilt } from "../test/support/build.js"
import { startPgCluster } from "../test/support/pgCluster.js"
import {
  batchBody,
  cpuMillis,
  createDatabase,
  loadBatch,
  type Node,
  settled,
  spawnNode,
  startRunner,
  stop
} from "./clusterNodes.js"
import { numberOption, option } from "./options.js"

const SLICE_SECONDS = numberOption("slice", 2)
const SLICES = numberOption("slices", 10)
const CONNECTIONS = numberOption("connections", 15)
const ITEMS = numberOption("items", 1000)
const WARMUP_SECONDS = 3

interface Setup {
  readonly text: string
  readonly runners: number
  readonly checkout: string | undefined
  readonly env: Record<string, string>
}

const parseSetup = (text: string): Setup => {
  const match = /^(\d+)(?:@([^:]+))?(?::(.*))?$/.exec(text)
  if (match === null) throw new Error(`a setup is <runners>[@<checkout>][:NAME=value,…], got ${JSON.stringify(text)}`)
  const env = Object.fromEntries((match[3] ?? "").split(",").filter((pair) => pair !== "").map((pair) => {
    const at = pair.indexOf("=")
    return [pair.slice(0, at), pair.slice(at + 1)]
  }))
  return { text, runners: Number(match[1]), checkout: match[2], env }
}

/** The setup's nodes: a single node on a temporary data directory, or runners on a database of their own. */
const startSetup = async (setup: Setup, serverUrl: string, name: string, dataDir: string): Promise<Array<Node>> => {
  const checkout = setup.checkout === undefined ? {} : { checkout: setup.checkout }
  if (setup.runners === 0) {
    mkdirSync(dataDir, { recursive: true })
    return [await spawnNode({ ...setup.env, DATA_DIR: dataDir }, checkout)]
  }
  const database = createDatabase(serverUrl, name)
  const nodes: Array<Node> = []
  for (let n = 0; n < setup.runners; n++) nodes.push(await startRunner(database, { ...checkout, env: setup.env }))
  await settled(database, setup.runners)
  return nodes
}

interface Tally {
  requests: number
  cpu: number
  failed: number
  readonly p50s: Array<number>
}

const main = async () => {
  const setups = [parseSetup(option("a") ?? "3"), parseSetup(option("b") ?? "3")]
  ensureBuilt()
  const pg = await startPgCluster()
  if (pg === undefined) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql")
  const dataDir = mkdtempSync(join(tmpdir(), "bench-cluster-ab-"))
  const started: Array<Array<Node>> = []
  try {
    for (const [n, setup] of setups.entries()) {
      started.push(await startSetup(setup, pg.url, `bench_ab_${n}`, join(dataDir, String(n))))
    }
    const body = batchBody(ITEMS)
    for (const nodes of started) await loadBatch(nodes.map((node) => node.base), body, WARMUP_SECONDS, CONNECTIONS)
    const tallies: Array<Tally> = setups.map(() => ({ requests: 0, cpu: 0, failed: 0, p50s: [] }))
    for (let slice = 0; slice < SLICES; slice++) {
      for (const n of slice % 2 === 0 ? [0, 1] : [1, 0]) {
        const nodes = started[n]!
        const before = cpuMillis(nodes)
        const run = await loadBatch(nodes.map((node) => node.base), body, SLICE_SECONDS, CONNECTIONS)
        const tally = tallies[n]!
        tally.cpu += cpuMillis(nodes) - before
        tally.requests += run.requests
        tally.failed += run.failed
        tally.p50s.push(run.p50)
      }
    }
    const seconds = SLICE_SECONDS * SLICES
    tallies.forEach((tally, n) => {
      const p50 = tally.p50s.sort((a, b) => a - b)[tally.p50s.length >> 1]
      console.log(
        `${"AB"[n]} ${setups[n]!.text}: ${Math.round(tally.requests / seconds)} requests/s, node CPU ${
          (tally.cpu / tally.requests).toFixed(2)
        } ms per request, median slice p50 ${p50} ms, ${tally.failed} failed`
      )
    })
    console.log(`B / A: ${(tallies[1]!.requests / tallies[0]!.requests * 100).toFixed(1)} %`)
  } finally {
    await Promise.all(started.flat().map((node) => stop(node.child)))
    pg.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
