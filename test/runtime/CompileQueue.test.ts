import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  DateTime,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Metric,
  Option,
  Queue,
  TestClock,
  Tracer
} from "effect"
import { CompileEngine, CompileError, CompileMetrics, CompileQueue, CompileResult } from "../../src/index.js"
import { make as makeQueue } from "../../src/internal/runtime/compileQueue.js"
import { captureLogs, instant, queueLayer, retain, TestEngine } from "../support/utils.js"

const DAY = 86_400_000

/** Holds every compile "in flight" until `open`. */
const gated = Effect.gen(function*() {
  const engine = yield* TestEngine
  yield* engine.hold
  return { engine, open: engine.open }
})

const stateOf = (bankId: string) =>
  Effect.flatMap(CompileQueue, (q) => q.bankState(bankId)).pipe(Effect.map(Option.getOrThrow))

const millis = (time: Option.Option<DateTime.Utc>) => Option.map(time, DateTime.toEpochMillis)

describe("CompileQueue — the reference suite, ported", () => {
  it.effect("counter increments", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* queue.notifyRetain("b")
      yield* queue.notifyRetain("b")
      queue.unsafeNotifyRetain("b")
      expect((yield* stateOf("b")).memoriesSinceLastCompile).toBe(3)
    }).pipe(Effect.provide(queueLayer())))

  it.effect("pending at threshold", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* retain("b", 4)
      expect(yield* queue.pendingBanks).toEqual(new Set())
      yield* retain("b", 1)
      expect(yield* queue.pendingBanks).toEqual(new Set(["b"]))
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("dedup: a triggered bank is queued once", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("a", 5)
      expect(yield* Queue.take(engine.started)).toBe("a")
      yield* retain("b", 15) // triggers at 5, 10 and 15, but is queued once
      expect((yield* queue.stats).queued).toBe(1)
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("two banks both compiled", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* retain("a", 5)
      yield* retain("b", 5)
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("counter reset after compile, lastCompileAt set", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* TestClock.adjust("1 hour")
      yield* retain("b", 5)
      yield* queue.drain()
      const state = yield* stateOf("b")
      expect(state.memoriesSinceLastCompile).toBe(0)
      expect(millis(state.lastCompileAt)).toEqual(Option.some(3_600_000))
      expect(state.status).toBe("idle")
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("the worker survives a failing engine", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) =>
        bankId === "bad" ? Effect.fail(new CompileError({ bankId, message: "boom" })) : instant(bankId, 0)
      yield* retain("bad", 5)
      yield* retain("good", 5)
      yield* queue.drain()
      expect(engine.calls).toEqual(["bad", "good"])
      expect((yield* stateOf("good")).memoriesSinceLastCompile).toBe(0)
      expect((yield* stateOf("bad")).consecutiveFailures).toBe(1)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, retry: { maxAttempts: 1 } }))))

  it.effect("drain on an empty queue returns at once", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* queue.drain()
    }).pipe(Effect.provide(queueLayer())))
})

describe("CompileQueue — semantics", () => {
  it.effect("S1: notifyRetain adds n and sets firstRetainAt once", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* TestClock.adjust("1 minute")
      yield* queue.notifyRetain("b", 3)
      yield* TestClock.adjust("1 minute")
      queue.unsafeNotifyRetain("b", 4)
      const state = yield* stateOf("b")
      expect(state.memoriesSinceLastCompile).toBe(7)
      expect(millis(state.firstRetainAt)).toEqual(Option.some(60_000))
    }).pipe(Effect.provide(queueLayer())))

  it.effect("S1: invalid input is ignored with a warning naming the bank; nothing counted or created", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      const rejectedBefore = (yield* Metric.value(CompileMetrics.retainsRejected)).count
      yield* queue.notifyRetain("", 1)
      yield* queue.notifyRetain("b", 0)
      yield* queue.notifyRetain("b", -2)
      yield* queue.notifyRetain("b", 1.5)
      yield* queue.notifyRetain("b", NaN)
      queue.unsafeNotifyRetain("b", Infinity)
      queue.unsafeNotifyRetain("b", "3" as unknown as number)
      queue.unsafeNotifyRetain(42 as unknown as string)
      yield* queue.compileNow("")
      expect((yield* queue.state).size).toBe(0)
      expect(yield* queue.pendingBanks).toEqual(new Set())
      const warnings = logs.filter((log) => log.level === "WARN")
      expect(warnings).toHaveLength(9)
      expect(warnings[1]!.message).toContain(`bank "b"`)
      expect(warnings[1]!.message).toContain("count must be a positive integer")
      expect(warnings[1]!.annotations.bankId).toBe("b")
      expect((yield* Metric.value(CompileMetrics.retainsRejected)).count - rejectedBefore).toBe(9)
      // a valid retain afterwards still sets firstRetainAt
      yield* queue.notifyRetain("b", 2)
      const state = yield* stateOf("b")
      expect(state.memoriesSinceLastCompile).toBe(2)
      expect(Option.isSome(state.firstRetainAt)).toBe(true)
    }).pipe(Effect.provide(queueLayer()), Effect.provide(layer))
  })

  it.effect("S2: the bank is queued synchronously, before notifyRetain returns", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* gated
      queue.unsafeNotifyRetain("b", 4)
      expect((yield* stateOf("b")).status).toBe("idle")
      queue.unsafeNotifyRetain("b")
      expect((yield* stateOf("b")).status).toBe("pending")
      expect((yield* queue.stats).queued).toBe(1)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S3: queued at most once, however often it triggers or compileNow is called", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* queue.compileNow("blocker")
      yield* Queue.take(engine.started)
      yield* retain("b", 50)
      yield* queue.compileNow("b")
      yield* queue.compileNow("b")
      expect((yield* queue.stats).queued).toBe(1)
      yield* open
      yield* queue.drain()
      expect(engine.calls.filter((id) => id === "b")).toHaveLength(1)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S4: single flight under concurrency 4; a trigger during the run is re-checked at its end", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("b", 5)
      yield* Queue.take(engine.started)
      yield* retain("b", 12) // triggers again while running
      expect(yield* queue.pendingBanks).toEqual(new Set())
      expect(yield* queue.runningBanks).toEqual(new Set(["b"]))
      yield* Effect.yieldNow()
      expect(engine.calls).toEqual(["b"]) // the three idle workers did not pick it up
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["b", "b"])
      expect(engine.maxPerBank).toBe(1)
      expect((yield* stateOf("b")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, concurrency: 4 }))))

  it.effect("S5: retains during an in-flight compile are carried; lastCompileAt is the finish time", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("b", 5)
      yield* Queue.take(engine.started)
      yield* retain("b", 3)
      yield* TestClock.adjust("1 minute")
      yield* open
      yield* queue.drain()
      const state = yield* stateOf("b")
      expect(state.memoriesSinceLastCompile).toBe(3)
      expect(millis(state.lastCompileAt)).toEqual(Option.some(60_000))
      expect(engine.calls).toEqual(["b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S5: if the carried rest still triggers, the bank is queued again", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("b", 5)
      yield* Queue.take(engine.started)
      yield* retain("b", 6)
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["b", "b"])
      expect((yield* stateOf("b")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S6: a result with error counts as a compile, is logged at error level and kept", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      const before = (yield* Metric.value(CompileMetrics.compilesReportedError)).count
      engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, error: "partial: 2 scopes failed" }))
      yield* TestClock.adjust("1 minute")
      yield* retain("b", 5)
      yield* queue.drain()
      const state = yield* stateOf("b")
      expect(state.memoriesSinceLastCompile).toBe(0)
      expect(millis(state.lastCompileAt)).toEqual(Option.some(60_000))
      expect(state.lastError).toEqual(Option.some("partial: 2 scopes failed"))
      expect(state.consecutiveFailures).toBe(0)
      const errors = logs.filter((log) => log.level === "ERROR")
      expect(errors).toHaveLength(1)
      expect(errors[0]!.message).toContain("partial: 2 scopes failed")
      expect(errors[0]!.annotations.bankId).toBe("b")
      expect((yield* Metric.value(CompileMetrics.compilesReportedError)).count - before).toBe(1)
      // the next clean compile clears it
      engine.behavior = instant
      yield* retain("b", 5)
      yield* queue.drain()
      expect((yield* stateOf("b")).lastError).toEqual(Option.none())
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } })), Effect.provide(layer))
  })

  it.effect("S7: a failure changes neither counter nor lastCompileAt; retried with backoff up to maxAttempts", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.fail(new CompileError({ bankId, message: "engine down" }))
      yield* retain("b", 5)
      yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      expect(engine.calls).toHaveLength(1)
      let state = yield* stateOf("b")
      expect(state.status).toBe("pending") // waiting for its retry
      expect(state.memoriesSinceLastCompile).toBe(5)
      expect(state.lastCompileAt).toEqual(Option.none())
      expect(state.consecutiveFailures).toBe(1)
      expect(state.lastError).toEqual(Option.some("engine down"))
      yield* TestClock.adjust("499 millis") // jitter is at least 0.5 × 1 s
      expect(engine.calls).toHaveLength(1)
      yield* TestClock.adjust("1001 millis") // at most 1.5 × 1 s
      expect(engine.calls).toHaveLength(2)
      yield* TestClock.adjust("3 seconds") // second delay: at most 1.5 × 2 s
      expect(engine.calls).toHaveLength(3)
      yield* TestClock.adjust("1 minute")
      expect(engine.calls).toHaveLength(3) // attempts spent
      state = yield* stateOf("b")
      expect(state.status).toBe("idle")
      expect(state.consecutiveFailures).toBe(3)
      expect(state.memoriesSinceLastCompile).toBe(5)
      // retains do not call a broken engine again before the next sweep …
      yield* retain("b", 10)
      expect(yield* queue.pendingBanks).toEqual(new Set())
      // … the sweep does, and a success resets the failures
      engine.behavior = instant
      yield* TestClock.adjust("1 hour")
      yield* queue.drain()
      expect(engine.calls).toHaveLength(4)
      state = yield* stateOf("b")
      expect(state.consecutiveFailures).toBe(0)
      expect(state.memoriesSinceLastCompile).toBe(0)
      expect(state.lastError).toEqual(Option.none())
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S7: a failing bank does not occupy a worker during its backoff", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId, call) =>
        bankId === "bad" && call === 1 ? Effect.fail(new CompileError({ bankId, message: "once" })) : instant(bankId, call)
      yield* retain("bad", 5)
      yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      yield* retain("good", 5)
      yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      expect(engine.calls).toEqual(["bad", "good"]) // good ran while bad waited, with one worker
      expect(yield* queue.pendingBanks).toEqual(new Set(["bad"]))
      yield* TestClock.adjust("2 seconds")
      yield* queue.drain()
      expect(engine.calls).toEqual(["bad", "good", "bad"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, concurrency: 1 }))))

  it.effect("S7: defects, thrown exceptions, self-interruption and timeouts are failures; the worker lives on", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => {
        switch (bankId) {
          case "dies":
            return Effect.die(new Error("kaput"))
          case "throws":
            return Effect.sync(() => {
              throw new Error("thrown")
            })
          case "interrupts":
            return Effect.interrupt
          case "hangs":
            return Effect.never
          default:
            return instant(bankId, 0)
        }
      }
      for (const id of ["dies", "throws", "interrupts", "hangs", "ok"]) yield* retain(id, 5)
      yield* TestClock.adjust("10 seconds")
      yield* queue.drain()
      const states = yield* queue.state
      expect(states.get("dies")!.lastError).toEqual(Option.some("defect: kaput"))
      expect(states.get("throws")!.lastError).toEqual(Option.some("defect: thrown"))
      expect(states.get("interrupts")!.lastError).toEqual(Option.some("interrupted"))
      expect(states.get("hangs")!.lastError).toEqual(Option.some("compile timed out after 10s"))
      for (const id of ["dies", "throws", "interrupts", "hangs"]) {
        expect(states.get(id)!.status).toBe("idle")
        expect(states.get(id)!.consecutiveFailures).toBe(1)
        expect(states.get(id)!.memoriesSinceLastCompile).toBe(5)
      }
      expect(states.get("ok")!.memoriesSinceLastCompile).toBe(0)
      expect(yield* queue.runningBanks).toEqual(new Set())
    }).pipe(
      Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, compileTimeout: "10 seconds", retry: { maxAttempts: 1 } }))
    ))

  it.effect("S8: an idle stale bank compiles through the sweep alone", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.compileNow("b")
      yield* queue.drain()
      yield* retain("b", 15) // below sizeThreshold; not stale yet
      yield* TestClock.adjust("6 days")
      expect(engine.calls).toEqual(["b"])
      yield* TestClock.adjust("1 day") // the sweep at day 7 finds it stale (inclusive)
      yield* queue.drain()
      expect(engine.calls).toEqual(["b", "b"])
      expect((yield* stateOf("b")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer())))

  it.effect("S8: a never-compiled bank compiles through the sweep, from its first retain", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* retain("b", 10)
      yield* TestClock.adjust("7 days")
      yield* queue.drain()
      expect(engine.calls).toEqual(["b"])
      // below stalenessMinMemories: no compile however old
      yield* retain("c", 9)
      yield* TestClock.adjust("10 days")
      expect(engine.calls).toEqual(["b"])
    }).pipe(Effect.provide(queueLayer())))

  it.effect("staleness on the retain path: a retain on a stale bank queues it at once, without the sweep", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* retain("b", 9)
      yield* TestClock.adjust(6.99 * DAY)
      yield* retain("b", 1) // 10 memories, not stale yet
      expect(yield* queue.pendingBanks).toEqual(new Set())
      yield* TestClock.adjust(0.01 * DAY)
      yield* retain("b", 1)
      expect(yield* queue.pendingBanks).toEqual(new Set(["b"]))
      yield* queue.drain()
      // the staleness clock restarts at the compile
      yield* retain("b", 10)
      yield* TestClock.adjust(6.99 * DAY)
      yield* retain("b", 1)
      expect(yield* queue.pendingBanks).toEqual(new Set())
      yield* TestClock.adjust(0.01 * DAY)
      yield* retain("b", 1)
      expect(yield* queue.pendingBanks).toEqual(new Set(["b"]))
    }).pipe(Effect.provide(queueLayer({ sweepInterval: "1000 days" }))))

  it.effect("S9: a full queue drops the bank with one warning, counts it, and the sweep re-offers it", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      const droppedBefore = (yield* Metric.value(CompileMetrics.dropped)).count
      yield* retain("a", 5)
      yield* Queue.take(engine.started) // a runs
      yield* retain("b", 5) // b fills the queue
      yield* retain("c", 5) // c is dropped
      yield* retain("c", 5) // dropped again, no second warning
      const states = yield* queue.state
      expect(states.get("c")!.status).toBe("idle")
      expect((yield* queue.stats).queued).toBe(1)
      const warnings = logs.filter((log) => log.level === "WARN" && log.annotations.bankId === "c")
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.message).toContain("queue full")
      // every retain that found c due and the queue full is one drop: the 5th, then 5 more
      expect((yield* Metric.value(CompileMetrics.dropped)).count - droppedBefore).toBe(6)
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b"])
      yield* TestClock.adjust("1 hour")
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b", "c"])
      expect((yield* stateOf("c")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, maxQueueSize: 1 })), Effect.provide(layer))
  })

  it.effect("S11: drain times out while a compile is blocked, and succeeds after", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("b", 5)
      yield* Queue.take(engine.started) // in flight: the queue itself is empty
      const timedOut = yield* Effect.fork(queue.drain({ timeout: "2 seconds" }))
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Fiber.await(timedOut)
      expect(Exit.isFailure(exit) && Cause.isTimeoutException(Cause.squash(exit.cause))).toBe(true)
      const waiting = yield* Effect.fork(queue.drain())
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* open
      yield* Fiber.join(waiting)
      expect((yield* stateOf("b")).status).toBe("idle")
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("S12: up to `concurrency` distinct banks at once, started in FIFO order", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      const banks = ["b1", "b2", "b3", "b4", "b5", "b6"]
      for (const id of banks) yield* retain(id, 5)
      for (let n = 0; n < 4; n++) yield* Queue.take(engine.started)
      yield* Effect.yieldNow()
      expect(engine.calls).toEqual(["b1", "b2", "b3", "b4"])
      expect((yield* queue.runningBanks).size).toBe(4)
      expect(yield* queue.pendingBanks).toEqual(new Set(["b5", "b6"]))
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(banks)
      expect(engine.maxOverall).toBe(4)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, concurrency: 4 }))))
})

describe("CompileQueue — corner cases", () => {
  it.effect("maxAttempts 1: no retry", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.fail(new CompileError({ bankId, message: "no" }))
      yield* retain("b", 5)
      yield* queue.drain()
      yield* TestClock.adjust("59 minutes")
      expect(engine.calls).toEqual(["b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, retry: { maxAttempts: 1 } }))))

  it.effect("a bank waiting for a retry is pending, waited for by drain, not queued again by retains", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId, call) =>
        call === 1 ? Effect.fail(new CompileError({ bankId, message: "once" })) : instant(bankId, call)
      yield* retain("b", 5)
      yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      yield* retain("b", 20)
      expect(yield* queue.pendingBanks).toEqual(new Set(["b"]))
      expect((yield* queue.stats).queued).toBe(0)
      const draining = yield* Effect.fork(queue.drain({ timeout: "1 minute" }))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(draining)
      expect(engine.calls).toEqual(["b", "b"])
      expect((yield* stateOf("b")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("compileNow: below threshold, on an unknown bank, and on a running bank", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* retain("low", 2)
      yield* queue.compileNow("low")
      yield* queue.compileNow("fresh")
      yield* Queue.take(engine.started)
      yield* queue.compileNow("low") // running: queued again when it ends
      expect((yield* stateOf("fresh")).firstRetainAt).toEqual(Option.none())
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["low", "fresh", "low"])
      expect((yield* stateOf("fresh")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer())))

  it.effect("compileNow on a full queue keeps the request for the sweep", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      yield* queue.compileNow("a")
      yield* Queue.take(engine.started)
      yield* queue.compileNow("b")
      yield* queue.compileNow("c") // dropped
      yield* open
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b"])
      yield* TestClock.adjust("1 hour")
      yield* queue.drain()
      expect(engine.calls).toEqual(["a", "b", "c"])
    }).pipe(Effect.provide(queueLayer({ maxQueueSize: 1 }))))

  it.effect("maxQueueSize 0 is unbounded", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { open } = yield* gated
      for (let n = 0; n < 500; n++) yield* retain(`b${n}`, 5)
      const stats = yield* queue.stats
      expect(stats.pending + stats.running).toBe(500)
      expect(stats.queued).toBeGreaterThanOrEqual(499)
      yield* open
      yield* queue.drain()
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, maxQueueSize: 0 }))))

  it.effect("sizeThreshold 0: every retain-free bank is swept too", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.compileNow("b")
      yield* queue.drain()
      yield* TestClock.adjust("1 hour")
      yield* queue.drain()
      expect(engine.calls).toEqual(["b", "b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 0 } }))))

  it.effect("very long intervals still fire (timers beyond 24.8 days)", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* retain("b", 10)
      yield* TestClock.adjust("60 days")
      yield* queue.drain()
      expect(engine.calls).toEqual(["b"])
    }).pipe(Effect.provide(queueLayer({ config: { stalenessDays: 30 }, sweepInterval: "40 days" }))))
})

describe("CompileQueue — observability", () => {
  it.effect("metrics count retains, enqueues and compiles; logs carry bankId", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      const value = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
      const [retains, enqueued, succeeded, failed] = [
        yield* value(CompileMetrics.retains),
        yield* value(CompileMetrics.enqueued),
        yield* value(CompileMetrics.compilesSucceeded),
        yield* value(CompileMetrics.compilesFailed)
      ]
      engine.behavior = (bankId) =>
        bankId === "bad" ? Effect.fail(new CompileError({ bankId, message: "nope" })) : instant(bankId, 0)
      yield* queue.notifyRetain("a", 7)
      yield* queue.notifyRetain("bad", 5)
      yield* queue.drain()
      expect((yield* value(CompileMetrics.retains)) - retains).toBe(12)
      expect((yield* value(CompileMetrics.enqueued)) - enqueued).toBe(2)
      expect((yield* value(CompileMetrics.compilesSucceeded)) - succeeded).toBe(1)
      expect((yield* value(CompileMetrics.compilesFailed)) - failed).toBe(1)
      expect((yield* Metric.value(CompileMetrics.compileDuration)).count).toBeGreaterThanOrEqual(2)
      const failure = logs.find((log) => log.message.includes("nope"))!
      expect(failure.annotations.bankId).toBe("bad")
    }).pipe(
      Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, retry: { maxAttempts: 1 } })),
      Effect.provide(layer)
    )
  })
})

describe("CompileQueue — metrics published in batches", () => {
  it.live("a synchronous burst is in the metrics once its task ends; the queue gauge follows starts exactly", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
      const gauge = Effect.map(Metric.value(CompileMetrics.queueSize), (s) => s.value)
      const retains = yield* count(CompileMetrics.retains)
      const enqueued = yield* count(CompileMetrics.enqueued)
      const size = yield* gauge
      // 10,000 retains over 100 banks, threshold 10: every bank queued once, all in one task.
      for (let n = 0; n < 10_000; n++) queue.unsafeNotifyRetain(`b${n % 100}`)
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      expect((yield* count(CompileMetrics.retains)) - retains).toBe(10_000)
      expect((yield* count(CompileMetrics.enqueued)) - enqueued).toBe(100)
      expect((yield* gauge) - size).toBe(100 - engine.calls.length) // the running ones left the queue
      yield* engine.open
      yield* queue.drain()
      expect((yield* gauge) - size).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 10 } }))))
})

describe("CompileQueue — the internal compileLogs option", () => {
  const run = (compileLogs: boolean | undefined) => {
    const { layer, logs } = captureLogs()
    const engine = Layer.succeed(CompileEngine, {
      run: (bankId) =>
        bankId === "bad"
          ? Effect.fail(new CompileError({ bankId, message: "nope" }))
          : Effect.as(Effect.logInfo(`engine ran ${bankId}`), new CompileResult({ bankId }))
    })
    return Effect.gen(function*() {
      const queue = yield* makeQueue({ config: { sizeThreshold: 1 }, retry: { maxAttempts: 1 } }, { compileLogs })
      queue.unsafeNotifyRetain("a")
      queue.unsafeNotifyRetain("bad")
      yield* queue.drain()
      return logs
    }).pipe(
      Effect.scoped,
      Effect.provide(engine),
      Logger.withMinimumLogLevel(LogLevel.Debug),
      Effect.provide(layer)
    )
  }

  it.effect("by default a compile's logs carry its bankId and each finished compile logs a debug line", () =>
    Effect.gen(function*() {
      const logs = yield* run(undefined)
      expect(logs.find((log) => log.message === "engine ran a")!.annotations.bankId).toBe("a")
      expect(logs.some((log) => log.level === "DEBUG" && log.message.startsWith("compile finished"))).toBe(true)
    }))

  it.effect("false (the tuner's replay): no annotation, no debug line per compile; failures are still logged", () =>
    Effect.gen(function*() {
      const logs = yield* run(false)
      expect(logs.find((log) => log.message === "engine ran a")!.annotations.bankId).toBeUndefined()
      expect(logs.some((log) => log.message.startsWith("compile finished"))).toBe(false)
      expect(logs.some((log) => log.level === "ERROR" && log.message.includes("nope"))).toBe(true)
    }))
})

describe("CompileQueue — sweep fairness", () => {
  it.effect("a sweep that runs out of room resumes where it stopped, so an always-due bank cannot starve the rest", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      // Blockers hold the only worker until their round's gate opens; "a" always fails, so it stays due.
      let gate = yield* Deferred.make<void>()
      engine.behavior = (bankId, call) =>
        bankId.startsWith("blocker")
          ? Effect.as(Deferred.await(gate), new CompileResult({ bankId }))
          : bankId === "a"
          ? Effect.fail(new CompileError({ bankId, message: "always" }))
          : instant(bankId, call)
      for (const id of ["a", "b", "c"]) yield* retain(id, 1)
      yield* TestClock.adjust("1 day") // all three are now stale: only a sweep queues them
      for (const expected of ["a", "b", "c", "a"]) {
        gate = yield* Deferred.make<void>()
        yield* Queue.takeAll(engine.started)
        yield* queue.compileNow(`blocker-${expected}`)
        expect(yield* Queue.take(engine.started)).toBe(`blocker-${expected}`)
        yield* queue.sweepNow // room for one bank
        const pending = yield* queue.pendingBanks
        yield* Deferred.succeed(gate, undefined)
        expect(pending).toEqual(new Set([expected]))
        yield* queue.drain()
      }
    }).pipe(Effect.provide(queueLayer({
      config: { sizeThreshold: 1000, stalenessDays: 1, stalenessMinMemories: 1 },
      maxQueueSize: 1,
      sweepInterval: "1000 days",
      retry: { maxAttempts: 1 }
    }))))
})

describe("CompileQueue — listing", () => {
  it.effect("listBanks pages in first-seen order, filters by status", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const { engine, open } = yield* gated
      for (let n = 0; n < 5; n++) yield* retain(`b${n}`, n === 2 ? 5 : 1)
      yield* Queue.take(engine.started) // b2 runs (taken before blocker is asked for: manual compiles go first)
      yield* queue.compileNow("blocker") // blocker waits
      const first = yield* queue.listBanks({ limit: 2 })
      expect(first.banks.map((b) => b.bankId)).toEqual(["b0", "b1"])
      const second = yield* queue.listBanks({ limit: 2, cursor: Option.getOrThrow(first.nextCursor) })
      expect(second.banks.map((b) => b.bankId)).toEqual(["b2", "b3"])
      const last = yield* queue.listBanks({ limit: 3, cursor: Option.getOrThrow(second.nextCursor) })
      expect(last.banks.map((b) => b.bankId)).toEqual(["b4", "blocker"])
      expect(last.nextCursor).toEqual(Option.none())
      expect((yield* queue.listBanks({ status: "running" })).banks.map((b) => b.bankId)).toEqual(["b2"])
      expect((yield* queue.listBanks({ status: "pending" })).banks.map((b) => b.bankId)).toEqual(["blocker"])
      yield* open
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))
})

describe("CompileQueue — tracing", () => {
  it.effect("with a tracer installed, each compile is a span CompileQueue.compile with attribute bankId", () => {
    const spans: Array<{ name: string; bankId: unknown }> = []
    const recording = Tracer.make({
      span: (name, parent, context, links, startTime, kind) => {
        const span = Effect.runSync(Effect.tracer).span(name, parent, context, links, startTime, kind)
        const record = { name, bankId: undefined as unknown }
        spans.push(record)
        const setAttribute = span.attribute.bind(span)
        span.attribute = (key, value) => {
          if (key === "bankId") record.bankId = value
          setAttribute(key, value)
        }
        return span
      },
      context: (f) => f()
    })
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* retain("b", 5)
      yield* queue.drain()
      expect(spans.filter((s) => s.name === "CompileQueue.compile")).toEqual([{ name: "CompileQueue.compile", bankId: "b" }])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } })), Effect.withTracer(recording))
  })
})
