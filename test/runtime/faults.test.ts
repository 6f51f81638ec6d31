/**
 * Fault injection: a flaky engine, defects, thrown exceptions, interruptions and hanging compiles. The worker must
 * survive all of them, count them as failures, never leave a bank stuck in `running`, and lose no retain.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, type Duration, Effect, Exit, Fiber, Layer, Logger, Option, Scope, TestClock } from "effect"
import { CompileEngine, CompileError, CompileQueue, type CompileQueueOptions } from "../../src/index.js"
import { type Books, type EngineBehavior, makeBooks, ok, prng } from "../support/reconcile.js"

class TestBooks extends Context.Tag("test/TestBooks")<TestBooks, Books>() {}

/** The queue with a book-keeping engine; logs are dropped (thousands of failure warnings). */
const booksLayer = (options: CompileQueueOptions, behavior?: EngineBehavior) => {
  const books = makeBooks(behavior)
  const attach = Layer.effectDiscard(Effect.map(CompileQueue, (queue) => books.attach(queue)))
  return attach.pipe(
    Layer.provideMerge(CompileQueue.layer(options)),
    Layer.provide(Layer.succeed(CompileEngine, books.engine)),
    Layer.merge(Layer.succeed(TestBooks, books)),
    Layer.provide(Logger.remove(Logger.defaultLogger))
  )
}

const stateOf = (bankId: string) =>
  Effect.flatMap(CompileQueue, (queue) => queue.bankState(bankId)).pipe(Effect.map(Option.getOrThrow))

/** Yields until `done` holds (fibers run on yields; no clock needed). */
const eventually = (done: () => boolean, what: string) =>
  Effect.suspend(function loop(spins = 0): Effect.Effect<void> {
    if (done()) return Effect.void
    if (spins > 10_000) return Effect.dieMessage(`never happened: ${what}`)
    return Effect.zipRight(Effect.yieldNow(), Effect.suspend(() => loop(spins + 1)))
  })

/**
 * Runs the queue until nothing is pending or running, advancing the TestClock past retry delays when only banks
 * waiting for a retry are left (`drain` alone would wait for a clock that never moves).
 */
const settle = (retryJump: Duration.DurationInput) =>
  Effect.gen(function*() {
    const queue = yield* CompileQueue
    for (let round = 0; round < 1_000; round++) {
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      const stats = yield* queue.stats
      if (stats.pending === 0 && stats.running === 0) return
      if (stats.running === 0 && stats.queued === 0) yield* TestClock.adjust(retryJump)
    }
    return yield* Effect.dieMessage("the queue never settled")
  })

const failure = (bankId: string) => Effect.fail(new CompileError({ bankId, message: "engine down" }))

describe("fault injection — a flaky engine", () => {
  it.effect("50% failures over 10,000 compiles of 500 banks: the workers survive, nothing is lost, all recover", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const books = yield* TestBooks
      const random = prng(42)
      books.behavior = (bankId) => random() < 0.5 ? failure(bankId) : Effect.succeed(ok(bankId))
      let sawRepeatedFailures = false
      books.onStart = (bankId) => {
        const failures = Option.getOrThrow(Effect.runSync(queue.bankState(bankId))).consecutiveFailures
        if (failures >= 2) sawRepeatedFailures = true
      }
      const banks = Array.from({ length: 500 }, (_, i) => `bank-${i}`)
      while (books.counts.calls < 10_000) {
        // every bank triggers once per round; parked banks (3 failures in a row) wait for the sweep instead
        yield* books.notify((notify) => banks.forEach((id) => notify(id, 5)))
        yield* settle("10 seconds")
        yield* queue.sweepNow
        yield* settle("10 seconds")
      }
      expect(books.counts.failures).toBeGreaterThan(4_000)
      expect(books.counts.maxPerBank).toBe(1)

      // healthy again: the next sweep re-offers every parked bank
      books.behavior = (bankId) => Effect.succeed(ok(bankId))
      yield* TestClock.adjust("1 hour")
      yield* settle("10 seconds")
      yield* queue.drain()
      expect(yield* books.unbalanced()).toEqual([])
      for (const id of banks) {
        const state = yield* stateOf(id)
        expect(state.memoriesSinceLastCompile, id).toBe(0)
        expect(state.status, id).toBe("idle")
        expect(state.consecutiveFailures, id).toBe(0)
        expect(state.lastError, id).toEqual(Option.none())
      }
      expect(sawRepeatedFailures).toBe(true)
      // and the workers still take new work
      const before = books.counts.calls
      yield* books.notify((notify) => notify("fresh", 5))
      yield* queue.drain()
      expect(books.counts.calls).toBe(before + 1)
      expect((yield* stateOf("fresh")).memoriesSinceLastCompile).toBe(0)
    }).pipe(Effect.provide(booksLayer({
      config: { sizeThreshold: 5 },
      concurrency: 4,
      maxQueueSize: 0,
      // retries at once: hundreds of distinct retry timers would each cost a TestClock round trip (delays are
      // covered below); the parked banks are re-offered by sweepNow
      retry: { maxAttempts: 3, baseDelay: 0 }
    }))), 60_000)
})

/** Every way an engine run can end without a result, and the `lastError` it leaves. */
const badEndings: ReadonlyArray<[string, EngineBehavior, string]> = [
  ["CompileError", failure, "engine down"],
  ["Effect.die", () => Effect.die(new Error("boom")), "defect: boom"],
  ["an exception thrown inside the effect", () =>
    Effect.sync(() => {
      throw new Error("thrown inside")
    }), "defect: thrown inside"],
  ["an exception thrown by run itself, before any effect", () => {
    throw new Error("thrown by run")
  }, "defect: thrown by run"],
  ["a thrown non-Error value", () =>
    Effect.sync(() => {
      throw "a string"
    }), "defect: a string"],
  ["Effect.interrupt", () => Effect.interrupt, "interrupted"],
  ["a child fiber it waits for is interrupted", () =>
    Effect.gen(function*() {
      const child = yield* Effect.fork(Effect.never)
      yield* Fiber.interrupt(child)
      return yield* Fiber.join(child)
    }), "interrupted"]
]

describe("fault injection — defects and interruptions are failures", () => {
  for (const [name, bad, lastError] of badEndings) {
    it.effect(`${name}: counted, retried, parked; the worker lives on; the bank is never stuck in running`, () =>
      Effect.gen(function*() {
        const queue = yield* CompileQueue
        const books = yield* TestBooks
        books.behavior = (bankId, call) => bankId === "bad" ? bad(bankId, call) : Effect.succeed(ok(bankId))
        yield* books.notify((notify) => {
          notify("bad", 3)
          notify("good", 1) // queued behind "bad" on the only worker
        })
        yield* eventually(() => books.counts.calls === 2 && books.counts.inProgress === 0, "both ran")
        yield* eventually(() => Effect.runSync(queue.runningBanks).size === 0, "bookkeeping done")
        let bad1 = yield* stateOf("bad")
        expect(bad1.status).toBe("pending") // waiting for its retry, holding no worker
        expect(bad1.consecutiveFailures).toBe(1)
        expect(bad1.lastError).toEqual(Option.some(lastError))
        expect(bad1.memoriesSinceLastCompile).toBe(3)
        expect((yield* stateOf("good")).memoriesSinceLastCompile).toBe(0)

        yield* TestClock.adjust("2 seconds") // the retry runs and fails again: attempts spent
        yield* eventually(() => books.counts.calls === 3 && books.counts.inProgress === 0, "retried")
        yield* settle("2 seconds")
        bad1 = yield* stateOf("bad")
        expect(bad1.status).toBe("idle")
        expect(bad1.consecutiveFailures).toBe(2)
        expect(yield* queue.runningBanks).toEqual(new Set())

        yield* books.notify((notify) => notify("bad", 1)) // parked: retains do not call the broken engine again
        yield* settle("2 seconds")
        expect(books.counts.calls).toBe(3)

        books.behavior = (bankId) => Effect.succeed(ok(bankId))
        yield* queue.compileNow("bad")
        yield* queue.drain()
        const healed = yield* stateOf("bad")
        expect(healed.memoriesSinceLastCompile).toBe(0)
        expect(healed.consecutiveFailures).toBe(0)
        expect(healed.lastError).toEqual(Option.none())
        expect(yield* books.unbalanced()).toEqual([])
        expect(books.counts.failures).toBe(2)
      }).pipe(Effect.provide(booksLayer({
        config: { sizeThreshold: 1 },
        retry: { maxAttempts: 2, baseDelay: "1 second" }
      }))))
  }
})

describe("fault injection — hanging compiles", () => {
  it.effect("with compileTimeout a hanging compile is interrupted, counted as a failure and retried", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const books = yield* TestBooks
      let interrupted = 0
      books.behavior = (bankId, call) =>
        call === 1 ? Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++)) : Effect.succeed(ok(bankId))
      yield* books.notify((notify) => notify("slow", 2))
      yield* eventually(() => books.counts.inProgress === 1, "started")
      yield* TestClock.adjust("59 seconds")
      expect((yield* stateOf("slow")).status).toBe("running")
      yield* TestClock.adjust("1 second")
      yield* eventually(() => books.counts.inProgress === 0, "timed out")
      expect(interrupted).toBe(1)
      const timedOut = yield* stateOf("slow")
      expect(timedOut.status).toBe("pending")
      expect(timedOut.consecutiveFailures).toBe(1)
      expect(timedOut.lastError).toEqual(Option.some("compile timed out after 1m"))
      expect(timedOut.memoriesSinceLastCompile).toBe(2)
      yield* TestClock.adjust("2 seconds")
      yield* queue.drain()
      const done = yield* stateOf("slow")
      expect(done.memoriesSinceLastCompile).toBe(0)
      expect(done.consecutiveFailures).toBe(0)
      expect(books.counts.calls).toBe(2)
      expect(yield* books.unbalanced()).toEqual([])
    }).pipe(Effect.provide(booksLayer({
      config: { sizeThreshold: 1 },
      compileTimeout: "1 minute",
      retry: { maxAttempts: 3, baseDelay: "1 second" }
    }))))

  it.effect("without compileTimeout a hanging compile holds only its own worker slot", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const books = yield* TestBooks
      books.behavior = (bankId) => bankId === "stuck" ? Effect.never : Effect.succeed(ok(bankId))
      yield* books.notify((notify) => notify("stuck", 1))
      yield* eventually(() => books.counts.inProgress === 1, "stuck started")
      const others = Array.from({ length: 50 }, (_, i) => `other-${i}`)
      for (let round = 0; round < 3; round++) {
        yield* books.notify((notify) => others.forEach((id) => notify(id, 1)))
        yield* eventually(() => books.counts.successes === 50 * (round + 1), `round ${round} compiled`)
      }
      yield* eventually(() => Effect.runSync(queue.stats).pending === 0, "others done")
      expect(yield* queue.runningBanks).toEqual(new Set(["stuck"]))
      expect(yield* queue.pendingBanks).toEqual(new Set())
      for (const id of others) expect((yield* stateOf(id)).memoriesSinceLastCompile).toBe(0)
      expect(books.counts.maxPerBank).toBe(1)
      expect(yield* books.unbalanced()).toEqual([])
    }).pipe(Effect.provide(booksLayer({
      config: { sizeThreshold: 1 },
      concurrency: 2,
      maxQueueSize: 0,
      shutdownTimeout: 0 // the hanging compile is interrupted when the test's layer closes
    }))))
})

describe("fault injection — reported figures", () => {
  // Regression (found by these suites, fixed in 5253869): `stats.queued` counted a retry waiting for room in a full
  // queue, so it reported more queued banks than `capacity` allowed. Minimal case: maxQueueSize 1, the only worker
  // busy, one bank queued, a retry comes due.
  it.effect("stats.queued never exceeds capacity, even while a retry waits for room", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const books = yield* TestBooks
      const busy = yield* Deferred.make<void>()
      books.behavior = (bankId, call) =>
        bankId === "flaky" && call === 1 ?
          failure(bankId) :
          bankId === "busy" ?
          Effect.as(Deferred.await(busy), ok(bankId)) :
          Effect.succeed(ok(bankId))
      yield* books.notify((notify) => notify("flaky", 1))
      yield* eventually(() => books.counts.failures === 1, "flaky failed")
      yield* books.notify((notify) => notify("busy", 1)) // takes the only worker
      yield* eventually(() => books.counts.inProgress === 1, "busy started")
      yield* books.notify((notify) => notify("waiting", 1))
      yield* eventually(() => Effect.runSync(queue.stats).queued === 1, "queue full")
      yield* TestClock.adjust("2 seconds") // flaky's retry comes due and waits for room
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      const stats = yield* queue.stats
      yield* Deferred.succeed(busy, undefined)
      yield* settle("10 seconds")
      expect(stats.queued).toBeLessThanOrEqual(stats.capacity)
    }).pipe(Effect.provide(booksLayer({
      config: { sizeThreshold: 1 },
      maxQueueSize: 1,
      retry: { maxAttempts: 3, baseDelay: "1 second" }
    }))))
})

/** Builds the queue in a scope of its own, so a test can time closing it (live clock). */
const openQueue = (options: CompileQueueOptions, behavior: EngineBehavior) =>
  Effect.gen(function*() {
    const books = makeBooks(behavior)
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      CompileQueue.layer(options).pipe(
        Layer.provide(Layer.succeed(CompileEngine, books.engine)),
        Layer.provide(Logger.remove(Logger.defaultLogger))
      ),
      scope
    )
    const queue = Context.get(context, CompileQueue)
    books.attach(queue)
    /** Closes the scope; None if it had not returned after `limit` (the closing fiber is left behind). */
    const closeWithin = (limit: Duration.DurationInput) =>
      Effect.gen(function*() {
        const started = Date.now()
        const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.disconnect, Effect.timeout(limit), Effect.option)
        return Option.map(closed, () => Date.now() - started)
      })
    return { books, queue, closeWithin }
  })

describe("fault injection — shutdown with retries outstanding (live clock)", () => {
  // Regression (found by these suites, fixed in 5253869): retry fibers were forked from inside the worker's
  // uninterruptible bookkeeping and inherited it, so close waited out every retry delay before its deadline started.
  it.live("closing during a retry delay cancels the retry timer at once", () =>
    Effect.gen(function*() {
      const { books, closeWithin, queue } = yield* openQueue(
        { config: { sizeThreshold: 1 }, retry: { maxAttempts: 3, baseDelay: "2 seconds" }, shutdownTimeout: 0 },
        failure
      )
      queue.unsafeNotifyRetain("flaky", 1)
      yield* eventually(() => books.counts.failures === 1, "first attempt failed")
      const closeMs = yield* closeWithin("5 seconds")
      expect(Option.getOrThrow(closeMs)).toBeLessThan(500)
    }))

  // Regression, same cause, worse effect: a retry due while the queue is full waited for room uninterruptibly; behind
  // hung compiles nothing made room and close never returned, whatever shutdownTimeout said.
  it.live("closing returns within shutdownTimeout + 1 s while a retry waits for room behind a hung compile", () =>
    Effect.gen(function*() {
      const { books, closeWithin, queue } = yield* openQueue(
        {
          config: { sizeThreshold: 1 },
          maxQueueSize: 1,
          retry: { maxAttempts: 3, baseDelay: "300 millis" },
          shutdownTimeout: "200 millis"
        },
        (bankId, call) => call === 1 ? failure(bankId) : bankId === "busy" ? Effect.never : Effect.succeed(ok(bankId))
      )
      queue.unsafeNotifyRetain("flaky", 1)
      yield* eventually(() => books.counts.failures === 1, "flaky failed")
      queue.unsafeNotifyRetain("busy", 1)
      yield* eventually(() => books.counts.inProgress === 1, "busy started")
      queue.unsafeNotifyRetain("waiting", 1) // fills the queue
      yield* Effect.sleep(600) // flaky's retry comes due (150-450 ms) and waits for room
      const stats = yield* queue.stats
      expect([stats.pending, stats.running, stats.queued]).toEqual([2, 1, 1]) // pending: flaky and waiting; running: busy; in the queue: waiting
      const closeMs = yield* closeWithin("1200 millis")
      expect(Option.isSome(closeMs)).toBe(true)
    }))
})
