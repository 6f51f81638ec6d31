/**
 * `npm run bench:durable`: what `ACK_MODE=durable` costs against `ACK_MODE=memory`, measured in the same run.
 *
 * Two services as built (`node dist/bin.js`, what `npm start` runs; dist/ is rebuilt first when a source is newer),
 * each on its own SQLite store in a temporary DATA_DIR, dry-run engine, `COMPILE_SIZE_THRESHOLD=10^9` (no compile
 * runs: the rows measure the write route, the counting and — in durable mode — the wait for the flush that stores
 * it). autocannon runs in this process against one service at a time, in slices that alternate the modes (memory
 * first in even rounds, durable first in odd ones), so drift and a noisy neighbour weigh on both alike.
 *
 * Rows: single retains (`POST /v1/banks/{id}/retain`, count 1, over `--banks` bank ids round-robin) and batch
 * retains (`POST /v1/retains`, `--batch` items a request, bodies rotating over the same bank ids). Retains/s are
 * the retains of 2xx answers (in durable mode: acknowledged as stored); p50 / p99 are autocannon's latencies. Each
 * figure is the median over rounds; the ratio durable/memory is the median of the rounds' ratios (each round's two
 * slices ran back to back). The product's goal: batch retains/s in durable mode ≥ 50 % of memory mode on SQLite.
 *
 * Options: `--rounds <n>` (3), `--duration <s>` per slice (5), `--connections <n>` (50), `--batch <items>` (100),
 * `--banks <n>` (1000), `--cpu-prof <dir>` (run both services under `node --cpu-prof`; profiles are written to
 * `<dir>` when they stop), `--bin <file>` (another build of the service to measure, e.g. a patched copy of dist/;
 * default `dist/bin.js`, rebuilt first when a source is newer). Writes bench/results/durable.json (git-ignored).
 */
import autocannon from "autocannon"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { ensureBuilt } from "../test/support/build.js"
import { type ServiceProcess, startService } from "../test/support/harness.js"
import { option } from "./options.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

const positive = (name: string, fallback: number): number => {
  const text = option(name)
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, got ${text}`)
  return value
}
const ROUNDS = positive("rounds", 3)
const DURATION = positive("duration", 5)
const CONNECTIONS = positive("connections", 50)
const BATCH_ITEMS = positive("batch", 100)
const BANKS = positive("banks", 1000)
const CPU_PROF = option("cpu-prof")
const BIN = option("bin")
const WARMUP = 2

type Mode = "memory" | "durable"
const MODES: ReadonlyArray<Mode> = ["memory", "durable"]

interface Slice {
  readonly retainsPerSecond: number
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
  /** Retains in the slice's 2xx answers. */
  readonly acknowledged: number
  /** Retains the service counted during the slice (its `/metrics`), for a cross-check. */
  readonly counted: number
  /** Server CPU seconds per second of the slice (1 = one core busy). */
  readonly serverCpu: number
  readonly failed: number
}

interface Route {
  readonly name: string
  readonly retainsPerRequest: number
  readonly request: () => autocannon.Request
}

/** The numbers of `/metrics` this bench reads. */
const scrape = async (base: string): Promise<{ readonly retains: number; readonly cpu: number }> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  const value = (name: string) => {
    const line = text.split("\n").find((line) => line.startsWith(`${name} `))
    return Number(line?.split(" ")[1] ?? NaN)
  }
  return { retains: value("compile_trigger_retains_total"), cpu: value("process_cpu_seconds_total") }
}

const load = async (service: ServiceProcess, route: Route, duration: number): Promise<Slice> => {
  const before = await scrape(service.base)
  const result = await autocannon({
    url: service.base,
    connections: CONNECTIONS,
    duration,
    requests: [route.request()]
  })
  const after = await scrape(service.base)
  return {
    retainsPerSecond: (result["2xx"] * route.retainsPerRequest) / result.duration,
    requestsPerSecond: result["2xx"] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    acknowledged: result["2xx"] * route.retainsPerRequest,
    counted: after.retains - before.retains,
    serverCpu: (after.cpu - before.cpu) / result.duration,
    failed: result.non2xx + result.errors + result.timeouts
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const int = (n: number): string => Math.round(n).toLocaleString("en-US")
const ms = (n: number): string => (n < 10 ? n.toFixed(1) : n.toFixed(0))
const pct = (ratio: number): string => `${(ratio * 100).toFixed(0)} %`

const singleRoute: Route = {
  name: "`POST /v1/banks/{id}/retain` (count 1)",
  retainsPerRequest: 1,
  request: () => {
    let n = 0
    const body = JSON.stringify({ count: 1 })
    return {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      setupRequest: (request) => ({ ...request, path: `/v1/banks/bench-${n++ % BANKS}/retain` })
    }
  }
}

// Batch bodies rotate over the bank ids, so consecutive flushes write different banks (precomputed: building JSON
// per request would take the cores' time from the service).
const batchBodies = Array.from({ length: Math.max(1, Math.ceil(BANKS / BATCH_ITEMS)) }, (_, b) =>
  JSON.stringify(Array.from({ length: BATCH_ITEMS }, (_, i) => ({ bankId: `bench-${(b * BATCH_ITEMS + i) % BANKS}` }))))
const batchRoute: Route = {
  name: `\`POST /v1/retains\` (${BATCH_ITEMS} items)`,
  retainsPerRequest: BATCH_ITEMS,
  request: () => {
    let n = 0
    return {
      method: "POST",
      path: "/v1/retains",
      headers: { "content-type": "application/json" },
      setupRequest: (request) => ({ ...request, body: batchBodies[n++ % batchBodies.length]! })
    }
  }
}
const ROUTES: ReadonlyArray<Route> = [singleRoute, batchRoute]

const main = async () => {
  if (BIN === undefined) ensureBuilt()
  const bin = BIN === undefined ? "dist/bin.js" : resolve(BIN)
  const cpuProfDir = CPU_PROF === undefined ? undefined : resolve(CPU_PROF)
  if (cpuProfDir !== undefined) mkdirSync(cpuProfDir, { recursive: true })
  console.log(
    `bench:durable — node ${BIN === undefined ? "dist/bin.js" : bin} on SQLite (temp DATA_DIR), ACK_MODE memory vs durable; autocannon ` +
      `${CONNECTIONS} connections, ${ROUNDS} rounds × ${DURATION} s per mode and route (after ${WARMUP} s warm-up each)` +
      (cpuProfDir === undefined ? "" : `; CPU profiles in ${cpuProfDir}`)
  )
  const services = new Map<Mode, ServiceProcess>()
  try {
    for (const mode of MODES) {
      services.set(
        mode,
        await startService(
          { ACK_MODE: mode, LOG_LEVEL: "warn", COMPILE_SIZE_THRESHOLD: "1000000000" },
          60_000,
          {
            command: [
              process.execPath,
              ...(cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", cpuProfDir, `--cpu-prof-name=${mode}.cpuprofile`]),
              bin
            ]
          }
        )
      )
    }
    for (const route of ROUTES) {
      for (const mode of MODES) await load(services.get(mode)!, route, WARMUP)
    }
    const slices = new Map<string, Array<Slice>>() // `${route}/${mode}` → one per round
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? MODES : [...MODES].reverse()
      for (const route of ROUTES) {
        for (const mode of order) {
          const slice = await load(services.get(mode)!, route, DURATION)
          const key = `${route.name}/${mode}`
          slices.set(key, [...(slices.get(key) ?? []), slice])
          console.log(
            `round ${round + 1} ${route.name} ${mode}: ${int(slice.retainsPerSecond)} retains/s, p50 ${ms(slice.p50)} ms, ` +
              `p99 ${ms(slice.p99)} ms, server CPU ${slice.serverCpu.toFixed(2)} core` +
              (slice.failed > 0 ? `, ${slice.failed} FAILED` : "")
          )
        }
      }
    }

    const of = (route: Route, mode: Mode) => slices.get(`${route.name}/${mode}`)!
    const ratio = (route: Route, pick: (slice: Slice) => number) =>
      median(of(route, "durable").map((slice, round) => pick(slice) / pick(of(route, "memory")[round]!)))
    console.log("")
    console.log(
      "| route | mode | retains/s | latency p50 / p99 | server CPU (cores) | retains/s durable/memory | p50 durable/memory | p99 durable/memory |"
    )
    console.log("|---|---|---|---|---|---|---|---|")
    const summary: Record<string, unknown> = {}
    for (const route of ROUTES) {
      for (const mode of MODES) {
        const rows = of(route, mode)
        const figures = {
          retainsPerSecond: median(rows.map((slice) => slice.retainsPerSecond)),
          p50: median(rows.map((slice) => slice.p50)),
          p99: median(rows.map((slice) => slice.p99)),
          serverCpu: median(rows.map((slice) => slice.serverCpu))
        }
        const ratios = mode === "memory" ? undefined : {
          retainsPerSecond: ratio(route, (slice) => slice.retainsPerSecond),
          p50: ratio(route, (slice) => slice.p50),
          p99: ratio(route, (slice) => slice.p99)
        }
        summary[`${route.name} ${mode}`] = { ...figures, ratios, rounds: rows }
        console.log(
          `| ${route.name} | ${mode} | ${int(figures.retainsPerSecond)} | ${ms(figures.p50)} / ${ms(figures.p99)} ms | ` +
            `${figures.serverCpu.toFixed(2)} | ${ratios === undefined ? "" : pct(ratios.retainsPerSecond)} | ` +
            `${ratios === undefined ? "" : `${ratios.p50.toFixed(2)}×`} | ${ratios === undefined ? "" : `${ratios.p99.toFixed(2)}×`} |`
        )
      }
    }
    const batchRatio = ratio(batchRoute, (slice) => slice.retainsPerSecond)
    console.log(
      `\ngoal: batch retains/s in durable mode >= 50 % of memory mode: ${pct(batchRatio)} — ${batchRatio >= 0.5 ? "met" : "NOT met"}`
    )
    const all = Array.from(slices.values()).flat()
    const failed = all.reduce((sum, slice) => sum + slice.failed, 0)
    if (failed > 0) console.log(`WARNING: ${failed} requests failed or were not 2xx`)
    // Every acknowledged retain was counted (the service may count a few more: requests cut off at a slice's end).
    if (all.some((slice) => slice.counted < slice.acknowledged)) {
      console.log("WARNING: a slice counted fewer retains than it acknowledged")
    }

    mkdirSync(join(root, "bench/results"), { recursive: true })
    writeFileSync(
      join(root, "bench/results/durable.json"),
      JSON.stringify(
        { date: new Date().toISOString(), connections: CONNECTIONS, duration: DURATION, rounds: ROUNDS, batchItems: BATCH_ITEMS, banks: BANKS, summary, batchRatio },
        null,
        2
      )
    )
  } finally {
    // A graceful stop, so that `--cpu-prof` writes the profiles.
    await Promise.all(Array.from(services.values(), (service) => service.stop(30_000)))
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
