/**
 * Dirty scopes through the queue's public methods: writes that name scopes, what each compile's job says, and what
 * stays dirty after it (the counters' consume rule: taken at the start, consumed on success).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Queue } from "effect"
import { CompileError, CompileQueue, CompileResult } from "../../src/index.js"
import { captureLogs, queueLayer, TestEngine } from "../support/utils.js"

const dirtyOf = (bankId: string) =>
  Effect.flatMap(CompileQueue, (q) => q.bankState(bankId)).pipe(
    Effect.map((state) => Option.getOrThrow(state).dirtyScopes)
  )

const scope = (name: string, memories: number, forgets = 0) => ({ scope: name, memories, forgets })

describe("dirty scopes", () => {
  it.effect("accumulate per scope, reach the job, and are consumed by its success", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.notifyRetain("b", { count: 2, scopes: ["page-a", "tag:b"] })
      queue.unsafeNotifyRetain("b", { scopes: ["page-a"] })
      yield* queue.notifyForget("b", { count: 1, scopes: ["tag:b"] })
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("page-a", 3), scope("tag:b", 2, 1)] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs.map((job) => job.scopes)).toEqual([["page-a", "tag:b"]])
      expect(yield* dirtyOf("b")).toBeUndefined()
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100, forgetThreshold: 100 } }))))

  it.effect("a bank whose writes name no scope has none, and its job says nothing about scopes", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.notifyRetain("plain", 3)
      expect(yield* dirtyOf("plain")).toBeUndefined()
      yield* queue.compileNow("plain")
      yield* queue.drain()
      expect(engine.jobs).toHaveLength(1)
      expect("scopes" in engine.jobs[0]!).toBe(false)
    }).pipe(Effect.provide(queueLayer())))

  it.effect("writes during a compile stay dirty for the next one", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* queue.notifyRetain("b", { count: 5, scopes: ["a"] })
      expect(yield* Queue.take(engine.started)).toBe("b")
      yield* queue.notifyRetain("b", { scopes: ["a", "c"] })
      // While it runs, the taken scope and the new writes both show.
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("a", 6), scope("c", 1)] })
      yield* engine.open
      yield* queue.drain()
      expect(engine.jobs[0]!.scopes).toEqual(["a"])
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("a", 1), scope("c", 1)] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs[1]!.scopes).toEqual(["a", "c"])
      expect(yield* dirtyOf("b")).toBeUndefined()
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("scopes a partial scopesCompiled leaves out stay dirty, with their counts", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, scopesCompiled: ["a", "elsewhere"] }))
      yield* queue.notifyRetain("b", { count: 2, scopes: ["a", "b"] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("b", 2)] })
      expect((yield* queue.bankState("b")).pipe(Option.getOrThrow).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100 } }))))

  it.effect("a failed compile consumes no scope", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.fail(new CompileError({ bankId, message: "down" }))
      yield* queue.notifyRetain("b", { scopes: ["a"] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs[0]!.scopes).toEqual(["a"])
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("a", 1)] })
    }).pipe(Effect.provide(queueLayer({ retry: { maxAttempts: 1 }, config: { sizeThreshold: 100 } }))))

  it.effect("past maxScopesPerBank distinct scopes the bank is \"all\", and so is its job", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.notifyRetain("b", { scopes: ["s1", "s2", "s3"] })
      expect((yield* dirtyOf("b"))?.all).toBe(false)
      yield* queue.notifyRetain("b", { scopes: ["s3"] })
      expect((yield* dirtyOf("b"))?.all).toBe(false)
      yield* queue.notifyRetain("b", { scopes: ["s4"] })
      expect(yield* dirtyOf("b")).toEqual({ all: true, scopes: [] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs[0]!.scopes).toBe("all")
      expect(yield* dirtyOf("b")).toBeUndefined()
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100, maxScopesPerBank: 3 } }))))

  it.effect("a write that named no scope makes the job \"all\": it may have touched any", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.notifyRetain("b", { scopes: ["a"] })
      yield* queue.notifyRetain("b")
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs[0]!.scopes).toBe("all")
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100 } }))))

  it.effect("a forget with scopes reaches the engine with them", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.notifyForget("b", { count: 2, scopes: ["gone"] })
      yield* queue.drain()
      expect(engine.jobs.map(({ forgets, reason, scopes }) => ({ forgets, reason, scopes }))).toEqual([
        { forgets: 2, reason: "forget", scopes: ["gone"] }
      ])
    }).pipe(Effect.provide(queueLayer({ config: { forgetThreshold: 1 } }))))

  it.effect("compileNow names scopes to rebuild", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.compileNow("b", { scopes: ["page-9"] })
      yield* queue.drain()
      expect(engine.jobs[0]!.scopes).toEqual(["page-9"])
      expect(yield* dirtyOf("b")).toBeUndefined()
    }).pipe(Effect.provide(queueLayer())))

  it.effect("an invalid scope counts nothing and says which", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      queue.unsafeNotifyRetain("b", { count: 3, scopes: ["ok", "", "bad\u0007"] })
      queue.unsafeNotifyForget("b", { scopes: ["x".repeat(129)] })
      queue.unsafeNotifyRetain("b", { scopes: Array.from({ length: 33 }, (_, k) => `s${k}`) })
      yield* queue.compileNow("c", { scopes: [""] })
      expect(Option.isNone(yield* queue.bankState("b"))).toBe(true)
      expect(Option.isNone(yield* queue.bankState("c"))).toBe(true)
      const warnings = logs.filter((log) => log.level === "WARN").map((log) => log.message)
      expect(warnings).toHaveLength(4)
      expect(warnings[0]).toContain(`invalid scopes "", "bad\\u0007"`)
      expect(warnings[2]).toContain("at most 32 scopes")
    }).pipe(Effect.provide(queueLayer()), Effect.provide(layer))
  })

  it.effect("the next cycle names known scopes afresh: counts start over, and a bad scope beside a known one counts nothing", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      queue.unsafeNotifyRetain("b", { count: 4, scopes: ["a"] })
      queue.unsafeNotifyRetain("b", { scopes: ["b", "a"] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(yield* dirtyOf("b")).toBeUndefined()
      // A plain write after a consumed set: the next job says nothing about scopes.
      queue.unsafeNotifyRetain("b", 2)
      expect(yield* dirtyOf("b")).toBeUndefined()
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect("scopes" in engine.jobs[1]!).toBe(false)
      // Known names again: only this cycle's counts; a write with one bad name beside them counts nothing.
      queue.unsafeNotifyRetain("b", { scopes: ["a"] })
      queue.unsafeNotifyForget("b", { count: 2, scopes: ["a", "b"] })
      queue.unsafeNotifyRetain("b", { count: 5, scopes: ["a", "bad\u0000"] })
      queue.unsafeNotifyRetain("b", { count: 5, scopes: "a" as unknown as ReadonlyArray<string> })
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("a", 1, 2), scope("b", 0, 2)] })
      expect(Option.getOrThrow(yield* queue.bankState("b")).memoriesSinceLastCompile).toBe(1)
      expect(logs.filter((log) => log.level === "WARN")).toHaveLength(2)
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs[2]!.scopes).toEqual(["a", "b"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100, forgetThreshold: 100 } })), Effect.provide(layer))
  })

  it.effect("the bound counts this cycle's scopes, not the names kept from earlier ones", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      queue.unsafeNotifyRetain("b", { scopes: ["a", "b"] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      queue.unsafeNotifyRetain("b", { scopes: ["c"] })
      queue.unsafeNotifyRetain("b", { scopes: ["a"] })
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("a", 1), scope("c", 1)] })
      queue.unsafeNotifyRetain("b", { scopes: ["b"] })
      expect(yield* dirtyOf("b")).toEqual({ all: true, scopes: [] })
      yield* queue.compileNow("b")
      yield* queue.drain()
      expect(engine.jobs.map((job) => job.scopes)).toEqual([["a", "b"], "all"])
      queue.unsafeNotifyRetain("b", { scopes: ["b"] })
      expect(yield* dirtyOf("b")).toEqual({ all: false, scopes: [scope("b", 1)] })
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100, maxScopesPerBank: 2 } }))))
})
