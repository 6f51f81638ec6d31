/**
 * The compile core driven directly: no runtime, no fibers, no TestClock. A plain array stands in for the bounded
 * queue, and every transition gets its `now` from the test.
 */
import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import { BankPolicy } from "../../src/BankPolicy.js"
import {
  type Answer,
  BUDGET,
  CompileCore,
  DEFERRED,
  DELAY,
  DRAINED,
  DROPPED,
  DROPPED_FIRST,
  NOTHING,
  QUEUED,
  RECHECK,
  SKIPPED,
  type Start,
  TIMELINE,
  WAIT_BUDGET
} from "../../src/internal/core/compileCore.js"
import type { BudgetLimits } from "../../src/internal/core/tokenBucket.js"
import { TokenBucket } from "../../src/internal/core/tokenBucket.js"
import { CompileTriggerConfig, type CompileTriggerConfigInput } from "../../src/CompileTriggerConfig.js"

/** The memories a compile took when `start` let it run (-1 when it did not: see the answer itself). */
const takenBy = (start: Start): number => start._tag === "Run" ? start.memories : -1

const DAY = 86_400_000
/** The worker hands the core each run's token; the core only carries it into the job. */
const TOKEN = { epoch: 3, sequence: 7 }
const HOUR = 3_600_000

const harness = (
  options: {
    config?: CompileTriggerConfigInput
    maxQueueSize?: number
    maxAttempts?: number
    budget?: Partial<BudgetLimits>
  } = {}
) => {
  const capacity = options.maxQueueSize ?? Infinity
  const fifo: Array<number> = []
  const core = new CompileCore({
    config: new CompileTriggerConfig(options.config ?? { sizeThreshold: 5, stalenessDays: 1, stalenessMinMemories: 2 }),
    maxAttempts: options.maxAttempts ?? 3,
    baseDelayMillis: 1000,
    maxQueueSize: capacity,
    persistent: false,
    offer: (i) => fifo.length < capacity && fifo.push(i) > 0,
    budget: options.budget === undefined ? undefined : {
      tokens: Infinity,
      compiles: Infinity,
      bankTokens: Infinity,
      periodMillis: HOUR,
      ...options.budget
    }
  })
  const bank = (id: string) => core.table.index.get(id) ?? core.add(id)
  const retain = (id: string, count = 1, now = 0): Answer => {
    const i = bank(id)
    if (!core.isCounted(i)) core.firstRetain(i, now)
    return core.retain(i, count, now)
  }
  /** A worker takes the head of the queue. */
  const take = () => {
    const i = fifo.shift()!
    const start = core.start(i)
    return { i, id: core.table.ids[i]!, start, taken: takenBy(start) }
  }
  const state = (id: string) => core.snapshot(bank(id))
  const queuedIds = () => fifo.map((i) => core.table.ids[i])
  return { core, fifo, bank, retain, take, state, queuedIds }
}

describe("compile core — dedup and single flight", () => {
  it("a bank is queued once, however often it triggers or is requested", () => {
    const { core, bank, queuedIds, retain, state } = harness()
    expect(retain("a", 4)).toBe(NOTHING)
    expect(state("a").status).toBe("idle")
    expect(retain("a", 1)).toBe(QUEUED)
    expect(retain("a", 10)).toBe(NOTHING)
    expect(core.request(bank("a"))).toBe(NOTHING)
    expect(queuedIds()).toEqual(["a"])
    expect(state("a")).toMatchObject({ status: "pending", memoriesSinceLastCompile: 15 })
    expect(core.counts()).toMatchObject({ banks: 1, pending: 1, running: 0, queued: 1 })
  })

  it("a running bank is not queued by retains; a request while running queues it when the compile ends", () => {
    const { core, bank, fifo, retain, take, state } = harness()
    retain("a", 5)
    const run = take()
    expect(run.taken).toBe(5)
    expect(state("a").status).toBe("running")
    expect(retain("a", 7)).toBe(NOTHING)
    expect(core.request(bank("a"))).toBe(NOTHING)
    expect(fifo).toEqual([])
    expect(core.succeeded(run.i, run.taken, 100, undefined)).toBe(QUEUED)
    expect(state("a")).toMatchObject({ status: "pending", memoriesSinceLastCompile: 7 })
  })

  it("compileNow queues below the threshold and creates unknown banks", () => {
    const { core, bank, state } = harness()
    expect(core.request(bank("new"))).toBe(QUEUED)
    expect(state("new")).toMatchObject({ status: "pending", memoriesSinceLastCompile: 0 })
  })
})

describe("compile core — what a compile consumes", () => {
  it("retains during a compile carry over; the rest is re-checked", () => {
    const { retain, take, core, state } = harness()
    retain("a", 5)
    const run = take()
    retain("a", 3)
    expect(core.succeeded(run.i, run.taken, 50, undefined)).toBe(NOTHING) // 3 < 5
    expect(state("a")).toMatchObject({ status: "idle", memoriesSinceLastCompile: 3, consecutiveFailures: 0 })
    expect(core.table.lastCompileAt[run.i]).toBe(50)
    retain("b", 5)
    const second = take()
    retain("b", 6)
    expect(core.succeeded(second.i, second.taken, 60, "partial")).toBe(QUEUED) // 6 >= 5
    expect(state("b").lastError._tag).toBe("Some")
  })

  it("an empty bank is not re-checked after its compile (sizeThreshold 0 would loop)", () => {
    const { core, bank, take } = harness({ config: { sizeThreshold: 0 } })
    core.request(bank("a"))
    const run = take()
    expect(core.succeeded(run.i, run.taken, 1, undefined)).toBe(NOTHING)
  })

  it("nothing is pending or running after the last compile: DRAINED is raised", () => {
    const { core, retain, take } = harness()
    retain("a", 5)
    core.takeSignals()
    const run = take()
    expect(core.takeSignals() & DRAINED).toBe(0)
    core.succeeded(run.i, run.taken, 1, undefined)
    expect(core.takeSignals() & DRAINED).toBe(DRAINED)
  })
})

describe("compile core — failures and parking", () => {
  it("a failure keeps counter and lastCompileAt, stays pending for its retry, and parks when attempts are spent", () => {
    const { core, fifo, retain, take, state, bank } = harness({ maxAttempts: 2 })
    retain("a", 5)
    let run = take()
    expect(core.failed(run.i, "boom")).toEqual({ attempt: 1, retry: true })
    expect(state("a")).toMatchObject({ status: "pending", memoriesSinceLastCompile: 5, consecutiveFailures: 1 })
    expect(core.table.lastCompileAt[run.i]).toBeNaN()
    expect(core.retryDelay(1, 1)).toBe(1000)
    expect(core.retryDelay(3, 0.5)).toBe(2000)
    expect(retain("a", 5)).toBe(NOTHING) // waiting for its retry
    expect(fifo).toEqual([])
    // the retry delay is over: it offers itself again
    expect(core.requeue(run.i)).toBe(true)
    expect(fifo).toEqual([run.i])
    run = take()
    expect(core.failed(run.i, "boom again")).toEqual({ attempt: 2, retry: false })
    expect(state("a")).toMatchObject({ status: "idle", consecutiveFailures: 2 })
    // parked: retains count but do not call the broken engine again
    expect(retain("a", 50)).toBe(NOTHING)
    expect(state("a").memoriesSinceLastCompile).toBe(60)
    // the sweep unparks and queues it; its attempts start over
    expect(core.sweep(0).queued).toBe(1)
    run = take()
    expect(core.failed(run.i, "still")).toEqual({ attempt: 1, retry: true })
    // compileNow also unparks
    const b = bank("b")
    retain("b", 5)
    const runB = take()
    core.failed(runB.i, "x")
    expect(core.requeue(runB.i)).toBe(true)
    expect(core.failed(take().i, "y").retry).toBe(false) // parked
    expect(core.request(b)).toBe(QUEUED)
  })

  it("a compile cut off by shutdown stays pending; after close nothing is retried, re-queued or parked", () => {
    const { core, retain, take, state } = harness()
    retain("a", 5)
    retain("b", 5)
    const a = take()
    const b = take()
    core.close()
    core.interrupted(a.i)
    expect(state("a").status).toBe("pending")
    expect(core.failed(b.i, "down")).toEqual({ attempt: 1, retry: false })
    expect(state("b").status).toBe("idle")
    expect(core.requeue(a.i)).toBe(false)
    expect(core.sweep(0).queued).toBe(0)
  })
})

describe("compile core — overflow and the sweep", () => {
  it("a full queue drops the bank, warns once until it is queued again", () => {
    const { core, retain, take, state } = harness({ maxQueueSize: 1 })
    expect(retain("a", 5)).toBe(QUEUED)
    expect(retain("b", 5)).toBe(DROPPED_FIRST)
    expect(retain("b", 1)).toBe(DROPPED)
    expect(state("b").status).toBe("idle")
    const run = take()
    core.succeeded(run.i, run.taken, 1, undefined)
    expect(retain("b", 1)).toBe(QUEUED)
    take()
    retain("c", 5)
    expect(retain("b", 5)).toBe(NOTHING) // b is running
    expect(retain("d", 5)).toBe(DROPPED_FIRST)
  })

  it("a sweep that runs out of room resumes where it stopped", () => {
    const { core, bank, queuedIds, take, fifo } = harness({ maxQueueSize: 2 })
    const ids = ["a", "b", "c", "d", "e"]
    ids.forEach(bank)
    // requested while the queue is full: kept for the sweep
    fifo.push(-1, -1)
    for (const id of ids) expect(core.request(bank(id))).toBe(DROPPED_FIRST)
    fifo.length = 0
    expect(core.sweep(0)).toEqual({ queued: 2, notQueued: 3, newlyWarned: 0 })
    expect(queuedIds()).toEqual(["a", "b"])
    for (let n = 0; n < 2; n++) {
      const run = take()
      core.succeeded(run.i, run.taken, 1, undefined)
    }
    // starts at c, the first it left out
    expect(core.sweep(1)).toEqual({ queued: 2, notQueued: 1, newlyWarned: 0 }) // e was warned about already
    expect(queuedIds()).toEqual(["c", "d"])
  })

  it("staleness: the timeline marks the bank at its due time; the sweep checks exactly from its own now", () => {
    const { core, retain, take, state } = harness({ config: { sizeThreshold: 50, stalenessDays: 1, stalenessMinMemories: 2 } })
    const i = core.add("a")
    core.firstRetain(i, 1000)
    expect(core.takeSignals() & TIMELINE).toBe(TIMELINE)
    expect(core.retain(i, 2, 1000)).toBe(NOTHING)
    expect(core.nextStaleDue).toBe(1000 + DAY)
    core.staleDue(1000 + DAY - 1)
    expect(retain("a", 0 + 1)).toBe(NOTHING)
    core.staleDue(1000 + DAY)
    expect(retain("a", 1)).toBe(QUEUED) // stale and >= stalenessMinMemories, on the retain path
    const run = take()
    core.succeeded(run.i, run.taken, 5000, undefined)
    expect(core.nextStaleDue).toBe(5000 + DAY) // staleness restarts from the compile
    retain("a", 3)
    expect(state("a").status).toBe("idle")
    // the sweep does not need the timeline
    expect(core.sweep(5000 + DAY - 1).queued).toBe(0)
    expect(core.sweep(5000 + DAY).queued).toBe(1)
  })
})

describe("compile core — persistence", () => {
  it("restore loads rows, re-queues pending and running banks in order, and rows round-trip", () => {
    const capacity = Infinity
    const core = new CompileCore({
      config: new CompileTriggerConfig({}),
      maxAttempts: 3,
      baseDelayMillis: 0,
      maxQueueSize: capacity,
      persistent: true,
      offer: () => true
    })
    const plain = { forgets: 0, policy: null, budget: null, scopes: null }
    const rows = [
      { bankId: "a", memories: 3, lastCompileAt: 10, firstRetainAt: 5, consecutiveFailures: 0, lastError: null, status: "idle", ...plain, oldestMemoryAt: 12, memoryWaitSum: 4 },
      { bankId: "b", memories: 9, lastCompileAt: null, firstRetainAt: 7, consecutiveFailures: 2, lastError: "x", status: "running", ...plain, oldestMemoryAt: 7, memoryWaitSum: 0 },
      { bankId: "c", memories: 0, lastCompileAt: null, firstRetainAt: null, consecutiveFailures: 0, lastError: null, status: "pending", ...plain, oldestMemoryAt: null, memoryWaitSum: 0 }
    ] as const
    const requeued = core.restore(rows, 20)
    expect(requeued.map((i) => core.table.ids[i])).toEqual(["b", "c"])
    expect(core.changed().length).toBe(0) // what was just loaded is what is stored
    expect(core.row(0)).toEqual(rows[0])
    expect(core.row(1)).toEqual({ ...rows[1], status: "pending" })
    expect(core.row(2)).toEqual(rows[2])
    core.retain(0, 1, 20)
    expect(Array.from(core.changed())).toEqual([0])
  })
})

describe("compile core — policies, forgets, jobs", () => {
  it("retain on a policy bank answers RECHECK; the exact re-check queues it with its reason", () => {
    const { core, bank, retain, take, state } = harness()
    expect(core.setPolicy(bank("p"), new BankPolicy({ sizeThreshold: 2 }), 0)).toBe(NOTHING)
    expect(retain("p", 1)).toBe(RECHECK)
    expect(core.recheck(bank("p"), 0)).toBe(NOTHING)
    expect(retain("p", 1)).toBe(RECHECK)
    expect(core.recheck(bank("p"), 0)).toBe(QUEUED)
    const run = take()
    expect(core.job(run.i, run.taken, TOKEN)).toEqual({
      bankId: "p",
      reason: "size",
      memories: 2,
      forgets: 0,
      attempt: 1,
      fencingToken: TOKEN,
      memoryWait: { meanSeconds: 0, oldestSeconds: 0 }
    })
    expect(state("p").policy).toEqual(Option.some(new BankPolicy({ sizeThreshold: 2 })))
  })

  it("forgets: queued at the threshold without a delay; with one, DELAY, then queued when it is over", () => {
    const now = harness({ config: { forgetThreshold: 2 } })
    const a = now.bank("a")
    expect(now.core.forget(a, 1)).toBe(NOTHING)
    expect(now.core.forget(a, 1)).toBe(QUEUED)
    expect(now.take().taken).toBe(0)
    const later = harness({ config: { forgetThreshold: 2, forgetDelaySeconds: 10 } })
    const b = later.bank("b")
    expect(later.core.forget(b, 2)).toBe(DELAY)
    expect(later.core.armForget(b, 1000)).toBe(10_000)
    expect(later.core.forget(b, 1)).toBe(NOTHING) // joins
    expect(later.core.forgetDelayOver(b, 5000, 5000)).toBe(NOTHING) // not this delay's end
    expect(later.core.forgetDelayOver(b, 11_000, 11_000)).toBe(QUEUED)
    const run = later.take()
    expect(later.core.job(run.i, run.taken, TOKEN)).toMatchObject({ reason: "forget", forgets: 3 })
    expect(later.core.succeeded(run.i, run.taken, 12_000, undefined)).toBe(NOTHING)
    expect(later.state("b").forgetsSinceLastCompile).toBe(0)
  })

  it("a size trigger during the delay takes the forgets along and drops the delayed compile", () => {
    const { core, bank, retain, take } = harness({ config: { sizeThreshold: 3, forgetDelaySeconds: 10 } })
    const i = bank("s")
    expect(core.forget(i, 1)).toBe(DELAY)
    core.armForget(i, 0)
    expect(retain("s", 3)).toBe(QUEUED)
    expect(core.forgetDueAt(i)).toBeUndefined()
    const run = take()
    expect(core.job(run.i, run.taken, TOKEN)).toMatchObject({ reason: "size", memories: 3, forgets: 1 })
    core.succeeded(run.i, run.taken, 1, undefined)
    expect(core.forgetDelayOver(i, 10_000, 10_000)).toBe(NOTHING)
  })

  it("a bank disabled while queued is SKIPPED at start: idle, counters kept; compileNow's is not", () => {
    const { core, bank, retain, take, state } = harness()
    retain("d", 5)
    core.setPolicy(bank("d"), new BankPolicy({ enabled: false }), 0)
    expect(take().start).toBe(SKIPPED)
    expect(state("d")).toMatchObject({ status: "idle", memoriesSinceLastCompile: 5 })
    expect(core.sweep(10 * DAY).queued).toBe(0)
    expect(core.request(bank("d"))).toBe(QUEUED)
    const run = take()
    expect(core.job(run.i, run.taken, TOKEN)).toMatchObject({ reason: "manual", memories: 5 })
  })

  it("clearPolicy: back on the queue's config, re-checked at once", () => {
    const { core, bank, retain } = harness()
    core.setPolicy(bank("c"), new BankPolicy({ enabled: false }), 0)
    expect(retain("c", 9)).toBe(RECHECK)
    expect(core.recheck(bank("c"), 0)).toBe(NOTHING)
    expect(core.clearPolicy(bank("c"), 0)).toBe(QUEUED)
    expect(core.policyOf(bank("c"))).toBeUndefined()
  })

  it("restored banks compile with reason restored; rows carry forgets and the policy", () => {
    const core = new CompileCore({
      config: new CompileTriggerConfig({}),
      maxAttempts: 3,
      baseDelayMillis: 0,
      maxQueueSize: Infinity,
      persistent: true,
      offer: () => true
    })
    const policy = new BankPolicy({ stalenessDays: 2 })
    const row = { bankId: "r", memories: 1, lastCompileAt: null, firstRetainAt: 5, consecutiveFailures: 0, lastError: null, status: "pending", forgets: 4, policy } as const
    const [i] = core.restore([row], 10)
    expect(core.job(i!, takenBy(core.start(i!, 1005)), TOKEN)).toEqual({
      bankId: "r",
      reason: "restored",
      memories: 1,
      forgets: 4,
      attempt: 1,
      fencingToken: TOKEN,
      memoryWait: { meanSeconds: 1, oldestSeconds: 1 } // a row stored before the oldest memory was kept: from firstRetainAt
    })
    expect(core.row(i!)).toMatchObject({ forgets: 4, policy, status: "running" })
    expect(core.configOf(i!).stalenessDays).toBe(2)
  })
})

describe("token bucket", () => {
  it("refills continuously up to its capacity; crossings are exact milliseconds", () => {
    const bucket = TokenBucket.full(1000, HOUR, 0)
    bucket.take(1200, 0)
    expect(bucket.levelAt(0)).toBe(-200)
    expect(bucket.aboveZeroAt(0)).toBe(12 * 60_000 + 1) // at 12 minutes it is exactly 0
    expect(bucket.levelAt(12 * 60_000)).toBe(0)
    expect(bucket.levelAt(HOUR)).toBe(800)
    expect(bucket.fullAt(0)).toBe(HOUR + 12 * 60_000)
    expect(bucket.levelAt(10 * HOUR)).toBe(1000)
    const compiles = TokenBucket.full(2, HOUR, 0)
    compiles.take(1, 0)
    compiles.take(1, 0)
    expect(compiles.atLeastOneAt(0)).toBe(HOUR / 2)
    expect(compiles.atLeastOneAt(HOUR / 2)).toBe(HOUR / 2)
  })
})

describe("token bucket — a limit that changes keeps what was spent", () => {
  it("raised: the new headroom at once; lowered: the new limit less what was spent, at worst empty", () => {
    const raised = TokenBucket.full(1000, HOUR, 0)
    raised.take(600, 0)
    raised.resize(50_000, 0)
    expect(raised.levelAt(0)).toBe(49_400)
    expect(raised.fullAt(0)).toBe(Math.ceil((600 * HOUR) / 50_000)) // refills at the new rate
    const lowered = TokenBucket.full(1000, HOUR, 0)
    lowered.take(200, 0)
    lowered.resize(500, 0)
    expect(lowered.levelAt(0)).toBe(300)
    const overSpent = TokenBucket.full(1000, HOUR, 0)
    overSpent.take(900, 0)
    overSpent.resize(500, 0) // 900 spent of a new 500: empty, not 400 in debt
    expect(overSpent.levelAt(0)).toBe(0)
    const inDebt = TokenBucket.full(1000, HOUR, 0)
    inDebt.take(1200, 0)
    inDebt.resize(100, 0) // an overshoot's debt is kept as it was, not multiplied
    expect(inDebt.levelAt(0)).toBe(-200)
  })

  it("restored with its stored limit: spent stays spent; without one (an older row): the level, cut to the limit", () => {
    const stored = { level: 400, at: 0, capacity: 1000 }
    expect(TokenBucket.restored(50_000, HOUR, stored).levelAt(0)).toBe(49_400)
    expect(TokenBucket.restored(1000, HOUR, stored).levelAt(0)).toBe(400)
    expect(TokenBucket.restored(500, HOUR, stored).levelAt(0)).toBe(0)
    expect(TokenBucket.restored(50_000, HOUR, { level: 400, at: 0 }).levelAt(0)).toBe(400)
    expect(TokenBucket.restored(300, HOUR, { level: 400, at: 0 }).levelAt(0)).toBe(300)
    // Refilled from its stored time at the new limit's rate.
    expect(TokenBucket.restored(2000, HOUR, { level: -200, at: 0, capacity: 1000 }).levelAt(HOUR / 2)).toBe(1800)
  })
})

describe("compile core — budget", () => {
  const compile = (h: ReturnType<typeof harness>, tokens: number, now: number) => {
    const i = h.fifo.shift()!
    const start = h.core.start(i, now)
    const taken = takenBy(start)
    return { i, start, taken, finish: () => (h.core.charge(i, tokens, now), h.core.succeeded(i, taken, now, undefined)) }
  }

  it("a spent global budget holds the head bank (FIFO kept, still queued); later banks wait behind it", () => {
    const h = harness({ budget: { tokens: 1000 } })
    const { core } = h
    for (const id of ["a", "b", "c", "d"]) core.request(h.bank(id))
    const a = h.fifo.shift()!
    expect(takenBy(core.start(a, 0))).toBe(0)
    core.charge(a, 1200, 0)
    core.succeeded(a, 0, 0, undefined)
    const b = h.fifo.shift()!
    expect(core.start(b, 0)).toBe(WAIT_BUDGET)
    expect(core.nextHeld()).toBe(b)
    expect(core.counts()).toMatchObject({ pending: 3, queued: 3, running: 0 })
    // The spent budget holds the whole queue, not only the head a worker took: budget.waiting counts each of them.
    expect(core.heldForBudget(0)).toBe(3)
    expect(core.budgetState(0).waiting).toBe(3)
    expect(core.waitingForBudget(0)).toBe(3)
    const c = h.fifo.shift()!
    expect(core.start(c, 12 * 60_000 + 1)).toBe(WAIT_BUDGET) // open again, but b is first
    expect(core.nextHeld()).toBe(b)
    expect(core.start(b, 12 * 60_000 + 1)).toEqual({ _tag: "Run", memories: 0, waitedMillis: 12 * 60_000 + 1 })
    expect(core.nextHeld()).toBe(c)
    expect(core.waitingForBudget(12 * 60_000 + 1)).toBe(1) // open again: only the head a worker holds still waits
  })

  it("a bank whose own bucket is spent is deferred: pending, no slot; due in order; other banks go ahead", () => {
    const h = harness({ budget: { bankTokens: 500 } })
    const { core } = h
    core.request(h.bank("a"))
    compile(h, 600, 0).finish() // a: -100
    core.request(h.bank("a"))
    core.request(h.bank("b"))
    core.takeSignals()
    expect(compile(h, 0, 0).start).toBe(DEFERRED)
    expect(core.takeSignals() & BUDGET).toBe(BUDGET)
    expect(core.statusOf(h.bank("a"))).toBe("pending")
    expect(core.counts()).toMatchObject({ pending: 2, queued: 1 })
    expect(core.budgetCounts(0)).toEqual({ tokensAvailable: Infinity, compilesAvailable: Infinity, deferred: 1 })
    expect(compile(h, 0, 0).taken).toBe(0) // b goes ahead
    expect(core.nextDeferredDue).toBe(12 * 60_000 + 1)
    expect(core.deferredDue(12 * 60_000)).toEqual([])
    expect(core.deferredDue(12 * 60_000 + 1)).toEqual([h.bank("a")])
    expect(core.requeue(h.bank("a"))).toBe(true)
    expect(h.queuedIds()).toEqual(["a"])
    expect(takenBy(core.start(h.fifo.shift()!, 12 * 60_000 + 1))).toBe(0)
  })

  it("requeue waits for room in line; a freed slot lets the first in; queued never dips", () => {
    const h = harness({ maxQueueSize: 1 })
    const { core } = h
    core.request(h.bank("a"))
    expect(core.requeue(h.bank("b"))).toBe(false)
    expect(core.requeue(h.bank("c"))).toBe(false)
    expect(takenBy(core.start(h.fifo.shift()!, 0))).toBe(0)
    expect(core.fillRoom()).toBe(1)
    expect(h.queuedIds()).toEqual(["b"])
    expect(core.counts().queued).toBe(1)
  })

  it("the compiles bucket takes one at start; levels and the deferred bank are stored and restored", () => {
    const h = harness({ budget: { compiles: 2, bankTokens: 100 } })
    const { core } = h
    core.request(h.bank("a"))
    compile(h, 300, 1000).finish()
    expect(core.budgetCounts(1000).compilesAvailable).toBe(1)
    const row = core.budgetRow()!
    expect(row).toEqual({ tokens: null, compiles: { level: 1, at: 1000, capacity: 2 } })
    expect(core.budgetRow()).toBeUndefined() // unchanged since
    const bankRow = core.row(h.bank("a"))
    expect(bankRow.budget).toEqual({ level: -200, at: 1000, capacity: 100 })
    const restarted = harness({ budget: { compiles: 2, bankTokens: 100 } })
    restarted.core.restoreBudget(row)
    restarted.core.restore([bankRow], 1000)
    expect(restarted.core.budgetCounts(1000).compilesAvailable).toBe(1)
    restarted.core.request(restarted.bank("a"))
    expect(restarted.core.start(restarted.fifo.shift()!, 1000)).toBe(DEFERRED)
  })
})
