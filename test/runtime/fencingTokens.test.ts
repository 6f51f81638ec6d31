/**
 * The fencing tokens the queue gives its engine runs: a new, higher one for every run of a bank (retries and runs cut
 * off by the compile timeout included), the epoch read from the store when the queue is built (or the build time when
 * the store has none), and still increasing when a queue is built again on a store that stayed open.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, TestClock } from "effect"
import {
  BankStateStore,
  type BankStateStoreService,
  CompileError,
  FencingToken,
  makeMemoryBankStateStore
} from "../../src/index.js"
import { type EngineControl, instant, openQueue, queueLayer, retain, TestEngine } from "../support/utils.js"

const tokensOf = (engine: EngineControl, bankId: string) =>
  engine.jobs.filter((job) => job.bankId === bankId).map((job) => job.fencingToken)

/** Each token higher than the one before. */
const increasing = (tokens: ReadonlyArray<FencingToken.FencingToken>) =>
  tokens.every((token, n) => n === 0 || FencingToken.isNewer(token, tokens[n - 1]!))

/** A memory store that says it was opened under `epoch`. */
const storeWithEpoch = (epoch: number | undefined) =>
  Layer.effect(BankStateStore, Effect.map(makeMemoryBankStateStore, (store): BankStateStoreService => ({ ...store, epoch })))

describe("fencing tokens — one queue", () => {
  it.effect("every engine run of a bank, retries included, gets a new, higher token; sequences count runs from 1", () =>
    Effect.gen(function*() {
      const engine = yield* TestEngine
      engine.behavior = (bankId, call) =>
        call <= 2 ? Effect.fail(new CompileError({ bankId, message: "engine down" })) : instant(bankId, call)
      yield* retain("a", 5)
      yield* Effect.yieldNow()
      yield* TestClock.adjust("2 seconds") // first retry: at most 1.5 × 1 s
      yield* TestClock.adjust("3 seconds") // second: at most 1.5 × 2 s
      expect(engine.jobs.map((job) => job.attempt)).toEqual([1, 2, 3])
      const tokens = tokensOf(engine, "a")
      expect(tokens.map((token) => token.sequence)).toEqual([1, 2, 3])
      expect(new Set(tokens.map((token) => token.epoch)).size).toBe(1)
      expect(increasing(tokens)).toBe(true)
      // Another bank's run takes the next sequence of the same counter: per bank, tokens still only grow.
      yield* retain("b", 5)
      yield* retain("a", 5)
      yield* Effect.yieldNow()
      expect(engine.jobs.slice(3).map((job) => [job.bankId, job.fencingToken.sequence])).toEqual([["b", 4], ["a", 5]])
      expect(increasing(tokensOf(engine, "a"))).toBe(true)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, concurrency: 1 }))))

  it.effect("a run cut off by the compile timeout is retried under a higher token", () =>
    Effect.gen(function*() {
      const engine = yield* TestEngine
      engine.behavior = (bankId, call) => call === 1 ? Effect.never : instant(bankId, call)
      yield* retain("slow", 5)
      yield* Effect.yieldNow()
      yield* TestClock.adjust("10 seconds") // the timeout cuts the first run off
      yield* TestClock.adjust("2 seconds") // its retry
      const tokens = tokensOf(engine, "slow")
      expect(tokens).toHaveLength(2)
      expect(increasing(tokens)).toBe(true)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, compileTimeout: "10 seconds" }))))

  it.effect("many banks, concurrent workers: no token is handed out twice", () =>
    Effect.gen(function*() {
      const engine = yield* TestEngine
      for (let round = 0; round < 6; round++) {
        for (let n = 0; n < 7; n++) yield* retain(`bank-${n}`, 5)
        yield* Effect.yieldNow()
      }
      yield* TestClock.adjust("1 second")
      const sequences = engine.jobs.map((job) => job.fencingToken.sequence)
      expect(sequences.length).toBeGreaterThan(7)
      expect(new Set(sequences).size).toBe(sequences.length)
      for (let n = 0; n < 7; n++) expect(increasing(tokensOf(engine, `bank-${n}`))).toBe(true)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, concurrency: 4, maxQueueSize: 0 }))))
})

describe("fencing tokens — the epoch", () => {
  it.effect("is the store's owner generation, read when the queue is built", () =>
    Effect.gen(function*() {
      const { close, engine, queue } = yield* openQueue(storeWithEpoch(42), { config: { sizeThreshold: 5 } })
      yield* queue.compileNow("g")
      yield* queue.drain()
      expect(tokensOf(engine, "g")).toEqual([{ epoch: 42, sequence: 1 }])
      yield* close
    }))

  it.effect("without one, it is the time the queue was built, in epoch milliseconds", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_750_000_000_000)
      const { close, engine, queue } = yield* openQueue(storeWithEpoch(undefined))
      yield* TestClock.adjust("1 minute")
      yield* queue.compileNow("c")
      yield* queue.drain()
      expect(tokensOf(engine, "c")).toEqual([{ epoch: 1_750_000_000_000, sequence: 1 }])
      yield* close
      // Two queues built in the same millisecond still get two epochs.
      const first = yield* openQueue(storeWithEpoch(undefined))
      const second = yield* openQueue(storeWithEpoch(undefined))
      for (const { queue } of [first, second]) {
        yield* queue.compileNow("d")
        yield* queue.drain()
      }
      const [a, b] = [first, second].map(({ engine }) => tokensOf(engine, "d")[0]!)
      expect(FencingToken.isNewer(b!, a!)).toBe(true)
      yield* first.close
      yield* second.close
    }))

  it.effect("the in-memory store's is the time it was opened; a queue built again on it keeps counting up", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_760_000_000_000)
      const store = yield* Layer.memoize(BankStateStore.memory)
      const tokens: Array<FencingToken.FencingToken> = []
      for (let restart = 0; restart < 3; restart++) {
        const { close, engine, queue } = yield* openQueue(store)
        yield* queue.compileNow("m")
        yield* queue.compileNow("n")
        yield* queue.drain()
        tokens.push(...tokensOf(engine, "m"))
        yield* close
        yield* TestClock.adjust("1 second")
      }
      expect(tokens.map((token) => token.epoch)).toEqual([1_760_000_000_000, 1_760_000_000_000, 1_760_000_000_000])
      expect(increasing(tokens)).toBe(true)
    }).pipe(Effect.scoped))

  it.effect("a queue built again under an epoch already used in this process continues its sequence", () =>
    Effect.gen(function*() {
      // Two store objects, one epoch: a partition's queue rebuilt under the same lease.
      const tokens: Array<FencingToken.FencingToken> = []
      for (let rebuild = 0; rebuild < 2; rebuild++) {
        const { close, engine, queue } = yield* openQueue(storeWithEpoch(77))
        yield* queue.compileNow("r")
        yield* queue.drain()
        tokens.push(...tokensOf(engine, "r"))
        yield* close
      }
      expect(tokens).toEqual([{ epoch: 77, sequence: 1 }, { epoch: 77, sequence: 2 }])
    }))

  it.effect("a store's epoch that is not a non-negative integer is a defect at construction", () =>
    Effect.gen(function*() {
      for (const epoch of [-1, 1.5, Number.NaN]) {
        const exit = yield* Effect.exit(Effect.scoped(openQueue(storeWithEpoch(epoch))))
        expect(Exit.isFailure(exit) && String(exit.cause)).toContain("BankStateStore epoch must be a non-negative integer")
      }
    }))
})
