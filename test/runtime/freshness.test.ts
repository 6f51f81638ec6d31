/**
 * The freshness deadline through the whole queue under `TestClock`: the watcher fires a deadline on time with no
 * retain and no sweep, and the memory wait reaches the job, the compile history and the Prometheus histogram.
 */
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Option, Queue, TestClock } from "effect"
import { CompileQueue } from "../../src/CompileQueue.js"
import * as CompileMetrics from "../../src/CompileMetrics.js"
import { PrometheusMetrics } from "../../src/PrometheusMetrics.js"
import { queueLayer, TestEngine } from "../support/utils.js"

const options = { config: { sizeThreshold: 50, maxWaitSeconds: 3600 }, sweepInterval: "100 days" } as const

describe("CompileQueue — maxWaitSeconds", () => {
  it.effect("a bank with 3 memories compiles at exactly +1 h for reason deadline: no retain, no sweep", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      queue.unsafeNotifyRetain("a", 3)
      const state = Option.getOrThrow(yield* queue.bankState("a"))
      expect(Option.map(state.deadlineAt, DateTime.toEpochMillis)).toEqual(Option.some(3_600_000))
      expect(Option.map(state.oldestMemoryAt, DateTime.toEpochMillis)).toEqual(Option.some(0))
      yield* TestClock.adjust(3_600_000 - 1)
      expect(engine.calls).toEqual([])
      yield* TestClock.adjust(1)
      expect(yield* Queue.take(engine.started)).toBe("a")
      yield* queue.drain()
      expect(engine.jobs[0]).toMatchObject({ reason: "deadline", memories: 3, memoryWait: { meanSeconds: 3600, oldestSeconds: 3600 } })
      const [record] = yield* queue.recentCompiles()
      expect(DateTime.toEpochMillis(record!.startedAt)).toBe(3_600_000)
      expect(record!.memoryWait).toEqual(Option.some({ meanSeconds: 3600, oldestSeconds: 3600 }))
      expect(Option.getOrThrow(yield* queue.bankState("a")).deadlineAt).toEqual(Option.none())
    }).pipe(Effect.provide(queueLayer(options))))

  it.effect("each memory waits from its own retain: the exact mean, and the weighted histogram", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      const before = CompileMetrics.memoryWait.snapshot()
      queue.unsafeNotifyRetain("b", 1)
      yield* TestClock.adjust("30 minutes")
      queue.unsafeNotifyRetain("b", 2)
      yield* TestClock.adjust("30 minutes") // the first memory's deadline
      yield* Queue.take(engine.started)
      yield* queue.drain()
      expect(engine.jobs[0]!.memoryWait).toEqual({ meanSeconds: (3600 + 1800 * 2) / 3, oldestSeconds: 3600 })
      const after = CompileMetrics.memoryWait.snapshot()
      expect(after.count - before.count).toBe(3)
      expect(after.sum - before.sum).toBeCloseTo(7200, 6)
      const text = yield* Effect.flatMap(PrometheusMetrics, (metrics) => metrics.render).pipe(
        Effect.provide(PrometheusMetrics.layer)
      )
      expect(text).toContain("# TYPE compile_trigger_memory_wait_seconds histogram")
      expect(text).toMatch(/compile_trigger_memory_wait_seconds_count \d+/)
    }).pipe(Effect.provide(queueLayer(options))))

  it.effect("a policy's shorter max wait fires first, on its own time", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      queue.unsafeNotifyRetain("slow", 1)
      yield* queue.setPolicy("fast", { maxWaitSeconds: 60 })
      yield* TestClock.adjust("10 seconds")
      queue.unsafeNotifyRetain("fast", 1)
      yield* TestClock.adjust("60 seconds")
      expect(yield* Queue.take(engine.started)).toBe("fast")
      yield* queue.drain()
      expect(engine.calls).toEqual(["fast"])
      yield* TestClock.adjust("1 hour")
      expect(yield* Queue.take(engine.started)).toBe("slow")
    }).pipe(Effect.provide(queueLayer(options))))
})
