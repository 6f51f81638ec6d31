/**
 * What a partition lost while it held unstored counts sends on to the new owner: the retains and forgets counted
 * since the last flush known to have stored them (a flush takes those of the banks it writes; one that failed before
 * its COMMIT gives them back, one that failed at it keeps them in doubt until a later flush stores or the store's
 * record says it landed), capped at what the bank still counts — a successful compile's consumption is not sent
 * again, a bank never admitted sends nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock } from "effect"
import type { BankCompileState } from "../../src/BankCompileState.js"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { settleDoubts } from "../../src/internal/cluster/owner.js"
import { makePartitionLeases } from "../../src/internal/cluster/partitionLeases.js"
import { toSendOn, UnstoredCounts } from "../../src/internal/cluster/unstoredCounts.js"
import { make as makeQueue } from "../../src/internal/runtime/compileQueue.js"
import { memoryLeaseRows } from "../support/memoryLeases.js"
import { testEngineLayer } from "../support/utils.js"

/**
 * A queue that counts retains and forgets per bank and tells `unstored`'s tally by bank number, as a partition's queue
 * does; `compiled` consumes a bank's counts as a successful compile.
 */
const countingQueue = (unstored: UnstoredCounts) => {
  const banks = new Map<string, { memories: number; forgets: number }>()
  const table = { ids: [] as Array<string> }
  const tally = unstored.register(table)
  const bank = (bankId: string) => {
    if (!banks.has(bankId)) {
      banks.set(bankId, { memories: 0, forgets: 0 })
      table.ids.push(bankId)
    }
    return { counts: banks.get(bankId)!, i: table.ids.indexOf(bankId) }
  }
  const retain = (bankId: string, count: number) => {
    const { counts, i } = bank(bankId)
    counts.memories += count
    tally.retain(i, count)
  }
  const forget = (bankId: string, count: number) => {
    const { counts, i } = bank(bankId)
    counts.forgets += count
    tally.forget(i, count)
  }
  const queue = {
    bankState: (bankId: string) =>
      Effect.sync(() => {
        const found = banks.get(bankId)
        return found === undefined ? Option.none() : Option.some({
          memoriesSinceLastCompile: found.memories,
          forgetsSinceLastCompile: found.forgets
        } as BankCompileState)
      })
  } as unknown as CompileQueueService
  return { queue, retain, forget, compiled: (bankId: string) => banks.set(bankId, { memories: 0, forgets: 0 }) }
}

describe("unstored counts", () => {
  it.effect("a flush takes the counts of the banks it writes; failed before its COMMIT, they are unstored again", () =>
    Effect.gen(function*() {
      const unstored = new UnstoredCounts()
      const { forget, queue, retain } = countingQueue(unstored)
      retain("a", 2)
      retain("b", 5)
      // Its rows are a's only (b changed after the write-behind listed the changed banks): b's count stays unstored.
      const first = unstored.take(["a"])
      retain("a", 1)
      unstored.stored(first)
      expect(unstored.all()).toEqual(new Map([["a", { retains: 1, forgets: 0 }], ["b", { retains: 5, forgets: 0 }]]))
      const second = unstored.take(["a", "b"])
      forget("a", 4)
      // Under way: still unstored, and in doubt (only the store's record could tell if it committed).
      expect(unstored.doubtful).toBe(true)
      unstored.failed(second, false)
      expect(unstored.doubtful).toBe(false)
      expect(unstored.all()).toEqual(new Map([["a", { retains: 1, forgets: 4 }], ["b", { retains: 5, forgets: 0 }]]))
      // The next flush takes them again with its rows.
      unstored.stored(unstored.take(["a", "b"]))
      expect(unstored.all()).toEqual(new Map())
      retain("a", 3)
      expect(yield* toSendOn(queue, unstored)).toEqual({ retains: new Map([["a", 3]]), forgets: new Map() })
    }))

  it.effect("a flush failed at its COMMIT is in doubt: not sent if the record says it landed, sent if not", () =>
    Effect.gen(function*() {
      const unstored = new UnstoredCounts()
      const { queue, retain } = countingQueue(unstored)
      retain("a", 2)
      const first = unstored.take(["a"])
      retain("b", 3)
      const second = unstored.take(["b"])
      retain("c", 1)
      expect([first.number, second.number]).toEqual([1, 2])
      unstored.failed(first, true)
      unstored.failed(second, true)
      expect(unstored.doubtful).toBe(true)
      // The store's record: flush 1 was stored under this epoch, flush 2 was not.
      unstored.landed(1)
      expect(yield* toSendOn(queue, unstored)).toEqual({ retains: new Map([["b", 3], ["c", 1]]), forgets: new Map() })
      unstored.landed(0)
      expect(unstored.all().has("b")).toBe(true)
    }))

  it("a flush that stores settles every earlier one, failed or still under way: its rows hold their banks", () => {
    const unstored = new UnstoredCounts()
    const { retain } = countingQueue(unstored)
    retain("a", 2)
    const failing = unstored.take(["a"])
    unstored.failed(failing, true)
    retain("b", 1)
    // Outlives its timeout: the write-behind lists its banks as changed again, and the next flush starts.
    const slow = unstored.take(["a", "b"])
    retain("c", 1)
    const third = unstored.take(["a", "b", "c"])
    unstored.stored(third)
    expect(unstored.doubtful).toBe(false)
    // The slow flush fails once the third stored: its banks were in the third's rows, so nothing is unstored.
    unstored.failed(slow, false)
    expect(unstored.doubtful).toBe(false)
    expect(unstored.all()).toEqual(new Map())
  })

  it("the store's record settles the flush it names and every earlier one, however many retries failed before", () => {
    const unstored = new UnstoredCounts()
    const { retain } = countingQueue(unstored)
    const flights = Array.from({ length: 5_000 }, (_, n) => {
      retain(`bank-${n}`, 1)
      const flight = unstored.take([`bank-${n}`])
      unstored.failed(flight, true)
      return flight
    })
    retain("after", 1)
    unstored.landed(flights[2_499]!.number)
    expect(unstored.all().size).toBe(2_501)
    expect(unstored.all().has("bank-2499")).toBe(false)
    expect(unstored.all().has("bank-2500")).toBe(true)
    unstored.landed(flights[4_999]!.number)
    expect(unstored.doubtful).toBe(false)
    expect(unstored.all()).toEqual(new Map([["after", { retains: 1, forgets: 0 }]]))
  })

  it.effect("what a successful compile consumed is not sent again; what came after it is", () =>
    Effect.gen(function*() {
      const unstored = new UnstoredCounts()
      const { compiled, queue, retain } = countingQueue(unstored)
      retain("a", 3)
      retain("b", 2)
      compiled("a") // the engine accepted a compile of a's 3 memories
      retain("a", 1)
      expect(yield* toSendOn(queue, unstored)).toEqual({
        retains: new Map([["a", 1], ["b", 2]]),
        forgets: new Map()
      })
    }))

  it.scoped("a partition's queue notes what it counts, and only that: a bank it refused sends nothing", () =>
    Effect.gen(function*() {
      const unstored = new UnstoredCounts()
      const queue = yield* makeQueue({ maxBanks: 1, config: { sizeThreshold: 1000 } }, { tally: unstored.register }).pipe(
        Effect.provide(testEngineLayer)
      )
      queue.unsafeNotifyRetain("admitted", 3)
      queue.unsafeNotifyForget("admitted", 1)
      queue.unsafeNotifyRetain("refused", 5) // past the maximum of 1 bank
      queue.unsafeNotifyRetain("admitted", 0) // not a count: ignored
      expect(unstored.all()).toEqual(new Map([["admitted", { retains: 3, forgets: 1 }]]))
      expect(yield* toSendOn(queue, unstored)).toEqual({
        retains: new Map([["admitted", 3]]),
        forgets: new Map([["admitted", 1]])
      })
    }))

  it.effect("a lost partition settles its doubts from the store's record; when it cannot read it, it sends them all", () =>
    Effect.gen(function*() {
      const lease = memoryLeaseRows()
      const leases = yield* makePartitionLeases({ rows: lease.rows, runner: "a", holder: "a" })
      expect(yield* leases.tryAcquire(5)).toMatchObject({ epoch: 1 })
      const unstored = new UnstoredCounts()
      const tally = unstored.register({ ids: ["bank"] })
      tally.retain(0, 2)
      const landed = unstored.take(["bank"])
      // Its transaction committed (the fence recorded it), and the answer was lost: failed, as far as the runner knows.
      expect(yield* leases.fence(5, 1, landed.number)).toBe(true)
      unstored.failed(landed, true)
      tally.retain(0, 3)
      unstored.failed(unstored.take(["bank"]), true)
      const fence = { leases, partition: 5, epoch: 1, unstored }
      yield* settleDoubts(fence)
      expect(unstored.all()).toEqual(new Map([["bank", { retains: 3, forgets: 0 }]]))

      const unread = new UnstoredCounts()
      unread.register({ ids: ["bank"] }).retain(0, 4)
      unread.failed(unread.take(["bank"]), true)
      lease.unreachable = true
      const settling = yield* Effect.fork(settleDoubts({ ...fence, unstored: unread }))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(settling)
      expect(unread.all()).toEqual(new Map([["bank", { retains: 4, forgets: 0 }]]))
    }))
})
