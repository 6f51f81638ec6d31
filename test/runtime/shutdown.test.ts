import { describe, expect, it } from "@effect/vitest"
import { Context, type Duration, Effect, Exit, Layer, Option, Queue, Scope } from "effect"
import { CompileEngine, CompileError, CompileQueue, CompileResult } from "../../src/index.js"
import type { CompileQueueOptions } from "../../src/index.js"
import { TestEngine, testEngineLayer } from "../support/utils.js"

// These tests are about real shutdown deadlines, so they run on the live clock.

/** Builds a queue in a scope of its own, so the test can close it and look at what happened. */
const openQueue = (options: CompileQueueOptions) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(CompileQueue.layer(options).pipe(Layer.provideMerge(testEngineLayer)), scope)
    return {
      queue: Context.get(context, CompileQueue),
      engine: Context.get(context, TestEngine),
      close: Scope.close(scope, Exit.void)
    }
  })

const sleeps = (millis: number) => (bankId: string) =>
  Effect.as(Effect.sleep(millis), new CompileResult({ bankId }))

describe("CompileQueue — S10 graceful shutdown (live clock)", () => {
  it.live("an in-flight compile finishes within shutdownTimeout; close then returns", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue({ config: { sizeThreshold: 1 }, shutdownTimeout: "5 seconds" })
      const finished: Array<string> = []
      engine.behavior = (bankId) => Effect.tap(sleeps(200)(bankId), () => Effect.sync(() => finished.push(bankId)))
      queue.unsafeNotifyRetain("a")
      yield* Queue.take(engine.started)
      yield* close
      expect(finished).toEqual(["a"])
      const state = Option.getOrThrow(yield* queue.bankState("a"))
      expect(state.status).toBe("idle")
      expect(state.memoriesSinceLastCompile).toBe(0)
    }))

  it.live("queued compiles may start and finish within shutdownTimeout", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue({ config: { sizeThreshold: 1 }, shutdownTimeout: "5 seconds" })
      engine.behavior = sleeps(50)
      for (const id of ["a", "b", "c"]) queue.unsafeNotifyRetain(id)
      yield* Queue.take(engine.started)
      yield* close
      expect(engine.calls).toEqual(["a", "b", "c"])
    }))

  it.live("a hanging compile is interrupted at the deadline; close returns promptly after it", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue({ config: { sizeThreshold: 1 }, shutdownTimeout: "300 millis" })
      engine.behavior = () => Effect.never
      queue.unsafeNotifyRetain("stuck")
      queue.unsafeNotifyRetain("queued")
      yield* Queue.take(engine.started)
      const started = Date.now()
      yield* close
      const elapsed = Date.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(250)
      expect(elapsed).toBeLessThan(1_300)
      // neither compile happened: both still need one
      expect(Option.getOrThrow(yield* queue.bankState("stuck")).status).toBe("pending")
      expect(Option.getOrThrow(yield* queue.bankState("queued")).status).toBe("pending")
      expect(yield* queue.runningBanks).toEqual(new Set())
      // nothing starts after close returned
      yield* Effect.sleep(100)
      expect(engine.calls).toEqual(["stuck"])
    }))

  it.live("after close, notifyRetain, unsafeNotifyRetain and compileNow are no-ops that succeed", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue({ config: { sizeThreshold: 1 } })
      yield* close
      yield* queue.notifyRetain("a", 5)
      queue.unsafeNotifyRetain("a", 5)
      yield* queue.compileNow("b")
      expect((yield* queue.state).size).toBe(0)
      expect(engine.calls).toEqual([])
    }))

  it.live("retry timers are cancelled at close", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue({
        config: { sizeThreshold: 1 },
        retry: { maxAttempts: 5, baseDelay: "100 millis" }
      })
      engine.behavior = (bankId) => Effect.fail(new CompileError({ bankId, message: "down" }))
      queue.unsafeNotifyRetain("a")
      yield* Queue.take(engine.started)
      yield* close
      yield* Effect.sleep(400)
      expect(engine.calls).toEqual(["a"])
    }))

  it.live("the layer can be built again after close", () =>
    Effect.gen(function*() {
      for (let round = 0; round < 3; round++) {
        const { close, engine, queue } = yield* openQueue({ config: { sizeThreshold: 2 } })
        queue.unsafeNotifyRetain("a", 2)
        yield* queue.drain()
        expect(engine.calls).toEqual(["a"])
        yield* close
      }
    }))
})

describe("CompileQueue — options", () => {
  const build = (options: CompileQueueOptions) =>
    CompileQueue.make(options).pipe(
      Effect.provide(CompileEngine.layer((bankId) => Effect.succeed(new CompileResult({ bankId })))),
      Effect.scoped,
      Effect.exit
    )

  const cases: ReadonlyArray<[string, CompileQueueOptions]> = [
    ["concurrency", { concurrency: 0 }],
    ["concurrency", { concurrency: 1.5 }],
    ["retry.maxAttempts", { retry: { maxAttempts: 0 } }],
    ["retry.baseDelay", { retry: { baseDelay: -1 } }],
    ["shutdownTimeout", { shutdownTimeout: "-5 seconds" }],
    ["sweepInterval", { sweepInterval: 0 }],
    ["sweepInterval", { sweepInterval: "soon" as Duration.DurationInput }],
    ["compileTimeout", { compileTimeout: -10 }],
    ["maxQueueSize", { maxQueueSize: 2.5 }],
    ["config", { config: { sizeThreshold: -1 } }]
  ]

  for (const [option, options] of cases) {
    it.effect(`invalid ${option} (${JSON.stringify(options)}) fails construction, naming the option`, () =>
      Effect.gen(function*() {
        const exit = yield* build(options)
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const defect = String(exit.cause.toString())
          expect(defect).toContain(option)
        }
      }))
  }

  it.effect("valid options build", () =>
    Effect.gen(function*() {
      const exit = yield* build({
        maxQueueSize: 0,
        concurrency: 8,
        sweepInterval: "5 minutes",
        compileTimeout: "30 seconds",
        retry: { maxAttempts: 1, baseDelay: 0 },
        shutdownTimeout: 0,
        config: { sizeThreshold: 0, stalenessDays: 0, stalenessMinMemories: 0 }
      })
      expect(Exit.isSuccess(exit)).toBe(true)
    }))

  it("CompileError carries bankId and message", () => {
    const error = new CompileError({ bankId: "b", message: "m" })
    expect(error._tag).toBe("CompileError")
    expect(error.message).toBe("m")
  })
})
