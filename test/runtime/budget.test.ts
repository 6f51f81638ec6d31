/**
 * Cost budgets: global token and compile buckets, per-bank token buckets (deferral), stats, the report, metrics,
 * option validation. Everything under TestClock: the buckets' timers wake exactly at the crossing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Context, DateTime, Effect, Exit, FastCheck, Fiber, Layer, Metric, Option, Scope, TestClock } from "effect"
import type { EngineControl } from "../support/utils.js"
import {
  CompileMetrics,
  CompileQueue,
  type CompileQueueOptions,
  CompileQueueOptionsError,
  CompileResult
} from "../../src/index.js"
import { SharedBudget } from "../../src/internal/runtime/compileQueue.js"
import { globalBuckets } from "../../src/internal/core/tokenBucket.js"
import { BankStateStore, makeMemory } from "../../src/BankStateStore.js"
import { captureLogs, openQueue, queueLayer, TestEngine, testEngineLayer } from "../support/utils.js"

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
      // Raising the limit keeps what was spent (100): 300 of the new 400 are there at once, and the bank runs.
      yield* queue.setPolicy("small", { bankTokens: 400 })
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

/** Every compile of `engine` reports `tokens` used. */
const engineUsing = (engine: EngineControl, tokens: number) => {
  engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: tokens }))
}

const waitingGauge = Effect.map(Metric.value(CompileMetrics.budgetWaiting), (state) => state.value)

/** A memory store that outlives the queues opened on it (a restart). */
const sharedMemoryStore = Effect.map(makeMemory, (store) => Layer.succeed(BankStateStore, store))

const HELD = Array.from({ length: 44 }, (_, n) => `held-${n}`)

describe("budget.waiting: every bank the spent global budget holds", () => {
  it.effect("44 banks queued behind a spent budget: 44 in the report and the gauge, and again after a restart", () =>
    Effect.gen(function*() {
      const storeLayer = yield* sharedMemoryStore
      const options: CompileQueueOptions = { budget: { tokens: 1000 }, concurrency: 2, shutdownTimeout: 0, flushInterval: "1 hour" }
      const gaugeBefore = yield* waitingGauge
      const first = yield* openQueue(storeLayer, options)
      engineUsing(first.engine, 1500)
      yield* first.queue.compileNow("spender") // 1,000 → -500: nothing starts for 30 minutes
      yield* settle
      for (const bankId of HELD) yield* first.queue.compileNow(bankId)
      yield* settle
      expect((yield* first.queue.budget).waiting).toBe(44) // not only the one bank a worker took
      expect((yield* waitingGauge) - gaugeBefore).toBe(44)
      expect((yield* first.queue.stats).queued).toBe(44)
      yield* first.close
      expect((yield* waitingGauge) - gaugeBefore).toBe(0) // this queue no longer waits for anything

      const second = yield* openQueue(storeLayer, options) // restored pending, the budget still spent
      engineUsing(second.engine, 1500)
      yield* settle
      expect(second.engine.calls).toEqual([])
      expect((yield* second.queue.stats).pending).toBe(44)
      expect((yield* second.queue.budget).waiting).toBe(44)
      expect((yield* waitingGauge) - gaugeBefore).toBe(44)
      yield* TestClock.adjust(30 * MINUTE + 1) // open again: the first one runs, and spends it for 90 minutes
      yield* settle
      expect(second.engine.calls).toEqual(["held-0"])
      expect((yield* second.queue.budget).waiting).toBe(43)
      expect((yield* waitingGauge) - gaugeBefore).toBe(43)
      yield* second.close
    }))
})

describe("stopping while the budget holds the queue", () => {
  const stopLines = (logs: ReadonlyArray<{ readonly message: string }>) =>
    logs.filter((log) => log.message.startsWith("stopped:")).map((log) => log.message)

  it.effect("spent past the deadline: the close waits for none of the queued banks, keeps them pending, says so", () =>
    Effect.gen(function*() {
      const { layer: logLayer, logs } = captureLogs()
      const storeLayer = yield* sharedMemoryStore
      const { close, engine, queue, store } = yield* openQueue(storeLayer, {
        budget: { tokens: 1000 },
        shutdownTimeout: "30 seconds"
      }).pipe(Effect.provide(logLayer))
      engineUsing(engine, 1500)
      yield* queue.compileNow("spender")
      yield* settle
      for (const bankId of HELD) yield* queue.compileNow(bankId)
      yield* settle
      const closing = yield* Effect.fork(close)
      for (let n = 0; n < 10; n++) yield* settle // the close and its final flush: many steps, no time
      // Closed with no time passing: the budget opens only in 30 minutes, after the 30-second deadline.
      expect(Option.isSome(yield* Fiber.poll(closing))).toBe(true)
      expect(stopLines(logs)).toEqual(["stopped: 44 banks left pending (budget), 0 cut off, state flushed"])
      expect(logs.at(-1)?.message).toBe("stopped: 44 banks left pending (budget), 0 cut off, state flushed")
      const stored = yield* store.load
      expect(stored.filter((bank) => bank.status === "pending").map((bank) => bank.bankId).sort()).toEqual([...HELD].sort())
      expect(engine.calls).toEqual(["spender"])
    }))

  it.effect("a compile the budget lets start before the deadline is waited for; what it then cannot start is left", () =>
    Effect.gen(function*() {
      const { layer: logLayer, logs } = captureLogs()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        CompileQueue.layer({ budget: { tokens: 1000 }, shutdownTimeout: "20 minutes" }).pipe(
          Layer.provideMerge(testEngineLayer)
        ),
        scope
      ).pipe(Effect.provide(logLayer))
      const [queue, engine, close] = [Context.get(context, CompileQueue), Context.get(context, TestEngine), Scope.close(scope, Exit.void)]
      engineUsing(engine, 600)
      for (const bankId of ["a", "b", "c", "d"]) yield* queue.compileNow(bankId)
      yield* settle
      expect(engine.calls).toEqual(["a", "b"]) // 1,000 → 400 → -200: open again after 12 minutes
      const closing = yield* Effect.fork(close)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true) // 12 minutes < the 20-minute deadline: it waits
      yield* TestClock.adjust(12 * MINUTE + 1)
      yield* settle
      // c ran and spent it for 36 more minutes, past the deadline: d is not waited for.
      expect(engine.calls).toEqual(["a", "b", "c"])
      expect(Option.isSome(yield* Fiber.poll(closing))).toBe(true)
      expect(stopLines(logs)).toEqual(["stopped: 1 bank left pending (budget), 0 cut off, state in memory only (no store)"])
    }))

  it.effect("every stop ends with the line: a clean one, and one that cut a compile off", () =>
    Effect.gen(function*() {
      const { layer: logLayer, logs } = captureLogs()
      const storeLayer = yield* sharedMemoryStore
      const clean = yield* openQueue(storeLayer, {}).pipe(Effect.provide(logLayer))
      yield* clean.queue.compileNow("a")
      yield* clean.queue.drain()
      yield* clean.close
      const hanging = yield* openQueue(storeLayer, { shutdownTimeout: "1 second" }).pipe(Effect.provide(logLayer))
      hanging.engine.behavior = () => Effect.never
      yield* hanging.queue.compileNow("stuck")
      yield* hanging.queue.compileNow("queued")
      yield* settle
      const closing = yield* Effect.fork(hanging.close)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(stopLines(logs)).toEqual([
        "stopped: 0 banks left pending, 0 cut off, state flushed",
        "stopped: 1 bank left pending, 1 cut off, state flushed"
      ])
    }))
})

describe("a budget limit changed at restart", () => {
  it.effect("raised: its new headroom at once; lowered: at most what is left under it; each change logged", () =>
    Effect.gen(function*() {
      const storeLayer = yield* sharedMemoryStore
      const open = (tokens: number, bankTokens: number) => {
        const { layer: logLayer, logs } = captureLogs()
        return Effect.map(
          openQueue(storeLayer, { budget: { tokens, bankTokens }, shutdownTimeout: 0 }).pipe(Effect.provide(logLayer)),
          (queue) => ({ ...queue, logs })
        )
      }
      const first = yield* open(1000, 500)
      engineUsing(first.engine, 600)
      yield* first.queue.compileNow("a") // tokens 1,000 → 400; a's own 500 → -100
      yield* first.queue.drain()
      yield* first.queue.compileNow("a")
      yield* settle
      expect((yield* first.queue.stats).budget.deferred).toBe(1)
      yield* first.close

      const raised = yield* open(50_000, 5_000)
      engineUsing(raised.engine, 600)
      expect(raised.logs.map((log) => log.message)).toContain("budget: tokens limit 1,000 → 50,000; available now 49,400")
      yield* settle
      // a spent 600 of its own: 4,400 of the new 5,000 are there, so it runs at once instead of waiting for a refill.
      expect(raised.engine.calls).toEqual(["a"])
      expect((yield* raised.queue.stats).budget.tokensAvailable).toBe(48_800)
      yield* raised.close

      const lowered = yield* open(500, 5_000)
      expect(lowered.logs.map((log) => log.message)).toContain("budget: tokens limit 50,000 → 500; available now 0")
      expect((yield* lowered.queue.stats).budget.tokensAvailable).toBe(0) // 1,200 spent of 500: empty, not in debt
      yield* lowered.close
      const same = yield* open(500, 5_000)
      expect(same.logs.filter((log) => log.message.startsWith("budget:"))).toEqual([]) // stored under 500 since
      yield* same.close
    }))

  it.effect("a level stored before limits were (no limit with it): kept, cut to the limit, and said so", () =>
    Effect.gen(function*() {
      const store = yield* makeMemory
      yield* store.saveBudget!({ tokens: { level: 400, at: 0 }, compiles: null })
      const { layer: logLayer, logs } = captureLogs()
      const { close, queue } = yield* openQueue(Layer.succeed(BankStateStore, store), { budget: { tokens: 50_000 } }).pipe(
        Effect.provide(logLayer)
      )
      expect((yield* queue.stats).budget.tokensAvailable).toBe(400)
      expect(logs.map((log) => log.message)).toContain(
        "budget: tokens limit 50,000; its stored level predates stored limits: kept, at most the limit; available now 400"
      )
      yield* close
    }))
})
