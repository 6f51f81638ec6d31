/**
 * The write-behind under a store that fails in every way a real one does — a typed error, a defect (what @effect/sql
 * makes of a failed COMMIT), an exception thrown by the store, an interruption — on the TestClock: it never stops,
 * keeps every change until a flush commits it, backs off to at most 5 s, says what is going on (logs, health,
 * metrics), and `flush` waits for a flush that holds the caller's changes (group commit).
 */
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Deferred, Effect, Exit, Fiber, Layer, Metric, Option, TestClock } from "effect"
import {
  BankStateStore,
  type BankStateStoreService,
  BankStoreError,
  type PersistedBank
} from "../../src/BankStateStore.js"
import * as CompileMetrics from "../../src/CompileMetrics.js"
import { supervised } from "../../src/internal/runtime/loop.js"
import { CompileQueue } from "../../src/CompileQueue.js"
import { captureLogs, openQueue, queueLayer, testEngineLayer } from "../support/utils.js"

type Outcome = "ok" | "fail" | "die" | "throw" | "interrupt"

/** A store whose saves go as `script` says, one entry per call (then "ok"); it records every call's time. */
const scriptedStore = (script: Array<Outcome>) => {
  const saved = new Map<string, PersistedBank>()
  const calls: Array<{ readonly at: number; readonly outcome: Outcome; readonly banks: number }> = []
  const store: BankStateStoreService = {
    load: Effect.succeed([]),
    save: (banks) => {
      const outcome = script.shift() ?? "ok"
      if (outcome === "throw") {
        calls.push({ at: NaN, outcome, banks: banks.length })
        throw new Error("the driver threw")
      }
      return Effect.flatMap(Clock.currentTimeMillis, (at) => {
        calls.push({ at, outcome, banks: banks.length })
        switch (outcome) {
          case "fail":
            return Effect.fail(new BankStoreError({ operation: "save", message: "database or disk is full" }))
          case "die":
            return Effect.die(new SqlError({ message: "Client has encountered a connection error and is not queryable" }))
          case "interrupt":
            return Effect.interrupt
          default:
            return Effect.sync(() => {
              for (const bank of banks) saved.set(bank.bankId, bank)
            })
        }
      })
    }
  }
  return { store, saved, calls, layer: Layer.succeed(BankStateStore, store) }
}

const failures = Effect.map(Metric.value(CompileMetrics.storeFlushFailures), (state) => state.count)

describe("write-behind", () => {
  it.effect("a typed error, a defect, a thrown exception and an interruption stop no later flush; nothing is lost", () =>
    Effect.gen(function*() {
      const { calls, layer, saved } = scriptedStore(["fail", "die", "throw", "interrupt"])
      const before = yield* failures
      const { close, queue } = yield* openQueue(layer, { config: { sizeThreshold: 1000 }, flushInterval: "1 second" })
      for (let n = 0; n < 50; n++) queue.unsafeNotifyRetain(`b${n % 5}`)
      // 1 s, then the backoff: 2 s, 4 s, 5 s (capped), then the fifth attempt commits.
      for (const step of ["1 second", "2 seconds", "4 seconds", "5 seconds"] as const) {
        yield* TestClock.adjust(step)
        queue.unsafeNotifyRetain("late") // changes made between failed flushes join the next one
      }
      expect(saved.size).toBe(0)
      yield* TestClock.adjust("5 seconds")
      expect(calls.map((call) => call.outcome)).toEqual(["fail", "die", "throw", "interrupt", "ok"])
      expect(Array.from(saved.values(), (bank) => [bank.bankId, bank.memories]).sort()).toEqual([
        ["b0", 10], ["b1", 10], ["b2", 10], ["b3", 10], ["b4", 10], ["late", 4]
      ])
      expect((yield* failures) - before).toBe(4)
      // And it goes on flushing afterwards.
      queue.unsafeNotifyRetain("after")
      yield* TestClock.adjust("1 second")
      expect(saved.get("after")?.memories).toBe(1)
      yield* close
    }))

  it.effect("backs off 1, 2, 4 s, then every 5 s however long the store is down", () =>
    Effect.gen(function*() {
      const { calls, layer } = scriptedStore(Array.from({ length: 8 }, (): Outcome => "fail"))
      const { close, queue } = yield* openQueue(layer, { flushInterval: "1 second" })
      queue.unsafeNotifyRetain("a")
      for (let n = 0; n < 40; n++) yield* TestClock.adjust("1 second")
      const gaps = calls.slice(1).map((call, n) => call.at - calls[n]!.at)
      expect(calls[0]!.at).toBe(1000)
      expect(gaps.slice(0, 8)).toEqual([2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000])
      yield* close
    }))

  it.effect("health, logs and metrics say what is going on: WARN with the cause, ERROR after 30 s, INFO when back", () =>
    Effect.gen(function*() {
      const { logs, layer: logLayer } = captureLogs()
      const { layer } = scriptedStore(Array.from({ length: 9 }, (): Outcome => "die"))
      const { close, queue } = yield* openQueue(layer, { flushInterval: "1 second" }).pipe(Effect.provide(logLayer))
      for (let n = 0; n < 3; n++) queue.unsafeNotifyRetain(`h${n}`)
      const healthy = Option.getOrThrow(Option.fromNullable((yield* queue.stats).store))
      expect(healthy).toMatchObject({ healthy: true, unflushed: 3, consecutiveFailures: 0, lastError: null })
      yield* TestClock.adjust("1 second")
      const failing = (yield* queue.stats).store!
      expect(failing.healthy).toBe(false)
      expect(failing.unhealthySince?.epochMillis).toBe(1000)
      expect(failing).toMatchObject({ unflushed: 3, consecutiveFailures: 1, failures: 1 })
      expect(failing.lastError).toContain("not queryable (a defect)")
      expect((yield* Metric.value(CompileMetrics.storeHealthy)).value).toBe(0)
      expect((yield* Metric.value(CompileMetrics.storeUnflushed)).value).toBeGreaterThanOrEqual(3)
      const warnings = logs.filter((log) => log.level === "WARN" && log.message.includes("flushing bank state failed"))
      expect(warnings).toHaveLength(1)
      for (let n = 0; n < 45; n++) yield* TestClock.adjust("1 second")
      expect(logs.some((log) => log.level === "ERROR" && log.message.includes("flushing bank state failed"))).toBe(true)
      expect((yield* queue.stats).store).toMatchObject({ healthy: true, unflushed: 0, consecutiveFailures: 0, failures: 9 })
      expect(logs.some((log) => log.level === "INFO" && log.message.includes("works again"))).toBe(true)
      expect((yield* Metric.value(CompileMetrics.storeHealthy)).value).toBe(1)
      yield* close
    }))

  it.effect("flush runs the next flush at once and answers once it committed; callers waiting together share it", () =>
    Effect.gen(function*() {
      const { calls, layer, saved } = scriptedStore([])
      const { close, queue } = yield* openQueue(layer, { flushInterval: "1 hour" })
      queue.unsafeNotifyRetain("x", 3)
      queue.unsafeNotifyRetain("y")
      const waiting = yield* Effect.all([queue.flush, queue.flush, queue.flush], { concurrency: "unbounded" }).pipe(
        Effect.fork
      )
      yield* TestClock.adjust("0 millis")
      yield* Fiber.join(waiting)
      expect(calls).toHaveLength(1)
      expect(saved.get("x")?.memories).toBe(3)
      yield* close
    }))

  it.effect("a flush already under way does not answer for changes made after it took its list", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const saved = new Map<string, PersistedBank>()
      const slow: BankStateStoreService = {
        load: Effect.succeed([]),
        save: (banks) => Effect.zipRight(Deferred.await(gate), Effect.sync(() => banks.forEach((b) => saved.set(b.bankId, b))))
      }
      const { close, queue } = yield* openQueue(Layer.succeed(BankStateStore, slow), { flushInterval: "1 hour" })
      queue.unsafeNotifyRetain("first")
      const first = yield* Effect.fork(queue.flush)
      yield* TestClock.adjust("0 millis") // the flush takes "first" and waits on the gate
      queue.unsafeNotifyRetain("second")
      const second = yield* Effect.fork(queue.flush)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* TestClock.adjust("0 millis")
      yield* Fiber.join(second)
      expect(saved.has("second")).toBe(true)
      yield* close
    }))

  it.effect("a flush stuck past 30 s (an uninterruptible COMMIT on a silent connection) fails, and its banks go in the next", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const saved = new Map<string, PersistedBank>()
      let calls = 0
      const stuckOnce: BankStateStoreService = {
        load: Effect.succeed([]),
        save: (banks) =>
          Effect.suspend(() => {
            const stuck = calls++ === 0
            const commit = Effect.sync(() => banks.forEach((bank) => saved.set(bank.bankId, bank)))
            return stuck ? Effect.uninterruptible(Effect.zipRight(Deferred.await(gate), commit)) : commit
          })
      }
      const { close, queue } = yield* openQueue(Layer.succeed(BankStateStore, stuckOnce), { flushInterval: "1 second" })
      queue.unsafeNotifyRetain("stuck", 4)
      yield* TestClock.adjust("1 second") // the first flush takes "stuck" and hangs
      expect((yield* queue.stats).store).toMatchObject({ healthy: true, unflushed: 1 })
      yield* TestClock.adjust("30 seconds")
      expect((yield* queue.stats).store).toMatchObject({ healthy: false, unflushed: 1 })
      expect((yield* queue.stats).store?.lastError).toContain("did not end within 30s")
      yield* TestClock.adjust("2 seconds") // the retry writes the bank as it is now
      expect(saved.get("stuck")?.memories).toBe(4)
      expect((yield* queue.stats).store).toMatchObject({ healthy: true, unflushed: 0 })
      yield* Deferred.succeed(gate, undefined) // the stuck flush ends at last: nothing breaks
      queue.unsafeNotifyRetain("stuck")
      yield* TestClock.adjust("1 second")
      expect(saved.get("stuck")?.memories).toBe(5)
      yield* close
    }))

  it.effect("a flush that hangs interruptibly (waiting for a connection) past 30 s is counted unflushed once, not twice", () =>
    Effect.gen(function*() {
      const saved = new Map<string, PersistedBank>()
      let calls = 0
      const hangsOnce: BankStateStoreService = {
        load: Effect.succeed([]),
        save: (banks) =>
          calls++ === 0 ? Effect.never : Effect.sync(() => banks.forEach((bank) => saved.set(bank.bankId, bank)))
      }
      const { close, queue } = yield* openQueue(Layer.succeed(BankStateStore, hangsOnce), { flushInterval: "1 second" })
      queue.unsafeNotifyRetain("hung", 2)
      yield* TestClock.adjust("1 second")
      expect((yield* queue.stats).store).toMatchObject({ healthy: true, unflushed: 1 })
      yield* TestClock.adjust("30 seconds") // the timeout interrupts the flush, which ends at once
      expect((yield* queue.stats).store).toMatchObject({ healthy: false, unflushed: 1 })
      yield* TestClock.adjust("2 seconds")
      expect(saved.get("hung")?.memories).toBe(2)
      expect((yield* queue.stats).store).toMatchObject({ healthy: true, unflushed: 0 })
      queue.unsafeNotifyRetain("later")
      expect((yield* queue.stats).store?.unflushed).toBe(1)
      yield* close
    }))

  it.effect("flush fails with BankStoreError when its flush fails; a later flush still stores the change", () =>
    Effect.gen(function*() {
      const { layer, saved } = scriptedStore(["fail"])
      const { close, queue } = yield* openQueue(layer, { flushInterval: "1 hour" })
      queue.unsafeNotifyRetain("kept", 2)
      const waiting = yield* Effect.fork(queue.flush)
      yield* TestClock.adjust("0 millis")
      const exit = yield* Fiber.await(waiting)
      expect(Exit.isFailure(exit) && Option.getOrThrow(Cause.failureOption(exit.cause))._tag).toBe("BankStoreError")
      expect(saved.size).toBe(0)
      // The backoff after a failure is not cut short by callers: the store gets its rest.
      const retry = yield* Effect.fork(queue.flush)
      yield* TestClock.adjust("1 hour")
      yield* Fiber.join(retry)
      expect(saved.get("kept")?.memories).toBe(2)
      yield* close
    }))

  it.effect("a close with the store down is bounded and says how many changes it could not store", () =>
    Effect.gen(function*() {
      const { logs, layer: logLayer } = captureLogs()
      const { layer } = scriptedStore(Array.from({ length: 1000 }, (): Outcome => "fail"))
      const { close, queue } = yield* openQueue(layer, { flushInterval: "1 second" }).pipe(Effect.provide(logLayer))
      for (let n = 0; n < 7; n++) queue.unsafeNotifyRetain(`c${n}`)
      const closing = yield* Effect.fork(close)
      for (let n = 0; n < 12; n++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      // The stop's one line says so, at error level.
      expect(logs.filter((log) => log.message.startsWith("stopped:")).map((log) => [log.level, log.message])).toEqual([
        ["ERROR", "stopped: 0 banks left pending, 0 cut off, state not flushed: 7 changed banks not stored (the final flush kept failing)"]
      ])
      const after = yield* Effect.exit(queue.flush)
      expect(Exit.isFailure(after)).toBe(true)
    }))

  it.effect("a queue closed by interrupting its fiber (SIGTERM in a service) still runs its final flush", () =>
    Effect.gen(function*() {
      const { layer, saved } = scriptedStore([])
      const ready = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const queue = yield* CompileQueue.make({ flushInterval: "1 hour" })
        queue.unsafeNotifyRetain("kept", 3)
        yield* Deferred.succeed(ready, undefined)
        return yield* Effect.never
      })).pipe(Effect.provide(Layer.merge(layer, testEngineLayer))))
      yield* Deferred.await(ready)
      yield* Fiber.interrupt(fiber)
      expect(saved.get("kept")?.memories).toBe(3)
    }))

  it.effect("without a store, flush succeeds at once and stats have no store", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      queue.unsafeNotifyRetain("memory-only")
      yield* queue.flush
      expect((yield* queue.stats).store).toBeUndefined()
    }).pipe(Effect.provide(queueLayer())))
})

describe("supervised loops", () => {
  it.effect("a loop that ends with a defect is started again, and says so at ERROR", () =>
    Effect.gen(function*() {
      const { logs, layer } = captureLogs()
      let rounds = 0
      const done = yield* Deferred.make<void>()
      const loop = Effect.suspend(() => {
        rounds++
        if (rounds < 3) return Effect.die(new Error(`round ${rounds} broke`))
        return Effect.zipRight(Deferred.succeed(done, undefined), Effect.never)
      })
      const fiber = yield* Effect.fork(supervised("the test loop", loop).pipe(Effect.provide(layer)))
      yield* Deferred.await(done)
      expect(rounds).toBe(3)
      expect(logs.filter((log) => log.level === "ERROR" && log.message.includes("the test loop stopped unexpectedly")))
        .toHaveLength(2)
      yield* Fiber.interrupt(fiber)
    }))
})
