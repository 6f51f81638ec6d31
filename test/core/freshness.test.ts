/**
 * The freshness deadline (`maxWaitSeconds`) and the memory wait in the core, driven directly with explicit times:
 * the oldest uncompiled memory through partial compiles, failures and restores, the deadline timeline (lanes and the
 * out-of-order heap), and the exact wait a compile reports.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc, Option } from "effect"
import { BankPolicy } from "../../src/BankPolicy.js"
import { CompileCore, NOTHING, QUEUED, type Start } from "../../src/internal/core/compileCore.js"
import { DEADLINE, OVERDUE, REASON_NAMES } from "../../src/internal/core/bankTable.js"
import { DeadlineTimeline } from "../../src/internal/core/deadlineTimeline.js"
import { CompileTriggerConfig, type CompileTriggerConfigInput } from "../../src/CompileTriggerConfig.js"

const HOUR = 3_600_000
const TOKEN = { epoch: 1, sequence: 1 }

const harness = (config: CompileTriggerConfigInput = { sizeThreshold: 50, maxWaitSeconds: 3600 }, persistent = false) => {
  const fifo: Array<number> = []
  const core = new CompileCore({
    config: new CompileTriggerConfig(config),
    maxAttempts: 2,
    baseDelayMillis: 1000,
    maxQueueSize: Infinity,
    persistent,
    offer: (i) => fifo.push(i) > 0
  })
  let earlier = 0
  core.freshness.onEarlier = () => earlier++
  const bank = (id: string) => core.table.index.get(id) ?? core.add(id)
  const retain = (id: string, count: number, now: number) => {
    const i = bank(id)
    if (!core.isCounted(i)) core.firstRetain(i, now)
    return core.retain(i, count, now)
  }
  const take = (now: number) => {
    const i = fifo.shift()!
    const start = core.start(i, now)
    return { i, start, taken: start._tag === "Run" ? start.memories : -1 }
  }
  /** The deadline watcher's round at `now`: marks and re-checks the banks whose deadline came. */
  const watch = (now: number) => {
    for (const i of core.freshness.due(now)) core.recheck(i, now)
  }
  return { core, fifo, bank, retain, take, watch, earlierWakes: () => earlier }
}

const waitOf = (start: Start) => start._tag === "Run" ? start.memoryWait : undefined

describe("freshness — the deadline rule", () => {
  it("a fractional max wait at epoch times: the deadline comes due once, and the watcher's round ends", () => {
    // 1.7 ms at 1765000000014 ms: the sum rounds to 1765000000015.7 - 0.000049, so `now - oldest` there is below
    // the max wait. The round used to push the entry again at that same time, for ever.
    const at = 1_765_000_000_014
    const { fifo, retain, watch, core } = harness({ sizeThreshold: 50, maxWaitSeconds: 0.0017 })
    expect(retain("a", 1, at)).toBe(NOTHING)
    const due = core.freshness.nextDue
    expect(due - at).toBeLessThan(1.7)
    watch(due - 0.001)
    expect(fifo).toEqual([])
    watch(due)
    expect(fifo).toEqual([0])
    expect(REASON_NAMES[core.table.reasons.get(0)!]).toBe("deadline")
    expect(core.freshness.nextDue).toBeNaN()
  })

  it("any max wait at any epoch time: the watcher's round at the deadline queues the bank (property)", () => {
    fc.assert(fc.property(
      fc.integer({ min: 1_500_000_000_000, max: 2_500_000_000_000 }),
      fc.double({ min: 0.000001, max: 86_400, noNaN: true }),
      (at, maxWaitSeconds) => {
        const { fifo, retain, watch, core } = harness({ sizeThreshold: 50, maxWaitSeconds })
        retain("a", 1, at)
        watch(core.freshness.nextDue)
        expect(fifo).toEqual([0])
      }
    ))
  })

  it("a bank with 3 memories and maxWaitSeconds 3600 is queued at exactly +1 h, for reason deadline", () => {
    const { core, fifo, retain, watch, earlierWakes } = harness()
    expect(retain("a", 3, 1000)).toBe(NOTHING)
    expect(earlierWakes()).toBe(1) // the first deadline wakes the watcher
    expect(core.freshness.nextDue).toBe(1000 + HOUR)
    expect(core.deadlineAt(0)).toBe(1000 + HOUR)
    watch(1000 + HOUR - 1)
    expect(fifo).toEqual([])
    watch(1000 + HOUR)
    expect(fifo).toEqual([0])
    expect(REASON_NAMES[core.table.reasons.get(0)!]).toBe("deadline")
    expect(core.table.reasons.get(0)).toBe(DEADLINE)
    expect(core.freshness.nextDue).toBeNaN()
  })

  it("off by default: no timeline entry, today's rule unchanged", () => {
    const { core, retain } = harness({ sizeThreshold: 50 })
    retain("a", 3, 0)
    expect(core.freshness.nextDue).toBeNaN()
    expect(core.deadlineAt(0)).toBeNaN()
    expect(core.table.oldestAt[0]).toBe(0) // the wait is measured all the same
  })

  it("a dropped deadline bank is queued by its next retain (fast path) or the sweep", () => {
    const { core, retain, watch } = harness()
    retain("a", 1, 0)
    core.close() // not accepting: the watcher marks it, nothing is queued
    watch(HOUR)
    expect(core.table.state[0]! & OVERDUE).toBe(OVERDUE)
    expect(core.statusOf(0)).toBe("idle")
    const fresh = harness()
    fresh.retain("b", 1, 0)
    fresh.core.table.state[0]! |= OVERDUE // as if the queue had been full when it came due
    expect(fresh.retain("b", 1, 10)).toBe(QUEUED)
    expect(REASON_NAMES[fresh.core.table.reasons.get(0)!]).toBe("deadline")
    const swept = harness()
    swept.retain("c", 1, 0)
    expect(swept.core.sweep(HOUR - 1).queued).toBe(0)
    expect(swept.core.sweep(HOUR).queued).toBe(1)
  })

  it("disabled banks are not queued by their deadline", () => {
    const { core, fifo, retain, watch } = harness({ enabled: false, maxWaitSeconds: 60 })
    retain("a", 1, 0)
    watch(60_000)
    expect(fifo).toEqual([])
    expect(core.sweep(60_000).queued).toBe(0)
  })
})

describe("freshness — the oldest uncompiled memory through compiles", () => {
  it("a compile that consumes part of the counter leaves the first retain after its snapshot as the oldest", () => {
    const { core, fifo, retain, take, watch } = harness({ sizeThreshold: 3, maxWaitSeconds: 3600 })
    retain("a", 1, 0)
    retain("a", 2, 1000) // 3: queued for size
    const run = take(5000)
    expect(waitOf(run.start)).toEqual({ oldestSeconds: 5, meanSeconds: (5 + 4 + 4) / 3 })
    expect(core.table.oldestUncompiledAt(run.i)).toBe(0) // the running compile's memories still wait
    expect(core.deadlineAt(run.i)).toBe(HOUR)
    retain("a", 1, 7000) // after the snapshot: not taken
    retain("a", 1, 9000)
    expect(core.table.oldestAt[run.i]).toBe(7000)
    expect(core.succeeded(run.i, run.taken, 10_000, undefined)).toBe(NOTHING)
    expect(core.table.oldestAt[run.i]).toBe(7000)
    expect(core.table.oldestUncompiledAt(run.i)).toBe(7000)
    expect(core.deadlineAt(run.i)).toBe(7000 + HOUR)
    expect(core.snapshot(run.i).oldestMemoryAt.pipe(Option.map((t) => t.epochMillis))).toEqual(Option.some(7000))
    // The deadline of the memories left: on time, from the first retain after the snapshot.
    watch(7000 + HOUR - 1)
    expect(fifo).toEqual([])
    watch(7000 + HOUR)
    expect(fifo).toEqual([run.i])
    const next = take(7000 + HOUR)
    expect(waitOf(next.start)).toEqual({ oldestSeconds: 3600, meanSeconds: (3600 + 3598) / 2 })
  })

  it("a deadline that comes while the bank runs queues it when the compile ends", () => {
    const { core, fifo, retain, take, watch } = harness({ sizeThreshold: 2, maxWaitSeconds: 60 })
    retain("a", 2, 0)
    const run = take(0)
    retain("a", 1, 1000)
    watch(61_000) // the compile still runs
    expect(fifo).toEqual([])
    expect(core.succeeded(run.i, run.taken, 70_000, undefined)).toBe(QUEUED)
    expect(REASON_NAMES[core.table.reasons.get(run.i)!]).toBe("deadline")
  })

  it("a failed or cut-off compile consumes nothing: its memories wait again from the oldest", () => {
    const { core, fifo, retain, take } = harness({ sizeThreshold: 2, maxWaitSeconds: 60 })
    retain("a", 2, 1000)
    const run = take(2000)
    retain("a", 1, 3000)
    expect(core.failed(run.i, "boom").retry).toBe(true)
    expect(core.table.oldestAt[run.i]).toBe(1000)
    expect(core.table.waitSumOf(run.i)).toBe(2000) // 0 + 0 + (3000 − 1000)
    fifo.push(run.i) // the retry
    const retry = take(4000)
    expect(waitOf(retry.start)).toEqual({ oldestSeconds: 3, meanSeconds: (3 + 3 + 1) / 3 })
    core.interrupted(retry.i)
    expect(core.table.oldestAt[retry.i]).toBe(1000)
    expect(core.table.taken.size).toBe(0)
  })

  it("a compile that takes no memories (forgets, compileNow) reports no wait", () => {
    const { core, bank, take } = harness()
    core.request(bank("a"))
    const run = take(10)
    expect(waitOf(run.start)).toBeUndefined()
    expect(core.job(run.i, run.taken, TOKEN).memoryWait).toBeUndefined()
  })
})

describe("freshness — policies and the timeline", () => {
  it("a bank that compiles every cycle keeps one timeline entry, which re-arms its deadline when it comes early", () => {
    const { core, fifo, retain, take, watch } = harness({ sizeThreshold: 2, maxWaitSeconds: 3600 })
    for (let cycle = 0; cycle < 100; cycle++) { // a compile every 10 s: each cycle's first memory starts a wait
      retain("a", 2, cycle * 10_000)
      const run = take(cycle * 10_000)
      core.succeeded(run.i, run.taken, cycle * 10_000, undefined)
    }
    expect(core.freshness.timeline.size).toBe(1) // the first cycle's entry, not one per cycle
    retain("a", 1, 1_000_000) // then a memory that waits: its deadline is 1,000 s + 1 h
    watch(HOUR) // the first cycle's entry comes due: nothing is late, the bank's own deadline goes on
    expect(fifo).toEqual([])
    expect(core.freshness.nextDue).toBe(1_000_000 + HOUR)
    watch(1_000_000 + HOUR - 1)
    expect(fifo).toEqual([])
    watch(1_000_000 + HOUR)
    expect(fifo).toEqual([0])
    expect(REASON_NAMES[core.table.reasons.get(0)!]).toBe("deadline")
  })

  it("an entry whose bank has no memory waiting when it comes due is dropped; the next memory pushes its own", () => {
    const { core, fifo, retain, take, watch } = harness({ sizeThreshold: 2, maxWaitSeconds: 3600 })
    retain("a", 2, 0)
    const run = take(0)
    core.succeeded(run.i, run.taken, 0, undefined)
    watch(HOUR)
    expect(core.freshness.timeline.size).toBe(0)
    retain("a", 1, 2 * HOUR)
    expect(core.freshness.nextDue).toBe(3 * HOUR)
    watch(3 * HOUR)
    expect(fifo).toEqual([0])
  })

  it("per-bank max waits fire on time in any order (lanes, and the heap for entries out of order)", () => {
    const { bank, core, fifo, retain, watch } = harness({ sizeThreshold: 50, maxWaitSeconds: 3600 })
    core.setPolicy(bank("short"), new BankPolicy({ maxWaitSeconds: 60 }), 0)
    retain("long", 1, 0) // due at 1 h
    retain("short", 1, 1000) // due at 61 s: a lane of its own
    expect(core.freshness.nextDue).toBe(61_000)
    retain("late", 1, 2000)
    core.setPolicy(bank("late"), new BankPolicy({ maxWaitSeconds: 30 }), 2000) // out of its lane's order: the heap
    expect(core.freshness.nextDue).toBe(32_000)
    watch(32_000)
    expect(fifo.map((i) => core.table.ids[i])).toEqual(["late"])
    watch(61_000)
    watch(HOUR)
    expect(fifo.map((i) => core.table.ids[i])).toEqual(["late", "short", "long"])
    expect(core.invariantViolations()).toEqual([])
  })

  it("a policy that shortens the wait of an overdue bank queues it at once; clearing it restores the queue's", () => {
    const { bank, core, retain } = harness({ sizeThreshold: 50, maxWaitSeconds: 3600 })
    retain("a", 1, 0)
    expect(core.setPolicy(bank("a"), new BankPolicy({ maxWaitSeconds: 10 }), 20_000)).toBe(QUEUED)
    const b = harness({ sizeThreshold: 50, maxWaitSeconds: 3600 })
    b.retain("b", 1, 0)
    b.core.setPolicy(b.bank("b"), new BankPolicy({ maxWaitSeconds: 0 }), 0) // off for this bank
    expect(b.core.deadlineAt(0)).toBeNaN()
    b.core.clearPolicy(0, 10)
    expect(b.core.deadlineAt(0)).toBe(HOUR)
  })

  it("the timeline: one lane per max wait, outdated entries skipped, an earlier entry reported", () => {
    const current = new Map<number, number>()
    const timeline = new DeadlineTimeline((bank, due) => current.get(bank) === due)
    const push = (bank: number, due: number, lane: number) => {
      current.set(bank, due)
      return timeline.push(bank, due, lane)
    }
    expect(push(1, 100, 50)).toBe(true)
    expect(push(2, 120, 50)).toBe(false)
    expect(push(3, 90, 10)).toBe(true) // another lane's head, earlier
    expect(push(4, 80, 50)).toBe(true) // behind its lane's tail: the heap
    current.set(2, 999) // outdated
    const seen: Array<number> = []
    timeline.popDue(1000, (bank, due) => {
      if (current.get(bank) === due) seen.push(bank)
    })
    expect(seen.sort()).toEqual([1, 3, 4])
    expect(timeline.nextDue).toBeNaN()
    for (let n = 0; n < 5000; n++) push(n, 2000 + n, 50) // grows past its first capacity
    expect(timeline.size).toBe(5000)
  })
})

describe("freshness — persistence", () => {
  it("rows keep the oldest memory and the wait sum (a running compile's memories included); a restore keeps the deadline", () => {
    const { core, retain, take } = harness({ sizeThreshold: 2, maxWaitSeconds: 3600 }, true)
    retain("a", 2, 1000)
    const run = take(2000)
    retain("a", 1, 3000)
    const row = core.row(run.i)
    expect(row).toMatchObject({ status: "running", memories: 3, oldestMemoryAt: 1000, memoryWaitSum: 2000 })
    const restored = harness({ sizeThreshold: 2, maxWaitSeconds: 3600 }, true)
    restored.core.restore([{ ...row, status: "idle" }], 5000)
    expect(restored.core.deadlineAt(0)).toBe(1000 + HOUR)
    expect(restored.core.freshness.nextDue).toBe(1000 + HOUR)
    restored.watch(1000 + HOUR)
    expect(restored.fifo).toEqual([0])
    const again = restored.take(1000 + HOUR)
    expect(waitOf(again.start)).toEqual({ oldestSeconds: 3600, meanSeconds: 3600 - 2000 / 3 / 1000 })
    // A deadline that passed while the process was down: the watcher's first round queues it.
    const late = harness({ sizeThreshold: 50, maxWaitSeconds: 60 }, true)
    late.core.restore([{ ...row, status: "idle" }], 1000 + HOUR)
    expect(late.core.freshness.nextDue).toBe(61_000)
    late.watch(1000 + HOUR)
    expect(late.fifo).toEqual([0])
  })
})
