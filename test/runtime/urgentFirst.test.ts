/**
 * Urgent compiles first: the bank queue's lanes (urgent, deadline order, ordinary), its bound on how long a lane is
 * passed over, and the compile queue starting forget and manual compiles before size and staleness ones.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { CompileQueue, CompileResult } from "../../src/index.js"
import { BankQueue, DEADLINE, ORDINARY, type Priorities, URGENT } from "../../src/internal/runtime/bankQueue.js"
import { queueLayer, retain, TestEngine } from "../support/utils.js"

/** Banks 0-99 urgent, 100-199 by deadline (their number, reversed), the rest ordinary. */
const byNumber: Priorities = {
  laneOf: (bank) => bank < 100 ? URGENT : bank < 200 ? DEADLINE : ORDINARY,
  deadlineOf: (bank) => 1000 - bank
}

const takeAll = (queue: BankQueue) =>
  Effect.gen(function*() {
    const { take } = queue.taker()
    const taken: Array<number> = []
    while (queue.size > 0) taken.push(yield* take)
    return taken
  })

const lanedQueue = (capacity: number, fairness?: number) => {
  const queue = new BankQueue(capacity, fairness)
  queue.priorities = byNumber
  return queue
}

describe("BankQueue lanes", () => {
  it.effect("urgent first, then deadline order, then first come first served; capacity counts every lane", () =>
    Effect.gen(function*() {
      const queue = lanedQueue(6)
      for (const bank of [300, 301, 150, 1, 160, 2]) expect(queue.unsafeOffer(bank)).toBe(true)
      expect(queue.unsafeOffer(3)).toBe(false)
      expect(queue.lanes()).toEqual({ urgent: 2, deadline: 2, ordinary: 2 })
      expect(yield* takeAll(queue)).toEqual([1, 2, 160, 150, 300, 301])
    }))

  it.effect("equal deadlines keep their arrival order", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(Infinity)
      queue.priorities = { laneOf: () => DEADLINE, deadlineOf: (bank) => bank % 3 }
      for (let bank = 0; bank < 30; bank++) queue.unsafeOffer(bank)
      const taken = yield* takeAll(queue)
      expect(taken).toEqual([...taken].sort((a, b) => (a % 3) - (b % 3) || a - b))
    }))

  it.effect("a waiting lane goes next after `fairness` starts from other lanes", () =>
    Effect.gen(function*() {
      const queue = lanedQueue(Infinity, 3)
      const { take } = queue.taker()
      queue.unsafeOffer(300)
      queue.unsafeOffer(150)
      for (let bank = 0; bank < 10; bank++) queue.unsafeOffer(bank)
      const taken: Array<number> = []
      for (let n = 0; n < 8; n++) taken.push(yield* take)
      // three urgent; then both other lanes were passed over three times: the least urgent goes first
      expect(taken).toEqual([0, 1, 2, 300, 150, 3, 4, 5])
    }))

  it.effect("under a steady stream of urgent banks an ordinary bank starts within fairness + 1 starts", () =>
    Effect.gen(function*() {
      const fairness = 8
      const queue = lanedQueue(Infinity, fairness)
      const { take } = queue.taker()
      for (let bank = 200; bank < 210; bank++) queue.unsafeOffer(bank)
      let next = 0
      const startsBefore: Array<number> = []
      let since = 0
      for (let n = 0; n < 200; n++) {
        queue.unsafeOffer(next++ % 100) // two urgent arrivals per start: the urgent lane never empties
        queue.unsafeOffer(next++ % 100)
        const bank = yield* take
        if (bank >= 200) {
          startsBefore.push(since)
          since = 0
        } else since++
      }
      expect(startsBefore).toHaveLength(10)
      expect(Math.max(...startsBefore)).toBe(fairness)
    }))

  it.effect("promote moves a queued bank to the back of the urgent lane; placeOf says where a bank stands", () =>
    Effect.gen(function*() {
      const queue = lanedQueue(Infinity)
      for (const bank of [300, 301, 302, 1]) queue.unsafeOffer(bank)
      expect(queue.placeOf(302)).toBe(4)
      expect(queue.placeOf(1)).toBe(1)
      expect(queue.placeOf(7)).toBe(0)
      expect(queue.promote(302)).toBe(true)
      expect(queue.promote(1)).toBe(false)
      expect(queue.placeOf(302)).toBe(2)
      expect(yield* takeAll(queue)).toEqual([1, 302, 300, 301])
    }))

  it("refuses a fairness below 1", () => {
    expect(() => new BankQueue(10, 0)).toThrow(/fairness must be at least 1/)
  })
})

describe("CompileQueue: urgent compiles first", () => {
  it.effect("a forget compile queued behind 1,000 size compiles at concurrency 1 starts next", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* retain("running", 1)
      expect(yield* Queue.take(engine.started)).toBe("running")
      for (let n = 0; n < 1000; n++) yield* retain(`size-${n}`, 1)
      yield* queue.notifyForget("forgotten", 1)
      expect((yield* queue.stats).queued).toBe(1001)
      yield* engine.open
      yield* queue.drain({ timeout: "10 seconds" })
      expect(engine.calls.slice(0, 3)).toEqual(["running", "forgotten", "size-0"])
      expect(engine.calls).toHaveLength(1002)
    }).pipe(Effect.provide(queueLayer({ concurrency: 1, maxQueueSize: 2000, config: { sizeThreshold: 1 } }))))

  it.effect("compileNow for a bank waiting behind size compiles moves it ahead of them", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* retain("running", 1)
      expect(yield* Queue.take(engine.started)).toBe("running")
      for (let n = 0; n < 5; n++) yield* retain(`size-${n}`, 1)
      yield* queue.compileNow("size-3")
      yield* engine.open
      yield* queue.drain()
      expect(engine.calls).toEqual(["running", "size-3", "size-0", "size-1", "size-2", "size-4"])
    }).pipe(Effect.provide(queueLayer({ concurrency: 1, config: { sizeThreshold: 1 } }))))

  it.effect("a size compile waits at most 8 starts under a steady stream of manual ones", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* retain("running", 1)
      expect(yield* Queue.take(engine.started)).toBe("running")
      yield* retain("ordinary", 1)
      for (let n = 0; n < 3; n++) yield* queue.compileNow(`manual-${n}`)
      // every compile asks for another manual one: the urgent lane never runs dry
      let asked = 3
      engine.behavior = (bankId) =>
        Effect.as(asked < 40 ? queue.compileNow(`manual-${asked++}`) : Effect.void, new CompileResult({ bankId }))
      yield* engine.open
      yield* queue.drain()
      expect(engine.calls.indexOf("ordinary")).toBe(1 + 8)
      expect(engine.calls).toHaveLength(2 + 40)
    }).pipe(Effect.provide(queueLayer({ concurrency: 1, config: { sizeThreshold: 1 } }))))
})

