/**
 * B4: compile throughput with an engine that sleeps 10 ms on the live clock, at concurrency 1, 8 and 64, against
 * the ideal (concurrency / 10 ms) and against bare `Effect.forEach` of the same sleeps at the same concurrency
 * (what Node's timers allow on this machine, measured in the same run).
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { CompileEngine, CompileResult } from "../src/index.js"
import { bankIds, Bench, fmtInt, openQueue, type Row, runBench, type Scale } from "./common.js"

const ENGINE_MILLIS = 10
const CONCURRENCIES = [1, 8, 64] as const

export const throughputRows = async (scale: Scale): Promise<Array<Row>> => {
  const result = new CompileResult({ bankId: "bench" }, true)
  const engine = CompileEngine.layer(() => Effect.as(Effect.sleep(Duration.millis(ENGINE_MILLIS)), result))
  const rows: Array<Row> = []
  for (const concurrency of CONCURRENCIES) {
    // 10,000 banks at 64; fewer at lower concurrency, so every row takes about 2 s of ideal time.
    const banks = Math.min(10_000, concurrency * 200) / scale.divisor
    const { close, queue } = await openQueue({ config: { sizeThreshold: 1 }, concurrency, maxQueueSize: 0 }, engine)
    let round = 0
    const bench = new Bench({ iterations: scale.quick ? 1 : 2, time: 0, warmup: false })
    bench.add("queue", async () => {
      const ids = bankIds(banks, `b4-${concurrency}-${round++}-`)
      const started = performance.now()
      for (const id of ids) queue.unsafeNotifyRetain(id) // each bank triggers once
      await Effect.runPromise(queue.drain({ timeout: "10 minutes" }))
      return { overriddenDuration: performance.now() - started }
    })
    bench.add("bare Effect.forEach", () =>
      Effect.runPromise(
        Effect.forEach(bankIds(banks), () => Effect.sleep(Duration.millis(ENGINE_MILLIS)), {
          concurrency,
          discard: true
        })
      ))
    const tasks = await runBench(bench)
    await close()
    const rate = banks / (tasks.get("queue")!.result!.latency.mean / 1000)
    const bare = banks / (tasks.get("bare Effect.forEach")!.result!.latency.mean / 1000)
    const ideal = concurrency * (1000 / ENGINE_MILLIS)
    rows.push({
      id: "B4",
      figure: `compile throughput, ${fmtInt(banks)} banks triggered once, engine sleeps ${ENGINE_MILLIS} ms, concurrency ${concurrency}`,
      value: `${fmtInt(rate)} compiles/s = ${((rate / ideal) * 100).toFixed(1)} % of ideal (${
        ((rate / bare) * 100).toFixed(0)
      } % of bare)`,
      baseline: `ideal ${fmtInt(ideal)}/s; bare Effect.forEach of the sleeps ${fmtInt(bare)}/s (${
        ((bare / ideal) * 100).toFixed(1)
      } % of ideal)`,
      target: concurrency === 64 ? "≥ 90 % of ideal" : "report",
      met: concurrency === 64 ? rate >= 0.9 * ideal : null,
      data: { concurrency, banks, rate, bare, ideal }
    })
  }
  return rows
}
