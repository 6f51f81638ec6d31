/**
 * What a partition counted here that no flush has stored yet, bank by bank, so that a runner that loses the partition
 * (another runner took its lease while it was frozen or cut off: its flushes are refused from then on) can send those
 * counts on to the new owner instead of losing acknowledged writes. Merged, never overwritten: the new owner adds them
 * to what it restored.
 *
 * Exactly what is sent on, per bank: the retains (and forgets) counted here since the last flush that stored the bank,
 * capped at what the bank still counts here — a retain that a successful compile of this runner consumed was compiled
 * (the engine accepted it), so it is not sent again; one that a failed, refused or cut-off compile consumed is still
 * counted here, so it is. A bank this runner never admitted (a new bank past the partition's maximum) counts nothing
 * and sends nothing.
 *
 * @internal
 */
import { Effect, Option } from "effect"
import type { WriteOptions } from "../../DirtyScopes.js"
import type { CompileQueueService } from "../../CompileQueue.js"

interface Counts {
  retains: number
  forgets: number
}

/** The counts per bank not yet stored; a flush takes them as it takes its rows, and gives them back if it fails. */
export class UnstoredCounts {
  private current = new Map<string, Counts>()
  private readonly inFlight = new Set<Map<string, Counts>>()

  add(bankId: string, retains: number, forgets: number): void {
    const counts = this.current.get(bankId)
    if (counts === undefined) this.current.set(bankId, { retains, forgets })
    else {
      counts.retains += retains
      counts.forgets += forgets
    }
  }

  /** A flush takes its rows now: what was counted up to now is in them. */
  take(): Map<string, Counts> {
    const taken = this.current
    this.current = new Map()
    this.inFlight.add(taken)
    return taken
  }

  /** The flush that took `taken` stored it. */
  stored(taken: Map<string, Counts>): void {
    this.inFlight.delete(taken)
  }

  /** The flush that took `taken` did not store it: counted as unstored again. */
  notStored(taken: Map<string, Counts>): void {
    this.inFlight.delete(taken)
    for (const [bankId, counts] of taken) this.add(bankId, counts.retains, counts.forgets)
  }

  /** Every count not stored (the flushes still under way included), by bank. */
  all(): Map<string, Counts> {
    const all = new Map<string, Counts>()
    for (const map of [...this.inFlight, this.current]) {
      for (const [bankId, { forgets, retains }] of map) {
        const counts = all.get(bankId)
        if (counts === undefined) all.set(bankId, { retains, forgets })
        else {
          counts.retains += retains
          counts.forgets += forgets
        }
      }
    }
    return all
  }
}

/** The queue as the router and the partition's entity use it: every retain and forget it takes is noted. */
export const noting = (queue: CompileQueueService, unstored: UnstoredCounts): CompileQueueService => {
  // A scoped write's scopes are not noted: they reach the next owner through the store (see the top).
  const unsafeNotifyRetain = (bankId: string, count: number | WriteOptions = 1) => {
    unstored.add(bankId, typeof count === "number" ? count : count.count ?? 1, 0)
    queue.unsafeNotifyRetain(bankId, count)
  }
  const unsafeNotifyForget = (bankId: string, count: number | WriteOptions = 1) => {
    unstored.add(bankId, 0, typeof count === "number" ? count : count.count ?? 1)
    queue.unsafeNotifyForget(bankId, count)
  }
  return {
    ...queue,
    unsafeNotifyRetain,
    unsafeNotifyForget,
    notifyRetain: (bankId, count) => Effect.sync(() => unsafeNotifyRetain(bankId, count)),
    notifyForget: (bankId, count) => Effect.sync(() => unsafeNotifyForget(bankId, count))
  }
}

/** What to send on: the unstored counts, each capped at what the bank still counts in `queue` (see the top). */
export const toSendOn = (
  queue: CompileQueueService,
  unstored: UnstoredCounts
): Effect.Effect<{ readonly retains: Map<string, number>; readonly forgets: Map<string, number> }> =>
  Effect.gen(function*() {
    const retains = new Map<string, number>()
    const forgets = new Map<string, number>()
    for (const [bankId, counts] of unstored.all()) {
      const state = yield* queue.bankState(bankId)
      if (Option.isNone(state)) continue
      const memories = Math.min(counts.retains, state.value.memoriesSinceLastCompile)
      const forgotten = Math.min(counts.forgets, state.value.forgetsSinceLastCompile)
      if (memories > 0) retains.set(bankId, memories)
      if (forgotten > 0) forgets.set(bankId, forgotten)
    }
    return { retains, forgets }
  })
