/**
 * What a partition lost while it held unstored counts sends on to the new owner: the retains and forgets counted
 * since the last flush that stored them (a failed flush gives its counts back), capped at what the bank still counts —
 * a successful compile's consumption is not sent again, a bank never admitted sends nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { BankCompileState } from "../../src/BankCompileState.js"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { noting, toSendOn, UnstoredCounts } from "../../src/internal/cluster/unstoredCounts.js"

/** A queue that counts retains and forgets per bank; `compiled` consumes a bank's counts as a successful compile. */
const countingQueue = () => {
  const banks = new Map<string, { memories: number; forgets: number }>()
  const bank = (bankId: string) => banks.get(bankId) ?? banks.set(bankId, { memories: 0, forgets: 0 }).get(bankId)!
  const queue = {
    unsafeNotifyRetain: (bankId: string, count = 1) => void (bank(bankId).memories += count),
    unsafeNotifyForget: (bankId: string, count = 1) => void (bank(bankId).forgets += count),
    bankState: (bankId: string) =>
      Effect.sync(() => {
        const found = banks.get(bankId)
        return found === undefined ? Option.none() : Option.some({
          memoriesSinceLastCompile: found.memories,
          forgetsSinceLastCompile: found.forgets
        } as BankCompileState)
      })
  } as unknown as CompileQueueService
  return { queue, compiled: (bankId: string) => banks.set(bankId, { memories: 0, forgets: 0 }) }
}

describe("unstored counts", () => {
  it.effect("a stored flush forgets its counts, a failed one gives them back; later counts stay apart", () =>
    Effect.gen(function*() {
      const { queue } = countingQueue()
      const unstored = new UnstoredCounts()
      const noted = noting(queue, unstored)
      noted.unsafeNotifyRetain("a", 2)
      const first = unstored.take()
      noted.unsafeNotifyRetain("a", 1)
      unstored.stored(first)
      expect(unstored.all()).toEqual(new Map([["a", { retains: 1, forgets: 0 }]]))
      const second = unstored.take()
      noted.unsafeNotifyForget("a", 4)
      // Under way: still unstored.
      expect(unstored.all()).toEqual(new Map([["a", { retains: 1, forgets: 4 }]]))
      unstored.notStored(second)
      expect(unstored.all()).toEqual(new Map([["a", { retains: 1, forgets: 4 }]]))
      expect(yield* toSendOn(queue, unstored)).toEqual({
        retains: new Map([["a", 1]]),
        forgets: new Map([["a", 4]])
      })
    }))

  it.effect("what a successful compile consumed is not sent again; what came after it is", () =>
    Effect.gen(function*() {
      const { compiled, queue } = countingQueue()
      const unstored = new UnstoredCounts()
      const noted = noting(queue, unstored)
      noted.unsafeNotifyRetain("a", 3)
      noted.unsafeNotifyRetain("b", 2)
      compiled("a") // the engine accepted a compile of a's 3 memories
      noted.unsafeNotifyRetain("a", 1)
      expect(yield* toSendOn(queue, unstored)).toEqual({
        retains: new Map([["a", 1], ["b", 2]]),
        forgets: new Map()
      })
    }))

  it.effect("a bank the queue never admitted sends nothing", () =>
    Effect.gen(function*() {
      const { queue } = countingQueue()
      const unstored = new UnstoredCounts()
      unstored.add("refused", 5, 0)
      expect(yield* toSendOn(queue, unstored)).toEqual({ retains: new Map(), forgets: new Map() })
    }))
})
