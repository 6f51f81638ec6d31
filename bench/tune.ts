/**
 * `npm run bench:tune`: the threshold tuner's speed. A synthetic log of 1,000,000 events over 10,000 banks and 30
 * days is replayed through the real CompileQueue for 6 combinations (sizes 20, 50, 100 × staleness 1 and 7 days;
 * 60-second compiles, concurrency 4): events per second per combination, and the total. Baseline in the same run:
 * the same events fed straight to a live queue's `unsafeNotifyRetain` with thresholds never reached (the hot path
 * alone, no compiles, no virtual time). Writes bench/results/tune.json.
 */
import { Effect, Layer } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { loadavg } from "node:os"
import { CompileEngine, CompileQueue, CompileResult } from "../src/index.js"
import { type EngineModel, replay } from "../src/internal/tuner/replay.js"
import { combinations } from "../src/internal/tuner/tune.js"
import { synthetic } from "../src/internal/tuner/workload.js"

const ROUNDS = Number(process.env.TUNE_BENCH_ROUNDS ?? 3)
const model: EngineModel = {
  compileSeconds: 60,
  tokensBase: 2000,
  tokensPerMemory: 100,
  concurrency: 4,
  sweepIntervalMillis: 3_600_000,
  maxQueueSize: 0,
  budgetPeriodMillis: 3_600_000
}
const grid = combinations({
  sizeThreshold: [20, 50, 100],
  stalenessDays: [1, 7],
  stalenessMinMemories: [10],
  forgetThreshold: [1],
  forgetDelaySeconds: [0],
  maxWaitSeconds: [0],
  budgetTokens: [null],
  budgetCompiles: [null]
})

const generated = performance.now()
const workload = synthetic({ banks: 10_000, days: 30, retainsPerDay: 33_334, forgetsPerDay: 0, seed: 1 })
const generateMs = performance.now() - generated
console.log(`synthetic log: ${workload.length.toLocaleString("en-US")} events, ${workload.bankIds.length} banks, generated in ${generateMs.toFixed(0)} ms`)

/** The same events into a live queue that never compiles: what the queue's hot path alone costs. */
const hotPath = (): number => {
  const engine = CompileEngine.layer((bankId) => Effect.succeed(new CompileResult({ bankId })))
  return Effect.runSync(Effect.scoped(Effect.gen(function*() {
    const queue = yield* CompileQueue.make({ config: { sizeThreshold: 1e9, stalenessDays: 3650 }, maxQueueSize: 0 })
    const { bankIds, banks, counts, length } = workload
    const started = performance.now()
    for (let n = 0; n < length; n++) queue.unsafeNotifyRetain(bankIds[banks[n]!]!, counts[n]!)
    return performance.now() - started
  })).pipe(Effect.provide(Layer.merge(engine, Layer.empty))))
}

interface Row {
  readonly combination: string
  readonly compiles: number
  readonly ms: Array<number>
}

const rows: Array<Row> = grid.map((s) => ({ combination: `size ${s.sizeThreshold}, stale ${s.stalenessDays} d`, compiles: 0, ms: [] }))
const hot: Array<number> = []
const totals: Array<number> = []
for (let round = 0; round < ROUNDS; round++) {
  hot.push(hotPath())
  const started = performance.now()
  grid.forEach((settings, i) => {
    globalThis.gc?.()
    const t0 = performance.now()
    const measures = replay(workload, settings, model)
    rows[i]!.ms.push(performance.now() - t0)
    ;(rows[i] as { compiles: number }).compiles = measures.compiles
  })
  totals.push(performance.now() - started)
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const best = (xs: ReadonlyArray<number>) => Math.min(...xs)
const rate = (ms: number) => workload.length / (ms / 1000)
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}; ${ROUNDS} rounds, best (least disturbed) and median`)
console.log(`baseline: hot path alone (unsafeNotifyRetain, no compiles) best ${fmt(rate(best(hot)))}, median ${fmt(rate(median(hot)))} events/s`)
console.log("| combination | compiles | events/s best | events/s median | best vs hot path best | target ≥ 1,000,000 events/s |")
console.log("|---|---|---|---|---|---|")
for (const row of rows) {
  const [b, m] = [best(row.ms), median(row.ms)]
  console.log(
    `| ${row.combination} | ${fmt(row.compiles)} | ${fmt(rate(b))} | ${fmt(rate(m))} | ${
      ((100 * best(hot)) / b).toFixed(1)
    } % | ${rate(b) >= 1e6 ? "yes" : "**no**"} |`
  )
}
console.log(`total: 6 combinations in ${(best(totals) / 1000).toFixed(2)} s best, ${(median(totals) / 1000).toFixed(2)} s median`)
mkdirSync("bench/results", { recursive: true })
writeFileSync(
  "bench/results/tune.json",
  JSON.stringify({ load: loadavg(), hotPathMs: hot, totals, rows, events: workload.length }, null, 2)
)
