/**
 * `recentCompiles` and `runningCompiles`: the history's capacity, its order (newest first), its filters, what each
 * record says, and that it is written per engine run only.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, DateTime, Effect, Exit, Layer, Option, Queue, TestClock } from "effect"
import {
  CompileError,
  CompileQueue,
  CompileQueueOptionsError,
  CompileRecord,
  CompileResult
} from "../../src/index.js"
import { queueLayer, retain, TestEngine } from "../support/utils.js"

const millis = DateTime.toEpochMillis

const compileEach = (banks: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const queue = yield* CompileQueue
    for (const bankId of banks) {
      yield* retain(bankId, 2)
      yield* queue.drain()
      yield* TestClock.adjust("1 second")
    }
  })

describe("recentCompiles", () => {
  it.effect("is empty on a new queue and after retains that trigger nothing", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* retain("a", 1)
      expect(yield* queue.recentCompiles()).toEqual([])
      expect(yield* queue.runningCompiles()).toEqual([])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 } }))))

  it.effect("newest first, each run with its bank, reason, times, counts and tokens", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) =>
        Effect.as(Effect.sleep("250 millis"), new CompileResult({ bankId, tokensUsed: bankId.length * 100 }))
      yield* TestClock.adjust("10 seconds")
      yield* retain("bank-1", 2)
      yield* TestClock.adjust("250 millis")
      yield* queue.drain()
      yield* queue.notifyForget("bank-22", 3)
      yield* queue.compileNow("bank-22")
      yield* TestClock.adjust("250 millis")
      yield* queue.drain()
      const records = yield* queue.recentCompiles()
      expect(records.map((record) => [record.bankId, record.reason])).toEqual([["bank-22", "manual"], ["bank-1", "size"]])
      const [second, first] = records
      expect(first).toBeInstanceOf(CompileRecord)
      expect(first).toMatchObject({ outcome: "success", memories: 2, forgets: 0, tokensUsed: 600, error: Option.none() })
      expect([millis(first!.startedAt), millis(first!.endedAt)]).toEqual([10_000, 10_250])
      expect(second).toMatchObject({ memories: 0, forgets: 3, tokensUsed: 700 })
      expect([millis(second!.startedAt), millis(second!.endedAt)]).toEqual([10_250, 10_500])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2, forgetThreshold: 100 } }))))

  it.effect("keeps at most historyCapacity runs: the oldest go first", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* compileEach(["a", "b", "c", "d", "e"])
      expect((yield* queue.recentCompiles()).map((record) => record.bankId)).toEqual(["e", "d", "c"])
      yield* compileEach(["f"])
      expect((yield* queue.recentCompiles()).map((record) => record.bankId)).toEqual(["f", "e", "d"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 }, historyCapacity: 3 }))))

  it.effect("holds 1,000 runs by default", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      for (let n = 0; n < 1005; n++) queue.unsafeNotifyRetain(`bank-${n}`, 2)
      yield* queue.drain({ timeout: "1 minute" })
      const records = yield* queue.recentCompiles()
      expect(records).toHaveLength(1000)
      expect(records[0]!.bankId).toBe("bank-1004")
      expect(records[999]!.bankId).toBe("bank-5")
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 }, maxQueueSize: 0 }))))

  it.effect("historyCapacity 0 keeps none; a bad one is a CompileQueueOptionsError naming it", () =>
    Effect.gen(function*() {
      const none = yield* Effect.gen(function*() {
        yield* compileEach(["a"])
        return yield* Effect.flatMap(CompileQueue, (queue) => queue.recentCompiles())
      }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 }, historyCapacity: 0 })))
      expect(none).toEqual([])
      for (const historyCapacity of [-1, 1.5, Number.NaN]) {
        const exit = yield* Effect.exit(Layer.build(queueLayer({ historyCapacity })).pipe(Effect.scoped))
        expect(Exit.isFailure(exit)).toBe(true)
        const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
        expect(Option.getOrThrow(defect)).toBeInstanceOf(CompileQueueOptionsError)
        expect((Option.getOrThrow(defect) as CompileQueueOptionsError).option).toBe("historyCapacity")
      }
    }))

  it.effect("filters by bank and outcome, and limits, still newest first", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) =>
        bankId.startsWith("fail")
          ? Effect.fail(new CompileError({ bankId, message: "engine down" }))
          : bankId.startsWith("half")
          ? Effect.succeed(new CompileResult({ bankId, error: "2 scopes failed", tokensUsed: 5 }))
          : Effect.succeed(new CompileResult({ bankId }))
      yield* compileEach(["ok-1", "fail-1", "half-1", "ok-2", "ok-1", "fail-2"])
      const ids = (records: ReadonlyArray<CompileRecord>) => records.map((record) => record.bankId)
      expect(ids(yield* queue.recentCompiles())).toEqual(["fail-2", "ok-1", "ok-2", "half-1", "fail-1", "ok-1"])
      expect(ids(yield* queue.recentCompiles({ bankId: "ok-1" }))).toEqual(["ok-1", "ok-1"])
      expect(ids(yield* queue.recentCompiles({ outcome: "success" }))).toEqual(["ok-1", "ok-2", "ok-1"])
      expect(ids(yield* queue.recentCompiles({ outcome: "success", limit: 2 }))).toEqual(["ok-1", "ok-2"])
      expect(yield* queue.recentCompiles({ bankId: "never" })).toEqual([])
      expect(yield* queue.recentCompiles({ limit: 0 })).toEqual([])
      const [failure] = yield* queue.recentCompiles({ outcome: "failure", limit: 1 })
      expect(failure).toMatchObject({ bankId: "fail-2", tokensUsed: 0, error: Option.some("engine down") })
      const [reported] = yield* queue.recentCompiles({ outcome: "reported_error" })
      expect(reported).toMatchObject({ bankId: "half-1", tokensUsed: 5, error: Option.some("2 scopes failed") })
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 }, retry: { maxAttempts: 1 } }))))

  it.effect("runningCompiles lists the compiles in flight with their start; they move to the history when done", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* TestClock.adjust("5 seconds")
      yield* retain("a", 2)
      yield* retain("b", 3)
      expect(yield* Queue.take(engine.started)).toBe("a")
      expect(yield* Queue.take(engine.started)).toBe("b")
      const running = yield* queue.runningCompiles()
      expect(running.map((run) => [run.bankId, run.reason, run.memories, run.attempt, millis(run.startedAt)])).toEqual([
        ["a", "size", 2, 1, 5000],
        ["b", "size", 3, 1, 5000]
      ])
      expect((yield* queue.runningCompiles("b")).map((run) => run.bankId)).toEqual(["b"])
      expect(yield* queue.recentCompiles()).toEqual([])
      yield* engine.open
      yield* queue.drain()
      expect(yield* queue.runningCompiles()).toEqual([])
      expect((yield* queue.recentCompiles()).map((record) => record.bankId).sort()).toEqual(["a", "b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 2 }, concurrency: 2 }))))
})
