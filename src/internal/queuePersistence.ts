/**
 * Durable state for the compile queue: restore from a `BankStateStore` before the queue accepts work, and one flush
 * of the core's changed banks (the write-behind, `writeBehind.ts`, runs it on a timer and at close). Never on the
 * retain path: a retain only sets a bank's dirty bit in the core.
 *
 * @internal
 */
import { Effect } from "effect"
import type { BankStateStoreService, BankStoreError } from "../BankStateStore.js"
import { NOTHING } from "./compileCore.js"
import type { QueueRuntime } from "./queueRuntime.js"

/** The stored global budget levels, when the store keeps them. */
const loadBudget = (store: BankStateStoreService) => store.loadBudget === undefined ? Effect.succeed(null) : store.loadBudget

/**
 * Loads the stored banks and budget levels into the core (a restart does not refill a spent budget); banks stored
 * as pending or running are queued again, in order. Fails when the store cannot be read.
 */
export const restore = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void, BankStoreError> =>
  Effect.flatMap(Effect.all([store.load, loadBudget(store)]), ([banks, budget]) =>
    Effect.suspend(() => {
      const now = rt.now()
      if (budget !== null) rt.core.restoreBudget(budget)
      const requeued = rt.core.restore(banks, now)
      rt.fireSignals()
      // Forget delays do not survive a restart: banks whose forgets reached their threshold get theirs afresh.
      for (const i of rt.core.idleWithForgets()) {
        const answer = rt.core.recheck(i, now)
        if (answer !== NOTHING) rt.answered(i, answer)
      }
      if (requeued.length === 0) return Effect.void
      // Wait for room rather than drop: these compiles were promised before the restart.
      for (const i of requeued) rt.unsafeRequeue(i)
      return Effect.logInfo(`restored ${banks.length} banks; ${requeued.length} queued again`)
    }))

/**
 * Writes the global budget levels when they changed. Whatever ends the write other than success (a failure, a
 * defect, an exception thrown by the store, an interruption) leaves them for the next flush.
 */
const flushBudget = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void, BankStoreError> =>
  Effect.suspend(() => {
    const save = store.saveBudget
    const row = save === undefined ? undefined : rt.core.budgetRow()
    if (row === undefined || save === undefined) return Effect.void
    return Effect.onError(Effect.suspend(() => save(row)), () => Effect.sync(() => rt.core.budgetUnsaved()))
  })

/**
 * Writes the banks changed since the last flush; whatever ends the write other than success lists them again (banks
 * changed since are listed already).
 */
const flushBanks = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<number, BankStoreError> =>
  Effect.suspend(() => {
    const changed = rt.core.changed()
    if (changed.length === 0) return Effect.succeed(0)
    return Effect.suspend(() => store.save(Array.from(changed, (i) => rt.core.row(i)))).pipe(
      Effect.as(changed.length),
      Effect.onError(() => Effect.sync(() => rt.core.unsaved(changed)))
    )
  })

/** One flush: the budget levels, then the changed banks. Returns how many banks it wrote. */
export const flush = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<number, BankStoreError> =>
  Effect.zipRight(flushBudget(rt, store), flushBanks(rt, store))
