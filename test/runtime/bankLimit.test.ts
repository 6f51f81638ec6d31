/**
 * The maximum number of banks: a new bank past `maxBanks` is refused by every entry point (retain, forget,
 * compileNow, setPolicy, a checked batch) with nothing added or counted and the core's invariants intact; banks the
 * queue knows are still served; a restore loads every stored bank, past the maximum too; and the table's own hard
 * limit (2^24, where V8's Map stops) refuses before it changes anything, checked without allocating 16 M banks.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Layer, Metric, Option, Scope } from "effect"
import {
  BankLimitError,
  BankStateStore,
  CompileEngine,
  CompileMetrics,
  CompileQueue,
  CompileQueueOptionsError,
  CompileResult,
  DEFAULT_MAX_BANKS,
  HARD_MAX_BANKS,
  makeMemoryBankStateStore
} from "../../src/index.js"
import { resolve } from "../../src/CompileQueueOptions.js"
import type { CompileCore } from "../../src/internal/core/compileCore.js"
import { BankTable } from "../../src/internal/core/bankTable.js"
import { make as makeQueue } from "../../src/internal/runtime/compileQueue.js"
import { captureLogs } from "../support/utils.js"

const engine = Layer.succeed(CompileEngine, { run: (bankId) => Effect.succeed(new CompileResult({ bankId })) })

/** A queue holding at most `maxBanks` banks, with its core for the invariants. */
const limitedQueue = (maxBanks: number, store?: Layer.Layer<BankStateStore>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    let core: CompileCore | undefined
    const layer = Layer.scoped(
      CompileQueue,
      makeQueue({ maxBanks, config: { sizeThreshold: 1000 } }, { inspectCore: (inspected) => core = inspected })
    ).pipe(Layer.orDie, Layer.provide(engine), Layer.provide(store ?? Layer.empty))
    const context = yield* Layer.buildWithScope(layer, scope)
    return {
      queue: Context.get(context, CompileQueue),
      violations: () => core!.invariantViolations(),
      close: Scope.close(scope, Exit.void)
    }
  })

const rejected = Effect.map(Metric.value(CompileMetrics.retainsRejected), (state) => state.count)

describe("the maximum number of banks", () => {
  it.effect("a new bank past it is refused by every entry point: nothing added or counted, known banks served", () =>
    Effect.gen(function*() {
      const { logs, layer: logLayer } = captureLogs()
      const { close, queue, violations } = yield* limitedQueue(3).pipe(Effect.provide(logLayer))
      for (const id of ["a", "b", "c"]) queue.unsafeNotifyRetain(id, 2)
      const before = yield* queue.state
      const rejectedBefore = yield* rejected

      queue.unsafeNotifyRetain("d")
      queue.unsafeNotifyForget("e")
      yield* queue.compileNow("f")
      const policy = yield* Effect.either(queue.setPolicy("g", { sizeThreshold: 5 }))

      expect(Either.isLeft(policy) && policy.left).toBeInstanceOf(BankLimitError)
      expect(Either.isLeft(policy) && policy.left).toMatchObject({ bankId: "g", maxBanks: 3 })
      expect(Either.isLeft(policy) && policy.left.message).toContain("its maximum of 3 banks")
      for (const id of ["d", "e", "f", "g"]) expect(Option.isNone(yield* queue.bankState(id))).toBe(true)
      expect(yield* queue.state).toEqual(before)
      expect((yield* queue.stats).banks).toBe(3)
      expect((yield* rejected) - rejectedBefore).toBe(3) // the policy's refusal is its error, not a warning
      expect(violations()).toEqual([])
      // One warning, not one per refusal: a client cannot fill the log.
      expect(logs.filter((log) => log.message.includes("its maximum of 3 banks"))).toHaveLength(1)

      // Known banks are never refused.
      queue.unsafeNotifyRetain("a", 5)
      queue.unsafeNotifyForget("b")
      yield* queue.setPolicy("c", { sizeThreshold: 7 })
      expect(Option.getOrThrow(yield* queue.bankState("a")).memoriesSinceLastCompile).toBe(7)
      expect(Option.getOrThrow(yield* queue.bankState("b")).forgetsSinceLastCompile).toBe(1)
      expect(Option.isSome(yield* queue.policyOf("c"))).toBe(true)
      expect(violations()).toEqual([])
      yield* close
    }))

  it.effect("unsafeCheckRoom tells a batch whether its new banks fit, counting each new bank once", () =>
    Effect.gen(function*() {
      const { close, queue } = yield* limitedQueue(4)
      queue.unsafeNotifyRetain("a")
      queue.unsafeNotifyRetain("b")
      expect(queue.unsafeCheckRoom(["a", "b", "x", "y"])).toBeUndefined()
      expect(queue.unsafeCheckRoom(["x", "x", "a", "y", "y"])).toBeUndefined()
      const refused = queue.unsafeCheckRoom(["a", "x", "y", "z", "b"])
      expect(refused).toBeInstanceOf(BankLimitError)
      expect(refused).toMatchObject({ bankId: "z", maxBanks: 4 })
      expect((yield* queue.stats).banks).toBe(2) // checking adds nothing
      yield* close
    }))

  it.effect("a restore loads every stored bank, past the maximum too; new banks are refused after it", () =>
    Effect.gen(function*() {
      // One store instance for both queues: the second restores what the first stored at its close.
      const layer = Layer.succeed(BankStateStore, yield* makeMemoryBankStateStore)
      const writer = yield* limitedQueue(10, layer)
      for (let n = 0; n < 6; n++) writer.queue.unsafeNotifyRetain(`bank-${n}`)
      yield* writer.close
      const reader = yield* limitedQueue(4, layer)
      expect((yield* reader.queue.stats).banks).toBe(6)
      reader.queue.unsafeNotifyRetain("bank-5", 3)
      reader.queue.unsafeNotifyRetain("new")
      expect(Option.getOrThrow(yield* reader.queue.bankState("bank-5")).memoriesSinceLastCompile).toBe(4)
      expect(Option.isNone(yield* reader.queue.bankState("new"))).toBe(true)
      expect(reader.violations()).toEqual([])
      yield* reader.close
    }))

  it("the option: default 1,000,000, at most HARD_MAX_BANKS (2^24), a positive integer", () => {
    expect(DEFAULT_MAX_BANKS).toBe(1_000_000)
    expect(HARD_MAX_BANKS).toBe(2 ** 24)
    expect(Either.getOrThrow(resolve({})).maxBanks).toBe(DEFAULT_MAX_BANKS)
    expect(Either.getOrThrow(resolve({ maxBanks: HARD_MAX_BANKS })).maxBanks).toBe(HARD_MAX_BANKS)
    for (const maxBanks of [HARD_MAX_BANKS + 1, 0, -1, 1.5, NaN]) {
      const result = resolve({ maxBanks })
      expect(Either.isLeft(result) && result.left).toBeInstanceOf(CompileQueueOptionsError)
      expect(Either.isLeft(result) && result.left.option).toBe("maxBanks")
    }
  })

  it("the table refuses past its hard limit before it changes anything (no 16 M banks allocated)", () => {
    const table = new BankTable()
    table.add("a")
    // As if 2^24 banks were held: the columns are not touched by a refusal, so they need not exist.
    table.size = HARD_MAX_BANKS
    expect(table.add("one-too-many", Infinity)).toBe(-1)
    expect(table.add("one-too-many", HARD_MAX_BANKS)).toBe(-1)
    expect(table.index.has("one-too-many")).toBe(false)
    expect(table.ids).toEqual(["a"])
    expect(table.size).toBe(HARD_MAX_BANKS)
  })

  it("the table's own limit: add refuses past maxBanks, changing nothing; a restore passes the hard limit", () => {
    const table = new BankTable()
    table.maxBanks = 2
    expect([table.add("a"), table.add("b"), table.add("c")]).toEqual([0, 1, -1])
    expect(table.size).toBe(2)
    expect(table.ids).toEqual(["a", "b"])
    expect(Array.from(table.index.keys())).toEqual(["a", "b"])
    expect(table.add("c", HARD_MAX_BANKS)).toBe(2)
    expect(table.firstRefused(["a", "c", "d"])).toBe("d")
  })
})
