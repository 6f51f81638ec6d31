/**
 * `npm run bench:http`: retains per second through the service's HTTP routes, beside a bare HttpApi handler that does
 * nothing, measured in the same run with autocannon (50 connections, 10 s each, after a 2 s warm-up).
 *
 * The service (`src/main.ts`: dry-run engine, SQLite store in a temporary directory, size threshold 10^9 so that no
 * compile runs) and the bare server (`bench/httpBare.ts`) run as
 * child processes on free 127.0.0.1 ports; autocannon runs in this process. Retains counted are read back from the
 * service's `/metrics`. Writes bench/results/http.json.
 *
 * Options: `--duration <s>` (default 10), `--connections <n>` (default 50).
 */
import autocannon from "autocannon"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { freePort } from "../test/support/harness.js"
import { numberOption } from "./options.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const DURATION = numberOption("duration", 10)
const CONNECTIONS = numberOption("connections", 50)
const WARMUP = 2
const BANKS = 1000
const BATCH_ITEMS = 1000

const start = async (script: string, env: Record<string, string>, probe: string, method = "GET") => {
  const port = await freePort()
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "ignore", "inherit"]
  })
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}`)
    try {
      const response = await fetch(`${base}${probe}`, { method })
      if (response.status < 300) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${script} did not start within 30 s`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { child, base }
}

const stop = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
  })

const retainsCounted = async (base: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  const line = text.split("\n").find((line) => line.startsWith("compile_trigger_retains_total "))
  return Number(line?.split(" ")[1] ?? NaN)
}

interface Run {
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly requests: number
  readonly non2xx: number
  readonly errors: number
  readonly seconds: number
}

const load = async (
  base: string,
  path: (n: number) => string,
  body: string | undefined,
  duration: number
): Promise<Run> => {
  let n = 0
  const result = await autocannon({
    url: base,
    connections: CONNECTIONS,
    duration,
    requests: [{
      method: "POST",
      ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }),
      setupRequest: (request) => ({ ...request, path: path(n++) })
    }]
  })
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    seconds: result.duration
  }
}

/**
 * Rows are measured in alternating slices (bare, retain, batch, bare, …) so that a noisy neighbour on these shared
 * machines weighs on every row alike; each row's slices add up to DURATION seconds.
 */
const SLICES = 5

const combine = (runs: ReadonlyArray<Run>): Run => {
  const seconds = runs.reduce((sum, run) => sum + run.seconds, 0)
  const requests = runs.reduce((sum, run) => sum + run.requests, 0)
  return {
    requestsPerSecond: requests / seconds,
    p50: Math.max(...runs.map((run) => run.p50)),
    p99: Math.max(...runs.map((run) => run.p99)),
    requests,
    non2xx: runs.reduce((sum, run) => sum + run.non2xx, 0),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    seconds
  }
}

const bankPath = (n: number) => `/v1/banks/bench-${n % BANKS}/retain`
const batchBody = JSON.stringify(Array.from({ length: BATCH_ITEMS }, (_, i) => ({ bankId: `bench-${i % BANKS}`, count: 1 })))

const main = async () => {
  console.log(
    `bench:http — autocannon, ${CONNECTIONS} connections, ${DURATION} s per row in ${SLICES} alternating slices (after ${WARMUP} s warm-up each)`
  )
  const retainBody = JSON.stringify({ count: 1 })
  const bare = await start("bench/httpBare.ts", {}, "/bare", "POST")
  // No compile runs (threshold 10^9): the rows measure the HTTP route and the counting; compile throughput is bench B4.
  // A fresh SQLite store (the default), removed afterwards.
  const dataDir = mkdtempSync(join(tmpdir(), "bench-http-"))
  const service = await start(
    "src/main.ts",
    { LOG_LEVEL: "warn", COMPILE_SIZE_THRESHOLD: "1000000000", DATA_DIR: dataDir },
    "/readyz"
  )
  try {
    // The bare handler gets the same body as the retain route, and ignores it.
    const routes = [
      { base: bare.base, path: () => "/bare", body: retainBody },
      { base: service.base, path: bankPath, body: retainBody },
      { base: service.base, path: () => "/v1/retains", body: batchBody }
    ] as const
    for (const route of routes) await load(route.base, route.path, route.body, WARMUP)
    const slices: Array<Array<Run>> = routes.map(() => [])
    const counted = [0, 0, 0]
    for (let slice = 0; slice < SLICES; slice++) {
      for (let r = 0; r < routes.length; r++) {
        const route = routes[r]!
        const before = r === 0 ? 0 : await retainsCounted(service.base)
        slices[r]!.push(await load(route.base, route.path, route.body, DURATION / SLICES))
        if (r > 0) counted[r]! += (await retainsCounted(service.base)) - before
      }
    }
    const [bareRun, retainRun, batchRun] = slices.map(combine) as [Run, Run, Run]
    const retainCounted = counted[1]!
    const batchCounted = counted[2]!
    const retainPerSecond = retainCounted / retainRun.seconds
    const batchPerSecond = batchCounted / batchRun.seconds
    const ratio = retainRun.requestsPerSecond / bareRun.requestsPerSecond

    const rows = [
      ["bare HttpApi handler (does nothing), `POST /bare`", bareRun, "—", "baseline", "—", "—"],
      [
        "`POST /v1/banks/{id}/retain` (1,000 banks round-robin, count 1)",
        retainRun,
        `${Math.round(retainPerSecond).toLocaleString("en-US")}`,
        `${(ratio * 100).toFixed(0)} % of bare`,
        "≥ 70 % of bare",
        ratio >= 0.7 ? "yes" : "**no**"
      ],
      [
        `\`POST /v1/retains\` (${BATCH_ITEMS.toLocaleString("en-US")} items a request)`,
        batchRun,
        `${Math.round(batchPerSecond).toLocaleString("en-US")}`,
        `${(batchRun.requestsPerSecond / bareRun.requestsPerSecond * 100).toFixed(0)} % of bare (requests)`,
        "≥ 1,000,000 retains/s",
        batchPerSecond >= 1_000_000 ? "yes" : "**no**"
      ]
    ] as const
    console.log("")
    console.log("| route | requests/s | latency p50 / p99 | retains/s counted | vs baseline (same run) | target | met |")
    console.log("|---|---|---|---|---|---|---|")
    for (const [name, run, retains, versus, target, met] of rows) {
      console.log(
        `| ${name} | ${Math.round(run.requestsPerSecond).toLocaleString("en-US")} | ${run.p50} / ${run.p99} ms | ${retains} | ${versus} | ${target} | ${met} |`
      )
    }
    const failures = [bareRun, retainRun, batchRun].reduce((sum, run) => sum + run.non2xx + run.errors, 0)
    if (failures > 0) console.log(`\nWARNING: ${failures} requests failed or were not 2xx`)

    mkdirSync(join(root, "bench/results"), { recursive: true })
    writeFileSync(
      join(root, "bench/results/http.json"),
      JSON.stringify({ date: new Date().toISOString(), connections: CONNECTIONS, duration: DURATION, bare: bareRun, retain: { ...retainRun, retainPerSecond }, batch: { ...batchRun, batchPerSecond } }, null, 2)
    )
  } finally {
    await Promise.all([stop(service.child), stop(bare.child)])
    rmSync(dataDir, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
