/**
 * The bank queue the workers take from: FIFO order, its capacity, a waiting worker handed the next bank, a released
 * (stopped) one handed none, and shutdown.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { BankQueue, type Taker } from "../../src/internal/runtime/bankQueue.js"

/** A worker's wait as the workers run it: released when it ends, however it ends. */
const waitOn = (taker: Taker) => Effect.ensuring(taker.take, taker.release)

describe("BankQueue", () => {
  it.effect("takes in offer order; a full queue refuses", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(2)
      const { take } = queue.taker()
      expect(queue.unsafeOffer(7)).toBe(true)
      expect(queue.unsafeOffer(3)).toBe(true)
      expect(queue.unsafeOffer(5)).toBe(false)
      expect(queue.size).toBe(2)
      expect(yield* take).toBe(7)
      expect(queue.unsafeOffer(5)).toBe(true)
      expect([yield* take, yield* take]).toEqual([3, 5])
      expect(queue.size).toBe(0)
    }))

  it.effect("an unbounded queue keeps order across many banks", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(Infinity)
      const { take } = queue.taker()
      for (let bank = 0; bank < 5000; bank++) queue.unsafeOffer(bank)
      const taken: Array<number> = []
      for (let n = 0; n < 3000; n++) taken.push(yield* take)
      for (let bank = 5000; bank < 6000; bank++) queue.unsafeOffer(bank)
      while (queue.size > 0) taken.push(yield* take)
      expect(taken).toEqual(Array.from({ length: 6000 }, (_, n) => n))
    }))

  it.effect("waiting workers are handed banks first come first served, even when the queue has no room", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(0)
      const first = yield* Effect.fork(waitOn(queue.taker()))
      const second = yield* Effect.fork(waitOn(queue.taker()))
      yield* Effect.yieldNow()
      expect(queue.unsafeOffer(1)).toBe(true)
      expect(queue.unsafeOffer(2)).toBe(true)
      expect(queue.unsafeOffer(3)).toBe(false)
      expect([yield* Fiber.join(first), yield* Fiber.join(second)]).toEqual([1, 2])
    }))

  it.effect("an interrupted worker is released and handed nothing: the bank goes to the next one", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(Infinity)
      const gone = yield* Effect.fork(waitOn(queue.taker()))
      const next = yield* Effect.fork(waitOn(queue.taker()))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(gone)
      queue.unsafeOffer(4)
      expect(yield* Fiber.join(next)).toBe(4)
      expect(queue.size).toBe(0)
    }))

  it.effect("shutdown interrupts waiting workers, discards queued banks, and refuses offers", () =>
    Effect.gen(function*() {
      const queue = new BankQueue(Infinity)
      const taker = queue.taker()
      const waiting = yield* Effect.fork(waitOn(taker))
      yield* Effect.yieldNow()
      yield* queue.shutdown
      expect(Exit.isInterrupted(yield* Fiber.await(waiting))).toBe(true)
      expect(queue.unsafeOffer(1)).toBe(false)
      expect(Exit.isInterrupted(yield* Effect.exit(taker.take))).toBe(true)
      const full = new BankQueue(Infinity)
      full.unsafeOffer(1)
      full.unsafeOffer(2)
      yield* full.shutdown
      expect(full.size).toBe(0)
      expect(Exit.isInterrupted(yield* Effect.exit(full.taker().take))).toBe(true)
    }))
})
