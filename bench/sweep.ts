/**
 * B5: one staleness sweep over 1M idle banks, with none due and with 1 % due.
 *
 * The queue runs under TestClock so that staleness is real (stalenessDays 7, the default rule) without waiting:
 * the banks are retained in 100 groups one minute apart, 10 memories each (= stalenessMinMemories, below
 * sizeThreshold 50), so no retain queues anything.
 * - none due: at day 4 every bank has enough memories to be due if stale, so the sweep evaluates the full rule
 *   (reference time against now) for every one of them — the costliest sweep that queues nothing.
 * - 1 % due: from day 7 on, each iteration advances the clock one minute, which makes the next group (1 % of the
 *   banks) stale; the timed sweep queues exactly that group (checked), and the compiles are drained before the next.
 *
 * @internal
 */
import { Effect, Layer, Runtime, TestClock, TestContext } from "effect"
import { CompileQueue, MILLIS_PER_DAY } from "../src/index.js"
import { bankIds, Bench, fmtInt, instantEngine, type Row, runBench, type Scale } from "./common.js"

const GROUPS = 100
const MINUTE = 60_000

export const sweepRows = (scale: Scale): Promise<Array<Row>> => {
  const banks = 1_000_000 / scale.divisor
  const perGroup = banks / GROUPS
  const ids = bankIds(banks, "sweep-bank-")
  const program = Effect.gen(function*() {
    const queue = yield* CompileQueue.make({
      config: { sizeThreshold: 50, stalenessDays: 7, stalenessMinMemories: 10 },
      sweepInterval: "36500 days", // only the timed sweeps run
      maxQueueSize: 0
    })
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const runPromise = Runtime.runPromise(runtime)

    for (let g = 0; g < GROUPS; g++) {
      for (let n = g * perGroup; n < (g + 1) * perGroup; n++) queue.unsafeNotifyRetain(ids[n]!, 10)
      yield* TestClock.adjust(MINUTE)
    }
    yield* TestClock.setTime(4 * MILLIS_PER_DAY)
    const stats = yield* queue.stats
    if (stats.banks !== banks || stats.pending !== 0) throw new Error(`B5 setup: ${JSON.stringify(stats)}`)

    const queuedBySweep: Array<number> = []
    const noneDue = new Bench({ iterations: scale.quick ? 5 : 20, time: 0, warmupIterations: 3, warmupTime: 0 })
    noneDue.add("sweep, none due", () => {
      queuedBySweep.push(runSync(queue.sweepNow))
    })
    const noneTask = (yield* Effect.promise(() => runBench(noneDue))).get("sweep, none due")!
    if (queuedBySweep.some((n) => n !== 0)) throw new Error(`B5: a sweep with none due queued ${queuedBySweep}`)

    // Group 0 becomes stale at day 7 exactly: start one minute before, each iteration moves the clock one minute.
    yield* TestClock.setTime(7 * MILLIS_PER_DAY - MINUTE)
    queuedBySweep.length = 0
    const dueBench = new Bench({ iterations: scale.quick ? 5 : 20, time: 0, warmupIterations: 3, warmupTime: 0 })
    // tinybench calls a task once without its hooks (to see whether it is async): only hooked runs are checked.
    let armed = false
    dueBench.add("sweep, 1 % due", () => {
      const queued = runSync(queue.sweepNow)
      if (armed) queuedBySweep.push(queued)
      armed = false
    }, {
      beforeEach: async () => {
        await runPromise(TestClock.adjust(MINUTE))
        armed = true
      },
      afterEach: () => runPromise(queue.drain({ timeout: "1 hour" }))
    })
    const dueTask = (yield* Effect.promise(() => runBench(dueBench))).get("sweep, 1 % due")!
    if (queuedBySweep.some((n) => n !== perGroup)) {
      throw new Error(`B5: sweeps with 1 % due queued ${queuedBySweep}, expected ${perGroup} each`)
    }

    const none = noneTask.result!.latency
    const due = dueTask.result!.latency
    const row = (figure: string, l: typeof none): Row => ({
      id: "B5",
      figure: `staleness sweep over ${fmtInt(banks)} idle banks, ${figure}`,
      value: `${l.mean.toFixed(1)} ms mean (p99 ${l.p99!.toFixed(1)} ms, ±${l.rme.toFixed(0)} %)`,
      baseline: "—",
      target: "≤ 50 ms per sweep",
      met: l.mean <= 50,
      data: { meanMs: l.mean, p99Ms: l.p99 ?? null, banks }
    })
    return [
      row("none due (every bank has 10 memories: full rule check)", none),
      row(`1 % due (${fmtInt(perGroup)} banks queued per sweep)`, due)
    ]
  })
  return Effect.runPromise(
    program.pipe(Effect.scoped, Effect.provide(Layer.merge(instantEngine(), TestContext.TestContext)))
  )
}
