/**
 * Durable state for the compile queue: restore from a `BankStateStore` before the queue accepts work, write the
 * core's changed banks behind on a timer, and flush once more at close. Never on the retain path: a retain only
 * sets a bank's dirty bit in the core.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import type { BankStateStoreService, BankStoreError } from "../BankStateStore.js"
import * as CompileMetrics from "../CompileMetrics.js"
import { NOTHING } from "./compileCore.js"
import { NO_TAGS, type QueueRuntime } from "./queueRuntime.js"
import { sleepMillis } from "./sleep.js"

/** The last flush at close gets this long, on top of `shutdownTimeout`. */
const FINAL_FLUSH_TIMEOUT = Duration.seconds(10)

/** The stored global budget levels, when the store keeps them. */
const loadBudget = (store: BankStateStoreService) =>
  store.loadBudget === undefined ? Effect.succeed(null) : Effect.orDie(store.loadBudget)

/**
 * Loads the stored banks and budget levels into the core (a restart does not refill a spent budget); banks stored
 * as pending or running are queued again, in order.
 */
export const restore = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void> =>
  Effect.flatMap(Effect.all([Effect.orDie(store.load), loadBudget(store)]), ([banks, budget]) =>
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

/** Writes the global budget levels when they changed; a failed or cut-off write leaves them for the next flush. */
const flushBudget = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void, BankStoreError> =>
  Effect.suspend(() => {
    const row = store.saveBudget === undefined ? undefined : rt.core.budgetRow()
    if (row === undefined || store.saveBudget === undefined) return Effect.void
    return Effect.onError(store.saveBudget(row), () => Effect.sync(() => rt.core.budgetUnsaved()))
  })

/** Writes the banks changed since the last flush; a failed or cut-off write keeps them for the next one. */
export const flush = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<number, BankStoreError> =>
  Effect.zipRight(flushBudget(rt, store), flushBanks(rt, store))

const flushBanks = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<number, BankStoreError> =>
  Effect.suspend(() => {
    const changed = rt.core.changed()
    if (changed.length === 0) return Effect.succeed(0)
    const rows = Array.from(changed, (i) => rt.core.row(i))
    return store.save(rows).pipe(
      Effect.as(rows.length),
      Effect.onError(() => Effect.sync(() => rt.core.unsaved(changed)))
    )
  })

/** Never blocks a retain: a failed flush keeps its banks, logs, counts, and backs off up to a minute. */
export const writeBehind = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<never> => {
  const flushInterval = Duration.toMillis(rt.opts.flushInterval)
  const loop = (delay: number): Effect.Effect<never> =>
    Effect.zipRight(
      sleepMillis(delay),
      Effect.matchEffect(flush(rt, store), {
        onSuccess: () => loop(flushInterval),
        onFailure: (error) => {
          const next = Math.min(delay * 2, Math.max(flushInterval, 60_000))
          CompileMetrics.storeFlushFailures.unsafeUpdate(1, NO_TAGS)
          return Effect.zipRight(
            Effect.logWarning(`flushing bank state failed: ${error.message}; retrying in ${next} ms`),
            loop(next)
          )
        }
      })
    )
  return loop(flushInterval)
}

/** The flush at close, after the compiles finished or were cut off; bounded, and its failure only logged. */
export const finalFlush = (rt: QueueRuntime, store: BankStateStoreService): Effect.Effect<void> =>
  flush(rt, store).pipe(
    Effect.asVoid,
    Effect.interruptible,
    Effect.timeout(FINAL_FLUSH_TIMEOUT),
    Effect.catchAll((error) => Effect.logError(`final flush of bank state failed: ${error.message}`))
  )
