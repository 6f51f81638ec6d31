/**
 * The tuner's freshness deadline: `maxWaitSeconds` as a grid dimension, lateness against it, and the never-compiled
 * memories it removes; and offline against online — the same workload replayed by the tuner and fed through a
 * `CompileQueue` under TestClock give the same memory waits as the live `compile_trigger_memory_wait_seconds`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { CompileEngine, CompileMetrics, CompileResult } from "../../src/index.js"
import { make as makeQueue } from "../../src/internal/runtime/compileQueue.js"
import { type EngineModel, queueOptions, replay, type TuneSettings, type Workload } from "../../src/internal/tuner/replay.js"
import { combinations, tune } from "../../src/internal/tuner/tune.js"
import { synthetic, WorkloadBuilder } from "../../src/internal/tuner/workload.js"

const T0 = Date.UTC(2026, 10, 1)
const MINUTE = 60_000
const HOUR = 3_600_000

const model = (compileSeconds: number): EngineModel => ({
  compileSeconds,
  tokensBase: 1000,
  tokensPerMemory: 10,
  concurrency: 1,
  sweepIntervalMillis: HOUR,
  maxQueueSize: 0,
  budgetPeriodMillis: HOUR
})

const settings = (overrides: Partial<TuneSettings> = {}): TuneSettings => ({
  sizeThreshold: 50,
  stalenessDays: 7,
  stalenessMinMemories: 10,
  forgetThreshold: 1,
  forgetDelaySeconds: 0,
  maxWaitSeconds: 0,
  budgetTokens: null,
  budgetCompiles: null,
  ...overrides
})

describe("tuner: maxWaitSeconds", () => {
  it("a max wait compiles the quiet banks that size and staleness never reach, at the tokens of those compiles", () => {
    const builder = new WorkloadBuilder()
    for (let bank = 0; bank < 20; bank++) builder.push(T0 + bank * MINUTE, `quiet-${bank}`, 3) // never 10: never stale
    for (let n = 0; n < 500; n++) builder.push(T0 + n * MINUTE, "busy", 1)
    const workload = builder.build(T0, T0 + 2 * 86_400_000)
    const grid = combinations({
      sizeThreshold: [50],
      stalenessDays: [7],
      stalenessMinMemories: [10],
      forgetThreshold: [1],
      forgetDelaySeconds: [0],
      maxWaitSeconds: [0, 3600],
      budgetTokens: [null],
      budgetCompiles: [null]
    })
    const [off, on] = tune(workload, grid, model(0)).rows
    expect(off!.banksNeverCompiled).toBe(20)
    expect(off!.uncompiledMemories).toBe(60)
    expect(off!.lateness).toBeNull()
    expect(on!.banksNeverCompiled).toBe(0)
    expect(on!.uncompiledMemories).toBe(0)
    expect(on!.compiles.byReason).toEqual({ size: 10, deadline: 20 })
    // the cost of those 20 compiles: 1,000 + 10 per memory each
    expect(on!.tokens.total - off!.tokens.total).toBe(20 * (1000 + 10 * 3))
    expect(on!.lateness).toEqual({ lateMemories: 0, lateShare: 0, maxSeconds: 0 })
    expect(on!.freshness.maxSeconds).toBe(3600)
  })

  it("lateness: compiles held behind one another at concurrency 1 start after the deadline", () => {
    const builder = new WorkloadBuilder()
    for (let bank = 0; bank < 3; bank++) builder.push(T0, `bank-${bank}`, 2)
    const workload = builder.build(T0, T0 + HOUR)
    const m = replay(workload, settings({ maxWaitSeconds: 60 }), model(60))
    // all three due at T0 + 60 s; one runs at a time for 60 s: started at +60, +120, +180 s
    expect(m.compiles).toBe(3)
    expect(m.lateMemories).toBe(4)
    expect(m.latenessMax).toBe(120_000)
  })
})

/** The live histogram's state now: cumulative buckets, count and sum. */
const histogram = () => CompileMetrics.memoryWait.snapshot()

/** What was observed between two snapshots: per bucket bound, the count; and the count and sum. */
const observedSince = (before: ReturnType<typeof histogram>, after: ReturnType<typeof histogram>) => ({
  buckets: after.buckets.map(([bound, cumulative], n) => [bound, cumulative - before.buckets[n]![1]] as const),
  count: after.count - before.count,
  sum: after.sum - before.sum
})

/** The `q` quantile read from cumulative buckets: the bound of the first bucket holding it (Prometheus-style, no interpolation). */
const bucketQuantile = (observed: ReturnType<typeof observedSince>, q: number): number =>
  observed.buckets.find(([, cumulative]) => cumulative >= q * observed.count)![0]

/** The largest non-empty bucket's bound. */
const bucketMax = (observed: ReturnType<typeof observedSince>): number =>
  observed.buckets.find(([, cumulative]) => cumulative >= observed.count)![0]

/** Feeds `workload` to a `CompileQueue` built with the tuner's options, under TestClock; the engine sleeps its latency. */
const online = (workload: Workload, tuneSettings: TuneSettings, engineModel: EngineModel) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(workload.start)
    const latency = engineModel.compileSeconds * 1000
    const engine = CompileEngine.layer((bankId) => Effect.as(Effect.sleep(latency), new CompileResult({ bankId })))
    const before = histogram()
    yield* Effect.scoped(Effect.gen(function*() {
      const queue = yield* makeQueue(queueOptions(tuneSettings, engineModel), { compileLogs: false }).pipe(
        Effect.provide(engine)
      )
      for (let n = 0; n < workload.length; n++) {
        yield* TestClock.setTime(workload.times[n]!)
        const count = workload.counts[n]!
        const bankId = workload.bankIds[workload.banks[n]!]!
        if (count > 0) queue.unsafeNotifyRetain(bankId, count)
        else queue.unsafeNotifyForget(bankId, -count)
        yield* Effect.yieldNow()
      }
      yield* TestClock.setTime(workload.end)
    }))
    return observedSince(before, histogram())
  })

describe("offline and online agree", () => {
  it.effect("waits on the histogram's bounds: p50, p95 and max are the same figures", () =>
    Effect.gen(function*() {
      // Each hour two banks retain at once (3 memories and 1): both due 64 s later; one compile at a time, 64 s each,
      // so one waits 64 s and the other 128 s — bounds of the histogram's buckets, where it is exact.
      const builder = new WorkloadBuilder()
      for (let h = 0; h < 24; h++) {
        builder.push(T0 + h * HOUR, `a-${h % 5}`, 3)
        builder.push(T0 + h * HOUR, `b-${h % 5}`, 1)
      }
      const workload = builder.build(T0, T0 + 25 * HOUR)
      const tuneSettings = settings({ sizeThreshold: 1000, maxWaitSeconds: 64 })
      const engineModel = model(64)
      const offline = replay(workload, tuneSettings, engineModel)
      const live = yield* online(workload, tuneSettings, engineModel)
      // the tuner measures retain to compile end: less the (constant) latency, retain to start, as the histogram
      const wait = (millis: number) => (millis - 64_000) / 1000
      expect(live.count).toBe(offline.compiledMemories)
      expect(offline.compiledMemories).toBe(96)
      expect(bucketQuantile(live, 0.5)).toBeCloseTo(wait(offline.freshnessP50), 6)
      expect(bucketQuantile(live, 0.95)).toBeCloseTo(wait(offline.freshnessP95), 6)
      expect(bucketMax(live)).toBeCloseTo(wait(offline.freshnessMax), 6)
      expect([wait(offline.freshnessP50), wait(offline.freshnessP95), wait(offline.freshnessMax)]).toEqual([64, 128, 128])
    }))

  it.effect("two synthetic days: the same memories compiled and the same mean wait (within 1 %)", () =>
    Effect.gen(function*() {
      const workload = synthetic({ banks: 40, days: 2, retainsPerDay: 400, forgetsPerDay: 10, seed: 3, start: T0 })
      const tuneSettings = settings({ sizeThreshold: 20, stalenessDays: 1, maxWaitSeconds: 1800 })
      const engineModel = { ...model(30), concurrency: 2 }
      const offline = replay(workload, tuneSettings, engineModel)
      const live = yield* online(workload, tuneSettings, engineModel)
      expect(live.count).toBe(offline.compiledMemories)
      expect(offline.compiledMemories).toBeGreaterThan(500)
      expect(offline.compilesByReason.deadline).toBeGreaterThan(0)
      const offlineMeanWait = (offline.freshnessMean - 30_000) / 1000
      expect(Math.abs(live.sum / live.count - offlineMeanWait) / offlineMeanWait).toBeLessThan(0.01)
    }))
})
