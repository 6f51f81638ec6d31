/**
 * Durable state for the compile queue: restore from a `BankStateStore` before the queue accepts work, and one flush
 * of the core's changes — taken, written, or put back (the write-behind, `writeBehind.ts`, runs it on a timer and at
 * close). Never on the retain path: a retain only sets a bank's dirty bit in the core.
 *
 * @internal
 */
import { Effect } from "effect"
import type { BankStateStoreService, BankStoreError } from "../../BankStateStore.js"
import { type BudgetRow, NOTHING } from "../core/compileCore.js"
import type { RestoredBucket } from "../core/tokenBucket.js"
import type { QueueRuntime } from "./queueRuntime.js"

/** The stored global budget levels, when the store keeps them. */
const loadBudget = (store: BankStateStoreService) => store.loadBudget === undefined ? Effect.succeed(null) : store.loadBudget

const count = (n: number) => Math.round(n).toLocaleString("en-US")

/**
 * A global bucket's limit changed since its level was stored, e.g. `budget: tokens limit 1,000,000 → 50,000,000;
 * available now 49,000,000` (what was spent stays spent); undefined when it did not.
 */
export const describeRestoredBucket = (restored: RestoredBucket, now: number): string | undefined => {
  const { limit, name, storedLimit } = restored
  if (storedLimit === limit) return undefined
  const available = `available now ${count(restored.bucket.levelAt(now))}`
  return storedLimit === undefined
    ? `budget: ${name} limit ${count(limit)}; its stored level predates stored limits: kept, at most the limit; ${available}`
    : `budget: ${name} limit ${count(storedLimit)} → ${count(limit)}; ${available}`
}

/**
 * Loads the stored banks and budget levels into the core (a restart does not refill a spent budget, and a changed
 * limit keeps what was spent: logged); banks stored as pending or running are queued again, in order. Fails when the
 * store cannot be read.
 */
export const restore = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void, BankStoreError> =>
  Effect.flatMap(Effect.all([store.load, loadBudget(store)]), ([banks, budget]) =>
    Effect.suspend(() => {
      const now = rt.now()
      const limitChanges = budget === null ? [] : rt.core.restoreBudget(budget).flatMap((restored) => {
        const line = describeRestoredBucket(restored, now)
        return line === undefined ? [] : [Effect.logInfo(line)]
      })
      const requeued = rt.core.restore(banks, now)
      rt.fireSignals()
      // Forget delays do not survive a restart: banks whose forgets reached their threshold get theirs afresh.
      for (const i of rt.core.idleWithForgets()) {
        const answer = rt.core.recheck(i, now)
        if (answer !== NOTHING) rt.answered(i, answer)
      }
      const logged = Effect.all(limitChanges, { discard: true })
      if (requeued.length === 0) return logged
      // Wait for room rather than drop: these compiles were promised before the restart.
      for (const i of requeued) rt.unsafeRequeue(i)
      return Effect.zipRight(logged, Effect.logInfo(`restored ${banks.length} banks; ${requeued.length} queued again`))
    }))

/**
 * What one flush takes: the global budget levels (when they changed) and the banks changed since the last flush.
 * Taking them clears their change marks; `putBack` marks them again.
 */
export interface FlushBatch {
  readonly budget: BudgetRow | undefined
  readonly banks: Int32Array
}

/** Takes the changes for one flush. */
export const takeChanges = (rt: QueueRuntime, store: BankStateStoreService): FlushBatch => ({
  budget: store.saveBudget === undefined ? undefined : rt.core.budgetRow(),
  banks: rt.core.changed()
})

/** A flush of `batch` did not commit (or may never end): its changes are listed again for the next flush. */
export const putBack = (rt: QueueRuntime, batch: FlushBatch): void => {
  if (batch.budget !== undefined) rt.core.budgetUnsaved()
  rt.core.unsaved(batch.banks)
}

/**
 * Writes a batch: the budget levels, then the banks (rows built from their state now). The caller puts the batch back
 * whatever ends the write other than success (a failure, a defect, an exception thrown by the store, an interruption).
 */
export const write = (rt: QueueRuntime, store: BankStateStoreService, batch: FlushBatch): Effect.Effect<void, BankStoreError> =>
  Effect.suspend(() => {
    const saveBudget = batch.budget === undefined || store.saveBudget === undefined
      ? Effect.void
      : store.saveBudget(batch.budget)
    const banks = batch.banks
    const saveBanks = banks.length === 0 ? Effect.void : store.save(Array.from(banks, (i) => rt.core.row(i)))
    return Effect.zipRight(saveBudget, saveBanks)
  })
