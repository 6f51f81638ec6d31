/**
 * Cost budgets: global token and compile buckets, per-bank token buckets (deferral), stats, the report, metrics,
 * option validation. Everything under TestClock: the buckets' timers wake exactly at the crossing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Context, DateTime, Effect, Exit, FastCheck, Fiber, Layer, Metric, Option, TestClock } from "effect"
import {
  CompileMetrics,
  CompileQueue,
  type CompileQueueOptions,
  CompileQueueOptionsError,
  CompileResult
} from "../../src/index.js"
import { SharedBudget } from "../../src/internal/runtime/compileQueue.js"
import { globalBuckets } from "../../src/internal/core/tokenBucket.js"
import { queueLayer, TestEngine, testEngineLayer } from "../support/utils.js"

const MINUTE = 60_000

/** Every compile reports `tokens` used. */
const using = (tokens: number) =>
  Effect.map(TestEngine, (engine) => {
    engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: tokens }))
    return engine
  })

/** Lets every fiber that can run, run (no time passes). */
const settle = Effect.gen(function*() {
  for (let n = 0; n < 20; n++) yield* Effect.yieldNow()
})

const compileNow = (...bankIds: Array<string>) =>
  Effect.flatMap(CompileQueue, (queue) => Effect.forEach(bankIds, (bankId) => queue.compileNow(bankId)))

describe("the global token budget", () => {
  it.effect("1,000 tokens/h, 600 a compile: two start at once, the third not before 12 minutes, and just after", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* using(600)
      yield* compileNow("a", "b", "c")
      yield* settle
      expect(engine.calls).toEqual(["a", "b"]) // 1,000 → 400 → -200
      expect((yield* queue.stats).budget).toEqual({ tokensAvailable: -200, compilesAvailable: Infinity, deferred: 0 })
      expect(yield* queue.pendingBanks).toEqual(new Set(["c"]))
      yield* TestClock.adjust(12 * MINUTE) // the bucket is back at exactly 0: not above it
      yield* settle
      expect(engine.calls).toEqual(["a", "b"])
      yield* TestClock.adjust(1) // one millisecond later it is above 0: the one timer fires
      yield* settle
      expect(engine.calls).toEqual(["a", "b", "c"])
      yield* queue.drain()
    }).pipe(Effect.provide(queueLayer({ budget: { tokens: 1000 } }))))

  it.effect("while spent, queued banks keep FIFO order, retains keep counting and drain times out", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* using(1500)
      yield* compileNow("first")
      yield* settle
      expect(engine.calls).toEqual(["first"]) // 1,000 → -500: 30 minutes to refill above 0
      yield* compileNow("x", "y", "z")
      queue.unsafeNotifyRetain("x", 3)
      expect(Option.getOrThrow(yield* queue.bankState("x")).memoriesSinceLastCompile).toBe(3)
      const drain = yield* Effect.fork(Effect.flip(queue.drain({ timeout: "1 second" })))
      yield* TestClock.adjust("1 second")
      expect(Cause.isTimeoutException(yield* Fiber.join(drain))).toBe(true)
      expect((yield* queue.stats).pending).toBe(3)
      yield* TestClock.adjust(30 * MINUTE)
      yield* settle
      expect(engine.calls).toEqual(["first", "x"]) // x spent it again: 90 minutes
      yield* TestClock.adjust(90 * MINUTE)
      yield* settle
      expect(engine.calls.slice(0, 3)).toEqual(["first", "x", "y"])
    }).pipe(Effect.provide(queueLayer({ budget: { tokens: 1000 }, concurrency: 3, shutdownTimeout: 0 }))))

  it.effect("failures without a result use nothing; a result with error is charged", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) =>
        Effect.succeed(new CompileResult({ bankId, tokensUsed: 400, error: "partial" }))
      yield* compileNow("a")
      yield* queue.drain()
      expect((yield* queue.stats).budget.tokensAvailable).toBe(600)
    }).pipe(Effect.provide(queueLayer({ budget: { tokens: 1000 } }))))

  it.effect("tokens used are counted by the tokens-used counter", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* using(250)
      const before = (yield* Metric.value(CompileMetrics.tokensUsed)).count
      yield* compileNow("a", "b")
      yield* queue.drain()
      expect((yield* Metric.value(CompileMetrics.tokensUsed)).count - before).toBe(500)
    }).pipe(Effect.provide(queueLayer())))
})

describe("the global compiles budget", () => {
  it.effect("each engine run takes 1 when it starts; the next needs at least 1", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* using(0)
      yield* compileNow("a", "b", "c")
      yield* settle
      expect(engine.calls).toEqual(["a", "b"])
      expect((yield* queue.stats).budget.compilesAvailable).toBe(0)
      yield* TestClock.adjust(30 * MINUTE - 1) // 2 per hour: 1 back after 30 minutes
      yield* settle
      expect(engine.calls).toEqual(["a", "b"])
      yield* TestClock.adjust(1)
      yield* settle
      expect(engine.calls).toEqual(["a", "b", "c"])
    }).pipe(Effect.provide(queueLayer({ budget: { compiles: 2 } }))))
})

describe("per-bank budgets", () => {
  it.effect("a bank over its own budget is deferred and does not delay another bank", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* using(600)
      yield* compileNow("chatty")
      yield* queue.drain() // chatty: 500 → -100
      yield* compileNow("chatty", "quiet")
      yield* settle
      expect(engine.calls).toEqual(["chatty", "quiet"])
      const stats = yield* queue.stats
      expect(stats.budget.deferred).toBe(1)
      expect(stats.queued).toBe(0) // deferred: no queue slot
      expect(stats.running).toBe(0) // and no worker
      expect(yield* queue.pendingBanks).toEqual(new Set(["chatty"]))
      const report = yield* queue.budget
      expect(report.deferred.map((bank) => [bank.bankId, DateTime.toEpochMillis(bank.dueAt)])).toEqual([
        ["chatty", 12 * MINUTE + 1] // -100 at 500/h: above 0 after 12 minutes
      ])
      yield* TestClock.adjust(12 * MINUTE)
      yield* settle
      expect(engine.calls).toEqual(["chatty", "quiet"])
      yield* TestClock.adjust(1)
      yield* settle
      expect(engine.calls).toEqual(["chatty", "quiet", "chatty"])
      expect((yield* queue.stats).budget.deferred).toBe(0)
    }).pipe(Effect.provide(queueLayer({ budget: { bankTokens: 500 } }))))

  it.effect("deferred banks are queued again in the order they became due", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      const used: Record<string, number> = { a: 1200, b: 1100, c: 1300 }
      engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: used[bankId] ?? 0 }))
      yield* compileNow("a", "b", "c")
      yield* queue.drain()
      yield* compileNow("a", "b", "c") // levels -200, -100, -300: due in the order b, a, c
      yield* settle
      expect((yield* queue.stats).budget.deferred).toBe(3)
      yield* TestClock.adjust("1 hour")
      yield* settle
      expect(engine.calls.slice(3)).toEqual(["b", "a", "c"])
    }).pipe(Effect.provide(queueLayer({ budget: { bankTokens: 1000 } }))))

  it.effect("a policy's bankTokens is the bank's own limit, also without a queue-wide one", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* using(100)
      yield* queue.setPolicy("small", { bankTokens: 100 })
      yield* compileNow("small", "other")
      yield* queue.drain()
      yield* compileNow("small", "other")
      yield* settle
      expect(engine.calls).toEqual(["small", "other", "other"])
      expect((yield* queue.stats).budget.deferred).toBe(1)
      // Raising the limit re-keys the deferred bank: 0 of 400 refills above 0 at once... after 1 ms.
      yield* queue.setPolicy("small", { bankTokens: 400 })
      yield* TestClock.adjust(1)
      yield* settle
      expect(engine.calls).toEqual(["small", "other", "other", "small"])
    }).pipe(Effect.provide(queueLayer())))

  it.effect("the waiting gauge and the time-waited histogram follow deferred banks", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* using(600)
      const waitedBefore = (yield* Metric.value(CompileMetrics.budgetWait)).count
      const waitingBefore = (yield* Metric.value(CompileMetrics.budgetWaiting)).value
      yield* compileNow("a")
      yield* queue.drain()
      yield* compileNow("a")
      yield* settle
      expect((yield* Metric.value(CompileMetrics.budgetWaiting)).value - waitingBefore).toBe(1)
      yield* TestClock.adjust("1 hour")
      yield* queue.drain()
      expect((yield* Metric.value(CompileMetrics.budgetWaiting)).value - waitingBefore).toBe(0)
      const waited = yield* Metric.value(CompileMetrics.budgetWait)
      expect(waited.count - waitedBefore).toBe(1)
    }).pipe(Effect.provide(queueLayer({ budget: { bankTokens: 500 } }))))
})

describe("stats and the report", () => {
  it.effect("unlimited is Infinity in stats and null in the report", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      expect((yield* queue.stats).budget).toEqual({ tokensAvailable: Infinity, compilesAvailable: Infinity, deferred: 0 })
      const report = yield* queue.budget
      expect(report.tokens).toBeNull()
      expect(report.compiles).toBeNull()
      expect(report.bankTokens).toBeNull()
      expect(report.periodSeconds).toBe(3600)
    }).pipe(Effect.provide(queueLayer())))

  it.effect("the report gives levels, when a compile may start next and when each bucket is full", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* using(1500)
      yield* compileNow("a")
      yield* queue.drain()
      const report = yield* queue.budget
      expect(report.tokens?.available).toBe(-500)
      expect(DateTime.toEpochMillis(report.tokens!.nextStartAt)).toBe(30 * MINUTE + 1)
      expect(DateTime.toEpochMillis(report.tokens!.fullAt)).toBe(90 * MINUTE)
      expect(report.compiles?.available).toBe(9)
      expect(report.bankTokens).toBe(2000)
    }).pipe(Effect.provide(queueLayer({ budget: { tokens: 1000, compiles: 10, bankTokens: 2000, period: "1 hour" } }))))
})

describe("budget options", () => {
  const invalid = (budget: unknown, option: string) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(CompileQueue.make({ budget } as CompileQueueOptions)).pipe(Effect.provide(testEngineLayer))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = Cause.squash(exit.cause)
        expect(error).toBeInstanceOf(CompileQueueOptionsError)
        expect((error as CompileQueueOptionsError).option).toBe(option)
      }
    })

  it.effect("invalid limits and periods are a CompileQueueOptionsError naming the option", () =>
    Effect.gen(function*() {
      yield* invalid({ tokens: 0 }, "budget.tokens")
      yield* invalid({ tokens: 1.5 }, "budget.tokens")
      yield* invalid({ tokens: "1000" }, "budget.tokens")
      yield* invalid({ compiles: -1 }, "budget.compiles")
      yield* invalid({ bankTokens: Infinity }, "budget.bankTokens")
      yield* invalid({ period: 0 }, "budget.period")
      yield* invalid({ period: "soon" }, "budget.period")
      yield* invalid({ period: "-1 hour" }, "budget.period")
      yield* invalid({ token: 5 }, "budget.token")
      yield* invalid(5, "budget")
    }))

  it.effect("a policy's bankTokens must be a positive integer", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const failed = yield* Effect.flip(queue.setPolicy("b", { bankTokens: 0 }))
      expect(failed._tag).toBe("BankPolicyError")
      expect(yield* queue.bankState("b")).toEqual(Option.none())
    }).pipe(Effect.provide(queueLayer())))
})

describe("budget — random scenarios", () => {
  const HOUR = 3_600_000
  const scenario = FastCheck.record({
    tokens: FastCheck.integer({ min: 100, max: 5000 }),
    bankTokens: FastCheck.option(FastCheck.integer({ min: 100, max: 5000 }), { nil: undefined }),
    compiles: FastCheck.option(FastCheck.integer({ min: 1, max: 20 }), { nil: undefined }),
    concurrency: FastCheck.integer({ min: 1, max: 4 }),
    uses: FastCheck.array(FastCheck.integer({ min: 0, max: 4000 }), { minLength: 1, maxLength: 8 }),
    steps: FastCheck.array(
      FastCheck.oneof(
        FastCheck.record({ bank: FastCheck.integer({ min: 0, max: 5 }) }),
        FastCheck.record({ advance: FastCheck.integer({ min: 0, max: HOUR / 2 }) })
      ),
      { minLength: 1, maxLength: 30 }
    )
  })

  it.effect("tokens used stay within capacity + refill + one compile per worker; every requested bank compiles in the end", () =>
    Effect.gen(function*() {
      for (const s of FastCheck.sample(scenario, { numRuns: 25, seed: 12 })) {
        yield* Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(queueLayer({
            concurrency: s.concurrency,
            shutdownTimeout: 0,
            sweepInterval: "1000 days", // long clock advances: keep the sweep out of them
            budget: { tokens: s.tokens, bankTokens: s.bankTokens, compiles: s.compiles }
          }))
          const queue = Context.get(context, CompileQueue)
          const engine = Context.get(context, TestEngine)
          const t0 = yield* Clock.currentTimeMillis
          const maxUse = Math.max(...s.uses)
          const starts: Array<{ at: number; tokens: number }> = []
          let calls = 0
          engine.behavior = (bankId) =>
            Effect.flatMap(Clock.currentTimeMillis, (at) => {
              const tokens = s.uses[calls++ % s.uses.length]!
              starts.push({ at, tokens })
              return Effect.succeed(new CompileResult({ bankId, tokensUsed: tokens }))
            })
          const requested = new Set<string>()
          for (const step of s.steps) {
            if ("bank" in step) {
              yield* queue.compileNow(`b${step.bank}`)
              requested.add(`b${step.bank}`)
            } else yield* TestClock.adjust(step.advance)
            yield* settle
          }
          // The bound holds at every compile start (charges land at the same instant: the engine is instant).
          let used = 0
          for (const start of starts) {
            expect(used).toBeLessThanOrEqual(s.tokens * (1 + (start.at - t0) / HOUR) + maxUse * s.concurrency)
            used += start.tokens
          }
          // Enough time refills everything: nothing stays pending, and every requested bank compiled.
          // (a bank's own bucket may be thousands of tokens below 0 at 100 an hour: allow for each request)
          const slowest = Math.min(s.tokens, s.bankTokens ?? Infinity)
          yield* TestClock.adjust(HOUR * (2 + Math.ceil(used / s.tokens) + s.steps.length * (1 + Math.ceil(maxUse / slowest))))
          yield* settle
          expect(yield* queue.pendingBanks).toEqual(new Set())
          expect(new Set(engine.calls)).toEqual(requested)
          expect(engine.maxPerBank).toBeLessThanOrEqual(1)
        }))
      }
    }))
})

describe("global buckets shared by several queues (cluster mode: a runner's partitions)", () => {
  it.scoped("two queues on one runner's 1,000 tokens/h: the third compile, in either queue, waits 12 minutes", () =>
    Effect.gen(function*() {
      const engine = yield* using(600)
      const limits = { tokens: 1000, compiles: Infinity, bankTokens: Infinity, periodMillis: 60 * MINUTE }
      const shared = globalBuckets(limits, yield* Clock.currentTimeMillis)
      const open = CompileQueue.make({ budget: { tokens: 1000 } }).pipe(Effect.provideService(SharedBudget, shared))
      const one = yield* open
      const two = yield* open
      yield* one.compileNow("a")
      yield* two.compileNow("b")
      yield* settle
      yield* two.compileNow("c")
      yield* settle
      expect(engine.calls).toEqual(["a", "b"]) // 1,000 → 400 → -200, across both queues
      expect((yield* one.stats).budget.tokensAvailable).toBe(-200)
      expect((yield* two.stats).budget.tokensAvailable).toBe(-200)
      yield* TestClock.adjust(12 * MINUTE + 1)
      yield* settle
      expect(engine.calls).toEqual(["a", "b", "c"])
    }).pipe(Effect.provide(testEngineLayer)))
})
