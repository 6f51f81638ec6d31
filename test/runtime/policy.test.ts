/**
 * Per-bank policies, forget-triggered compiles and compile jobs, sentence by sentence of the contract, on the real
 * queue under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Queue, Scope, TestClock } from "effect"
import {
  BankPolicy,
  BankPolicyError,
  BankStateStore,
  CompileError,
  CompileQueue,
  type CompileQueueOptions,
  CompileTriggerConfig
} from "../../src/index.js"
import { captureLogs, instant, openQueue, queueLayer, retain, TestEngine } from "../support/utils.js"

/** Each job carries its run's fencing token (test/runtime/fencingTokens.test.ts checks the numbers). */
const ANY_TOKEN = { epoch: expect.any(Number), sequence: expect.any(Number) }

const stateOf = (bankId: string) =>
  Effect.flatMap(CompileQueue, (q) => q.bankState(bankId)).pipe(Effect.map(Option.getOrThrow))

const statusOf = (bankId: string) => Effect.map(stateOf(bankId), (s) => s.status)

const counters = (bankId: string) =>
  Effect.map(stateOf(bankId), (s) => ({ memories: s.memoriesSinceLastCompile, forgets: s.forgetsSinceLastCompile }))

const forget = (bankId: string, count?: number) => Effect.flatMap(CompileQueue, (q) => q.notifyForget(bankId, count))

/** Holds every compile "in flight" until `open`. */
const gated = Effect.gen(function*() {
  const engine = yield* TestEngine
  yield* engine.hold
  return engine
})

describe("setPolicy / clearPolicy / policyOf / configFor", () => {
  it.effect("setPolicy creates an unknown bank with nothing counted and replaces the policy; configFor is policy over defaults", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* queue.setPolicy("p", { sizeThreshold: 5 })
      expect(yield* stateOf("p")).toMatchObject({
        memoriesSinceLastCompile: 0,
        forgetsSinceLastCompile: 0,
        status: "idle",
        policy: Option.some(new BankPolicy({ sizeThreshold: 5 }))
      })
      expect(Option.isNone((yield* stateOf("p")).firstRetainAt)).toBe(true)
      yield* queue.setPolicy("p", new BankPolicy({ forgetThreshold: 3 })) // replaces: sizeThreshold falls back
      expect(yield* queue.policyOf("p")).toEqual(Option.some(new BankPolicy({ forgetThreshold: 3 })))
      const effective = yield* queue.configFor("p")
      expect(effective).toBeInstanceOf(CompileTriggerConfig)
      expect(effective).toMatchObject({ sizeThreshold: 20, forgetThreshold: 3, stalenessDays: 7, enabled: true })
      expect(yield* queue.configFor("unknown")).toBe(queue.config)
      expect(yield* queue.policyOf("unknown")).toEqual(Option.none())
      yield* queue.clearPolicy("p")
      expect(yield* queue.policyOf("p")).toEqual(Option.none())
      expect(yield* queue.configFor("p")).toBe(queue.config)
      yield* queue.clearPolicy("never-seen") // no-op
      expect(Option.isNone(yield* queue.bankState("never-seen"))).toBe(true)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 20 } }))))

  it.effect("an invalid bank id or field fails with BankPolicyError and changes nothing", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const bad = yield* Effect.flip(queue.setPolicy("", { sizeThreshold: 1 }))
      expect(bad).toBeInstanceOf(BankPolicyError)
      expect(bad.message).toMatch(/bank id/)
      const field = yield* Effect.flip(queue.setPolicy("b", { sizeThreshold: -1 }))
      expect(field).toMatchObject({ _tag: "BankPolicyError", bankId: "b" })
      expect(field.message).toMatch(/sizeThreshold/)
      const extra = yield* Effect.flip(queue.setPolicy("b", { colour: "red" } as never))
      expect(extra.message).toMatch(/colour/)
      expect((yield* queue.stats).banks).toBe(0) // no bank created
      yield* queue.setPolicy("b", { sizeThreshold: 2 })
      yield* Effect.flip(queue.setPolicy("b", { forgetThreshold: 0 }))
      expect(yield* queue.policyOf("b")).toEqual(Option.some(new BankPolicy({ sizeThreshold: 2 }))) // kept
    }).pipe(Effect.provide(queueLayer())))

  it.effect("setPolicy re-checks at once: an idle bank whose new rule holds is queued before it returns", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* gated
      yield* retain("r", 6)
      expect(yield* statusOf("r")).toBe("idle") // 6 < 50
      yield* queue.setPolicy("r", { sizeThreshold: 5 })
      expect(yield* statusOf("r")).toBe("pending")
    }).pipe(Effect.provide(queueLayer())))

  it.effect("clearPolicy re-checks at once with the queue's config", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* gated
      yield* queue.setPolicy("c", { enabled: false })
      yield* retain("c", 60)
      expect(yield* statusOf("c")).toBe("idle")
      yield* queue.clearPolicy("c")
      expect(yield* statusOf("c")).toBe("pending")
    }).pipe(Effect.provide(queueLayer())))

  it.effect("banks without a policy follow the queue's config; 1 % with policies do not disturb the others", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      for (let n = 0; n < 100; n++) if (n % 10 === 0) yield* queue.setPolicy(`b${n}`, { sizeThreshold: 2 })
      for (let n = 0; n < 100; n++) queue.unsafeNotifyRetain(`b${n}`, 3)
      yield* queue.drain()
      expect([...engine.calls].sort()).toEqual(Array.from({ length: 10 }, (_, k) => `b${k * 10}`).sort())
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 }, maxQueueSize: 0 }))))

  it.effect("a policy's staleness is its own, exact from the first retain", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* gated
      yield* queue.setPolicy("s", { stalenessDays: 1, stalenessMinMemories: 2 })
      yield* retain("s", 1)
      yield* TestClock.adjust("1 day")
      yield* retain("s", 1)
      expect(yield* statusOf("s")).toBe("pending")
    }).pipe(Effect.provide(queueLayer())))
})

describe("notifyForget / unsafeNotifyForget", () => {
  it.effect("counts forgets; at forgetThreshold the bank is queued before notifyForget returns (delay 0)", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      yield* gated
      yield* forget("f", 2)
      expect(yield* stateOf("f")).toMatchObject({ forgetsSinceLastCompile: 2, status: "idle" })
      queue.unsafeNotifyForget("f")
      expect(yield* stateOf("f")).toMatchObject({ forgetsSinceLastCompile: 3, status: "pending" })
    }).pipe(Effect.provide(queueLayer({ config: { forgetThreshold: 3 } }))))

  it.effect("invalid input is ignored with a warning and changes nothing", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const queue = yield* CompileQueue
      for (const count of [0, -1, 1.5, NaN, Infinity]) queue.unsafeNotifyForget("x", count)
      yield* queue.notifyForget("x", "2" as unknown as number)
      queue.unsafeNotifyForget("")
      queue.unsafeNotifyForget(42 as unknown as string)
      expect((yield* queue.stats).banks).toBe(0)
      expect(logs.filter((l) => l.level === "WARN" && l.message.startsWith("ignored request"))).toHaveLength(8)
    }).pipe(Effect.provide(queueLayer()), Effect.provide(layer))
  })

  it.effect("what a compile consumes: both counters taken at the engine call; arrivals during it carry over", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* gated
      yield* retain("k", 2)
      yield* forget("k", 1) // threshold 1: queued, runs (held)
      expect(yield* Queue.take(engine.started)).toBe("k")
      yield* retain("k", 3)
      yield* forget("k", 4)
      expect(yield* counters("k")).toEqual({ memories: 5, forgets: 5 })
      yield* engine.open
      yield* queue.drain()
      expect(engine.jobs[0]).toEqual({ bankId: "k", reason: "forget", memories: 2, forgets: 1, attempt: 1, fencingToken: ANY_TOKEN, memoryWait: { meanSeconds: 0, oldestSeconds: 0 } })
      // the 4 forgets during the compile reached the threshold again: compiled once more, consuming the rest
      expect(engine.jobs[1]).toEqual({ bankId: "k", reason: "forget", memories: 3, forgets: 4, attempt: 1, fencingToken: ANY_TOKEN, memoryWait: { meanSeconds: 0, oldestSeconds: 0 } })
      expect(yield* counters("k")).toEqual({ memories: 0, forgets: 0 })
    }).pipe(Effect.provide(queueLayer())))

  it.effect("a failed compile consumes nothing", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.fail(new CompileError({ bankId, message: "no" }))
      yield* forget("z", 2)
      yield* queue.drain()
      expect(yield* counters("z")).toEqual({ memories: 0, forgets: 2 })
    }).pipe(Effect.provide(queueLayer({ retry: { maxAttempts: 1 } }))))
})

describe("the forget delay", () => {
  const delayed = (options: CompileQueueOptions = {}) =>
    queueLayer({ config: { forgetThreshold: 2, forgetDelaySeconds: 60 }, ...options })

  it.effect("queued forgetDelaySeconds after the forget that reached the threshold; forgets in between join it", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* forget("d")
      yield* TestClock.adjust("10 seconds")
      yield* forget("d") // reaches 2: due at 70 s
      yield* TestClock.adjust("30 seconds")
      yield* forget("d", 5) // joins
      expect(yield* statusOf("d")).toBe("idle") // idle during the delay…
      yield* queue.drain() // …and drain does not wait for it
      expect(engine.calls).toEqual([])
      yield* TestClock.adjust("29999 millis")
      expect(engine.calls).toEqual([])
      yield* TestClock.adjust("1 milli")
      yield* queue.drain()
      expect(engine.jobs).toEqual([{ bankId: "d", reason: "forget", memories: 0, forgets: 7, attempt: 1, fencingToken: ANY_TOKEN }])
      yield* TestClock.adjust("10 minutes")
      expect(engine.calls).toHaveLength(1)
    }).pipe(Effect.provide(delayed())))

  it.effect("size or staleness queues at once during the delay, takes the forgets along, and the delayed one is dropped", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* forget("s", 2)
      yield* TestClock.adjust("20 seconds")
      yield* retain("s", 5)
      yield* queue.drain()
      expect(engine.jobs).toEqual([{ bankId: "s", reason: "size", memories: 5, forgets: 2, attempt: 1, fencingToken: ANY_TOKEN, memoryWait: { meanSeconds: 0, oldestSeconds: 0 } }])
      yield* TestClock.adjust("2 minutes")
      yield* queue.drain()
      expect(engine.calls).toEqual(["s"])
    }).pipe(Effect.provide(delayed({ config: { sizeThreshold: 5, forgetThreshold: 2, forgetDelaySeconds: 60 } }))))

  it.effect("forgets reaching the threshold during a compile are queued the delay after, once it ends", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* gated
      yield* retain("r", 5)
      yield* Queue.take(engine.started)
      yield* forget("r", 2) // due in 60 s
      yield* engine.open
      yield* queue.drain()
      expect(yield* stateOf("r")).toMatchObject({ status: "idle", forgetsSinceLastCompile: 2 })
      yield* TestClock.adjust("60 seconds")
      yield* queue.drain()
      expect(engine.jobs.map((j) => [j.reason, j.forgets])).toEqual([["size", 0], ["forget", 2]])
    }).pipe(Effect.provide(delayed({ config: { sizeThreshold: 5, forgetThreshold: 2, forgetDelaySeconds: 60 } }))))

  it.effect("closing cancels a running delay; the forgets stay counted", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(delayed(), scope)
      const queue = Context.get(context, CompileQueue)
      queue.unsafeNotifyForget("c", 2)
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("2 minutes")
      expect(Context.get(context, TestEngine).calls).toEqual([])
    }))

  it.effect("a policy sets its own delay", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.setPolicy("p", { forgetDelaySeconds: 0 })
      yield* forget("p", 2)
      yield* forget("other", 2)
      yield* queue.drain()
      expect(engine.calls).toEqual(["p"])
    }).pipe(Effect.provide(delayed())))
})

describe("disabled banks", () => {
  it.effect("keep counting but are never queued by the rule or the sweep; compileNow still compiles them", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.setPolicy("off", { enabled: false })
      yield* retain("off", 100)
      yield* forget("off", 10)
      yield* TestClock.adjust("30 days")
      expect(yield* queue.sweepNow).toBe(0)
      yield* queue.drain()
      expect(engine.calls).toEqual([])
      expect(yield* counters("off")).toEqual({ memories: 100, forgets: 10 })
      yield* queue.compileNow("off")
      yield* queue.drain()
      expect(engine.jobs).toEqual([{
        bankId: "off",
        reason: "manual",
        memories: 100,
        forgets: 10,
        attempt: 1,
        fencingToken: ANY_TOKEN,
        memoryWait: { meanSeconds: 2_592_000, oldestSeconds: 2_592_000 } // counted 30 days before
      }])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))

  it.effect("enabled: false in the config (COMPILE_DEFAULT_ENABLED=false): only banks a policy enables compile", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* queue.setPolicy("on", { enabled: true })
      yield* retain("on", 5)
      yield* retain("default", 5)
      yield* forget("default", 5)
      yield* queue.drain()
      expect(engine.calls).toEqual(["on"])
      expect(yield* queue.sweepNow).toBe(0)
    }).pipe(Effect.provide(queueLayer({ config: { enabled: false, sizeThreshold: 5 } }))))

  it.effect("a bank disabled while it waits in the queue is skipped: idle, counters kept, engine not called", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* gated
      yield* retain("first", 5)
      yield* Queue.take(engine.started) // holds the only worker
      yield* retain("second", 5)
      yield* forget("second", 1)
      expect(yield* statusOf("second")).toBe("pending")
      yield* queue.setPolicy("second", { enabled: false })
      yield* engine.open
      yield* queue.drain()
      expect(engine.calls).toEqual(["first"])
      expect(yield* stateOf("second")).toMatchObject({
        status: "idle",
        memoriesSinceLastCompile: 5,
        forgetsSinceLastCompile: 1
      })
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5, forgetThreshold: 10 } }))))

  it.effect("compileNow on a queued bank that is then disabled still compiles (explicit wins)", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* gated
      yield* retain("first", 5)
      yield* Queue.take(engine.started)
      yield* retain("second", 5)
      yield* queue.compileNow("second")
      yield* queue.setPolicy("second", { enabled: false })
      yield* engine.open
      yield* queue.drain()
      expect(engine.calls).toEqual(["first", "second"])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5 } }))))
})

describe("compile jobs", () => {
  it.effect("reason: size, staleness, forget (first that holds), manual; attempt grows on retries", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* retain("size", 5)
      yield* forget("size", 1) // joins the queued compile
      yield* queue.drain()
      yield* retain("stale", 2)
      yield* TestClock.adjust("1 day")
      yield* retain("stale", 1)
      yield* queue.drain()
      yield* forget("forget", 1)
      yield* queue.drain()
      yield* queue.compileNow("manual")
      yield* queue.drain()
      let failures = 1
      engine.behavior = (bankId, call) =>
        failures-- > 0 ? Effect.fail(new CompileError({ bankId, message: "once" })) : instant(bankId, call)
      yield* retain("retried", 5)
      yield* TestClock.adjust("10 seconds")
      yield* queue.drain()
      expect(engine.jobs.map((j) => [j.bankId, j.reason, j.memories, j.forgets, j.attempt])).toEqual([
        ["size", "size", 5, 1, 1], // the forget joined the queued compile
        ["stale", "staleness", 3, 0, 1],
        ["forget", "forget", 0, 1, 1],
        ["manual", "manual", 0, 0, 1],
        ["retried", "size", 5, 0, 1],
        ["retried", "size", 5, 0, 2]
      ])
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 5, stalenessDays: 1, stalenessMinMemories: 3 } }))))
})

describe("persistence of policies and forgets", () => {
  it.scoped("policies and forget counters survive a restart; a restored pending bank compiles with reason restored", () =>
    Effect.gen(function*() {
      const store = Context.get(yield* Layer.build(BankStateStore.memory), BankStateStore)
      const layer = Layer.succeed(BankStateStore, store)
      const options: CompileQueueOptions = { config: { sizeThreshold: 5, forgetThreshold: 3, forgetDelaySeconds: 30 } }
      const first = yield* openQueue(layer, options)
      yield* first.queue.setPolicy("p", { enabled: false, stalenessDays: 2 })
      first.queue.unsafeNotifyForget("p", 7)
      first.queue.unsafeNotifyForget("d", 3) // delay running at the restart
      first.queue.unsafeNotifyForget("q", 1)
      yield* first.engine.hold
      first.queue.unsafeNotifyRetain("cut", 5)
      yield* Queue.take(first.engine.started)
      yield* first.close.pipe(Effect.fork)
      yield* TestClock.adjust("30 seconds") // the shutdown deadline passes: "cut" stays pending
      yield* first.engine.open

      const second = yield* openQueue(layer, options)
      expect(yield* second.queue.policyOf("p")).toEqual(Option.some(new BankPolicy({ enabled: false, stalenessDays: 2 })))
      expect((yield* second.queue.configFor("p")).stalenessDays).toBe(2)
      expect(Option.getOrThrow(yield* second.queue.bankState("p")).forgetsSinceLastCompile).toBe(7)
      expect(Option.getOrThrow(yield* second.queue.bankState("q")).forgetsSinceLastCompile).toBe(1)
      yield* second.queue.drain()
      expect(second.engine.jobs.map((j) => [j.bankId, j.reason])).toEqual([["cut", "restored"]])
      yield* TestClock.adjust("30 seconds") // the delay starts afresh after a restart
      yield* second.queue.drain()
      expect(second.engine.jobs.map((j) => [j.bankId, j.reason, j.forgets])).toEqual([
        ["cut", "restored", 0],
        ["d", "forget", 3]
      ])
      yield* second.close
    }))
})
